"""The core's event hook: every order change and fill is one event, told under the lock, in exchange order."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from recovery.sim.core import ExchangeCore, OrderRequest
from recovery.sim.events import AccountEvent, BalanceEvent, OrderEvent, UserEvent

D = Decimal


@pytest.fixture
def core() -> ExchangeCore:
    return ExchangeCore(balances={"USDT": "10000", "BTC": "1"}, clock_ms=lambda: 1_700_000_000_000)


def listen(core: ExchangeCore) -> list[UserEvent]:
    seen: list[UserEvent] = []

    def listener(event: UserEvent) -> None:
        assert core.lock._is_owned()  # type: ignore[attr-defined]  # told under the core's lock
        seen.append(event)

    core.add_listener(listener)
    return seen


def kinds(events: list[UserEvent]) -> list[str]:
    return [e.execution_type if isinstance(e, OrderEvent) else type(e).__name__ for e in events]


def buy(core: ExchangeCore, price: str, qty: str = "0.01", cid: str = "b1", tif: str = "GTC") -> None:
    core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D(qty), price=D(price), time_in_force=tif, client_order_id=cid
    )


def test_each_call_tells_its_executions_in_order_then_the_balances_it_moved(core: ExchangeCore) -> None:
    seen = listen(core)
    buy(core, "29000")
    assert kinds(seen) == ["NEW", "AccountEvent"]
    new, account = seen
    assert isinstance(new, OrderEvent) and isinstance(account, AccountEvent)
    assert (new.order.status, new.order.client_order_id, new.trade) == ("NEW", "b1", None)
    assert account.balances == (("USDT", core.balance("USDT")),)
    core.fill("b1", "0.004")
    core.fill("b1")
    assert kinds(seen)[2:] == ["TRADE", "AccountEvent", "TRADE", "AccountEvent"]
    partial, full = seen[2], seen[4]
    assert isinstance(partial, OrderEvent) and isinstance(full, OrderEvent)
    assert (partial.order.status, partial.order.executed_qty) == ("PARTIALLY_FILLED", D("0.004"))
    assert (full.order.status, full.order.executed_qty) == ("FILLED", D("0.01"))
    assert partial.trade is not None and full.trade is not None
    assert [partial.trade.trade_id, full.trade.trade_id] == [t.trade_id for t in core.trades()]
    assert [a for a, _ in seen[-1].balances] == ["BTC", "USDT"]  # type: ignore[union-attr]
    assert [e.seq for e in seen] == list(range(1, 7))  # one running number
    assert [e.execution_id for e in seen if isinstance(e, OrderEvent)] == [1, 2, 3]


def test_a_crossing_order_is_new_then_trade_and_an_unfilled_ioc_expires(core: ExchangeCore) -> None:
    seen = listen(core)
    buy(core, "31000", cid="taker")  # crosses the last price (30000): fills at once
    assert kinds(seen) == ["NEW", "TRADE", "AccountEvent"]
    assert seen[0].order.status == "NEW" and seen[1].order.status == "FILLED"  # type: ignore[union-attr]
    seen.clear()
    buy(core, "29000", cid="ioc", tif="IOC")
    assert kinds(seen) == ["NEW", "EXPIRED", "AccountEvent"]
    assert seen[1].expiry_reason == "UNFILLED_IOC_QUANTITY_EXPIRED"  # type: ignore[union-attr]


def test_cancels_carry_the_cancel_requests_id(core: ExchangeCore) -> None:
    buy(core, "29000", cid="c1")
    buy(core, "28000", cid="c2")
    buy(core, "27000", cid="c3")
    seen = listen(core)
    core.cancel_order("BTC/USDT", client_order_id="c1", cancel_client_order_id="mine")
    core.cancel_all("BTC/USDT", cancel_client_order_id="all")
    assert kinds(seen) == ["CANCELED", "AccountEvent", "CANCELED", "CANCELED", "AccountEvent"]
    ids = [(e.order.client_order_id, e.cancel_client_id) for e in seen if isinstance(e, OrderEvent)]
    assert ids == [("c1", "mine"), ("c2", "all"), ("c3", "all")]
    buy(core, "29000", cid="c4")
    core.cancel("c4")  # the exchange (or the web site) cancels: a fresh cancel id
    last = seen[-2]
    assert isinstance(last, OrderEvent) and last.execution_type == "CANCELED"
    assert last.cancel_client_id and last.cancel_client_id != "c4"


def test_cancel_replace_is_cancel_then_new_and_a_refused_new_half_is_rejected(core: ExchangeCore) -> None:
    buy(core, "29000", cid="r1")
    seen = listen(core)
    new = OrderRequest("BUY", "LIMIT", quantity=D("0.01"), price=D("28000"), time_in_force="GTC", client_order_id="r2")
    core.cancel_replace(
        "BTC/USDT", cancel_order_id=None, cancel_client_order_id="r1", new_order=new, cancel_new_client_order_id="x"
    )
    assert kinds(seen) == ["CANCELED", "NEW", "AccountEvent"]
    assert [e.order.client_order_id for e in seen[:2]] == ["r1", "r2"]  # type: ignore[union-attr]
    seen.clear()
    core.set_balance("USDT", "0")
    big = OrderRequest("BUY", "LIMIT", quantity=D("0.02"), price=D("28000"), time_in_force="GTC", client_order_id="r3")
    cancel, placed, _ = core.cancel_replace("BTC/USDT", cancel_order_id=None, cancel_client_order_id="r2",
                                            new_order=big, stop_on_failure=False)  # fmt: skip
    assert not isinstance(cancel, Exception) and isinstance(placed, Exception)
    assert kinds(seen) == ["BalanceEvent", "AccountEvent", "CANCELED", "REJECTED", "AccountEvent"]
    rejected = seen[3]
    assert isinstance(rejected, OrderEvent)
    assert (rejected.order.status, rejected.order.client_order_id, rejected.reject_reason) == (
        "REJECTED",
        "r3",
        "INSUFFICIENT_BALANCES",
    )
    assert rejected.order.order_id not in [o.order_id for o in core.orders()]  # no query shows it


def test_deposits_and_price_moves(core: ExchangeCore) -> None:
    buy(core, "29000", cid="p1")
    buy(core, "28500", cid="p2")
    seen = listen(core)
    core.set_balance("USDT", "20000")
    core.set_balance("USDT", "20000")  # no change: no event
    assert kinds(seen) == ["BalanceEvent", "AccountEvent"]
    deposit = seen[0]
    assert isinstance(deposit, BalanceEvent) and deposit.asset == "USDT" and deposit.delta > 0
    seen.clear()
    core.set_price("BTC/USDT", "28000")  # both fill, oldest first, then one account event
    assert kinds(seen) == ["TRADE", "TRADE", "AccountEvent"]
    assert [e.order.client_order_id for e in seen[:2]] == ["p1", "p2"]  # type: ignore[union-attr]


def test_no_event_for_a_refusal_and_a_broken_listener_does_not_break_the_exchange(
    core: ExchangeCore, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = listen(core)
    with pytest.raises(Exception, match="-2010"):
        buy(core, "29000", qty="10")  # insufficient balance: refused before the matching engine books anything
    assert seen == []

    def broken(event: UserEvent) -> None:
        raise RuntimeError("listener bug")

    core.add_listener(broken)
    buy(core, "29000", cid="ok")
    assert kinds(seen) == ["NEW", "AccountEvent"] and core.order("ok").status == "NEW"
    assert "listener bug" in capsys.readouterr().err
    core.remove_listener(broken)
    core.remove_listener(broken)  # twice is fine


def test_events_of_concurrent_calls_never_interleave(core: ExchangeCore) -> None:
    core.set_balance("USDT", "1000000")
    seen = listen(core)

    def place(prefix: str) -> None:
        for i in range(50):
            buy(core, "29000", qty="0.001", cid=f"{prefix}{i}")

    threads = [threading.Thread(target=place, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kinds(seen) == ["NEW", "AccountEvent"] * 200
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
