"""The simulator refuses what Binance refuses, as Binance documents it, seen through real ccxt.

Every test cites the section of Binance's spot API documentation
(github.com/binance/binance-spot-api-docs: rest-api.md, errors.md,
filters.md, enums.md, CHANGELOG.md, faqs/) whose behaviour it checks; where
ccxt hides the wire (HTTP status, headers) the test also sends raw signed HTTP.
"""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from recovery.sim import Simulator, SimulatorClient, SimulatorError
from tests.sim.helpers import Signed, SimClock

pytestmark = pytest.mark.integration

D = Decimal


@pytest.mark.parametrize("bad", ["tj.1", "tj:1", "tj/1", "x" * 37, "sp ace"])
def test_client_ids_outside_binance_alphabet_are_refused(
    simulator: Simulator, exchange: ccxt.binance, signed: Signed, bad: str
) -> None:
    """fix-api.md "Client order ID fields must conform to the regex ``^[a-zA-Z0-9-_]{1,36}$``";
    errors.md "-1100 ILLEGAL_CHARS": "Illegal characters found in parameter '%s'; legal range is '%s'."

    Every client id parameter is checked: the new order's, the looked-up one's,
    the cancel's own, and cancelReplace's (before it cancels anything).
    """
    with pytest.raises(ccxt.BadRequest, match=r"-1100.*newClientOrderId"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": bad})
    with pytest.raises(ccxt.BadRequest, match=r"-1100.*origClientOrderId"):
        exchange.fetch_order(None, "BTC/USDT", params={"clientOrderId": bad})
    with pytest.raises(ccxt.BadRequest, match=r"-1100.*origClientOrderId"):
        exchange.cancel_order(None, "BTC/USDT", params={"clientOrderId": bad})
    live = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "tj-ok_1"})
    with pytest.raises(ccxt.BadRequest, match=r"-1100.*newClientOrderId"):
        exchange.edit_order(live["id"], "BTC/USDT", "limit", "buy", 0.01, 28000, params={"clientOrderId": bad})
    assert simulator.core.order("tj-ok_1").status == "NEW"  # the refused replace cancelled nothing
    answer = signed("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=live["id"], newClientOrderId=bad)
    assert (answer.status, answer.code) == (400, -1100)
    assert "legal range is '^[a-zA-Z0-9-_]{1,36}$'" in answer.body["msg"]
    assert simulator.core.order("tj-ok_1").status == "NEW"


def test_strategy_labels_are_echoed_and_ccxt_takes_strategy_id_as_the_order_id(
    simulator: Simulator, exchange: ccxt.binance
) -> None:
    """rest-api.md "New order (TRADE)": ``strategyId`` LONG, ``strategyType`` INT "cannot be less than 1000000";
    "Conditional fields in Order Responses": both "appear if the parameter was populated in the request";
    CHANGELOG.md 2022-08-08: they appear in GET order, openOrders, allOrders and cancel answers;
    errors.md "-1134 BAD_STRATEGY_TYPE".

    ccxt's ``parse_order`` reads ``strategyId`` before ``orderId`` as the order's
    id, so a bot that labels its orders gets the label back as the id.
    """
    labels = {"clientOrderId": "lab1", "strategyId": 77, "strategyType": 1000000}
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params=labels)
    real_id = str(simulator.core.order("lab1").order_id)
    assert placed["id"] == "77" and placed["info"]["orderId"] == int(real_id)
    assert (placed["info"]["strategyId"], placed["info"]["strategyType"]) == (77, 1000000)
    fetched = exchange.fetch_order(real_id, "BTC/USDT")
    assert fetched["id"] == "77" and fetched["info"]["strategyType"] == 1000000
    assert [o["id"] for o in exchange.fetch_open_orders("BTC/USDT")] == ["77"]
    assert [o["id"] for o in exchange.fetch_orders("BTC/USDT")] == ["77"]
    canceled = exchange.cancel_order(real_id, "BTC/USDT")
    assert canceled["id"] == "77" and canceled["info"]["orderId"] == int(real_id)
    plain = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "lab2"})
    assert "strategyId" not in plain["info"] and "strategyType" not in plain["info"]
    with pytest.raises(ccxt.BadRequest, match="-1134"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"strategyType": 999999})


