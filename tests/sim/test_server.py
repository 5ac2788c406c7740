"""The exchange simulator through the real ccxt library (sync and async) over 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from decimal import Decimal
from typing import Any, Protocol

import ccxt
import ccxt.async_support
import pytest

from recovery.sim.core import ExchangeCore, SimulatorError
from recovery.sim.http import SimHTTPServer
from recovery.sim.server import TEST_API_KEY, TEST_SECRET, Simulator, SimulatorClient
from recovery.testing import AsyncExchanges, make_exchange

pytestmark = pytest.mark.integration

ORDER = ("POST", "/api/v3/order")


class SyncAsAsync:
    """Lets one async scenario drive a sync ccxt client too."""

    def __init__(self, exchange: ccxt.binance) -> None:
        object.__setattr__(self, "exchange", exchange)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.exchange, name, value)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.exchange, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


Scenario = Callable[[Any], Coroutine[Any, Any, Any]]


class Runner(Protocol):
    def __call__(self, scenario: Scenario, **config: Any) -> Any: ...


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest, simulator: Simulator, async_exchange: AsyncExchanges) -> Iterator[Runner]:
    """``run(scenario)``: ``scenario(ex)`` with a sync (wrapped) or an async ccxt client on ``simulator``."""
    if request.param == "async":
        yield async_exchange.run
        return
    clients: list[ccxt.binance] = []

    def sync_run(scenario: Scenario, **config: Any) -> Any:
        client = make_exchange(simulator.url, **config)
        clients.append(client)
        return asyncio.run(scenario(SyncAsAsync(client)))

    yield sync_run
    for client in clients:
        client.session.close()


def last_params(sim: Simulator, method: str, path: str) -> dict[str, str]:
    return sim.requests(method, path)[-1].params


# ------------------------------------------------------------- round trips
def test_every_endpoint_round_trips(simulator: Simulator, run: Runner) -> None:
    sim = simulator

    async def scenario(ex: Any) -> None:
        markets = await ex.load_markets()
        assert {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"} <= set(markets)
        assert markets["BTC/USDT"]["precision"]["amount"] == 0.00001
        assert markets["BTC/USDT"]["limits"]["cost"]["min"] == 5
        assert abs(await ex.fetch_time() - sim.core.now_ms()) < 5000

        limit = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "rt-1"})
        assert (limit["status"], limit["clientOrderId"], limit["price"]) == ("open", "rt-1", 29000)
        sent = last_params(sim, *ORDER)
        assert sent["newClientOrderId"] == "rt-1" and "clientOrderId" not in sent
        assert (sent["type"], sent["side"], sent["timeInForce"], sent["quantity"]) == ("LIMIT", "BUY", "GTC", "0.01")

        assert (await ex.fetch_order(limit["id"], "BTC/USDT"))["clientOrderId"] == "rt-1"
        assert last_params(sim, "GET", "/api/v3/order")["orderId"] == limit["id"]
        by_cid = await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "rt-1"})
        assert by_cid["id"] == limit["id"]
        assert last_params(sim, "GET", "/api/v3/order")["origClientOrderId"] == "rt-1"

        assert [o["id"] for o in await ex.fetch_open_orders("BTC/USDT")] == [limit["id"]]
        assert last_params(sim, "GET", "/api/v3/openOrders")["symbol"] == "BTCUSDT"
        assert [o["id"] for o in await ex.fetch_open_orders()] == [limit["id"]]
        assert "symbol" not in last_params(sim, "GET", "/api/v3/openOrders")

        edited = await ex.edit_order(
            limit["id"], "BTC/USDT", "limit", "buy", 0.02, 28000, params={"clientOrderId": "rt-2"}
        )
        assert edited["clientOrderId"] == "rt-2" and int(edited["id"]) > int(limit["id"])
        replace = last_params(sim, "POST", "/api/v3/order/cancelReplace")
        assert (replace["cancelOrderId"], replace["newClientOrderId"], replace["cancelReplaceMode"]) == (
            limit["id"],
            "rt-2",
            "STOP_ON_FAILURE",
        )
        assert sim.core.order(int(limit["id"])).status == "CANCELED"

        sim.fill("rt-2", amount="0.005")
        partial = await ex.fetch_order(edited["id"], "BTC/USDT")
        assert (partial["status"], partial["filled"], partial["remaining"]) == ("open", 0.005, 0.015)

        canceled = await ex.cancel_order(edited["id"], "BTC/USDT")
        assert canceled["status"] == "canceled"
        # Binance's cancel answer carries the cancel's own new id; ccxt reports *that* as clientOrderId.
        assert canceled["info"]["origClientOrderId"] == "rt-2" and canceled["clientOrderId"] != "rt-2"
        assert last_params(sim, "DELETE", "/api/v3/order")["orderId"] == edited["id"]

        again = await ex.create_order("ETH/USDT", "limit", "sell", 0.5, 2500, params={"clientOrderId": "rt-3"})
        await ex.cancel_order(None, "ETH/USDT", params={"clientOrderId": "rt-3"})
        assert last_params(sim, "DELETE", "/api/v3/order")["origClientOrderId"] == "rt-3"
        assert sim.core.order(int(again["id"])).status == "CANCELED"

        market = await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "rt-4"})
        assert (market["status"], market["filled"], market["average"]) == ("closed", 0.01, 30000)
        assert market["fee"] == {"currency": "BTC", "cost": 0.00001}
        sold = await ex.create_order("BTC/USDT", "market", "sell", 0.002, params={"clientOrderId": "rt-5"})
        assert sold["status"] == "closed" and sold["cost"] == 60

        orders = await ex.fetch_orders("BTC/USDT")
        assert [(o["clientOrderId"], o["status"]) for o in orders] == [
            ("rt-1", "canceled"),
            ("rt-2", "canceled"),
            ("rt-4", "closed"),
            ("rt-5", "closed"),
        ]
        assert [o["id"] for o in await ex.fetch_orders("BTC/USDT", None, 2)] == [market["id"], sold["id"]]
        assert last_params(sim, "GET", "/api/v3/allOrders")["limit"] == "2"

        trades = await ex.fetch_my_trades("BTC/USDT")
        assert [(t["order"], t["side"], t["amount"]) for t in trades] == [
            (edited["id"], "buy", 0.005),
            (market["id"], "buy", 0.01),
            (sold["id"], "sell", 0.002),
        ]
        since = trades[1]["timestamp"]
        await ex.fetch_my_trades("BTC/USDT", since, 10)
        assert (
            last_params(sim, "GET", "/api/v3/myTrades")["startTime"],
            last_params(sim, "GET", "/api/v3/myTrades")["limit"],
        ) == (str(since), "10")

        balance = await ex.fetch_balance()
        for asset, expected in sim.balances().items():
            assert Decimal(str(balance[asset]["free"])) == expected.free
            assert Decimal(str(balance[asset]["used"])) == expected.locked

    run(scenario)
    assert all(r.status == 200 for r in sim.requests())
    private = [r for r in sim.requests() if r.path not in ("/api/v3/exchangeInfo", "/api/v3/time")]
    assert all(r.had_key and "signature" not in r.params and "timestamp" in r.params for r in private)


def test_request_log_never_holds_the_secret_or_the_key(simulator: Simulator, exchange: ccxt.binance) -> None:
    exchange.fetch_balance()
    exchange.fetch_time()
    logged = json.dumps([r.to_json() for r in simulator.requests()])
    assert TEST_SECRET not in logged and TEST_API_KEY not in logged
    assert [(r.path, r.had_key) for r in simulator.requests()] == [
        ("/api/v3/exchangeInfo", False),
        ("/api/v3/account", True),
        ("/api/v3/time", False),
    ]
    simulator.log.clear()
    assert simulator.requests() == []


# ---------------------------------------------------------- real refusals
def test_refusals_map_to_ccxt_errors(simulator: Simulator, run: Runner) -> None:
    async def scenario(ex: Any) -> None:
        await ex.load_markets()
        with pytest.raises(ccxt.InsufficientFunds):
            await ex.create_order("BTC/USDT", "limit", "buy", 10, 29000)
        with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):  # -1013 NOTIONAL is BadRequest, not InvalidOrder
            await ex.create_order("BTC/USDT", "limit", "buy", 0.0001, 29000)
        with pytest.raises(ccxt.OrderNotFound, match="-2013"):
            await ex.fetch_order("424242", "BTC/USDT")
        with pytest.raises(ccxt.OrderNotFound, match="-2011"):
            await ex.cancel_order("424242", "BTC/USDT")
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "same"})
        with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent") as dup:
            await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "same"})
        assert not isinstance(dup.value, ccxt.InsufficientFunds)
        await ex.cancel_order(None, "BTC/USDT", params={"clientOrderId": "same"})
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "same"})
        with pytest.raises(ccxt.BadSymbol):
            await ex.privateGetOrder({"symbol": "NOPEUSDT", "orderId": 1})
        with pytest.raises(ccxt.BadRequest, match="-1104"):  # unknown parameters are refused, as Binance does
            await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"bogus": "1"})
        with pytest.raises(ccxt.BadResponse, match="-2022"):  # edit of an unknown order: ccxt's spot table
            await ex.edit_order("424242", "BTC/USDT", "limit", "buy", 0.01, 28000)
        with pytest.raises(ccxt.OrderImmediatelyFillable):
            await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 30000, params={"postOnly": True})

    run(scenario)
    assert [o.client_order_id for o in simulator.orders()].count("same") == 2


def test_bad_credentials_and_timestamps(simulator: Simulator, run: Runner) -> None:
    async def bad_secret(ex: Any) -> None:
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await ex.fetch_balance()

    async def bad_key(ex: Any) -> None:
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await ex.fetch_balance()

    async def bad_key_after_success(ex: Any) -> None:
        await ex.fetch_balance()
        ex.apiKey = "K" * 64
        with pytest.raises(ccxt.DDoSProtection, match="-2015"):  # ccxt reads -2015 after a success as a ban
            await ex.fetch_balance()

    run(bad_secret, secret="S" * 64)
    run(bad_key, apiKey="K" * 64)
    run(bad_key_after_success)
    offset = [0]
    simulator.core._clock = lambda: time.time_ns() // 1_000_000 + offset[0]

    async def skewed(ex: Any) -> None:
        for skew, text in ((-1500, "1000ms ahead"), (11_000, "outside of the recvWindow")):
            offset[0] = skew
            with pytest.raises(ccxt.InvalidNonce, match=text):
                await ex.fetch_balance()

    run(skewed)


def test_non_spot_apis_fail_loudly(exchange: ccxt.binance) -> None:
    assert exchange.urls["api"]["public"].endswith("/api/v3") and exchange.urls["api"]["v1"].endswith("/api/v1")
    assert all(
        "not-simulated" in url for name, url in exchange.urls["api"].items() if name not in ("public", "private", "v1")
    )
    with pytest.raises(ccxt.NetworkError, match="not-simulated/sapi"):
        exchange.sapiGetSystemStatus()
    assert exchange.exceptions["exact"]["-2022"] is ccxt.BadResponse  # merged from the spot table
    assert exchange.options["fetchMarkets"]["types"] == ["spot"]


# ------------------------------------------------------------------ faults
PRE_COMMIT = [
    ("http_429", {}, ccxt.DDoSProtection),
    ("http_418", {}, ccxt.DDoSProtection),
    ("rate_limit_orders", {}, ccxt.DDoSProtection),  # Binance sends -1015 with HTTP 429
    ("rate_limit_orders", {"status": 400}, ccxt.RateLimitExceeded),
    ("http_503_1007", {"applied": False}, ccxt.RequestTimeout),
    ("http_502_html", {}, ccxt.ExchangeNotAvailable),
    ("reject", {"code": -2010}, ccxt.InsufficientFunds),
    ("reject", {"code": -1013, "msg": "Filter failure: PRICE_FILTER"}, ccxt.InvalidOrder),
    ("reject", {"code": -2013}, ccxt.OrderNotFound),
    ("reject", {"code": -1022}, ccxt.AuthenticationError),
]
COMMITTED = [
    ("commit_then_delay", {"delay_s": 5.0}, ccxt.RequestTimeout, ccxt.RequestTimeout),
    ("commit_then_drop", {}, ccxt.NetworkError, ccxt.ExchangeNotAvailable),
    ("http_503_1007", {}, ccxt.RequestTimeout, ccxt.RequestTimeout),
    ("http_502_html", {"applied": True}, ccxt.ExchangeNotAvailable, ccxt.ExchangeNotAvailable),
]


def _fault_id(case: tuple[Any, ...]) -> str:
    kind, options = case[0], case[1]
    return "-".join([kind, *(f"{k}={v}" for k, v in options.items() if k != "msg")])


@pytest.mark.parametrize(("kind", "options", "error"), PRE_COMMIT, ids=[_fault_id(c) for c in PRE_COMMIT])
def test_pre_commit_faults(
    simulator: Simulator, run: Runner, kind: str, options: dict[str, Any], error: type[Exception]
) -> None:
    simulator.faults.arm(*ORDER, kind, **options)

    async def scenario(ex: Any) -> None:
        await ex.load_markets()
        with pytest.raises(error):
            await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "f-1"})
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 28000, params={"clientOrderId": "f-2"})  # disarmed

    run(scenario)
    assert [o.client_order_id for o in simulator.orders()] == ["f-2"]
    assert [r.fault for r in simulator.requests(*ORDER)] == [kind, None]


@pytest.mark.parametrize(
    ("kind", "options", "sync_error", "async_error"), COMMITTED, ids=[_fault_id(c) for c in COMMITTED]
)
def test_commit_then_fault_applies_the_order_exactly_once(
    request: pytest.FixtureRequest,
    simulator: Simulator,
    run: Runner,
    kind: str,
    options: dict[str, Any],
    sync_error: type[Exception],
    async_error: type[Exception],
) -> None:
    error = async_error if "async" in request.node.callspec.id else sync_error
    simulator.faults.arm(*ORDER, kind, **options)

    async def scenario(ex: Any) -> Any:
        await ex.load_markets()
        with pytest.raises(error) as caught:
            await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "c-1"})
        if error is ccxt.NetworkError:  # sync drop: exactly NetworkError, not a subclass
            assert type(caught.value) is ccxt.NetworkError
        return await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "c-1"})  # what recovery does

    found = run(scenario, timeout_ms=300)
    assert found["clientOrderId"] == "c-1" and found["status"] == "open"
    assert [o.client_order_id for o in simulator.orders()] == ["c-1"]
    assert simulator.requests(*ORDER)[0].fault == kind
    assert simulator.requests(*ORDER)[0].status == {"commit_then_drop": None, "http_503_1007": 503}.get(
        kind, 502 if kind == "http_502_html" else 200
    )


def test_dropped_cancel_is_resent_by_aiohttp_and_reads_as_order_not_found(
    request: pytest.FixtureRequest, simulator: Simulator, run: Runner
) -> None:
    """aiohttp re-sends an idempotent request (GET, DELETE) once when the connection drops unanswered.

    So an async cancel whose answer is lost is sent twice: the first cancels, the
    second gets -2011 and ccxt raises OrderNotFound for a cancel that succeeded.
    Sync ccxt (requests) does not re-send and raises NetworkError.
    """
    is_async = "async" in request.node.callspec.id

    async def scenario(ex: Any) -> None:
        order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "d-1"})
        simulator.faults.arm("DELETE", "/api/v3/order", "commit_then_drop")
        with pytest.raises(ccxt.OrderNotFound if is_async else ccxt.NetworkError):
            await ex.cancel_order(order["id"], "BTC/USDT")

    run(scenario)
    assert simulator.core.order("d-1").status == "CANCELED"
    deletes = [(r.fault, r.code) for r in simulator.requests("DELETE", "/api/v3/order")]
    assert deletes == ([("commit_then_drop", None), (None, -2011)] if is_async else [("commit_then_drop", None)])


@pytest.mark.parametrize(
    ("mode", "sync_error", "async_error"),
    [
        ("drop", ccxt.NetworkError, ccxt.ExchangeNotAvailable),
        ("503", ccxt.ExchangeNotAvailable, ccxt.ExchangeNotAvailable),
    ],
)
def test_down_refuses_everything_until_up(
    request: pytest.FixtureRequest,
    simulator: Simulator,
    run: Runner,
    mode: str,
    sync_error: type[Exception],
    async_error: type[Exception],
) -> None:
    error = async_error if "async" in request.node.callspec.id else sync_error
    control = SimulatorClient(simulator.url)

    async def scenario(ex: Any) -> None:
        await ex.load_markets()
        control.down(mode)  # the control endpoints still answer while the exchange is down
        for call in (ex.fetch_balance(), ex.fetch_time(), ex.create_order("BTC/USDT", "market", "buy", 0.001)):
            with pytest.raises(error):
                await call
        control.up()
        assert (await ex.fetch_balance())["USDT"]["free"] == 100000

    run(scenario)
    assert simulator.orders() == []
    assert [r.fault for r in simulator.requests()][-4:] == ["down", "down", "down", None]


def test_fault_arming_rules(simulator: Simulator) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        simulator.faults.arm(*ORDER, "explode")
    with pytest.raises(ValueError, match="needs code"):
        simulator.faults.arm(*ORDER, "reject")
    with pytest.raises(ValueError, match="takes no option"):
        simulator.faults.arm(*ORDER, "http_429", delay_s=1)
    simulator.faults.arm(*ORDER, "http_429", times=2)
    simulator.faults.arm("GET", "*", "http_502_html", times=None)
    assert [(f.kind, f.remaining) for f in simulator.faults.armed()] == [("http_429", 2), ("http_502_html", None)]
    assert simulator.faults.disarm(method="GET") == 1 and simulator.faults.disarm() == 1


def test_weight_header_and_limit(simulator: Simulator, exchange: ccxt.binance) -> None:
    now = [1_700_000_000_000]
    simulator.core._clock = lambda: now[0]
    exchange.nonce = lambda: now[0]  # ccxt signs its timestamp with nonce()
    simulator.app.limiter.reset()
    exchange.load_markets()
    assert exchange.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "20"
    exchange.fetch_open_orders()
    assert exchange.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "100"
    simulator.configure(weight_limit_1m=110)
    exchange.fetch_open_orders("BTC/USDT")
    with pytest.raises(ccxt.DDoSProtection, match="-1003"):
        exchange.fetch_balance()
    now[0] += 60_000  # the next minute
    exchange.fetch_balance()
    assert exchange.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "20"


# ------------------------------------------------ server, control, process
def test_binds_to_loopback_only() -> None:
    for host in ("0.0.0.0", "localhost", "::1", "192.168.1.10"):
        with pytest.raises(ValueError, match="127.0.0.1 only"):
            Simulator(host=host)
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        SimHTTPServer("0.0.0.0", 0, Simulator().app)
    with pytest.raises(ValueError, match="127.0.0.1"):
        make_exchange("https://api.binance.com")


def test_start_stop_nodelay_and_stop_with_a_pending_answer() -> None:
    sim = Simulator(fault_delay_s=30.0).start()
    port = sim.port
    exchange = make_exchange(sim.url, timeout_ms=10_000)
    exchange.fetch_time()
    server = sim._server
    assert server is not None
    conns = list(server._connections)
    assert conns and all(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for c in conns)
    sim.faults.arm("GET", "/api/v3/time", "commit_then_delay")
    caller = asyncio.new_event_loop()
    pending = caller.run_in_executor(None, exchange.fetch_time)
    while not sim.requests(path="/api/v3/time")[1:]:
        time.sleep(0.005)
    started = time.monotonic()
    sim.stop()
    sim.stop()  # idempotent
    with pytest.raises(ccxt.NetworkError):
        caller.run_until_complete(pending)
    caller.close()
    assert time.monotonic() - started < 5  # did not wait for the 30 s answer
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
    with pytest.raises(SimulatorError, match="not running"):
        _ = sim.url
    with sim:  # back up: same port, same core
        assert sim.port == port and exchange.fetch_time() > 0
    exchange.session.close()


def test_control_endpoints_through_the_client(simulator: Simulator, exchange: ccxt.binance) -> None:
    control = SimulatorClient(simulator.url)
    order = exchange.create_order("BTC/USDT", "limit", "buy", 0.02, 29000, params={"clientOrderId": "ctl-1"})
    trade = control.fill("ctl-1", amount="0.01", price="28900")
    assert (trade["price"], trade["qty"], trade["isMaker"]) == ("28900.00000000", "0.01000000", True)
    assert control.cancel(int(order["id"]))["status"] == "CANCELED"
    assert control.set_balance("SOL", "7")["SOL"] == {"free": "7.00000000", "locked": "0.00000000"}
    exchange.create_order("BTC/USDT", "limit", "sell", 0.01, 31000, params={"clientOrderId": "ctl-2"})
    assert [t["orderId"] for t in control.set_price("BTC/USDT", "31500")] == [simulator.core.order("ctl-2").order_id]
    assert [o["clientOrderId"] for o in control.orders()] == ["ctl-1", "ctl-2"]
    assert len(control.trades()) == 2 and control.balances()["BTC"]["locked"] == "0.00000000"
    control.arm("POST", "/api/v3/order", "reject", code=-2010)
    assert control.faults()[0]["options"]["msg"] == "Account has insufficient balance for requested action."
    with pytest.raises(ccxt.InsufficientFunds):
        exchange.create_order("BTC/USDT", "market", "buy", 0.001)
    assert control.disarm() == 0
    sent = [r["params"]["newClientOrderId"] for r in control.requests(method="POST")]
    assert sent[:2] == ["ctl-1", "ctl-2"] and sent[2].startswith("x-TKT5PX2F")  # ccxt's own id, broker prefix
    control.clear_requests()
    assert control.requests() == []
    with pytest.raises(SimulatorError, match="no order"):
        control.fill("missing")
    with pytest.raises(ValueError, match="127.0.0.1"):
        SimulatorClient("http://example.com:80")


def test_runs_as_a_process_until_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recovery.sim",
            "--port",
            "0",
            "--ws-port",
            "0",
            "--price",
            "BTC/USDT=31000",
            "--balance",
            "USDT=500",
            "--balance",
            "BTC=0.5",
            "--set",
            "weight_limit_1m=1200",
            "--set",
            'lagging_queries=["order", "myTrades"]',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        control = SimulatorClient(url)
        assert control.balances()["USDT"]["free"] == "500.00000000"
        assert control.settings()["weight_limit_1m"] == 1200
        assert control.settings()["lagging_queries"] == ["myTrades", "order"]
        assert control.ws_url.startswith("ws://127.0.0.1:") and control.ws_url.endswith("/ws-api/v3")
        exchange = make_exchange(url)
        order = exchange.create_order("BTC/USDT", "market", "sell", 0.01, params={"clientOrderId": "proc-1"})
        assert order["average"] == 31000
        with urllib.request.urlopen(url + "/api/v3/ping", timeout=5) as answer:
            assert json.loads(answer.read()) == {}
        exchange.session.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    proc.stderr.close()
    assert "RuntimeWarning" not in stderr, stderr  # `python -m` must not find the module pre-imported


def test_fixtures_close_async_clients(simulator: Simulator, async_exchange: AsyncExchanges) -> None:
    async def scenario() -> ccxt.async_support.binance:
        client = async_exchange()
        assert await client.fetch_time() > 0
        await async_exchange.close_all()
        return client

    assert asyncio.run(scenario()).session is None
    assert isinstance(ExchangeCore().price("BTC/USDT"), Decimal)
