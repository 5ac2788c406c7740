"""The simulator streams like Binance (issue 15.4): its user data stream through REAL ccxt.pro over the loopback
websocket, and through a raw client for the exact frames.

Binance's documents are cited by file and section from binance/binance-spot-api-docs (a5e0bc3):
web-socket-api.md, user-data-stream.md, errors.md, enums.md. What ccxt.pro (4.5.90) does under each fault is
asserted as it is today: that is what a live feed built on it has to handle.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import ccxt.pro
import pytest

from recovery.exchanges import NOT_SIMULATED_WS, make_pro_exchange
from recovery.sim import Simulator, SimulatorClient, SimulatorError
from recovery.sim.server import TEST_API_KEY
from tests.sim.helpers import Signed
from tests.sim.streaming import ProRunner, RawClient, Watch, eventually, pending, signed_subscribe

pytestmark = pytest.mark.integration

#: executionReport's fields as user-data-stream.md "Order Update" lists them, but ``v`` (only after an STP expiry)
#: and ``W`` (only while the order works on the book, "Conditional Fields in Execution Report").
ORDER_UPDATE_FIELDS = "e E s c S o f q p P F g C x X r i l z L n N T t I w m M O Z Y Q V".split()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _error(answer: dict[str, Any]) -> tuple[int, int]:
    return answer["status"], answer["error"]["code"]


# --------------------------------------------------------------------------------------------- the protocol
def test_subscribe_signature_is_checked_and_answered_as_binance_documents(simulator: Simulator) -> None:
    """web-socket-api.md "Subscribe to User Data Stream through signature subscription (USER_STREAM)": the answer
    is ``{"id", "status": 200, "result": {"subscriptionId": 0}}``; "SIGNED request security" and "Timing
    security" (recvWindow defaults to 5000, at most 60000); "You can have only one active subscription for a
    given account on a given connection" (errors.md -2035 SUBSCRIPTION_ACTIVE); errors.md -1022, -2015, -1021."""

    async def scenario() -> None:
        async with RawClient(simulator) as client:
            answer = await client.call(signed_subscribe("a", recvWindow=5000))
            assert answer == {"id": "a", "status": 200, "result": {"subscriptionId": 0}}
            assert await client.call(signed_subscribe(7)) == {
                "id": 7,
                "status": 400,
                "error": {"code": -2035, "msg": "User Data Stream subscription already active."},
            }
            refused = [
                (signed_subscribe(secret="not-the-secret"), (400, -1022)),
                (signed_subscribe(api_key="someone-else"), (401, -2015)),
                (signed_subscribe(timestamp_ms=_now_ms() - 6000), (400, -1021)),  # outside the default 5000
                (signed_subscribe(timestamp_ms=_now_ms() + 5000), (400, -1021)),  # ahead of the server
                (signed_subscribe(recvWindow=60_001), (400, -1102)),
                ({"id": 1, "method": "userDataStream.subscribe.signature", "params": {"apiKey": TEST_API_KEY}},
                 (400, -1102)),
            ]  # fmt: skip
            for request, expected in refused:
                assert _error(await client.call(request)) == expected, request
            answer = await client.call(signed_subscribe(timestamp_ms=_now_ms() - 6000, recvWindow=10_000))
            assert _error(answer) == (400, -2035)  # valid (a wider window), but one is active
        assert simulator.stream.subscribe_requests == 9

    asyncio.run(scenario())


def test_unsubscribe_ends_the_stream_and_the_other_session_methods(simulator: Simulator) -> None:
    """web-socket-api.md "Unsubscribe from User Data Stream" (answers ``{}``; no parameter closes all),
    "Listing all subscriptions", "Request format" (method names may be prefixed ``v3/``); user-data-stream.md
    "Event Stream Terminated" is sent when "The subscription is stopped via userDataStream.unsubscribe"."""

    async def scenario() -> None:
        async with RawClient(simulator) as client:
            await client.call(signed_subscribe())
            listing = await client.call({"id": 2, "method": "session.subscriptions", "params": {}})
            assert listing == {"id": 2, "status": 200, "result": [{"subscriptionId": 0}]}
            assert await client.call({"id": 3, "method": "userDataStream.unsubscribe"}) == {
                "id": 3,
                "status": 200,
                "result": {},
            }
            ended = await client.receive()
            assert ended["subscriptionId"] == 0 and ended["event"]["e"] == "eventStreamTerminated"
            assert (await client.call({"id": 4, "method": "session.subscriptions"}))["result"] == []
            again = await client.call(signed_subscribe(5))
            assert again["result"] == {"subscriptionId": 1}  # ids count per connection
            assert await client.call({"id": 6, "method": "v3/ping"}) == {"id": 6, "status": 200, "result": {}}
            server_time = (await client.call({"id": 7, "method": "time"}))["result"]["serverTime"]
            assert abs(server_time - _now_ms()) < 60_000
            assert _error(await client.call({"id": 8, "method": "order.place", "params": {}})) == (400, -1020)
            await client.send({"id": 9})  # no method
            assert _error(await client.receive()) == (400, -1020)
            assert client.ws is not None
            await client.ws.send_str("not json")
            assert (await client.receive())["id"] is None

    asyncio.run(scenario())