def test_cancel_restrictions_refuse_with_2011_and_the_order_stays(
    simulator: Simulator, exchange: ccxt.binance, signed: Signed
) -> None:
    """rest-api.md "Cancel order (TRADE)", "Regarding ``cancelRestrictions``": ``ONLY_NEW`` cancels only a NEW
    order, ``ONLY_PARTIALLY_FILLED`` only a PARTIALLY_FILLED one; otherwise -2011 "Order was not canceled due
    to cancel restrictions."; an unsupported value is -1145 "Invalid cancelRestrictions" (errors.md
    "-1145 INVALID_CANCEL_RESTRICTIONS"); the same parameter on "Cancel an Existing Order and Send a New Order".

    ccxt maps -2011 to OrderNotFound, for an order that is live: a recovery that
    reads OrderNotFound on a cancel as "gone" is wrong here.
    """
    new = exchange.create_order("BTC/USDT", "limit", "buy", 0.02, 29000, params={"clientOrderId": "cr1"})
    with pytest.raises(ccxt.OrderNotFound, match="cancel restrictions"):
        exchange.cancel_order(new["id"], "BTC/USDT", params={"cancelRestrictions": "ONLY_PARTIALLY_FILLED"})
    assert simulator.core.order("cr1").status == "NEW"
    simulator.fill("cr1", amount="0.01")
    with pytest.raises(ccxt.OrderNotFound, match="cancel restrictions"):
        exchange.cancel_order(new["id"], "BTC/USDT", params={"cancelRestrictions": "ONLY_NEW"})
    with pytest.raises(ccxt.BadResponse, match=r"-2022.*cancel restrictions"):  # cancelReplace: the old one stays
        exchange.edit_order(
            new["id"], "BTC/USDT", "limit", "buy", 0.01, 28000, params={"cancelRestrictions": "ONLY_NEW"}
        )
    assert simulator.core.order("cr1").status == "PARTIALLY_FILLED"
    answer = signed("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=new["id"], cancelRestrictions="ONLY_OLD")
    assert (answer.status, answer.body) == (400, {"code": -1145, "msg": "Invalid cancelRestrictions"})
    done = exchange.cancel_order(new["id"], "BTC/USDT", params={"cancelRestrictions": "ONLY_PARTIALLY_FILLED"})
    assert done["status"] == "canceled"


def test_cancel_replace_checks_the_new_orders_filters_before_it_cancels(
    simulator: Simulator, exchange: ccxt.binance, signed: Signed
) -> None:
    """rest-api.md "Cancel an Existing Order and Send a New Order (TRADE)": "Filters and Order Count are
    evaluated before the processing of the cancellation and order placement occurs"; errors.md "-1013
    INVALID_MESSAGE: The request is rejected by the API. (i.e. The request didn't reach the Matching Engine.)"
    and "Filter failures".

    A filter failure fails the whole call with -1013 and the old order stays
    open; only a matching-engine refusal (here: not enough balance) after a
    successful cancel is the 409 -2021 "partially failed".
    """
    old = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "rp1"})
    locked = simulator.core.balance("USDT").locked
    with pytest.raises(ccxt.BadRequest, match=r'"code":-1013,"msg":"Filter failure: NOTIONAL"'):
        exchange.edit_order(old["id"], "BTC/USDT", "limit", "buy", 0.0001, 28000)
    answer = signed(
        "POST",
        "/api/v3/order/cancelReplace",
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.01",
        price="28000.001",
        cancelReplaceMode="STOP_ON_FAILURE",
        cancelOrderId=old["id"],
    )
    assert (answer.status, answer.body) == (400, {"code": -1013, "msg": "Filter failure: PRICE_FILTER"})
    assert simulator.core.order("rp1").status == "NEW" and simulator.core.balance("USDT").locked == locked
    with pytest.raises(ccxt.BadResponse, match=r"-2021.*insufficient balance"):  # passed the filters: cancelled
        exchange.edit_order(old["id"], "BTC/USDT", "limit", "buy", 5, 28000)
    assert simulator.core.order("rp1").status == "CANCELED" and simulator.core.balance("USDT").locked == 0


