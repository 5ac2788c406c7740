"""Unit tests of the simulator's matching core (no HTTP, no ccxt)."""

from __future__ import annotations

import threading
from collections import defaultdict
from contextlib import AbstractContextManager
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery.errors import RecoveryError
from recovery.sim.core import (
    ExchangeCore,
    ExchangeRejected,
    Market,
    OrderRequest,
    SimulatorError,
)

D = Decimal


class FakeClock:
    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def core(clock: FakeClock) -> ExchangeCore:
    return ExchangeCore(balances={"USDT": "10000", "BTC": "1"}, clock_ms=clock)


def rejected(code: int, msg: str | None = None) -> AbstractContextManager[pytest.ExceptionInfo[ExchangeRejected]]:
    return pytest.raises(ExchangeRejected, match=f"{code}: {msg}" if msg else f"{code}:")


def test_limit_buy_locks_quote_and_cancel_unlocks(core: ExchangeCore) -> None:
    order, trades = core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("29000"), time_in_force="GTC", client_order_id="a1"
    )
    assert trades == [] and order.status == "NEW"
    assert core.balance("USDT").free == D("9710") and core.balance("USDT").locked == D("290")
    canceled = core.cancel_order("BTCUSDT", order_id=order.order_id)
    assert canceled.status == "CANCELED"
    assert core.balance("USDT").free == D("10000") and core.balance("USDT").locked == 0


def test_limit_sell_locks_base(core: ExchangeCore) -> None:
    core.place_order("BTC/USDT", "SELL", "LIMIT", quantity=D("0.4"), price=D("31000"), time_in_force="GTC")
    assert core.balance("BTC").free == D("0.6") and core.balance("BTC").locked == D("0.4")


def test_partial_fills_then_full_move_exact_amounts(core: ExchangeCore) -> None:
    order, _ = core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D("0.03"), price=D("29000"), time_in_force="GTC", client_order_id="p1"
    )
    t1 = core.fill("p1", amount="0.01")
    assert core.order("p1").status == "PARTIALLY_FILLED"
    assert core.order("p1").executed_qty == D("0.01")
    assert t1.commission == D("0.00001") and t1.commission_asset == "BTC" and t1.is_maker
    core.fill(order.order_id)  # the rest
    done = core.order(order.order_id)
    assert done.status == "FILLED" and done.executed_qty == D("0.03")
    assert done.cummulative_quote_qty == D("870")
    assert core.balance("USDT").free == D("9130") and core.balance("USDT").locked == 0
    assert core.balance("BTC").free == D("1") + D("0.03") - D("0.00003")


def test_fill_at_better_price_releases_the_difference(core: ExchangeCore) -> None:
    core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("29000"), time_in_force="GTC", client_order_id="b1"
    )
    core.fill("b1", price="28000")
    assert core.balance("USDT").free == D("9720") and core.balance("USDT").locked == 0


def test_fill_refuses_worse_price_unknown_and_closed_orders(core: ExchangeCore) -> None:
    core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("29000"), time_in_force="GTC", client_order_id="w1"
    )
    with pytest.raises(SimulatorError, match="worse than the limit"):
        core.fill("w1", price="29000.01")
    with pytest.raises(SimulatorError, match="remaining"):
        core.fill("w1", amount="0.02")
    with pytest.raises(SimulatorError, match="no order"):
        core.fill("nope")
    core.cancel("w1")
    with pytest.raises(SimulatorError, match="CANCELED, not open"):
        core.fill("w1")
    assert not issubclass(SimulatorError, RecoveryError)  # the simulator is its own layer


def test_crossing_limit_fills_at_its_limit_price_as_taker(core: ExchangeCore) -> None:
    order, trades = core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("30500"), time_in_force="GTC"
    )
    assert order.status == "FILLED" and len(trades) == 1
    assert trades[0].price == D("30500") and not trades[0].is_maker
    assert core.balance("USDT").free == D("9695") and core.balance("USDT").locked == 0


def test_market_orders_fill_at_last_price(core: ExchangeCore) -> None:
    buy, trades = core.place_order("BTC/USDT", "BUY", "MARKET", quantity=D("0.01"))
    assert buy.status == "FILLED" and trades[0].price == D("30000") and buy.price == 0
    sell, trades = core.place_order("BTC/USDT", "SELL", "MARKET", quantity=D("0.5"))
    assert trades[0].commission == D("15") and trades[0].commission_asset == "USDT"
    assert core.balance("USDT").free == D("10000") - D("300") + D("15000") - D("15")
    by_cost, trades = core.place_order("BTC/USDT", "BUY", "MARKET", quote_order_qty=D("100"))
    assert by_cost.orig_qty == D("0.00333") and by_cost.orig_quote_order_qty == D("100")
    assert trades[0].quote_qty == D("99.9")