def test_events_go_out_in_exchange_order_with_every_documented_field(simulator: Simulator, signed: Signed) -> None:
    """user-data-stream.md "Order Update" (every field, ``C`` the "Original client order ID; This is the ID of the
    order being canceled", so ``""`` except on a cancel, ``n`` "0" and ``N`` null without a trade, ``t`` -1,
    ``W`` only "if the order has been placed on the book"), "Account Update" (``outboundAccountPosition`` "any time
    an account balance has changed", with the assets it changed), web-socket-api.md "Event format"."""

    async def scenario() -> None:
        async with RawClient(simulator) as client:
            await client.call(signed_subscribe())
            placed = signed("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                            timeInForce="GTC", quantity="0.01", price="29000", newClientOrderId="o1")  # fmt: skip
            assert placed.status == 200
            trade = simulator.fill("o1", "0.004")
            cancel = signed("DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="o1",
                            newClientOrderId="cx1")  # fmt: skip
            assert cancel.status == 200 and cancel.body["clientOrderId"] == "cx1"
            frames = await client.events(6)
        assert {f["subscriptionId"] for f in frames} == {0}
        events = [f["event"] for f in frames]
        assert [(e["e"], e.get("x")) for e in events] == [
            ("executionReport", "NEW"),
            ("outboundAccountPosition", None),
            ("executionReport", "TRADE"),
            ("outboundAccountPosition", None),
            ("executionReport", "CANCELED"),
            ("outboundAccountPosition", None),
        ]
        new, lock, fill, after_fill, canceled, unlock = events
        assert list(new) == ORDER_UPDATE_FIELDS[:-1] + ["W", "V"]  # documented order; working on the book
        assert list(canceled) == ORDER_UPDATE_FIELDS  # no longer on the book: no W
        oid = placed.body["orderId"]
        assert (new["s"], new["c"], new["C"], new["S"], new["o"], new["f"], new["q"], new["p"], new["i"]) == (
            "BTCUSDT", "o1", "", "BUY", "LIMIT", "GTC", "0.01000000", "29000.00000000", oid,
        )  # fmt: skip
        assert (new["X"], new["z"], new["n"], new["N"], new["t"], new["w"], new["g"], new["r"]) == (
            "NEW", "0.00000000", "0", None, -1, True, -1, "NONE",
        )  # fmt: skip
        assert (fill["X"], fill["l"], fill["z"], fill["L"], fill["t"], fill["m"]) == (
            "PARTIALLY_FILLED", "0.00400000", "0.00400000", "29000.00000000", trade.trade_id, True,
        )  # fmt: skip
        assert (fill["n"], fill["N"], fill["Y"], fill["Z"], fill["C"]) == (
            "0.00000400", "BTC", "116.00000000", "116.00000000", "",
        )  # fmt: skip
        assert (canceled["X"], canceled["c"], canceled["C"], canceled["z"], canceled["w"]) == (
            "CANCELED", "cx1", "o1", "0.00400000", False,
        )  # fmt: skip
        assert [new["I"], fill["I"], canceled["I"]] == sorted({new["I"], fill["I"], canceled["I"]})
        assert new["O"] == fill["O"] == canceled["O"] == placed.body["transactTime"]
        assert lock["B"] == [{"a": "USDT", "f": "99710.00000000", "l": "290.00000000"}]
        assert [b["a"] for b in after_fill["B"]] == ["BTC", "USDT"]
        assert unlock["B"] == [{"a": "USDT", "f": "99884.00000000", "l": "0.00000000"}]
        assert list(lock) == ["e", "E", "u", "B"]

    asyncio.run(scenario())


def test_a_deposit_is_a_balance_update_and_nothing_is_kept_for_a_client_not_subscribed(
    simulator: Simulator,
) -> None:
    """user-data-stream.md "Balance Update" (deposits and withdrawals, ``d`` the delta). Binance keeps no backlog:
    what happens before a subscription is never sent on it."""

    async def scenario() -> None:
        simulator.set_balance("USDT", "100500")  # before anyone subscribes
        async with RawClient(simulator) as client:
            await client.call(signed_subscribe())
            simulator.set_balance("USDT", "100000")
            withdrawal, position = [f["event"] for f in await client.events(2)]
        assert (withdrawal["e"], withdrawal["a"], withdrawal["d"]) == ("balanceUpdate", "USDT", "-500.00000000")
        assert list(withdrawal) == ["e", "E", "a", "d", "T"]
        assert position["e"] == "outboundAccountPosition" and position["B"][0]["f"] == "100000.00000000"
        emitted = simulator.stream.events()
        assert [(e.event["e"], e.subscribed) for e in emitted] == [
            ("balanceUpdate", 0),
            ("outboundAccountPosition", 0),
            ("balanceUpdate", 1),
            ("outboundAccountPosition", 1),
        ]
        assert simulator.stream.sent_seqs() == [e.seq for e in emitted[2:]]

    asyncio.run(scenario())


def test_the_server_pings_and_closes_a_connection_that_never_pongs(simulator: Simulator) -> None:
    """web-socket-api.md "General API Information": "The WebSocket server will send a ping frame every 20
    seconds"; "If the WebSocket server does not receive a pong frame back from the connection within a minute
    the connection will be disconnected" (here 50 ms and 300 ms: ``stream_ping_interval_ms``,
    ``stream_pong_timeout_ms``)."""
    simulator.configure(stream_ping_interval_ms=50, stream_pong_timeout_ms=300)

    async def scenario() -> None:
        async with RawClient(simulator, autoping=False) as client:
            assert client.ws is not None
            ping = await client.ws.receive(5)
            assert ping.type == aiohttp.WSMsgType.PING
            closed = await client.ws.receive(5)
            while closed.type == aiohttp.WSMsgType.PING:
                closed = await client.ws.receive(5)
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1001
        async with RawClient(simulator) as client:  # aiohttp answers pings while it reads: the connection stays
            assert client.ws is not None
            await client.call(signed_subscribe())
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.ws.receive(), 0.5)  # pings come and are answered, nothing else
            assert simulator.stream.connections()[-1].open

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------ through real ccxt.pro
def test_ccxt_pro_follows_an_order_from_new_to_filled(simulator: Simulator, pro: ProRunner) -> None:
    """user-data-stream.md "Order Update": NEW, then TRADE per fill (X PARTIALLY_FILLED, then FILLED), parsed by
    ccxt.pro's watch_orders / watch_my_trades into ids, client ids, status, filled, fee and trade ids."""

    async def scenario(ex: Any) -> None:
        orders, trades = Watch(ex, "watch_orders", "BTC/USDT"), Watch(ex, "watch_my_trades", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT", "myTrades:BTC/USDT")
        placed = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "w1"})
        (new,) = await orders.until(lambda seen: len(seen) == 1, "the NEW order")
        assert (new["id"], new["clientOrderId"], new["status"], new["symbol"], new["side"], new["type"]) == (
            placed["id"], "w1", "open", "BTC/USDT", "buy", "limit",
        )  # fmt: skip
        assert (new["amount"], new["price"], new["filled"], new["fee"]) == (0.01, 29000.0, 0.0, None)
        first = simulator.fill("w1", "0.004")
        await orders.until(lambda seen: len(seen) == 2, "the partial fill")
        second = simulator.fill("w1")
        await orders.until(lambda seen: len(seen) == 3, "the full fill")
        await trades.until(lambda seen: len(seen) == 2, "both trades")
        partial, full = orders.seen[1:]
        assert (partial["status"], partial["filled"], partial["remaining"]) == ("open", 0.004, 0.006)
        assert (full["status"], full["filled"], full["remaining"], full["average"]) == ("closed", 0.01, 0.0, 29000.0)
        assert full["fee"]["currency"] == "BTC"
        # ccxt.pro sums the trades' fees into the order as floats, truncated to its currency precision: 9.99e-06
        # for 4e-06 + 6e-06. The trades carry the exact fees.
        assert full["fee"]["cost"] == pytest.approx(float(first.commission + second.commission), rel=0.01)
        assert [t["id"] for t in trades.seen] == [str(first.trade_id), str(second.trade_id)]
        t = trades.seen[0]
        assert (t["order"], t["symbol"], t["side"], t["amount"], t["price"], t["takerOrMaker"]) == (
            placed["id"], "BTC/USDT", "buy", 0.004, 29000.0, "maker",
        )  # fmt: skip
        assert t["fee"] == {"cost": float(first.commission), "currency": "BTC"}
        rest = await ex.fetch_my_trades("BTC/USDT")
        assert [r["id"] for r in rest] == [t["id"] for t in trades.seen]  # the stream agrees with REST
        await orders.stop()
        await trades.stop()

    pro.run(scenario)