def test_max_num_orders_filter(simulator: Simulator, exchange: ccxt.binance) -> None:
    """filters.md "MAX_NUM_ORDERS": "the maximum number of orders an account is allowed to have open on a
    symbol"; errors.md "Filter failures": "Filter failure: MAX_NUM_ORDERS". The limit is the
    ``max_num_orders`` setting, and exchangeInfo shows it.
    """
    simulator.configure(max_num_orders=2)
    exchange.load_markets()
    info = exchange.markets["BTC/USDT"]["info"]["filters"]
    assert {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 2} in info
    first = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000)
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 28000)
    with pytest.raises(ccxt.BadRequest, match="MAX_NUM_ORDERS"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 27000)
    exchange.create_order("ETH/USDT", "limit", "buy", 0.1, 1000)  # per symbol
    replaced = exchange.edit_order(first["id"], "BTC/USDT", "limit", "buy", 0.01, 27000)  # one leaves, one comes
    assert replaced["status"] == "open" and len(simulator.core.open_orders("BTC/USDT")) == 2


def test_order_ids_are_numbered_per_symbol(simulator: Simulator, exchange: ccxt.binance) -> None:
    """faqs/spot_glossary.md ``orderId``: "A field in the order response that uniquely identifies the order
    on a symbol"; rest-api.md "All orders (USER_DATA)": "If ``orderId`` is set, it will get orders >= that
    ``orderId``" (of that symbol).

    By default each symbol's ids run apart (BTC/USDT from 1, ETH/USDT from
    1000001, ...); with ``order_id_offset_per_symbol=0`` every symbol starts at
    1 and the same id names two orders, which is what code keying orders by id
    alone must survive.
    """
    a = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "btc1"})
    b = exchange.create_order("ETH/USDT", "limit", "buy", 0.1, 1000, params={"clientOrderId": "eth1"})
    c = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 28000, params={"clientOrderId": "btc2"})
    assert (a["id"], b["id"], c["id"]) == ("1", "1000001", "2")  # BTC's ids do not skip ETH's
    simulator.configure(order_id_offset_per_symbol=0)  # read at a symbol's first order: SOL is new
    sol = exchange.create_order("SOL/USDT", "limit", "buy", 1, 50, params={"clientOrderId": "sol1"})
    assert sol["id"] == "1"
    assert exchange.fetch_order("1", "SOL/USDT")["clientOrderId"] == "sol1"
    assert exchange.fetch_order("1", "BTC/USDT")["clientOrderId"] == "btc1"
    assert [o["clientOrderId"] for o in exchange.fetch_orders("SOL/USDT", params={"orderId": 1})] == ["sol1"]
    exchange.cancel_order("1", "SOL/USDT")
    assert simulator.core.order("btc1").status == "NEW"  # the cancel found the SOL order, not BTC's id 1
    with pytest.raises(SimulatorError, match=r"order id 1 exists on \['BTCUSDT', 'SOLUSDT'\]; .* pass symbol="):
        simulator.fill(1)
    assert simulator.fill(1, symbol="BTC/USDT").symbol == "BTCUSDT"
    control = SimulatorClient(simulator.url)
    assert control.cancel(2, symbol="BTC/USDT")["clientOrderId"] == "btc2"
    with pytest.raises(SimulatorError, match="pass symbol="):
        control.fill(1)