def test_set_price_fills_crossed_resting_orders_unless_match_false(core: ExchangeCore) -> None:
    core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("29000"), time_in_force="GTC", client_order_id="r1"
    )
    core.place_order(
        "BTC/USDT", "SELL", "LIMIT", quantity=D("0.01"), price=D("31000"), time_in_force="GTC", client_order_id="r2"
    )
    assert core.set_price("BTC/USDT", "28000", match=False) == []
    assert core.order("r1").status == "NEW"
    trades = core.set_price("BTC/USDT", "28500")
    assert [t.order_id for t in trades] == [core.order("r1").order_id]
    assert trades[0].price == D("29000") and core.order("r2").status == "NEW"
    assert core.price("BTCUSDT") == D("28500")


def test_ioc_that_does_not_cross_expires_and_unlocks(core: ExchangeCore) -> None:
    order, trades = core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("29000"), time_in_force="IOC"
    )
    assert order.status == "EXPIRED" and trades == []
    assert core.balance("USDT").locked == 0 and core.balance("USDT").free == D("10000")


def test_limit_maker_that_would_take_is_refused(core: ExchangeCore) -> None:
    with rejected(-2010, "Order would immediately match and take."):
        core.place_order("BTC/USDT", "BUY", "LIMIT_MAKER", quantity=D("0.01"), price=D("30000"))


def test_client_ids_unique_among_open_orders_only(core: ExchangeCore) -> None:
    kwargs = {"quantity": D("0.01"), "price": D("29000"), "time_in_force": "GTC", "client_order_id": "dup"}
    first, _ = core.place_order("BTC/USDT", "BUY", "LIMIT", **kwargs)  # type: ignore[arg-type]
    with rejected(-2010, "Duplicate order sent."):
        core.place_order("BTC/USDT", "BUY", "LIMIT", **kwargs)  # type: ignore[arg-type]
    with rejected(-2010, "Duplicate order sent."):  # across symbols too
        core.place_order(
            "ETH/USDT", "BUY", "LIMIT", quantity=D("0.1"), price=D("1000"), time_in_force="GTC", client_order_id="dup"
        )
    core.cancel_order("BTC/USDT", client_order_id="dup")
    second, _ = core.place_order("BTC/USDT", "BUY", "LIMIT", **kwargs)  # type: ignore[arg-type]
    assert second.order_id > first.order_id
    assert core.get_order("BTC/USDT", client_order_id="dup").order_id == second.order_id  # the open one
    core.cancel_order("BTC/USDT", client_order_id="dup")
    assert core.get_order("BTC/USDT", client_order_id="dup").order_id == second.order_id  # else the newest
    with rejected(-2013):  # id and client id must name the same order
        core.get_order("BTC/USDT", order_id=first.order_id, client_order_id="other")


@pytest.mark.parametrize("client_id", ["x" * 37, "bad id", "emoji\u00e9", "a.b", "a:b", "a/b", ""])
def test_client_id_pattern(core: ExchangeCore, client_id: str) -> None:
    """fix-api.md "Client order ID fields must conform to the regex ``^[a-zA-Z0-9-_]{1,36}$``" (REST: -1100)."""
    if client_id == "":
        order, _ = core.place_order("BTC/USDT", "BUY", "MARKET", quantity=D("0.001"), client_order_id=None)
        assert len(order.client_order_id) == 22
        return
    with rejected(-1100, "Illegal characters found in parameter 'newClientOrderId'"):
        core.place_order("BTC/USDT", "BUY", "MARKET", quantity=D("0.001"), client_order_id=client_id)


def test_client_id_of_36_allowed_characters_is_accepted(core: ExchangeCore) -> None:
    cid = "Ab0_-" + "z" * 31
    order, _ = core.place_order("BTC/USDT", "BUY", "MARKET", quantity=D("0.001"), client_order_id=cid)
    assert order.client_order_id == cid


@pytest.mark.parametrize(
    ("quantity", "price", "msg"),
    [
        ("0.01", "29000.001", "Filter failure: PRICE_FILTER"),
        ("0.000015", "29000", "Filter failure: LOT_SIZE"),
        ("0.0001", "29000", "Filter failure: NOTIONAL"),
        ("10000", "1", "Filter failure: LOT_SIZE"),
        ("300", "30001", "Filter failure: NOTIONAL"),  # over maxNotional (filters.md NOTIONAL), before balance
    ],
)
def test_filters(core: ExchangeCore, quantity: str, price: str, msg: str) -> None:
    with rejected(-1013, msg):
        core.place_order("BTC/USDT", "BUY", "LIMIT", quantity=D(quantity), price=D(price), time_in_force="GTC")