def test_ccxt_pro_sees_a_market_order_trade_at_once_and_an_ioc_expire(simulator: Simulator, pro: ProRunner) -> None:
    """enums.md "Execution types": TRADE; EXPIRED "according to the order type's rules (e.g. ... LIMIT IOC ...)";
    user-data-stream.md "Order Expiry Reason" (``eR``)."""

    async def scenario(ex: Any) -> None:
        orders, trades = Watch(ex, "watch_orders", "BTC/USDT"), Watch(ex, "watch_my_trades", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT", "myTrades:BTC/USDT")
        taken = await ex.create_order("BTC/USDT", "market", "sell", 0.01, params={"clientOrderId": "m1"})
        await orders.until(lambda seen: any(o["status"] == "closed" for o in seen), "the market order filled")
        (trade,) = await trades.until(lambda seen: len(seen) == 1, "its trade")
        assert (trade["order"], trade["takerOrMaker"], trade["side"], trade["price"]) == (
            taken["id"], "taker", "sell", 30000.0,
        )  # fmt: skip
        assert trade["fee"] == {"cost": 0.3, "currency": "USDT"}  # 0.1% of 300 USDT received
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "i1",
                                                                               "timeInForce": "IOC"})  # fmt: skip
        seen = await orders.until(lambda seen: seen[-1]["clientOrderId"] == "i1" and seen[-1]["status"] == "expired",
                                  "the IOC order expired")  # fmt: skip
        assert seen[-1]["info"]["eR"] == "UNFILLED_IOC_QUANTITY_EXPIRED" and seen[-1]["filled"] == 0.0
        await orders.stop()
        await trades.stop()

    pro.run(scenario)