DAY_MS = 86_400_000


def test_unfilled_canceled_orders_are_archived_after_the_horizon(
    clocked: tuple[Simulator, ccxt.binance], sim_clock: SimClock
) -> None:
    """errors.md "-2026 ORDER_ARCHIVED": "Order was canceled or expired with no executed qty over 90 days ago
    and has been archived."; CHANGELOG.md (the -2026 fix): "an archived order (i.e. order with status
    ``CANCELED`` or ``EXPIRED`` where ``executedQty`` == 0 that occurred more than 90 days in the past)".

    ccxt raises InvalidOrder for -2026 (not OrderNotFound). The horizon is the
    ``archive_after_ms`` setting, so a venue's other horizons can be tested.
    """
    sim, exchange = clocked
    unfilled = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "ar1"})
    exchange.cancel_order(unfilled["id"], "BTC/USDT")
    partial = exchange.create_order("BTC/USDT", "limit", "buy", 0.02, 29000, params={"clientOrderId": "ar2"})
    sim.fill("ar2", amount="0.01")
    exchange.cancel_order(partial["id"], "BTC/USDT")
    expired = exchange.create_order(
        "BTC/USDT", "limit", "buy", 0.01, 20000, params={"clientOrderId": "ar3", "timeInForce": "IOC"}
    )
    assert expired["status"] == "expired"
    sim_clock.now += 90 * DAY_MS  # exactly 90 days: not yet
    assert exchange.fetch_order(unfilled["id"], "BTC/USDT")["status"] == "canceled"
    sim_clock.now += 1
    for ref, params in ((unfilled["id"], {}), (None, {"clientOrderId": "ar1"}), (expired["id"], {})):
        with pytest.raises(ccxt.InvalidOrder, match="-2026") as caught:
            exchange.fetch_order(ref, "BTC/USDT", params=params)
        assert not isinstance(caught.value, ccxt.OrderNotFound)
    assert exchange.fetch_order(partial["id"], "BTC/USDT")["filled"] == 0.01  # something executed: kept
    assert [o["clientOrderId"] for o in exchange.fetch_orders("BTC/USDT")] == ["ar2"]
    sim.configure(archive_after_ms=2 * 3_600_000)  # e.g. OKX's 2 hours for canceled-unfilled orders
    fresh = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "ar4"})
    exchange.cancel_order(fresh["id"], "BTC/USDT")
    sim_clock.now += 2 * 3_600_000 + 1
    with pytest.raises(ccxt.InvalidOrder, match="-2026"):
        exchange.fetch_order(fresh["id"], "BTC/USDT")
    sim.configure(archive_after_ms=None)
    assert exchange.fetch_order(fresh["id"], "BTC/USDT")["status"] == "canceled"