def test_refusals_insufficient_unknown_symbol_and_orders(core: ExchangeCore) -> None:
    with rejected(-2010, "Account has insufficient balance for requested action."):
        core.place_order("BTC/USDT", "BUY", "LIMIT", quantity=D("1"), price=D("29000"), time_in_force="GTC")
    with rejected(-2010, "Account has insufficient balance"):
        core.place_order("BTC/USDT", "SELL", "MARKET", quantity=D("2"))
    with rejected(-1121, "Invalid symbol."):
        core.place_order("DOGE/USDT", "BUY", "MARKET", quantity=D("1"))
    with rejected(-2013, "Order does not exist."):
        core.get_order("BTCUSDT", order_id=999)
    with rejected(-2011, "Unknown order sent."):
        core.cancel_order("BTCUSDT", order_id=999)
    filled, _ = core.place_order("BTC/USDT", "BUY", "MARKET", quantity=D("0.001"))
    with rejected(-2011, "Unknown order sent."):
        core.cancel_order("BTCUSDT", order_id=filled.order_id)
    assert core.balance("USDT").locked == 0 and len(core.orders()) == 1


def test_quote_fee_mode_locks_and_charges_the_fee_in_quote(clock: FakeClock) -> None:
    core = ExchangeCore(balances={"USDT": "1000"}, fee_asset="quote", fee_rate="0.001", clock_ms=clock)
    core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("29000"), time_in_force="GTC", client_order_id="q"
    )
    assert core.balance("USDT").locked == D("290.29")
    trade = core.fill("q", price="28000")
    assert trade.commission == D("0.28") and trade.commission_asset == "USDT"
    assert core.balance("USDT").free == D("1000") - D("280") - D("0.28") and core.balance("USDT").locked == 0
    assert core.balance("BTC").free == D("0.01")


