"""Journaled order helpers (sync): normalisation, and every fault x every operation on the simulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from journal import Journal
from recovery.errors import OrderAbortedError, OrderInDoubtError, OrderLookupError
from recovery.normalize import (
    CANCEL_NOT_APPLIED,
    NOT_ON_EXCHANGE,
    ORDER_FIELDS,
    TARGET_NOT_ON_EXCHANGE,
    TRADE_FIELDS,
    Verdict,
    cancel_verdict,
    create_verdict,
    edit_intent,
    normalize_order,
    normalize_trade,
    place_intent,
    scrub,
    scrubbed_error,
    target_of,
    to_decimal,
)
from recovery.orders import OrderJournal
from recovery.sim.server import TEST_API_KEY, TEST_SECRET, Simulator
from recovery.testing import make_exchange
from recovery.venue import CLOCK_SKEW_MS
from tests.helpers.orders import (
    APPLIED,
    CANCEL,
    CLIENT_TIMEOUT_MS,
    DURABILITY,
    FAST,
    FAULTS,
    LOOKUP,
    ORDER,
    REPLACE,
    SYMBOL,
    arm,
    check_invariants,
    on_exchange,
    ops,
    outcome,
)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal", durability=DURABILITY) as j:
        yield j


@pytest.fixture
def client(simulator: Simulator) -> Iterator[ccxt.binance]:
    ex = make_exchange(simulator.url, timeout_ms=CLIENT_TIMEOUT_MS)
    ex.load_markets()  # as a running bot has: a fault then hits the order call, not the markets
    yield ex
    ex.session.close()


@pytest.fixture
def oj(journal: Journal, client: ccxt.binance) -> OrderJournal:
    return OrderJournal(journal, client, **FAST)


# ----------------------------------------------------------- normalisation
CCXT_ORDER: dict[str, Any] = {
    "info": {"orderId": 7, "clientOrderId": "tjX7", "apiKey": TEST_API_KEY, "signature": "abc"},
    "id": "7",
    "clientOrderId": "tjX7",
    "timestamp": 1700000000123,
    "datetime": "2023-11-14T22:13:20.123Z",
    "symbol": "BTC/USDT",
    "type": "market",
    "timeInForce": "GTC",
    "side": "buy",
    "price": 30000.1,
    "amount": 0.1,
    "cost": 3000.01,
    "average": 30000.1,
    "filled": 0.1,
    "remaining": 0.0,
    "status": "closed",
    "fee": {"currency": "BTC", "cost": 1e-06},
    "fees": [{"currency": "BTC", "cost": 1e-06}],
    "trades": [
        {
            "info": {"tradeId": 3},
            "id": "3",
            "order": None,
            "symbol": "BTC/USDT",
            "side": None,
            "price": 30000.1,
            "amount": 0.1,
            "cost": 3000.01,
            "fee": {"currency": "BTC", "cost": 1e-06},
            "timestamp": None,
        }
    ],
}


def test_normalize_order_is_exact_and_keeps_only_the_contract_fields() -> None:
    got = normalize_order(CCXT_ORDER)
    assert tuple(got) == ORDER_FIELDS
    assert got["amount"] == Decimal("0.1") and str(got["amount"]) == "0.1"  # not 0.1000000000000000055...
    assert got["price"] == Decimal("30000.1") and got["cost"] == Decimal("3000.01")
    assert got["fee"] == {"cost": Decimal("0.000001"), "currency": "BTC"}
    assert got["filled"] == Decimal("0.1") and got["remaining"] == Decimal("0")
    assert (got["id"], got["client_id"], got["status"], got["timestamp"]) == ("7", "tjX7", "closed", 1700000000123)
    trade = got["trades"][0]
    assert tuple(trade) == TRADE_FIELDS
    assert (trade["order_id"], trade["client_id"], trade["side"]) == ("7", "tjX7", "buy")  # filled from the order
    assert "info" not in repr(got) and TEST_API_KEY not in repr(got) and "signature" not in repr(got)
    assert all(isinstance(v, Decimal) for k, v in got.items() if k in ("price", "amount", "filled", "cost"))


def test_normalize_is_idempotent() -> None:
    once = normalize_order(CCXT_ORDER)
    assert normalize_order(once) == once


def test_normalize_order_of_a_cancel_answer_names_the_original_order() -> None:
    answer = {**CCXT_ORDER, "clientOrderId": "cancelOwnId", "info": {"origClientOrderId": "tjX7"}}
    assert normalize_order(answer)["client_id"] == "tjX7"
    assert normalize_order(answer, client_id="tjOther")["client_id"] == "tjOther"


def test_normalize_handles_missing_values() -> None:
    got = normalize_order({"id": 5, "symbol": SYMBOL, "status": "open", "fee": {"cost": None}})
    assert got["id"] == "5" and got["price"] is None and got["fee"] is None and got["trades"] == []
    trade = normalize_trade({"id": 9, "amount": "0.5", "price": 2, "order": 5}, client_id="tjA")
    assert trade["amount"] == Decimal("0.5") and trade["price"] == Decimal(2) and trade["order_id"] == "5"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "NaN", "x", True, object()])
def test_to_decimal_refuses_what_is_not_an_exact_finite_number(bad: Any) -> None:
    with pytest.raises(ValueError):
        to_decimal(bad)


def test_intent_data_is_checked() -> None:
    data = place_intent(SYMBOL, "limit", "buy", "0.00100", 29000, {"timeInForce": "IOC"})
    assert data == {
        "symbol": SYMBOL,
        "side": "buy",
        "type": "limit",
        "amount": Decimal("0.00100"),
        "price": Decimal(29000),
        "params": {"timeInForce": "IOC"},
    }
    assert place_intent(SYMBOL, "market", "sell", 1)["price"] is None
    for args in [("limit", "buy", 1, None), ("market", "buy", 1, 5), ("limit", "hold", 1, 5), ("limit", "buy", 0, 5)]:
        with pytest.raises(ValueError):
            place_intent(SYMBOL, *args)
    with pytest.raises(ValueError, match="client order id"):
        place_intent(SYMBOL, "limit", "buy", 1, 5, {"clientOrderId": "mine"})
    assert target_of({"clientOrderId": "a", "id": 3}) == ("a", "3")
    assert target_of({"client_id": "b", "id": None}) == ("b", None)
    with pytest.raises(ValueError):
        target_of({"id": "3"})
    assert edit_intent("tjA", SYMBOL, "limit", "buy", "2", "3")["client_id"] == "tjA"


def test_credentials_and_signatures_are_scrubbed() -> None:
    text = f"binance GET http://127.0.0.1:1/api/v3/order?x=1&signature=ab12EF key={TEST_API_KEY} {TEST_SECRET}"
    clean = scrub(text, [TEST_API_KEY, TEST_SECRET, None, ""])
    assert TEST_API_KEY not in clean and TEST_SECRET not in clean and "ab12EF" not in clean
    assert "signature=***" in clean
    err = scrubbed_error(ccxt.NetworkError(text), [TEST_API_KEY])
    assert type(err) is ccxt.NetworkError and TEST_API_KEY not in str(err)
    plain = ccxt.NetworkError("nothing secret")
    assert scrubbed_error(plain, [TEST_API_KEY]) is plain


def test_lookup_verdicts() -> None:
    order = {"status": "open"}
    assert create_verdict(order, settled=False) == (Verdict.COMMIT, None)
    assert create_verdict(None, settled=False) == (Verdict.WAIT, None)
    assert create_verdict(None, settled=True) == (Verdict.ABORT, NOT_ON_EXCHANGE)
    assert cancel_verdict({"status": "canceled"}, settled=False) == (Verdict.COMMIT, None)
    assert cancel_verdict({"status": "closed"}, settled=False) == (Verdict.COMMIT, None)
    assert cancel_verdict(order, settled=False) == (Verdict.WAIT, None)
    assert cancel_verdict(order, settled=True) == (Verdict.ABORT, CANCEL_NOT_APPLIED)
    assert cancel_verdict(None, settled=False) == (Verdict.ABORT, TARGET_NOT_ON_EXCHANGE)


def test_settings_are_checked(journal: Journal, client: ccxt.binance) -> None:
    assert OrderJournal(journal, client).settle_window_ms() == 10_000 + CLOCK_SKEW_MS  # ccxt sends recvWindow=10000
    for bad in ({"settle_window_ms": -1}, {"lookup_retries": -1}, {"backoff_s": -0.1}):
        with pytest.raises(ValueError):
            OrderJournal(journal, client, **bad)


# ------------------------------------------------------------- happy paths
@pytest.mark.integration
def test_place_cancel_edit_commit_with_the_exchange_answer(
    oj: OrderJournal, journal: Journal, simulator: Simulator
) -> None:
    limit = oj.place_order(SYMBOL, "limit", "buy", Decimal("0.001"), Decimal("29000"))
    assert limit["status"] == "open" and limit["client_id"] == journal.client_id(
        limit_op := ops(journal, "place_order")[0]
    )
    intent = journal.timeline(limit_op)[0]
    assert intent.data == place_intent(SYMBOL, "limit", "buy", "0.001", "29000")
    assert outcome(journal, limit_op) == ("commit", limit)
    market = oj.place_order(SYMBOL, "market", "sell", "0.002")
    assert market["status"] == "closed" and market["filled"] == Decimal("0.002") and market["trades"]
    edited = oj.edit_order(limit, SYMBOL, "limit", "buy", "0.002", "28000")
    edit_op = ops(journal, "edit_order")[0]
    assert edited["client_id"] == journal.client_id(edit_op) and edited["amount"] == Decimal("0.002")
    assert journal.timeline(edit_op)[0].data["client_id"] == limit["client_id"]
    assert on_exchange(simulator, limit["client_id"])[0].status == "CANCELED"
    canceled = oj.cancel_order(edited["client_id"], SYMBOL)
    assert canceled["status"] == "canceled" and canceled["client_id"] == edited["client_id"]
    cancel_op = ops(journal, "cancel_order")[0]
    assert journal.timeline(cancel_op)[0].data == {"client_id": edited["client_id"], "id": None, "symbol": SYMBOL}
    assert outcome(journal, cancel_op) == ("commit", canceled)
    assert journal.pending() == []
    check_invariants(journal, simulator)


# ---------------------------------------------- each fault x each operation
def _resolve_after_down(oj: OrderJournal, sim: Simulator, call: Any) -> tuple[int, BaseException]:
    with pytest.raises(OrderInDoubtError) as info:
        call()
    err = info.value
    assert [r.op for r in oj.journal.pending()] == [err.op_id]
    assert "the journal keeps it pending" in str(err) and err.client_id in str(err) and SYMBOL in str(err)
    sim.faults.up()
    with pytest.raises(OrderAbortedError) as aborted:
        oj.resolve(err.op_id)
    return err.op_id, aborted.value


@pytest.mark.integration
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("type", ["limit", "market"])
def test_place_under_fault(fault: str, type: str, oj: OrderJournal, journal: Journal, simulator: Simulator) -> None:
    price = "29000" if type == "limit" else None
    arm(simulator, ORDER, fault)

    def place() -> dict[str, Any]:
        return oj.place_order(SYMBOL, type, "buy", "0.001", price)

    if fault == "down":
        op_id, _ = _resolve_after_down(oj, simulator, place)
        assert outcome(journal, op_id) == ("abort", {"reason": NOT_ON_EXCHANGE})
    elif fault == "reject":
        with pytest.raises(ccxt.InsufficientFunds):
            place()
        kind, data = outcome(journal, op_id := ops(journal, "place_order")[0])
        assert (kind, data["reason"]) == ("abort", "refused by the exchange: InsufficientFunds")
        assert data["error"]["type"] == "InsufficientFunds"
    elif fault in APPLIED:
        order = place()
        op_id = ops(journal, "place_order")[0]
        assert order["resolved_by"] == "lookup" and order["client_id"] == journal.client_id(op_id)
        assert order["status"] == ("open" if type == "limit" else "closed")
        assert outcome(journal, op_id) == ("commit", order)
    else:
        with pytest.raises(OrderAbortedError, match=NOT_ON_EXCHANGE):
            place()
        kind, data = outcome(journal, op_id := ops(journal, "place_order")[0])
        assert (kind, data["reason"]) == ("abort", NOT_ON_EXCHANGE)
        assert data["error"]["type"] in ("DDoSProtection", "ExchangeNotAvailable")
    held = on_exchange(simulator, journal.client_id(op_id))
    assert len(held) == (1 if fault in APPLIED else 0)
    assert len(simulator.requests(*ORDER)) == 1  # sent once, never again
    assert journal.pending() == []
    check_invariants(journal, simulator)


@pytest.mark.integration
@pytest.mark.parametrize("fault", FAULTS)
def test_cancel_under_fault(fault: str, oj: OrderJournal, journal: Journal, simulator: Simulator) -> None:
    target = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    arm(simulator, CANCEL, fault, reject_code=-2011)

    def cancel() -> dict[str, Any]:
        return oj.cancel_order(target, SYMBOL)

    if fault == "down":
        op_id, _ = _resolve_after_down(oj, simulator, cancel)
        assert outcome(journal, op_id) == ("abort", {"reason": CANCEL_NOT_APPLIED})
    elif fault in APPLIED:
        canceled = cancel()
        op_id = ops(journal, "cancel_order")[0]
        assert canceled["status"] == "canceled" and canceled["resolved_by"] == "lookup"
        assert canceled["client_id"] == target["client_id"]
        assert outcome(journal, op_id) == ("commit", canceled)
    else:  # refused (-2011 while open: looked up, still open) or not applied: safe to cancel again
        with pytest.raises(OrderAbortedError, match=CANCEL_NOT_APPLIED):
            cancel()
        kind, data = outcome(journal, op_id := ops(journal, "cancel_order")[0])
        assert (kind, data["reason"]) == ("abort", CANCEL_NOT_APPLIED)
    status = on_exchange(simulator, target["client_id"])[0].status
    assert status == ("CANCELED" if fault in APPLIED else "NEW")
    assert journal.timeline(op_id)[0].data == {"client_id": target["client_id"], "id": target["id"], "symbol": SYMBOL}
    assert journal.pending() == []
    check_invariants(journal, simulator)


@pytest.mark.integration
@pytest.mark.parametrize("fault", FAULTS)
def test_edit_under_fault(fault: str, oj: OrderJournal, journal: Journal, simulator: Simulator) -> None:
    target = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    arm(simulator, REPLACE, fault, reject_code=-1013)

    def edit() -> dict[str, Any]:
        return oj.edit_order(target["client_id"], SYMBOL, "limit", "buy", "0.002", "28000")

    if fault == "down":
        op_id, err = _resolve_after_down(oj, simulator, edit)
        assert outcome(journal, op_id) == ("abort", {"reason": NOT_ON_EXCHANGE})
        assert "the order it replaces is open" in str(err)
    elif fault == "reject":
        with pytest.raises(ccxt.InvalidOrder):
            edit()
        kind, data = outcome(journal, op_id := ops(journal, "edit_order")[0])
        assert (kind, data["reason"]) == ("abort", "refused by the exchange: InvalidOrder")
    elif fault in APPLIED:
        new = edit()
        op_id = ops(journal, "edit_order")[0]
        assert new["client_id"] == journal.client_id(op_id) and new["resolved_by"] == "lookup"
        assert new["amount"] == Decimal("0.002") and new["price"] == Decimal("28000")
        assert outcome(journal, op_id) == ("commit", new)
        seen = [r.data for r in journal.timeline(op_id) if r.kind == "event" and r.type == "order_update"]
        assert [(d["client_id"], d["status"]) for d in seen] == [(target["client_id"], "canceled")]
    else:
        with pytest.raises(OrderAbortedError, match=NOT_ON_EXCHANGE):
            edit()
        kind, data = outcome(journal, op_id := ops(journal, "edit_order")[0])
        assert (kind, data["reason"]) == ("abort", NOT_ON_EXCHANGE)
    old_status = on_exchange(simulator, target["client_id"])[0].status
    assert old_status == ("CANCELED" if fault in APPLIED else "NEW")
    assert len(on_exchange(simulator, journal.client_id(op_id))) == (1 if fault in APPLIED else 0)
    assert journal.pending() == []
    check_invariants(journal, simulator)


# ------------------------------------------------------------ lookups, waits
@pytest.mark.integration
def test_an_absent_order_is_aborted_only_after_the_settle_window(
    journal: Journal, client: ccxt.binance, simulator: Simulator
) -> None:
    oj = OrderJournal(journal, client, settle_window_ms=400, backoff_s=0.01)
    simulator.faults.arm(*ORDER, "http_429")
    started = time.monotonic()
    with pytest.raises(OrderAbortedError):
        oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    assert time.monotonic() - started >= 0.4
    assert len(simulator.requests(*LOOKUP)) == 2  # looked up, waited out the window, looked once more


@pytest.mark.integration
def test_an_order_landing_inside_the_settle_window_is_committed(
    journal: Journal, client: ccxt.binance, simulator: Simulator
) -> None:
    oj = OrderJournal(journal, client, settle_window_ms=500, backoff_s=0.01)
    client_id = journal.client_id(journal.last_seq + 1)  # the next intent's
    simulator.faults.arm(*ORDER, "http_429")

    def late_arrival() -> None:  # the "refused" request was executed after all, a moment later
        simulator.core.place_order(
            "BTCUSDT", "BUY", "LIMIT", quantity=Decimal("0.001"), price=Decimal("29000"), time_in_force="GTC",
            client_order_id=client_id,
        )  # fmt: skip

    timer = threading.Timer(0.15, late_arrival)
    timer.start()
    try:
        order = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    finally:
        timer.join()
    assert order["client_id"] == client_id and order["resolved_by"] == "lookup"
    check_invariants(journal, simulator)


@pytest.mark.integration
def test_ccxt_retries_are_off_for_orders_even_when_the_exchange_enables_them(
    journal: Journal, simulator: Simulator
) -> None:
    ex = make_exchange(simulator.url, options={"maxRetriesOnFailure": 3})
    try:
        oj = OrderJournal(journal, ex, **FAST)
        simulator.faults.arm(*ORDER, "commit_then_drop", times=3)
        order = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    finally:
        ex.session.close()
    assert order["resolved_by"] == "lookup"
    assert len(simulator.requests(*ORDER)) == 1
    assert "maxRetriesOnFailure" not in simulator.requests(*ORDER)[0].params
    simulator.faults.disarm()
    check_invariants(journal, simulator)


@pytest.mark.integration
def test_lookup(oj: OrderJournal, simulator: Simulator) -> None:
    order = oj.place_order(SYMBOL, "limit", "sell", "0.001", "31000")
    found = oj.lookup(order["client_id"], SYMBOL)
    assert found is not None and found["id"] == order["id"] and found["status"] == "open"
    assert oj.lookup("tjNoSuchOrder", SYMBOL) is None
    simulator.faults.down()
    before = len(simulator.requests(*LOOKUP))
    with pytest.raises(OrderLookupError, match="state is unknown"):
        oj.lookup(order["client_id"], SYMBOL)
    assert len(simulator.requests(*LOOKUP)) - before == FAST["lookup_retries"] + 1


@pytest.mark.integration
def test_cancel_of_a_filled_order_is_moot_and_committed(
    oj: OrderJournal, journal: Journal, simulator: Simulator
) -> None:
    target = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    simulator.fill(target["client_id"])
    closed = oj.cancel_order(target["client_id"], SYMBOL)  # -2011: looked up, it is filled
    assert closed["status"] == "closed" and closed["filled"] == Decimal("0.001") and closed["resolved_by"] == "lookup"
    assert outcome(journal, ops(journal, "cancel_order")[0]) == ("commit", closed)


@pytest.mark.integration
def test_cancel_of_an_unknown_order_is_aborted(oj: OrderJournal, journal: Journal) -> None:
    with pytest.raises(OrderAbortedError, match=TARGET_NOT_ON_EXCHANGE):
        oj.cancel_order("tjNeverPlaced", SYMBOL)
    kind, data = outcome(journal, ops(journal, "cancel_order")[0])
    assert (kind, data["reason"], data["error"]["type"]) == ("abort", TARGET_NOT_ON_EXCHANGE, "OrderNotFound")


@pytest.mark.integration
def test_journaled_errors_hold_no_signature_nor_credentials(
    oj: OrderJournal, journal: Journal, simulator: Simulator
) -> None:
    target = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    simulator.faults.arm(*CANCEL, "http_502_html")  # ccxt's message holds the signed URL
    with pytest.raises(OrderAbortedError):
        oj.cancel_order(target, SYMBOL)
    _, data = outcome(journal, ops(journal, "cancel_order")[0])
    assert "signature=***" in data["error"]["message"]
    journal.flush()
    dump = repr([r.as_dict() for r in journal.records()])
    assert TEST_API_KEY not in dump and TEST_SECRET not in dump and "'info'" not in dump


@pytest.mark.integration
def test_resolve_is_idempotent_and_refuses_foreign_operations(
    oj: OrderJournal, journal: Journal, simulator: Simulator
) -> None:
    order = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    assert oj.resolve(order["client_id"]) == order  # already committed: no exchange call
    simulator.faults.arm(*ORDER, "http_429")
    with pytest.raises(OrderAbortedError) as info:
        oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    with pytest.raises(OrderAbortedError, match=NOT_ON_EXCHANGE):
        oj.resolve(info.value.op_id)
    other = journal.begin("strategy_change", {"symbol": SYMBOL})
    with pytest.raises(ValueError, match="strategy_change"):
        oj.resolve(other.op_id)


@pytest.mark.integration
def test_events_for_later_observations(oj: OrderJournal, journal: Journal, client: ccxt.binance) -> None:
    order = oj.place_order(SYMBOL, "limit", "buy", "0.002", "29000")
    place_op = journal.op_id_of(order["client_id"])
    polled = client.fetch_order(None, SYMBOL, {"clientOrderId": order["client_id"]})
    seq = oj.record_order_update(polled)
    trade = {"id": "41", "order": order["id"], "symbol": SYMBOL, "side": "buy", "amount": 0.001, "price": 29000.0}
    fill_seq = oj.record_fill(trade, client_id=order["client_id"])
    update, fill = journal.get(seq), journal.get(fill_seq)
    assert (update.kind, update.type, update.op) == ("event", "order_update", place_op)
    assert update.data["client_id"] == order["client_id"] and "info" not in update.data
    assert (fill.type, fill.data["client_id"], fill.data["amount"]) == ("fill", order["client_id"], Decimal("0.001"))
    with pytest.raises(ValueError, match="client id"):
        oj.record_fill({"id": "42", "amount": 1, "price": 1})
    foreign = oj.record_order_update({"id": "9", "clientOrderId": "web_abc", "symbol": SYMBOL, "status": "open"})
    assert journal.get(foreign).op is None


@pytest.mark.integration
@pytest.mark.parametrize(
    ("amount", "price", "problem"),
    [
        (Decimal("1e999999"), "29000", "precision"),  # issue 12.5: ccxt raised decimal.InvalidOperation locally
        ("0.0001", "29000", "cost"),  # below the market's minimum notional
        ("0.0000001", "29000", "minimum amount precision"),  # below the amount step
        ("100000000", "29000", "maximum"),
    ],
)
def test_an_order_the_market_forbids_is_refused_before_anything_is_journaled_or_sent(
    oj: OrderJournal, simulator: Simulator, amount: Any, price: str, problem: str
) -> None:
    from recovery.errors import OrderRefusedLocally

    simulator.log.clear()
    before = oj.journal.last_seq
    with pytest.raises(OrderRefusedLocally, match=problem):
        oj.place_order(SYMBOL, "limit", "buy", amount, price)
    assert oj.journal.last_seq == before  # nothing journaled: no intent left to reconcile
    assert not simulator.requests("POST", "/api/v3/order")  # nothing sent


@pytest.mark.integration
def test_a_tag_rides_with_the_intent_and_stays_on_the_order(tmp_path: Path, simulator: Simulator) -> None:
    """Issue 12.6: a grid bot's link between a level and its order cannot be lost to a crash."""
    from journal import StateStore

    with Journal(tmp_path / "j", durability=DURABILITY) as j:
        store = StateStore(j)
        ex = make_exchange(simulator.url)
        oj = OrderJournal(j, ex, **FAST)
        order = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000", tag={"grid": "g1", "level": 7})
        intent = j.timeline(order["client_id"])[0]
        assert intent.data["tag"] == {"grid": "g1", "level": 7}  # durable before the order was sent
        assert store.state["orders"][order["client_id"]]["tag"] == {"grid": "g1", "level": 7}
        new = oj.edit_order(order["client_id"], SYMBOL, "limit", "buy", "0.001", "28900")
        assert store.state["orders"][new["client_id"]]["tag"] == {"grid": "g1", "level": 7}
        ex.session.close()