def test_lagging_queries_see_the_account_as_it_was(
    clocked: tuple[Simulator, ccxt.binance], sim_clock: SimClock
) -> None:
    """rest-api.md "Data Sources": "The API system is asynchronous, so some delay in the response is normal
    and expected"; GET order, openOrders and myTrades read "Memory => Database", allOrders reads "Database"
    (rest-api.md "Query order", "Current open orders", "All orders", "Account trade list").

    With ``lag_ms`` the queries in ``lagging_queries`` see each order as it was
    ``lag_ms`` ago: an accepted order is not there yet (GET order: -2013, which
    ccxt raises as OrderNotFound), a fill or a cancel shows late; cancels act on
    the matching engine, which never lags.
    """
    sim, exchange = clocked
    assert sim.settings.lag_ms == 0 and sim.settings.lagging_queries == {"allOrders"}  # Binance's default
    sim.configure(lag_ms=1500, lagging_queries=["order", "openOrders", "allOrders", "myTrades"])
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.02, 29000, params={"clientOrderId": "lag1"})
    assert placed["status"] == "open"  # the matching engine's own answer is current
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        exchange.fetch_order(placed["id"], "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        exchange.fetch_order(None, "BTC/USDT", params={"clientOrderId": "lag1"})
    assert exchange.fetch_open_orders("BTC/USDT") == [] and exchange.fetch_orders("BTC/USDT") == []
    sim_clock.now += 1000
    sim.fill("lag1", amount="0.01")
    sim_clock.now += 500  # the order is 1500 ms old, the fill 500 ms
    seen = exchange.fetch_order(placed["id"], "BTC/USDT")
    assert (seen["status"], seen["filled"]) == ("open", 0)
    assert exchange.fetch_my_trades("BTC/USDT") == []
    canceled = exchange.cancel_order(placed["id"], "BTC/USDT")  # the matching engine: at once
    assert canceled["status"] == "canceled" and canceled["filled"] == 0.01
    assert [o["id"] for o in exchange.fetch_open_orders()] == [placed["id"]]  # still open, as far as it knows
    sim_clock.now += 1500
    settled = exchange.fetch_order(placed["id"], "BTC/USDT")
    assert (settled["status"], settled["filled"]) == ("canceled", 0.01)
    assert exchange.fetch_open_orders() == [] and len(exchange.fetch_my_trades("BTC/USDT")) == 1


def test_by_default_only_all_orders_lags(clocked: tuple[Simulator, ccxt.binance], sim_clock: SimClock) -> None:
    """rest-api.md "All orders (USER_DATA)": "Data Source: Database", the one source that "can have the
    most potential for delays" ("Data Sources"); lag is off unless a test turns it on, here from another
    process's point of view (``SimulatorClient.configure``, ``POST /_sim/settings``).
    """
    sim, exchange = clocked
    control = SimulatorClient(sim.url)
    assert control.configure(lag_ms=2000)["lagging_queries"] == ["allOrders"]
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "lag2"})
    assert exchange.fetch_order(placed["id"], "BTC/USDT")["clientOrderId"] == "lag2"
    assert [o["id"] for o in exchange.fetch_open_orders("BTC/USDT")] == [placed["id"]]
    assert exchange.fetch_orders("BTC/USDT") == []
    sim_clock.now += 2000
    assert [o["id"] for o in exchange.fetch_orders("BTC/USDT")] == [placed["id"]]
    with pytest.raises(SimulatorError, match=r"lagging_queries: unknown \['trades'\]"):
        control.configure(lagging_queries=["trades"])


@pytest.mark.parametrize("mode", ["drop", "503"])
def test_a_5xx_or_a_dropped_connection_may_come_after_the_order_was_placed(
    simulator: Simulator, exchange: ccxt.binance, mode: str
) -> None:
    """rest-api.md "HTTP Return Codes": "HTTP 5XX return codes are used for internal errors; ... It is
    important to NOT treat this as a failure operation; the execution status is UNKNOWN and could have been
    a success"; "General API Information" on -1007: "This does not always mean that the request failed in
    the Matching Engine".

    ``down(applied=True)`` (and ``applied=True`` on ``http_502_html``,
    ``http_503_1007`` by default, ``commit_then_drop``) carries the request out
    and loses only its answer.
    """
    exchange.load_markets()
    control = SimulatorClient(simulator.url)
    control.down(mode, applied=True)
    with pytest.raises(ccxt.NetworkError):  # NetworkError (drop) or ExchangeNotAvailable (503)
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "dn1"})
    control.up()
    assert exchange.fetch_order(None, "BTC/USDT", params={"clientOrderId": "dn1"})["status"] == "open"
    control.down(mode)  # by default the exchange is simply unreachable: nothing happens
    with pytest.raises(ccxt.NetworkError):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "dn2"})
    control.up()
    with pytest.raises(ccxt.OrderNotFound):
        exchange.fetch_order(None, "BTC/USDT", params={"clientOrderId": "dn2"})