def test_ids_increase_and_times_come_from_the_clock(core: ExchangeCore, clock: FakeClock) -> None:
    a, _ = core.place_order("BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("29000"), time_in_force="GTC")
    clock.now += 5
    b, trades = core.place_order("BTC/USDT", "BUY", "MARKET", quantity=D("0.001"))
    clock.now += 5
    t2 = core.fill(a.order_id, amount="0.005")
    assert a.order_id < b.order_id and trades[0].trade_id < t2.trade_id
    assert (a.time_ms, b.time_ms, t2.time_ms) == (clock.now - 10, clock.now - 5, clock.now)


def test_all_orders_and_my_trades_windows(core: ExchangeCore, clock: FakeClock) -> None:
    ids = []
    for _ in range(5):
        order, _ = core.place_order("BTC/USDT", "BUY", "MARKET", quantity=D("0.001"))
        ids.append(order.order_id)
        clock.now += 1000
    assert [o.order_id for o in core.all_orders("BTCUSDT", limit=2)] == ids[-2:]  # the newest
    assert [o.order_id for o in core.all_orders("BTCUSDT", order_id=ids[1], limit=2)] == ids[1:3]
    start = core.order(ids[2]).time_ms
    assert [o.order_id for o in core.all_orders("BTCUSDT", start_ms=start)] == ids[2:]
    trades = core.my_trades("BTCUSDT")
    assert [t.order_id for t in trades] == ids
    assert [t.trade_id for t in core.my_trades("BTCUSDT", from_id=trades[3].trade_id)] == [
        t.trade_id for t in trades[3:]
    ]
    assert [t.order_id for t in core.my_trades("BTCUSDT", order_id=ids[0])] == [ids[0]]
    with rejected(-1128, "Combination of optional parameters invalid."):
        core.my_trades("BTCUSDT", from_id=1, start_ms=start)
    with rejected(-1127):
        core.my_trades("BTCUSDT", start_ms=0, end_ms=86_400_001)
    assert core.all_orders("ETHUSDT") == []


def test_cancel_replace(core: ExchangeCore) -> None:
    old, _ = core.place_order(
        "BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("29000"), time_in_force="GTC", client_order_id="e1"
    )
    new = OrderRequest("BUY", "LIMIT", quantity=D("0.02"), price=D("28000"), time_in_force="GTC", client_order_id="e2")
    canceled, placed, _ = core.cancel_replace(
        "BTCUSDT", cancel_order_id=old.order_id, cancel_client_order_id=None, new_order=new
    )
    assert not isinstance(canceled, ExchangeRejected) and canceled.status == "CANCELED"
    assert isinstance(placed, tuple) and placed[0].client_order_id == "e2"
    assert core.balance("USDT").locked == D("560")
    failed, not_attempted, _ = core.cancel_replace(
        "BTCUSDT", cancel_order_id=old.order_id, cancel_client_order_id=None, new_order=new
    )
    assert isinstance(failed, ExchangeRejected) and failed.code == -2011 and not_attempted is None
    too_big = OrderRequest("BUY", "LIMIT", quantity=D("1"), price=D("28000"), time_in_force="GTC")
    ok, refused, over_limit = core.cancel_replace(
        "BTCUSDT", cancel_order_id=None, cancel_client_order_id="e2", new_order=too_big
    )
    assert not isinstance(ok, ExchangeRejected) and isinstance(refused, ExchangeRejected) and refused.code == -2010
    assert not over_limit
    assert core.balance("USDT").locked == 0 and core.open_orders() == []


def test_floats_are_refused_and_markets_configurable() -> None:
    core = ExchangeCore(
        [Market("ABC", "EUR", D("0.5"), D("1"), min_notional=D("1"))], prices={"ABC/EUR": "10"}, balances={"EUR": "100"}
    )
    with pytest.raises(TypeError, match="not float"):
        core.set_balance("EUR", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a market"):
        ExchangeCore(prices={"NOPE/USDT": "1"})
    order, _ = core.place_order("ABCEUR", "BUY", "LIMIT", quantity=D("3"), price=D("9.5"), time_in_force="GTC")
    assert core.balance("EUR").locked == D("28.5") and list(core.markets) == ["ABCEUR"]


def test_concurrent_orders_get_unique_increasing_ids(core: ExchangeCore) -> None:
    def worker(n: int) -> None:
        for i in range(25):
            core.place_order(
                "XRP/USDT",
                "BUY",
                "LIMIT",
                quantity=D("20"),
                price=D("0.3"),
                time_in_force="GTC",
                client_order_id=f"t{n}-{i}",
            )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [o.order_id for o in core.orders()]
    first = 4 * core.settings.order_id_offset_per_symbol + 1  # XRP/USDT is the fifth market
    assert sorted(ids) == list(range(first, first + 100))
    assert core.balance("USDT").locked == D("600") and core.balance("USDT").free == D("9400")


# ------------------------------------------------------------- property test
_op = st.one_of(
    st.tuples(st.just("limit"), st.sampled_from(["BUY", "SELL"]), st.integers(1, 300), st.integers(-300, 300)),
    st.tuples(st.just("market"), st.sampled_from(["BUY", "SELL"]), st.integers(1, 300), st.just(0)),
    st.tuples(st.just("fill"), st.integers(0, 50), st.integers(1, 100), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0), st.just(0)),
    st.tuples(st.just("price"), st.integers(-500, 500), st.just(0), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(_op, max_size=40), fee_asset=st.sampled_from(["received", "quote"]))
def test_balances_are_conserved_and_locks_match_open_orders(
    ops: list[tuple[str, object, int, int]], fee_asset: str
) -> None:
    initial = {"USDT": D("5000"), "ETH": D("2")}
    core = ExchangeCore(balances=initial, fee_asset=fee_asset, fee_rate="0.00075")  # type: ignore[arg-type]
    for kind, a, b, c in ops:
        try:
            if kind == "limit":
                price = D("2000") + D(c) * D("0.37")
                core.place_order(
                    "ETH/USDT", str(a), "LIMIT", quantity=D(b) * D("0.0013"), price=price, time_in_force="GTC"
                )
            elif kind == "market":
                core.place_order("ETH/USDT", str(a), "MARKET", quantity=D(b) * D("0.0011"))
            elif kind in ("fill", "cancel"):
                open_orders = core.open_orders()
                if not open_orders:
                    continue
                target = open_orders[int(str(a)) % len(open_orders)]
                if kind == "cancel":
                    core.cancel(target.order_id)
                else:
                    amount = max((target.remaining * b / 100).quantize(D("0.0001")), D("0.0001"))
                    core.fill(target.order_id, min(amount, target.remaining))
            else:
                core.set_price("ETH/USDT", D("2000") + D(int(str(a))) * D("0.37"))
        except ExchangeRejected:
            pass
    expected = defaultdict(Decimal, initial)
    for t in core.trades():
        sign = 1 if t.is_buyer else -1
        expected["ETH"] += sign * t.qty
        expected["USDT"] -= sign * t.quote_qty
        expected[t.commission_asset] -= t.commission
    locked: defaultdict[str, Decimal] = defaultdict(Decimal)
    for o in core.open_orders():
        locked["USDT" if o.side == "BUY" else "ETH"] += o.locked
    for asset in ("ETH", "USDT"):
        balance = core.balance(asset)
        assert balance.free >= 0 and balance.locked >= 0
        assert balance.total == expected[asset]  # exact: Decimal, no rounding drift
        assert balance.locked == locked[asset]
    for o in core.orders():
        assert o.executed_qty == sum((t.qty for t in core.trades() if t.order_id == o.order_id), D(0))
        assert o.is_open or o.locked == 0