def test_ccxt_pro_reports_a_cancel_by_the_orders_own_client_id(simulator: Simulator, pro: ProRunner) -> None:
    """user-data-stream.md "Order Update": on a cancel ``c`` is the cancel request's id and ``C`` "the ID of the
    order being canceled"; ccxt reads ``C`` first, so the consumer sees the order's own client id."""

    async def scenario(ex: Any) -> None:
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        placed = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "k1"})
        await orders.until(lambda seen: len(seen) == 1, "the NEW order")
        await ex.cancel_order(placed["id"], "BTC/USDT", params={"newClientOrderId": "cancel9"})
        (_, canceled) = await orders.until(lambda seen: len(seen) == 2, "the cancel")
        assert (canceled["id"], canceled["clientOrderId"], canceled["status"]) == (placed["id"], "k1", "canceled")
        assert (canceled["info"]["c"], canceled["info"]["C"]) == ("cancel9", "k1")
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "k2"})
        await orders.until(lambda seen: len(seen) == 3, "the second order")
        simulator.cancel("k2")  # canceled elsewhere (the web site, the exchange): still the order's own id
        last = (await orders.until(lambda seen: len(seen) == 4, "the second cancel"))[-1]
        assert (last["clientOrderId"], last["status"]) == ("k2", "canceled") and last["info"]["c"] != "k2"
        await orders.stop()

    pro.run(scenario)


def test_ccxt_pro_sees_a_replace_as_cancel_then_new_and_a_refused_new_half_as_rejected(
    simulator: Simulator, pro: ProRunner
) -> None:
    """web-socket-api.md / rest-api.md "Cancel and replace order": the cancel, then the new order; enums.md
    "Execution types": REJECTED "(e.g. Cancel Replace Orders wherein the new order placement is rejected but the
    request to cancel request succeeds.)"; user-data-stream.md "Order Reject Reason" INSUFFICIENT_BALANCES."""

    async def scenario(ex: Any) -> None:
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        first = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "r1"})
        await orders.until(lambda seen: len(seen) == 1, "the first order")
        edited = await ex.edit_order(first["id"], "BTC/USDT", "limit", "buy", 0.01, 28000,
                                     params={"clientOrderId": "r2"})  # fmt: skip

        def state(seen: list[dict[str, Any]]) -> dict[str, str]:
            return {o["clientOrderId"]: o["status"] for o in seen}

        await orders.until(lambda seen: state(seen) == {"r1": "canceled", "r2": "open"}, "cancel, then new")
        assert [o["id"] for o in orders.seen if o["clientOrderId"] == "r2"][-1] == edited["id"]
        simulator.set_balance("USDT", "0")  # the cancel frees 280 USDT, the new order wants 560
        with pytest.raises(ccxt.BadResponse, match="-2021"):
            await ex.edit_order(edited["id"], "BTC/USDT", "limit", "buy", 0.02, 28000, params={"clientOrderId": "r3"})
        await orders.until(lambda seen: state(seen).get("r3") == "rejected", "the refused new half")
        assert state(orders.seen)["r2"] == "canceled"
        rejected = [o for o in orders.seen if o["clientOrderId"] == "r3"][-1]
        assert (rejected["info"]["x"], rejected["info"]["r"], rejected["amount"]) == (
            "REJECTED", "INSUFFICIENT_BALANCES", 0.02,
        )  # fmt: skip
        await orders.stop()

    pro.run(scenario)


def test_ccxt_pro_watch_balance_follows_locks_fills_and_deposits(simulator: Simulator, pro: ProRunner) -> None:
    """user-data-stream.md "Account Update" (free ``f`` and locked ``l`` of the assets that changed) and "Balance
    Update" (a deposit's delta)."""

    async def scenario(ex: Any) -> None:
        balance = Watch(ex, "watch_balance")
        await pending(ex, simulator.ws_url, "spot:balance")
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "b1"})
        await balance.until(lambda seen: seen and seen[-1]["USDT"]["used"] == 290.0, "the lock")
        assert balance.seen[-1]["USDT"] == {"free": 99710.0, "used": 290.0, "total": 100000.0}
        simulator.fill("b1")
        await balance.until(lambda seen: seen[-1].get("BTC", {}).get("total") == 1.00999, "the fill")
        assert balance.seen[-1]["USDT"] == {"free": 99710.0, "used": 0.0, "total": 99710.0}
        simulator.set_balance("SOL", "150")  # a deposit of 50
        await balance.until(lambda seen: seen[-1].get("SOL", {}).get("free") == 150.0, "the deposit")
        await balance.stop()

    pro.run(scenario)


