"""The ccxt-aware classifier: each row of the table, as ccxt exceptions and as real simulator refusals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from journal import Journal
from recovery.classify import RULES, Action, Outcome, classify, is_definite_refusal
from recovery.errors import OrderAbortedError
from recovery.normalize import NOT_ON_EXCHANGE
from recovery.orders import OrderJournal
from recovery.sim.server import Simulator
from recovery.testing import make_exchange
from tests.helpers.orders import DURABILITY

SYMBOL = "BTC/USDT"
ORDER = ("POST", "/api/v3/order")
D, U, N = Outcome.DEFINITE, Outcome.IN_DOUBT, Outcome.NOT_FOUND
FAST: dict[str, Any] = {"settle_window_ms": 100, "lookup_retries": 1, "backoff_s": 0.01}


# ---------------------------------------------------------------- the table
@pytest.mark.parametrize(
    ("exc", "create", "cancel", "edit"),
    [
        (ccxt.InvalidNonce("-1021"), D, D, D),
        (ccxt.NetworkError("dropped"), U, U, U),
        (ccxt.RequestTimeout("timeout"), U, U, U),
        (ccxt.ExchangeNotAvailable("502"), U, U, U),
        (ccxt.OnMaintenance("maintenance"), U, U, U),
        (ccxt.DDoSProtection("429"), U, U, U),
        (ccxt.RateLimitExceeded("-1015"), U, U, U),
        (ccxt.OrderNotFound("-2011"), U, N, N),
        (ccxt.DuplicateOrderId("dup"), U, U, U),
        (ccxt.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}'), U, U, U),
        (ccxt.InvalidOrder("LOT_SIZE"), D, D, D),
        (ccxt.OrderImmediatelyFillable("post only"), D, D, D),
        (ccxt.InsufficientFunds("-2010"), D, D, D),
        (ccxt.BadSymbol("-1121"), D, D, D),
        (ccxt.BadRequest("-1013 NOTIONAL"), D, D, D),
        (ccxt.PermissionDenied("no"), D, D, D),
        (ccxt.AuthenticationError("-1022"), D, D, D),
        (ccxt.AccountSuspended("suspended"), D, D, D),
        (ccxt.OperationRejected("-2016"), D, D, D),
        (ccxt.ArgumentsRequired("symbol"), D, D, D),
        (ccxt.NotSupported("no"), D, D, D),
        (ccxt.BadResponse("-2021"), U, U, U),
        (ccxt.NullResponse("empty"), U, U, U),
        (ccxt.OperationFailed("-1000"), U, U, U),
        (ccxt.CancelPending("pending"), U, U, U),
        (ccxt.ExchangeError("generic"), U, U, U),
        (ccxt.BaseError("base"), U, U, U),
        (KeyError("parsing the answer failed"), U, U, U),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_table(exc: BaseException, create: Outcome, cancel: Outcome, edit: Outcome) -> None:
    assert (classify(exc, "create"), classify(exc, Action.CANCEL), classify(exc, "edit")) == (create, cancel, edit)
    assert is_definite_refusal(exc) is (create is D)


def test_every_rule_is_reachable_and_actions_are_checked() -> None:
    for rule in RULES:
        exc = rule.error(rule.message or "x")
        assert rule.matches(exc) and classify(exc, Action.CANCEL) is rule.outcome_for(Action.CANCEL)
    assert classify(ccxt.InvalidNonce("x")) is D  # default action: create
    with pytest.raises(ValueError):
        classify(ccxt.NetworkError("x"), "withdraw")


def test_usable_as_the_journal_operation_hook(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as journal:
        for exc in (ccxt.InsufficientFunds("no money"), ccxt.RequestTimeout("no answer")):
            with pytest.raises(type(exc)), journal.operation("place_order", {}, classify=is_definite_refusal):
                raise exc
        pending = [r.op for r in journal.pending()]  # flushes
        aborted = list(journal.records(kinds=["abort"]))
    assert pending == [3]
    assert [(r.op, r.data["error"]["type"]) for r in aborted] == [(1, "InsufficientFunds")]


# ------------------------------------------------- real refusals, row by row
class Spy:
    """A ccxt exchange that remembers the exceptions its order calls raise."""

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange
        self.raised: list[BaseException] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._exchange, name)
        if name not in ("create_order", "cancel_order", "edit_order"):
            return attr

        def call(*args: Any) -> Any:
            try:
                return attr(*args)
            except Exception as exc:
                self.raised.append(exc)
                raise

        return call


@pytest.fixture
def make(simulator: Simulator, tmp_path: Path) -> Iterator[Callable[..., tuple[OrderJournal, Spy]]]:
    """``make(**config)``: an OrderJournal over a spied ccxt client with ``config``, on a fresh journal."""
    opened: list[Any] = []

    def factory(**config: Any) -> tuple[OrderJournal, Spy]:
        ex = make_exchange(simulator.url, timeout_ms=400, **config)
        journal = Journal(tmp_path / f"j{len(opened)}", durability=DURABILITY)
        opened.append((ex, journal))
        ex.load_markets()
        spy = Spy(ex)
        return OrderJournal(journal, spy, **FAST), spy

    yield factory
    for ex, journal in opened:
        ex.session.close()
        journal.close()


def final(oj: OrderJournal) -> tuple[str, dict[str, Any]]:
    """Kind and data of the outcome of the journal's last operation."""
    journal = oj.journal
    journal.flush()
    op = [r for r in journal.records(kinds=["intent"])][-1].op
    assert op is not None
    rec = [r for r in journal.timeline(op) if r.kind in ("commit", "abort")][-1:] or journal.timeline(op)[-1:]
    return rec[0].kind, rec[0].data