def test_cancel_all_open_orders_on_a_symbol(simulator: Simulator, exchange: ccxt.binance, signed: Signed) -> None:
    """rest-api.md "Cancel All Open Orders on a Symbol (TRADE)": ``DELETE /api/v3/openOrders``, weight 1,
    ``symbol`` mandatory, answers the cancelled orders (one cancel ``clientOrderId`` for all of them).
    With nothing open Binance answers 400 -2011 "Unknown order sent." (not in rest-api.md; reported in
    binance/binance-connector-python#185), which ccxt raises as OrderNotFound.
    """
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "ca1"})
    exchange.create_order("BTC/USDT", "limit", "sell", 0.01, 31000, params={"clientOrderId": "ca2"})
    exchange.create_order("ETH/USDT", "limit", "buy", 0.1, 1000, params={"clientOrderId": "ca3"})
    simulator.fill("ca1", amount="0.005")
    canceled = exchange.cancel_all_orders("BTC/USDT")
    assert [(o["info"]["origClientOrderId"], o["status"]) for o in canceled] == [
        ("ca1", "canceled"),
        ("ca2", "canceled"),
    ]
    assert len({o["clientOrderId"] for o in canceled}) == 1  # the cancel's own id
    assert exchange.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "24"  # exchangeInfo 20, 3 orders, this 1
    assert simulator.core.order("ca3").status == "NEW" and simulator.core.balance("BTC").locked == 0
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        exchange.cancel_all_orders("BTC/USDT")
    answer = signed("DELETE", "/api/v3/openOrders")
    assert (answer.status, answer.code) == (400, -1102)