# -------------------------------------------------------------------------------- faults, as ccxt.pro sees them
@pytest.mark.parametrize(("mode", "code"), [("close", 1001), ("abort", 1006)])
def test_a_dropped_socket_fails_every_pending_watch_and_nothing_is_replayed(
    simulator: Simulator, pro: ProRunner, mode: str, code: int
) -> None:
    """Binance keeps no backlog for a dropped connection: what happens while a client is away never reaches it.
    ccxt.pro rejects every pending watch_* with NetworkError and re-dials, re-subscribing, only when a watch_* is
    called again."""

    async def scenario(ex: Any) -> None:
        orders, trades = Watch(ex, "watch_orders", "BTC/USDT"), Watch(ex, "watch_my_trades", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT", "myTrades:BTC/USDT")
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "d1"})
        await orders.until(lambda seen: len(seen) == 1, "the NEW order")
        assert simulator.stream.drop(mode) == 1
        for watch in (orders, trades):
            error = await watch.raised()
            assert isinstance(error, ccxt.NetworkError) and f"closing code {code}" in str(error), repr(error)
        missed = simulator.fill("d1", "0.004")  # while nobody is subscribed
        await eventually(lambda: len(simulator.stream.events()) == 4, "the stream to get the fill's events")
        assert [e.subscribed for e in simulator.stream.events()] == [1, 1, 0, 0]
        orders, trades = Watch(ex, "watch_orders", "BTC/USDT"), Watch(ex, "watch_my_trades", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT", "myTrades:BTC/USDT")
        assert (len(simulator.stream.connections()), simulator.stream.subscribe_requests) == (2, 2)
        caught_up = simulator.fill("d1")
        (trade,) = await trades.until(lambda seen: len(seen) == 1, "the trade after the reconnect")
        assert trade["id"] == str(caught_up.trade_id)
        assert str(missed.trade_id) not in {t["id"] for t in ex.myTrades}  # never replayed: REST must tell it
        assert str(missed.trade_id) in {t["id"] for t in await ex.fetch_my_trades("BTC/USDT")}
        await orders.stop()
        await trades.stop()

    pro.run(scenario)


def test_drop_before_event_is_the_streams_commit_then_drop(simulator: Simulator, pro: ProRunner) -> None:
    """The exchange acts, then the connection goes before the event is sent: the frames before it arrive, that
    event and every later one until the client re-subscribes are lost to the stream."""
    simulator.stream.faults.arm("drop_before_event", execution_type="TRADE")

    async def scenario(ex: Any) -> None:
        orders, trades = Watch(ex, "watch_orders", "BTC/USDT"), Watch(ex, "watch_my_trades", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT", "myTrades:BTC/USDT")
        taken = await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "cd1"})
        error = await trades.raised()
        assert isinstance(error, ccxt.NetworkError) and "closing code 1001" in str(error)
        await eventually(lambda: len(simulator.stream.events()) == 3, "the stream to get the order's events")
        new, trade, position = simulator.stream.events()
        assert (new.event["x"], trade.event["x"], position.event["e"]) == ("NEW", "TRADE", "outboundAccountPosition")
        assert simulator.stream.sent_seqs() == [new.seq]  # the NEW went out, the TRADE and the rest did not
        assert taken["status"] == "closed" and not ex.myTrades
        assert [t["order"] for t in await ex.fetch_my_trades("BTC/USDT")] == [taken["id"]]
        await orders.stop()
        assert simulator.stream.faults.armed() == []  # used up

    pro.run(scenario)


@pytest.mark.parametrize(("mode", "times", "message"), [("503", 1, "503"), ("drop", 2, "Server disconnected")])
def test_refused_connections_fail_the_watch_and_ccxt_backs_off(
    simulator: Simulator, pro: ProRunner, mode: str, times: int, message: str
) -> None:
    """The stream's gateway refuses the upgrade (HTTP 503) or cuts the connection before it: the watch_* call
    raises NetworkError; ccxt.pro waits before its next dial (0.2 s, doubling) and then succeeds. aiohttp dials
    again at once, by itself, when the connection is cut before any answer: one cut alone goes unnoticed."""
    simulator.stream.faults.arm("refuse_connections", mode=mode, times=times)

    async def scenario(ex: Any) -> None:
        with pytest.raises(ccxt.NetworkError, match=message):
            await asyncio.wait_for(ex.watch_orders("BTC/USDT"), 5)
        assert simulator.stream.connections() == [] and simulator.stream.faults.armed() == []
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "rc1"})
        await orders.until(lambda seen: len(seen) == 1, "the order after the refusal")
        await orders.stop()

    pro.run(scenario)


def test_delayed_events_arrive_late_and_in_order(simulator: Simulator, pro: ProRunner) -> None:
    """A slow stream: the NEW event is held 300 ms; the account event after it waits behind it (order kept)."""
    simulator.stream.faults.arm("delay", delay_ms=300, execution_type="NEW")

    async def scenario(ex: Any) -> None:
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        placed = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "dl1"})
        (order,) = await orders.until(lambda seen: len(seen) == 1, "the delayed NEW")
        assert order["id"] == placed["id"] and orders.error is None
        await eventually(lambda: len(simulator.stream.sent_seqs()) == 2, "the account event")
        new, position = simulator.stream.events()
        assert simulator.stream.sent_seqs() == [new.seq, position.seq]
        sent = {f.seq: f.time_ms for f in simulator.stream.frames(direction="out") if f.seq}
        assert sent[new.seq] - new.time_ms >= 300 and sent[position.seq] >= sent[new.seq]
        await orders.stop()

    pro.run(scenario)


def test_a_duplicated_trade_is_kept_once_but_its_fee_counts_twice_on_the_order(
    simulator: Simulator, pro: ProRunner
) -> None:
    """The same TRADE frame twice (same ``t``, ``I``): ccxt.pro's trade cache is keyed by trade id, but it adds
    each TRADE's fee to the cached order without looking: a consumer must deduplicate by trade id itself."""
    simulator.stream.faults.arm("duplicate", execution_type="TRADE")

    async def scenario(ex: Any) -> None:
        orders, trades = Watch(ex, "watch_orders", "BTC/USDT"), Watch(ex, "watch_my_trades", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT", "myTrades:BTC/USDT")
        placed = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "dup1"})
        trade = simulator.fill("dup1", "0.004")
        await eventually(lambda: len(simulator.stream.sent_seqs()) == 5, "NEW, position, TRADE twice, position")
        sent = simulator.stream.sent_seqs()
        assert sent[2] == sent[3]  # the very same frame, twice
        await trades.until(lambda seen: len(seen) >= 1, "the trade")
        await orders.until(lambda seen: any(o["filled"] == 0.004 for o in seen), "the partial fill")
        await eventually(lambda: len(ex.orders.hashmap["BTC/USDT"][placed["id"]]["trades"]) == 2, "both copies")
        assert [t["id"] for t in ex.myTrades] == [str(trade.trade_id)]  # once in the trade cache
        cached = ex.orders.hashmap["BTC/USDT"][placed["id"]]
        assert cached["fee"]["cost"] == pytest.approx(2 * float(trade.commission), rel=0.01)  # twice on the order
        assert cached["filled"] == 0.004  # the cumulative fields are right: z is cumulative
        await orders.stop()
        await trades.stop()

    pro.run(scenario)


