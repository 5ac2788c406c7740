"""The async twin on async ccxt: a representative subset of faults x operations, and async specifics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from journal import Journal
from recovery.errors import OrderAbortedError, OrderInDoubtError, OrderLookupError
from recovery.normalize import CANCEL_NOT_APPLIED, NOT_ON_EXCHANGE
from recovery.orders import AsyncOrderJournal
from recovery.sim.server import Simulator
from recovery.testing import AsyncExchanges
from tests.helpers.orders import (
    CANCEL,
    DURABILITY,
    FAST,
    ORDER,
    REPLACE,
    SYMBOL,
    arm,
    check_invariants,
    on_exchange,
    ops,
    outcome,
)

pytestmark = pytest.mark.integration

Scenario = Callable[[AsyncOrderJournal], Awaitable[Any]]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal", durability=DURABILITY) as j:
        yield j


@pytest.fixture
def run(async_exchange: AsyncExchanges, journal: Journal) -> Callable[[Scenario], Any]:
    """``run(scenario)``: ``scenario(AsyncOrderJournal)`` on a fresh async client (markets loaded), closed after."""

    def runner(scenario: Scenario) -> Any:
        async def main(ex: Any) -> Any:
            await ex.load_markets()
            return await scenario(AsyncOrderJournal(journal, ex, **FAST))

        return async_exchange.run(main, timeout_ms=400)

    return runner


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("reject", "refused by the exchange: InsufficientFunds"),
        ("commit_then_drop", "commit"),
        ("commit_then_delay", "commit"),
        ("http_429", NOT_ON_EXCHANGE),
        ("http_502_html", NOT_ON_EXCHANGE),
    ],
)
@pytest.mark.parametrize("type", ["limit", "market"])
def test_place_under_fault(
    fault: str, expected: str, type: str, run: Callable[[Scenario], Any], journal: Journal, simulator: Simulator
) -> None:
    async def scenario(aoj: AsyncOrderJournal) -> Any:
        arm(simulator, ORDER, fault)
        try:
            return await aoj.place_order(SYMBOL, type, "buy", "0.001", "29000" if type == "limit" else None)
        except (ccxt.InsufficientFunds, OrderAbortedError) as exc:
            return exc

    result = run(scenario)
    kind, data = outcome(journal, ops(journal, "place_order")[0])
    if expected == "commit":
        assert kind == "commit" and data == result and result["resolved_by"] == "lookup"
    else:
        assert isinstance(result, Exception) and (kind, data["reason"]) == ("abort", expected)
    check_invariants(journal, simulator)


def test_in_doubt_while_down_then_resolved(
    run: Callable[[Scenario], Any], journal: Journal, simulator: Simulator
) -> None:
    async def scenario(aoj: AsyncOrderJournal) -> tuple[OrderInDoubtError, Any]:
        simulator.faults.arm(*ORDER, "commit_then_drop")  # applied, but the answer is lost
        simulator.faults.arm("GET", "/api/v3/order", "down", times=None)  # and nobody can ask
        with pytest.raises(OrderInDoubtError) as info:
            await aoj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
        assert [r.op for r in aoj.journal.pending()] == [info.value.op_id]
        with pytest.raises(OrderLookupError):
            await aoj.lookup(info.value.client_id, SYMBOL)
        simulator.faults.disarm()
        return info.value, await aoj.resolve(info.value.op_id)

    err, order = run(scenario)
    assert order["client_id"] == err.client_id and order["resolved_by"] == "lookup"
    assert outcome(journal, err.op_id) == ("commit", order) and journal.pending() == []
    check_invariants(journal, simulator)


def test_cancel_whose_answer_was_lost_is_committed_despite_aiohttp_resending_it(
    run: Callable[[Scenario], Any], journal: Journal, simulator: Simulator
) -> None:
    async def scenario(aoj: AsyncOrderJournal) -> tuple[dict[str, Any], dict[str, Any]]:
        target = await aoj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
        simulator.faults.arm(*CANCEL, "commit_then_drop")
        return target, await aoj.cancel_order(target, SYMBOL)

    target, canceled = run(scenario)
    # aiohttp re-sent the DELETE: the second got -2011 (OrderNotFound), and the lookup found it canceled
    assert [r.code for r in simulator.requests(*CANCEL)] == [None, -2011]
    assert (canceled["status"], canceled["client_id"], canceled["resolved_by"]) == (
        "canceled",
        target["client_id"],
        "lookup",
    )
    assert outcome(journal, ops(journal, "cancel_order")[0]) == ("commit", canceled)


def test_cancel_not_applied(run: Callable[[Scenario], Any], journal: Journal, simulator: Simulator) -> None:
    async def scenario(aoj: AsyncOrderJournal) -> dict[str, Any]:
        target = await aoj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
        simulator.faults.arm(*CANCEL, "http_429")
        with pytest.raises(OrderAbortedError, match=CANCEL_NOT_APPLIED):
            await aoj.cancel_order(target["client_id"], SYMBOL)
        return target

    target = run(scenario)
    assert on_exchange(simulator, target["client_id"])[0].status == "NEW"
    assert outcome(journal, ops(journal, "cancel_order")[0])[1]["reason"] == CANCEL_NOT_APPLIED


@pytest.mark.parametrize("fault", ["commit_then_drop", "reject", "http_429"])
def test_edit_under_fault(fault: str, run: Callable[[Scenario], Any], journal: Journal, simulator: Simulator) -> None:
    async def scenario(aoj: AsyncOrderJournal) -> Any:
        target = await aoj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
        arm(simulator, REPLACE, fault, reject_code=-1013)
        try:
            return await aoj.edit_order(target, SYMBOL, "limit", "buy", "0.002", "28000")
        except (ccxt.InvalidOrder, OrderAbortedError) as exc:
            return exc

    result = run(scenario)
    kind, data = outcome(journal, op := ops(journal, "edit_order")[0])
    if fault == "commit_then_drop":
        assert kind == "commit" and data == result and result["client_id"] == journal.client_id(op)
    else:
        reason = NOT_ON_EXCHANGE if fault == "http_429" else "refused by the exchange: InvalidOrder"
        assert (kind, data["reason"]) == ("abort", reason)
    check_invariants(journal, simulator)


def test_a_cancelled_task_leaves_the_order_pending(
    run: Callable[[Scenario], Any], journal: Journal, simulator: Simulator
) -> None:
    async def scenario(aoj: AsyncOrderJournal) -> tuple[int, dict[str, Any]]:
        aoj.exchange.timeout = 5000
        simulator.faults.arm(*ORDER, "commit_then_delay", delay_s=1.0)
        task = asyncio.create_task(aoj.place_order(SYMBOL, "limit", "buy", "0.001", "29000"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (pending,) = aoj.journal.pending()
        assert pending.op is not None
        return pending.op, await aoj.resolve(pending.op)

    op, order = run(scenario)
    assert outcome(journal, op) == ("commit", order) and order["resolved_by"] == "lookup"
    check_invariants(journal, simulator)


def test_lookup_and_events(run: Callable[[Scenario], Any], journal: Journal) -> None:
    async def scenario(aoj: AsyncOrderJournal) -> tuple[dict[str, Any], int, int]:
        order = await aoj.place_order(SYMBOL, "limit", "sell", "0.001", "31000")
        found = await aoj.lookup(order["client_id"], SYMBOL)
        assert found is not None and found["status"] == "open"
        assert await aoj.lookup("tjMissing", SYMBOL) is None
        update = await aoj.record_order_update(found)
        trade = {"id": "7", "order": order["id"], "amount": "0.001", "price": "31000"}
        return order, update, await aoj.record_fill(trade, client_id=order["client_id"])

    order, update, fill = run(scenario)
    assert journal.get(update).type == "order_update" and journal.get(update).op == journal.op_id_of(order["client_id"])
    assert journal.get(fill).data["price"] == Decimal("31000")