def test_repeated_429s_get_the_ip_banned_with_418(clocked: tuple[Simulator, ccxt.binance], sim_clock: SimClock) -> None:
    """rest-api.md "IP Limits": "Requests fail with HTTP status code 429 when you exceed the request rate
    limit"; "Repeatedly violating rate limits and/or failing to back off after receiving 429s will result in
    an automated IP ban (HTTP status 418)"; "IP bans are tracked and scale in duration for repeat offenders,
    from 2 minutes to 3 days"; "A Retry-After header is sent with a 418 or 429 responses and will give the
    number of seconds required to wait, in the case of a 429, to prevent a ban, or, in the case of a 418,
    until the ban is over". errors.md "-1003 TOO_MANY_REQUESTS" gives both messages.

    ccxt raises DDoSProtection for both statuses. Past ``ban_after_429s`` (3)
    refusals in one minute the IP is banned, every endpoint, for ``ban_ms``
    (2 minutes), then twice as long.
    """
    sim, exchange = clocked
    assert sim.settings.weight_limit_1m == 6000  # Binance's REQUEST_WEIGHT per minute
    sim.configure(weight_limit_1m=100)
    exchange.load_markets()  # 20
    exchange.fetch_open_orders()  # 80: 100, at the limit
    into_minute_s = (sim_clock.now // 1000) % 60
    for _ in range(3):
        with pytest.raises(ccxt.DDoSProtection, match=r"429.*-1003.*current limit is 100 request weight"):
            exchange.fetch_balance()
        assert exchange.last_response_headers["Retry-After"] == str(60 - into_minute_s)
    with pytest.raises(ccxt.DDoSProtection, match=r"418.*IP banned until"):
        exchange.fetch_balance()
    assert exchange.last_response_headers["Retry-After"] == "120"
    sim_clock.now += 60_000  # a new minute, but the ban holds, for public endpoints too
    with pytest.raises(ccxt.DDoSProtection, match="418"):
        exchange.fetch_time()
    assert exchange.last_response_headers["Retry-After"] == "60"
    sim_clock.now += 60_000
    assert exchange.fetch_time() == sim_clock.now  # the ban is over: weight 1 this minute
    exchange.fetch_open_orders()  # 81
    for call in (exchange.fetch_balance, exchange.fetch_time, exchange.fetch_time):  # 101, 102, 103
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            call()
    with pytest.raises(ccxt.DDoSProtection, match="418"):
        exchange.fetch_time()
    assert exchange.last_response_headers["Retry-After"] == "240"  # a repeat offender waits twice as long


def test_unfilled_order_count(clocked: tuple[Simulator, ccxt.binance], sim_clock: SimClock) -> None:
    """rest-api.md "Unfilled Order Count": "Every successful order response will contain a
    X-MBX-ORDER-COUNT-(intervalNum)(intervalLetter) header"; "If you have exceeded this, you will receive a
    429 error with the Retry-After header"; faqs/order_count_decrement.md: "-1015 Too many new orders",
    "When an order is filled for the first time (partially or fully), your unfilled order count is
    decremented by one", "Canceling an order does not change the unfilled order count", the 10-second
    windows run 12:34:00-12:34:10; "Query Unfilled Order Count" (``GET /api/v3/rateLimit/order``).
    """
    sim, exchange = clocked
    signed = Signed(sim)
    assert (sim.settings.order_limit_10s, sim.settings.order_limit_1d) == (100, 200_000)
    sim.configure(order_limit_10s=3)
    limits = exchange.publicGetExchangeInfo()["rateLimits"]  # exchangeInfo shows the limits in force
    assert {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 3} in limits
    sim_clock.now = sim_clock.now // 10_000 * 10_000 + 1000  # one second into a 10-second window
    ids = []
    for n in range(3):
        ids.append(exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000 - n)["id"])
        assert exchange.last_response_headers["X-MBX-ORDER-COUNT-10S"] == str(n + 1)
        assert exchange.last_response_headers["X-MBX-ORDER-COUNT-1D"] == str(n + 1)
    with pytest.raises(ccxt.DDoSProtection, match=r"429.*-1015.*current limit is 3 orders per 10 SECOND"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 28000)
    assert exchange.last_response_headers["Retry-After"] == "9"
    exchange.cancel_order(ids[0], "BTC/USDT")  # cancelling gives nothing back
    with pytest.raises(ccxt.DDoSProtection, match="-1015"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 28000)
    sim.fill(int(ids[1]), amount="0.005", symbol="BTC/USDT")  # a first fill takes one off
    sim.fill(int(ids[1]), symbol="BTC/USDT")  # a second fill of the same order does not
    exchange.create_order("BTC/USDT", "market", "buy", 0.001)  # a taker: +1, then its first fill -1
    assert exchange.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "2"
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 27000)
    answer = signed("GET", "/api/v3/rateLimit/order")
    assert answer.body == [
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 3, "count": 3},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000, "count": 3},
    ]
    replace = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01",
        "price": "26000",
        "cancelOrderId": ids[2],
    }
    over = signed("POST", "/api/v3/order/cancelReplace", cancelReplaceMode="STOP_ON_FAILURE", **replace)
    assert (over.status, over.code) == (429, -1015)  # DO_NOTHING: nothing done
    assert over.headers["Retry-After"] == "9"
    assert sim.core.order(int(ids[2]), symbol="BTC/USDT").status == "NEW"
    cancel_only = signed(
        "POST",
        "/api/v3/order/cancelReplace",
        cancelReplaceMode="STOP_ON_FAILURE",
        orderRateLimitExceededMode="CANCEL_ONLY",
        **replace,
    )
    assert (cancel_only.status, cancel_only.code) == (429, -2021)
    assert cancel_only.body["data"]["cancelResult"] == "SUCCESS"
    assert cancel_only.body["data"]["newOrderResponse"]["code"] == -1015
    assert sim.core.order(int(ids[2]), symbol="BTC/USDT").status == "CANCELED"
    sim_clock.now += 9000  # the next window
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 27000)
    assert exchange.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert exchange.last_response_headers["X-MBX-ORDER-COUNT-1D"] == "4"