def test_out_of_order_reports_set_an_order_back(simulator: Simulator, pro: ProRunner) -> None:
    """Two TRADE reports swapped: ccxt.pro's order cache takes the last one it reads, so a FILLED order goes back
    to open with the older cumulative quantity; nothing in the stream numbers the reports (``E``, ``I`` and
    ``z`` tell the order, and only the consumer can look)."""
    simulator.stream.faults.arm("reorder", execution_type="TRADE")

    async def scenario(ex: Any) -> None:
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        placed = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "oo1"})
        await orders.until(lambda seen: len(seen) == 1, "the NEW order")
        first = simulator.fill("oo1", "0.004")  # held back
        second = simulator.fill("oo1")  # sent, then the first
        await eventually(lambda: len(simulator.stream.sent_seqs()) == 6, "both trades and their account events")
        trade_seqs = [e.seq for e in simulator.stream.events() if e.event.get("x") == "TRADE"]
        sent = simulator.stream.sent_seqs()
        assert sent.index(trade_seqs[1]) < sent.index(trade_seqs[0])  # swapped on the wire
        cached = await eventually(
            lambda: (
                ex.orders.hashmap["BTC/USDT"][placed["id"]]["info"]["t"] == first.trade_id
                and ex.orders.hashmap["BTC/USDT"][placed["id"]]
            ),
            "the stale report read last",
        )
        assert (cached["status"], cached["filled"]) == ("open", 0.004)  # though the exchange says FILLED
        assert simulator.core.order("oo1").status == "FILLED" and second.qty == Decimal("0.006")
        await orders.stop()

    pro.run(scenario)


def test_event_stream_terminated_wakes_no_one_until_a_watch_resubscribes(simulator: Simulator, pro: ProRunner) -> None:
    """user-data-stream.md "Event Stream Terminated": the subscription ends, the connection stays. ccxt.pro drops
    its subscription and rejects a future nobody waits on: the pending watch_* stays pending and the events that
    follow are not sent, until some watch_* call subscribes again on the same connection."""

    async def scenario(ex: Any) -> None:
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        assert simulator.stream.terminate() == 1
        await eventually(lambda: "spot" not in ex.clients[simulator.ws_url].subscriptions, "ccxt to forget it")
        simulator.core.place_order("BTC/USDT", "BUY", "LIMIT", quantity=Decimal("0.01"), price=Decimal("29000"),
                                   time_in_force="GTC", client_order_id="lost")  # fmt: skip
        await eventually(lambda: len(simulator.stream.events()) == 2, "the events")
        assert [e.subscribed for e in simulator.stream.events()] == [0, 0]  # nobody is subscribed
        await asyncio.sleep(0.2)
        assert not orders.task.done() and orders.seen == []  # no error, no wake-up
        trades = Watch(ex, "watch_my_trades", "BTC/USDT")  # any new watch_* call subscribes again
        await eventually(lambda: simulator.stream.subscribe_requests == 2, "a second subscribe")
        await pending(ex, simulator.ws_url, "myTrades:BTC/USDT")
        (connection,) = simulator.stream.connections()
        assert connection.open and connection.subscriptions == (1,)  # the same connection, the next id
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "found"})
        seen = await orders.until(lambda seen: len(seen) == 1, "the old watch woken by the next event")
        assert seen[0]["clientOrderId"] == "found"  # "lost" never arrived
        await orders.stop()
        await trades.stop()

    pro.run(scenario)


def test_a_refused_subscribe_raises_key_error_and_wedges_the_connection(simulator: Simulator, pro: ProRunner) -> None:
    """errors.md -1022 INVALID_SIGNATURE as the subscribe's answer. ccxt.pro 4.5.90 maps it to
    AuthenticationError, then raises ``KeyError('spot')`` over it (it deletes its subscription twice) and leaves
    its single-flight future pending: later watch_* calls on that connection wait on it forever. Closing the ws
    client is the way out."""
    simulator.stream.faults.arm("subscribe_reject", code=-1022)

    async def scenario(ex: Any) -> None:
        with pytest.raises(KeyError) as refused:
            await asyncio.wait_for(ex.watch_orders("BTC/USDT"), 5)
        assert isinstance(refused.value.__context__, ccxt.AuthenticationError)
        assert "-1022" in str(refused.value.__context__)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ex.watch_orders("BTC/USDT"), 0.3)
        assert simulator.stream.subscribe_requests == 1  # the second call sent nothing
        await ex.clients[simulator.ws_url].close()
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        assert simulator.stream.subscribe_requests == 2
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "after"})
        await orders.until(lambda seen: len(seen) == 1, "events after the way out")
        await orders.stop()

    pro.run(scenario)