def orders_placed(sim: Simulator) -> int:
    return len(sim.orders())


@pytest.mark.integration
@pytest.mark.parametrize(
    ("row", "config", "fault", "args", "expected"),
    [
        ("InvalidNonce", {"options": {"timeDifference": 30_000}}, None, ("limit", "0.001", "29000"), ccxt.InvalidNonce),
        ("InvalidOrder", {}, None, ("limit", "0.001", "31000", {"postOnly": True}), ccxt.InvalidOrder),
        ("InsufficientFunds", {}, None, ("limit", "100", "29000"), ccxt.InsufficientFunds),
        (
            "BadRequest",
            {},
            {"code": -1013, "msg": "Filter failure: NOTIONAL"},
            ("limit", "0.001", "29000"),
            ccxt.BadRequest,
        ),
        ("BadSymbol", {}, {"code": -1121}, ("limit", "0.001", "29000"), ccxt.BadSymbol),
        ("AuthenticationError", {"secret": "wrong"}, None, ("limit", "0.001", "29000"), ccxt.AuthenticationError),
        (
            "PermissionDenied",
            {},
            {"code": -3999, "msg": "This function is only available for invited users."},
            ("market", "0.001", None),
            ccxt.PermissionDenied,
        ),
        (
            "OperationRejected",
            {},
            {"code": -2016, "msg": "No trading window could be found for the symbol. Try ticker/24hrs instead."},
            ("market", "0.001", None),
            ccxt.OperationRejected,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_definite_refusals_abort(
    row: str,
    config: dict[str, Any],
    fault: dict[str, Any] | None,
    args: tuple[Any, ...],
    expected: type[Exception],
    make: Callable[..., tuple[OrderJournal, Spy]],
    simulator: Simulator,
) -> None:
    oj, spy = make(**config)
    if fault is not None:
        simulator.faults.arm(*ORDER, "reject", **fault)
    with pytest.raises(expected) as info:
        oj.place_order(SYMBOL, args[0], "buy", *args[1:])
    assert spy.raised == [info.value] and classify(info.value, "create") is D
    kind, data = final(oj)
    assert (kind, data["reason"], data["error"]["type"]) == (
        "abort",
        f"refused by the exchange: {type(info.value).__name__}",
        type(info.value).__name__,
    )
    assert orders_placed(simulator) == 0 and oj.journal.pending() == []


@pytest.mark.integration
def test_unknown_market_is_refused_by_ccxt_before_sending(
    make: Callable[..., tuple[OrderJournal, Spy]], simulator: Simulator
) -> None:
    from recovery.errors import OrderRefusedLocally

    oj, _ = make()
    with pytest.raises(OrderRefusedLocally, match="unknown market") as info:
        oj.place_order("DOGE/USDT", "limit", "buy", "10", "0.1")
    assert isinstance(info.value.__cause__, ccxt.BadSymbol)
    assert oj.journal.last_seq == 0 and simulator.requests(*ORDER) == []  # nothing journaled, nothing sent


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fault", "options", "raised", "applied"),
    [
        ("commit_then_drop", {}, ccxt.NetworkError, True),
        ("commit_then_delay", {"delay_s": 0.8}, ccxt.RequestTimeout, True),
        ("http_503_1007", {}, ccxt.RequestTimeout, True),
        ("http_503_1007", {"applied": False}, ccxt.RequestTimeout, False),
        ("http_502_html", {}, ccxt.ExchangeNotAvailable, False),
        ("http_429", {}, ccxt.DDoSProtection, False),
        ("http_418", {}, ccxt.DDoSProtection, False),
        ("rate_limit_orders", {}, ccxt.DDoSProtection, False),
        ("rate_limit_orders", {"status": 400}, ccxt.RateLimitExceeded, False),
    ],
)
def test_network_errors_are_in_doubt_and_looked_up(
    fault: str,
    options: dict[str, Any],
    raised: type[Exception],
    applied: bool,
    make: Callable[..., tuple[OrderJournal, Spy]],
    simulator: Simulator,
) -> None:
    oj, spy = make()
    simulator.faults.arm(*ORDER, fault, **options)
    if applied:
        order = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
        assert final(oj) == ("commit", order) and order["resolved_by"] == "lookup"
    else:
        with pytest.raises(OrderAbortedError, match=NOT_ON_EXCHANGE):
            oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
        assert final(oj)[1]["error"]["type"] == raised.__name__
    assert type(spy.raised[0]) is raised and classify(spy.raised[0], "create") is U
    assert orders_placed(simulator) == int(applied)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("code", "msg", "raised"),
    [(-2010, "Duplicate order sent.", ccxt.InvalidOrder), (-1000, None, ccxt.OperationFailed)],
    ids=["duplicate", "unknown-error"],
)
def test_ambiguous_refusals_are_in_doubt(
    code: int,
    msg: str | None,
    raised: type[Exception],
    make: Callable[..., tuple[OrderJournal, Spy]],
    simulator: Simulator,
) -> None:
    oj, spy = make()
    options: dict[str, Any] = {"msg": msg} if msg else {}
    simulator.faults.arm(*ORDER, "reject", code=code, **options)
    with pytest.raises(OrderAbortedError, match=NOT_ON_EXCHANGE):
        oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    assert type(spy.raised[0]) is raised and classify(spy.raised[0]) is U
    assert len(simulator.requests("GET", "/api/v3/order")) == 2  # looked up before and after the window


@pytest.mark.integration
def test_order_not_found_on_cancel_is_looked_up(
    make: Callable[..., tuple[OrderJournal, Spy]], simulator: Simulator
) -> None:
    oj, spy = make()
    target = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    simulator.fill(target["client_id"], amount="0.0004")
    simulator.cancel(target["client_id"])  # canceled by someone else, partly filled
    moot = oj.cancel_order(target, SYMBOL)
    assert type(spy.raised[0]) is ccxt.OrderNotFound and classify(spy.raised[0], "cancel") is N
    assert (moot["status"], moot["filled"], moot["resolved_by"]) == ("canceled", Decimal("0.0004"), "lookup")
    assert final(oj) == ("commit", moot)
    # issue 12.3: the lookup says 0.0004 filled but carries no trades: the order's trades are journaled
    fills = [r.data for r in oj.journal.records(types=["fill"])]
    assert [(f["order_id"], f["amount"]) for f in fills] == [(target["id"], Decimal("0.0004"))]


@pytest.mark.integration
def test_bad_response_of_a_half_failed_cancel_replace_is_in_doubt(
    make: Callable[..., tuple[OrderJournal, Spy]], simulator: Simulator
) -> None:
    oj, spy = make()
    target = oj.place_order(SYMBOL, "limit", "buy", "0.001", "29000")
    simulator.set_balance("USDT", "0")  # the cancel succeeds, the new order fails: Binance -2021
    with pytest.raises(OrderAbortedError, match="the order it replaces is canceled"):
        oj.edit_order(target["client_id"], SYMBOL, "limit", "buy", "0.002", "28000")
    assert type(spy.raised[0]) is ccxt.BadResponse and classify(spy.raised[0], "edit") is U
    kind, data = final(oj)
    assert (kind, data["reason"]) == ("abort", NOT_ON_EXCHANGE)
    journal = oj.journal
    (edit,) = journal.records(kinds=["intent"], types=["edit_order"])
    events = [r.data for r in journal.timeline(edit.seq) if r.kind == "event"]
    assert [(e["client_id"], e["status"]) for e in events] == [(target["client_id"], "canceled")]
    assert [o.status for o in simulator.orders()] == ["CANCELED"]