def test_an_unanswered_subscribe_hangs_and_a_late_one_succeeds(simulator: Simulator, pro: ProRunner) -> None:
    """ccxt.pro has no timeout of its own for the subscribe answer, and claims the subscription before the answer
    comes: after the caller gives up, later watch_* calls on that connection send no subscribe and wait on a
    stream that never started. A late answer is only late."""
    simulator.stream.faults.arm("subscribe_delay", delay_ms=None)

    async def scenario(ex: Any) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ex.watch_orders("BTC/USDT"), 0.3)
        assert "spot" in ex.clients[simulator.ws_url].subscriptions  # claimed, never confirmed
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ex.watch_orders("BTC/USDT"), 0.3)
        assert simulator.stream.subscribe_requests == 1
        (connection,) = simulator.stream.connections()
        assert connection.open and connection.subscriptions == ()
        await ex.clients[simulator.ws_url].close()
        simulator.stream.faults.arm("subscribe_delay", delay_ms=200)
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        assert simulator.stream.connections()[-1].subscriptions == (0,)
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "late"})
        await orders.until(lambda seen: len(seen) == 1, "events after the late answer")
        await orders.stop()

    pro.run(scenario)


def test_missing_pongs_fail_the_watch_with_request_timeout(simulator: Simulator, pro: ProRunner) -> None:
    """ccxt.pro pings every ``keepAlive`` ms (180000 by default) and fails every pending watch_* with
    RequestTimeout after ``keepAlive`` x 2 without a pong (here 200 ms)."""
    simulator.stream.faults.arm("no_pong", times=None)

    async def scenario(ex: Any) -> None:
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        error = await orders.raised()
        assert isinstance(error, ccxt.RequestTimeout) and "ping-pong keepalive missing" in str(error)

    pro.run(scenario, options={"ws": {"keepAlive": 200}})


def test_server_shutdown_is_ignored_until_the_connection_closes(simulator: Simulator, pro: ProRunner) -> None:
    """web-socket-api.md "Server Shutdown": ``{"event": {"e": "serverShutdown", ...}}`` (no subscriptionId), then
    the disconnection. ccxt.pro ignores the event (events still flow) and raises NetworkError at the close."""

    async def scenario(ex: Any) -> None:
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        assert simulator.stream.server_shutdown() == 1
        await eventually(lambda: simulator.stream.frames(direction="out")[-1:], "the notice")
        notice = simulator.stream.frames(direction="out")[-1].payload
        assert list(notice) == ["event"] and notice["event"]["e"] == "serverShutdown"
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "sd1"})
        await orders.until(lambda seen: len(seen) == 1, "events still flowing")
        simulator.stream.server_shutdown(close_after_ms=0)
        error = await orders.raised()
        assert isinstance(error, ccxt.NetworkError) and "closing code 1001" in str(error)

    pro.run(scenario)


def test_a_connection_is_closed_at_its_maximum_age(simulator: Simulator, pro: ProRunner) -> None:
    """web-socket-api.md "General API Information": "A single connection to the API is only valid for 24 hours;
    expect to be disconnected after the 24-hour mark" (here 300 ms: ``stream_max_connection_ms``)."""
    simulator.configure(stream_max_connection_ms=300)

    async def scenario(ex: Any) -> None:
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        error = await orders.raised()
        assert isinstance(error, ccxt.NetworkError) and "closing code 1000" in str(error)
        simulator.configure(stream_max_connection_ms=None)
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, simulator.ws_url, "orders:BTC/USDT")
        assert len(simulator.stream.connections()) == 2
        await orders.stop()

    pro.run(scenario)


# ------------------------------------------------------------------------------- lifecycle, control, factory
def test_stop_cuts_the_stream_and_start_serves_the_same_url(simulator: Simulator, pro: ProRunner) -> None:
    url = simulator.ws_url

    async def scenario(ex: Any) -> None:
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, url, "orders:BTC/USDT")
        await asyncio.get_running_loop().run_in_executor(None, simulator.stop)
        assert isinstance(await orders.raised(), ccxt.NetworkError)
        with pytest.raises(SimulatorError, match="not running"):
            _ = simulator.ws_url
        await asyncio.get_running_loop().run_in_executor(None, simulator.start)
        assert simulator.ws_url == url
        orders = Watch(ex, "watch_orders", "BTC/USDT")
        await pending(ex, url, "orders:BTC/USDT")
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "back"})
        await orders.until(lambda seen: len(seen) == 1, "events after the restart")
        await orders.stop()

    pro.run(scenario)


def test_fault_arming_is_checked(simulator: Simulator) -> None:
    faults = simulator.stream.faults
    for kind, options, match in [
        ("nope", {}, "unknown stream fault kind 'nope'; choose one of"),
        ("delay", {}, "delay_ms must be an integer >= 0"),
        ("duplicate", {"delay_ms": 5}, r"takes no option\(s\) \['delay_ms'\]"),
        ("duplicate", {"execution_type": "FILL"}, "execution_type must be one of"),
        ("reorder", {"event": "trade"}, "event must be one of"),
        ("drop_before_event", {"mode": "reset"}, "drop mode must be 'close' or 'abort'"),
        ("refuse_connections", {"mode": "tcp"}, "refuse_connections mode must be '503' or 'drop'"),
        ("subscribe_reject", {}, "needs code=<Binance error code>"),
        ("subscribe_reject", {"code": -9999}, "has no standard message here; pass msg="),
    ]:
        with pytest.raises(ValueError, match=match):
            faults.arm(kind, **options)
    with pytest.raises(ValueError, match="times must be"):
        faults.arm("duplicate", times=0)
    assert faults.arm("subscribe_reject", code=-2015).options == {
        "code": -2015,
        "msg": "Invalid API-key, IP, or permissions for action.",
        "status": 401,
    }
    faults.arm("no_pong", times=None)
    assert [f.kind for f in faults.armed()] == ["subscribe_reject", "no_pong"]
    assert faults.disarm("no_pong") == 1 and faults.disarm() == 1 and faults.armed() == []
    with pytest.raises(ValueError, match="drop mode"):
        simulator.stream.drop("reset")
    with pytest.raises(ValueError, match="close_after_ms"):
        simulator.stream.server_shutdown(-1)


def test_make_pro_exchange_keeps_the_ws_urls_a_dict_and_points_only_the_user_data_stream_here() -> None:
    """ccxt.pro reads ``urls['api']['ws']['ws-api']['spot']``: the dict stays, every other websocket goes nowhere."""
    ex = make_pro_exchange("http://127.0.0.1:1", "ws://127.0.0.1:2/ws-api/v3")
    assert isinstance(ex, ccxt.pro.binance)
    ws = ex.urls["api"]["ws"]
    assert ws["ws-api"]["spot"] == "ws://127.0.0.1:2/ws-api/v3"
    others = [ws[k] for k in ws if k != "ws-api"] + [v for k, v in ws["ws-api"].items() if k != "spot"]
    assert others and all(url.startswith(NOT_SIMULATED_WS) for url in others)
    assert ex.urls["api"]["public"] == "http://127.0.0.1:1/api/v3"
    with pytest.raises(ValueError, match="ws://127.0.0.1"):
        make_pro_exchange("http://127.0.0.1:1", "wss://ws-api.binance.com:443/ws-api/v3")
    with pytest.raises(ValueError, match="http://127.0.0.1"):
        make_pro_exchange("https://api.binance.com", "ws://127.0.0.1:2/ws-api/v3")


def test_the_stream_is_driven_over_the_control_api(simulator: Simulator, pro: ProRunner) -> None:
    """What a test of a bot in another process uses: ``SimulatorClient`` (``/_sim/stream``) finds the stream's URL,
    arms its faults, reads what was sent, and cuts it."""
    control = SimulatorClient(simulator.url)
    assert control.ws_url == simulator.ws_url
    armed = control.stream_arm("duplicate", execution_type="TRADE")
    assert armed == {"kind": "duplicate", "times": 1, "options": {"execution_type": "TRADE"}}
    with pytest.raises(SimulatorError, match="unknown stream fault kind"):
        control.stream_arm("nope")
    request = urllib.request.Request(simulator.url + "/_sim/stream", data=b'{"action": "explode"}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5)
    assert refused.value.code == 400 and "unknown stream action 'explode'" in refused.value.read().decode()

    async def scenario(ex: Any) -> None:
        loop = asyncio.get_running_loop()

        async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:  # urllib blocks: keep ccxt's loop running
            return await loop.run_in_executor(None, lambda: fn(*args, **kwargs))

        trades = Watch(ex, "watch_my_trades", "BTC/USDT")
        await pending(ex, simulator.ws_url, "myTrades:BTC/USDT")
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "p1"})
        fill = await call(control.fill, "p1", amount="0.004")
        seen = await trades.until(lambda seen: len(seen) >= 1, "the trade")  # once or twice: it is duplicated
        assert {t["id"] for t in seen} == {str(fill["id"])}
        status = await call(control.stream_status)
        assert status["url"] == simulator.ws_url and status["subscribe_requests"] == 1 and status["faults"] == []
        assert [c["subscriptions"] for c in status["connections"]] == [[0]]
        await eventually(lambda: len(simulator.stream.sent_seqs()) == 5, "every frame")
        out = [f for f in await call(control.stream_frames, direction="out") if f["seq"] is not None]
        trade_seqs = [f["seq"] for f in out if f["payload"]["event"].get("x") == "TRADE"]
        assert len(trade_seqs) == 2 and len(set(trade_seqs)) == 1  # duplicated
        assert await call(control.stream_frames, connection=1) == [f.to_json() for f in simulator.stream.frames()]
        assert {e["seq"] for e in await call(control.stream_events)} >= set(trade_seqs)
        assert await call(control.stream_server_shutdown) == 1
        assert await call(control.stream_terminate) == 1
        assert await call(control.stream_drop, "abort") == 1
        assert isinstance(await trades.raised(), ccxt.NetworkError)
        await call(control.clear_stream_log)
        assert await call(control.stream_frames) == [] and await call(control.stream_events) == []
        assert await call(control.stream_disarm) == 0

    pro.run(scenario)


def test_frames_log_keeps_json_and_knows_no_secret(simulator: Simulator) -> None:
    """The frame log holds what went over the wire (the signature, not the secret) and stays bounded."""

    async def scenario() -> None:
        async with RawClient(simulator) as client:
            await client.call(signed_subscribe())
        frames = simulator.stream.frames()
        assert [f.direction for f in frames] == ["in", "out"]
        text = json.dumps([f.to_json() for f in frames])
        assert "SimTestSecret" not in text and frames[0].payload["params"]["signature"]

    asyncio.run(scenario())
