"""A local Binance-spot exchange that the real ccxt library talks to over HTTP on 127.0.0.1.

Use it in process::

    with Simulator() as sim:                      # port 0 on 127.0.0.1
        exchange = make_exchange(sim.url)         # recovery.testing
        sim.faults.arm("POST", "/api/v3/order", "commit_then_drop")
        ...
        sim.core.fill("myClientId", amount="0.001")

or as a process (prints its URL on one line, serves until SIGTERM/SIGINT)::

    python -m recovery.sim --port 0 --price BTC/USDT=30000 --balance USDT=100000

and drive it from elsewhere with :class:`SimulatorClient` (the ``/_sim/`` control
endpoints, :mod:`recovery.sim.control`).

The pieces: :mod:`recovery.sim.core` (matching, balances, test hooks),
:mod:`recovery.sim.http` (the REST dialect, signatures, server),
:mod:`recovery.sim.faults` (fault kinds and the ccxt exception each produces,
request log), :mod:`recovery.sim.limits` (weight, bans, unfilled order count),
:mod:`recovery.sim.settings` (the knobs), :mod:`recovery.sim.wire` (JSON shapes),
:mod:`recovery.sim.ws` and :mod:`recovery.sim.wsfaults` (the user data stream).

Strict by default, as Binance documents its spot API: client ids
``^[a-zA-Z0-9-_]{1,36}$``, cancelRestrictions, cancelReplace checks the new
order's filters before it cancels, MAX_NUM_ORDERS, order ids per symbol,
-2026 for archived orders, 6000 request weight a minute, 418 bans after
repeated 429s, the unfilled order count. Eventual consistency is off by default
and turned on per test: ``sim.configure(lag_ms=500, lagging_queries=["order"])``;
``sim.faults.arm("POST", "/api/v3/order", "http_502_html", applied=True)``.

Simulated endpoints: ``GET /api/v3/ping``, ``time``, ``exchangeInfo``;
signed ``POST/GET/DELETE /api/v3/order``, ``POST /api/v3/order/cancelReplace``,
``GET/DELETE /api/v3/openOrders``, ``GET allOrders``, ``myTrades``, ``account``,
``rateLimit/order``. Sign with
:data:`TEST_API_KEY` and :data:`TEST_SECRET`.

The user data stream (:mod:`recovery.sim.ws`) runs beside the REST server, on
its own 127.0.0.1 port and thread, started and stopped with it: ``sim.ws_url``
(``ws://127.0.0.1:<port>/ws-api/v3``; ``SimulatorClient(url).ws_url`` from
another process) is what ccxt.pro's ``urls['api']['ws']['ws-api']['spot']``
should be (``recovery.exchanges.make_pro_exchange(sim.url, sim.ws_url)``). Its
faults: ``sim.stream.faults.arm(...)`` (:mod:`recovery.sim.wsfaults`),
``sim.stream.drop()``, ``terminate()``, ``server_shutdown()``.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlencode

from recovery.sim.control import control_handler
from recovery.sim.core import Balance, ExchangeCore, Market, Order, SimulatorError, Trade
from recovery.sim.faults import Faults, LoggedRequest, RequestLog
from recovery.sim.http import BinanceApp, SimHTTPServer
from recovery.sim.settings import Settings
from recovery.sim.ws import UserDataStream

__all__ = ["TEST_API_KEY", "TEST_SECRET", "Simulator", "SimulatorClient", "main"]

#: The only API key the simulator accepts (64 characters, like Binance's).
TEST_API_KEY = "SimTestApiKey000000000000000000000000000000000000000000000000000"
#: The HMAC secret matching :data:`TEST_API_KEY`. A test value: never a real credential.
TEST_SECRET = "SimTestSecret111111111111111111111111111111111111111111111111111"


class Simulator:
    """A simulated Binance spot exchange served on ``127.0.0.1``.

    ``start()``/``stop()`` take milliseconds; ``stop()`` is idempotent and closes
    every connection (a delayed answer is dropped); ``start()`` after ``stop()``
    serves the same core on the same port again. Serving threads are daemons.
    ``fee_rate``/``fee_asset`` are ignored when ``core`` is given; ``settings``
    are the knobs of :mod:`recovery.sim.settings` (a mapping of changes to the
    defaults, or a :class:`~recovery.sim.settings.Settings`).
    The core (``sim.core``), faults (``sim.faults``) and request log
    (``sim.log``) are thread-safe and may be used while requests run.
    ``sim.stream`` is the user data stream (:mod:`recovery.sim.ws`) on
    ``ws_port`` (0: any free port, kept across restarts), at :attr:`ws_url`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        core: ExchangeCore | None = None,
        markets: Iterable[Market] | None = None,
        prices: Mapping[str, Decimal | str | int] | None = None,
        balances: Mapping[str, Decimal | str | int] | None = None,
        fee_rate: Decimal | str = "0.001",
        fee_asset: Literal["received", "quote"] = "received",
        clock_ms: Callable[[], int] | None = None,
        api_key: str = TEST_API_KEY,
        secret: str = TEST_SECRET,
        fault_delay_s: float = 2.0,
        settings: Settings | Mapping[str, Any] | None = None,
        ws_port: int = 0,
    ) -> None:
        if host != "127.0.0.1":
            raise ValueError(f"the exchange simulator binds to 127.0.0.1 only, not {host!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if core is not None and (markets, prices, balances, clock_ms, settings) != (None,) * 5:
            raise ValueError("pass either core= or markets/prices/balances/clock_ms/settings, not both")
        self.host, self._port = host, port
        self.core = core or ExchangeCore(
            markets,
            prices=prices,
            balances=balances,
            fee_rate=fee_rate,
            fee_asset=fee_asset,
            clock_ms=clock_ms,
            settings=settings,
        )
        self.app = BinanceApp(self.core, api_key=api_key, secret=secret, fault_delay_s=fault_delay_s)
        # the user data stream (Binance's WebSocket API) on its own port and thread (ws.py)
        self.stream = UserDataStream(self.core, api_key=api_key, secret=secret, host=host, port=ws_port)
        self.app.control = control_handler(self.app, self.stream)
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle
    def start(self) -> Simulator:
        if self._server is not None:
            return self
        self.app.stopping.clear()
        self._server = SimHTTPServer(self.host, self._port, self.app)
        self._thread = threading.Thread(
            target=self._server.serve_until_stopped, name=f"simulator:{self.port}", daemon=True
        )
        self._thread.start()
        self._port = self.port  # a restart (exchange "back up") keeps the same URL
        try:
            self.stream.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.stream.stop()
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.stop_serving()
        thread.join()
        server.close_all()
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise SimulatorError("the simulator is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (the REST API is under ``/api/v3``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The user data stream, e.g. ``ws://127.0.0.1:40124/ws-api/v3`` (:mod:`recovery.sim.ws`)."""
        return self.stream.url

    # ------------------------------------------------- faults, log, test hooks
    @property
    def faults(self) -> Faults:
        return self.app.faults

    @property
    def log(self) -> RequestLog:
        return self.app.log

    @property
    def settings(self) -> Settings:
        """The knobs in force (:mod:`recovery.sim.settings`); change them with :meth:`configure`."""
        return self.core.settings

    def configure(self, **changes: Any) -> Settings:
        """Turn some knobs, e.g. ``sim.configure(weight_limit_1m=1200)``; an unknown name is a ``ValueError``."""
        return self.core.configure(**changes)

    def requests(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        return self.app.log.requests(method, path)

    def fill(
        self,
        order: int | str,
        amount: Decimal | str | int | None = None,
        price: Decimal | str | int | None = None,
        *,
        symbol: str | None = None,
    ) -> Trade:
        return self.core.fill(order, amount, price, symbol=symbol)

    def cancel(self, order: int | str, *, symbol: str | None = None) -> Order:
        return self.core.cancel(order, symbol=symbol)

    def set_price(self, symbol: str, price: Decimal | str | int, *, match: bool = True) -> list[Trade]:
        return self.core.set_price(symbol, price, match=match)

    def set_balance(self, asset: str, free: Decimal | str | int) -> None:
        self.core.set_balance(asset, free)

    def orders(self, symbol: str | None = None) -> list[Order]:
        return self.core.orders(symbol)

    def trades(self, symbol: str | None = None) -> list[Trade]:
        return self.core.trades(symbol)

    def balances(self) -> dict[str, Balance]:
        return self.core.balances()


class SimulatorClient:
    """Drives a simulator in another process through its ``/_sim/`` endpoints (urllib, JSON)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        if not url.startswith("http://127.0.0.1:"):
            raise ValueError(f"SimulatorClient talks to http://127.0.0.1:<port> only, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        self._ws_url: str | None = None

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise SimulatorError(f"simulator at {self.url} refused {method} {path}: {exc.code} {detail}") from exc

    def fill(
        self,
        order: int | str,
        amount: str | int | None = None,
        price: str | int | None = None,
        *,
        symbol: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"order": order}
        for name, value in (("amount", amount), ("price", price), ("symbol", symbol)):
            if value is not None:
                body[name] = str(value)
        return dict(self._call("POST", "/_sim/fill", body))

    def cancel(self, order: int | str, *, symbol: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"order": order} if symbol is None else {"order": order, "symbol": symbol}
        return dict(self._call("POST", "/_sim/cancel", body))

    def set_price(self, symbol: str, price: str | int | Decimal, *, match: bool = True) -> list[dict[str, Any]]:
        return list(self._call("POST", "/_sim/price", {"symbol": symbol, "price": str(price), "match": match}))

    def set_balance(self, asset: str, free: str | int | Decimal) -> dict[str, Any]:
        return dict(self._call("POST", "/_sim/balance", {"asset": asset, "free": str(free)}))

    def arm(self, method: str, path: str, kind: str, *, times: int | None = 1, **options: Any) -> dict[str, Any]:
        body = {"action": "arm", "method": method, "path": path, "kind": kind, "times": times, **options}
        return dict(self._call("POST", "/_sim/fault", body))

    def disarm(self, method: str | None = None, path: str | None = None, kind: str | None = None) -> int:
        body = {"action": "disarm", "method": method, "path": path, "kind": kind}
        return int(self._call("POST", "/_sim/fault", body)["removed"])

    def down(self, mode: str = "drop", *, applied: bool = False) -> None:
        """The exchange refuses everything until :meth:`up`; ``applied=True`` still carries requests out."""
        self._call("POST", "/_sim/fault", {"action": "down", "mode": mode, "applied": applied})

    def up(self) -> None:
        self._call("POST", "/_sim/fault", {"action": "up"})

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Turn some knobs (``POST /_sim/settings``); returns all settings as JSON."""
        return dict(self._call("POST", "/_sim/settings", changes))

    def settings(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/settings"))

    def orders(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_sim/orders"))

    def trades(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_sim/trades"))

    def balances(self) -> dict[str, dict[str, str]]:
        return dict(self._call("GET", "/_sim/balances"))

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_sim/faults"))

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        query = urlencode({k: v for k, v in (("method", method), ("path", path)) if v is not None})
        return list(self._call("GET", "/_sim/requests" + (f"?{query}" if query else "")))

    def clear_requests(self) -> None:
        self._call("DELETE", "/_sim/requests")

    # ------------------------------------------------- the user data stream
    @property
    def ws_url(self) -> str:
        """The simulator's user data stream, ``ws://127.0.0.1:<port>/ws-api/v3`` (asked once, then kept)."""
        if self._ws_url is None:
            self._ws_url = str(self.stream_status()["url"])
        return self._ws_url

    def stream_status(self) -> dict[str, Any]:
        """``{"url", "connections": [...], "subscribe_requests", "faults": [...]}`` (``GET /_sim/stream``)."""
        return dict(self._call("GET", "/_sim/stream"))

    def stream_arm(self, kind: str, *, times: int | None = 1, **options: Any) -> dict[str, Any]:
        """Arm a stream fault (:mod:`recovery.sim.wsfaults`), e.g. ``stream_arm("drop_before_event")``."""
        return dict(self._call("POST", "/_sim/stream", {"action": "arm", "kind": kind, "times": times, **options}))

    def stream_disarm(self, kind: str | None = None) -> int:
        return int(self._call("POST", "/_sim/stream", {"action": "disarm", "kind": kind})["removed"])

    def stream_drop(self, mode: str = "close") -> int:
        """Cut every stream connection now (``"close"``: close frame 1001; ``"abort"``: TCP abort)."""
        return int(self._call("POST", "/_sim/stream", {"action": "drop", "mode": mode})["dropped"])

    def stream_terminate(self) -> int:
        """End every subscription with ``eventStreamTerminated`` (the connections stay open)."""
        return int(self._call("POST", "/_sim/stream", {"action": "terminate"})["terminated"])

    def stream_server_shutdown(self, close_after_ms: int | None = None) -> int:
        """Send ``serverShutdown``; close the connections ``close_after_ms`` later if given."""
        body = {"action": "server_shutdown", "close_after_ms": close_after_ms}
        return int(self._call("POST", "/_sim/stream", body)["told"])

    def stream_frames(self, connection: int | None = None, direction: str | None = None) -> list[dict[str, Any]]:
        """The frames read (``"in"``) and written (``"out"``; event frames carry the core's ``seq``)."""
        query = urlencode({k: v for k, v in (("connection", connection), ("direction", direction)) if v is not None})
        return list(self._call("GET", "/_sim/stream/frames" + (f"?{query}" if query else "")))

    def stream_events(self) -> list[dict[str, Any]]:
        """Every event the core emitted (``seq``, ``event``, ``subscribed``: connections it went to)."""
        return list(self._call("GET", "/_sim/stream/events"))

    def clear_stream_log(self) -> None:
        self._call("DELETE", "/_sim/stream/frames")


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    result = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SystemExit(f"--{what} wants NAME=VALUE (e.g. BTC/USDT=30000), got {item!r}")
        result[name] = value
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run a simulator until SIGTERM/SIGINT; print its URL on stdout first."""
    parser = argparse.ArgumentParser(
        prog="python -m recovery.sim",
        description=(
            "Serve a simulated Binance spot exchange on 127.0.0.1. "
            "Example: python -m recovery.sim --port 0 --price BTC/USDT=30000 --balance USDT=100000"
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--ws-port",
        type=int,
        default=0,
        help="the user data stream's port on 127.0.0.1 (0: any; SimulatorClient(url).ws_url tells it)",
    )
    parser.add_argument("--price", action="append", default=[], metavar="SYMBOL=PRICE", help="last price, repeatable")
    parser.add_argument(
        "--balance",
        action="append",
        default=[],
        metavar="ASSET=FREE",
        help="free balance, repeatable (replaces the default balances)",
    )
    parser.add_argument("--fee-rate", default="0.001", help="fee rate (default 0.001)")
    parser.add_argument("--fault-delay", type=float, default=2.0, help="commit_then_delay default, seconds")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=JSON",
        help="a simulator setting, repeatable, e.g. --set weight_limit_1m=1200 (see recovery.sim.settings)",
    )
    args = parser.parse_args(argv)
    prices = _pairs(args.price, "price")
    knobs: dict[str, Any] = {}
    for name, value in _pairs(args.set, "set").items():
        try:
            knobs[name] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f'--set {name}= wants a JSON value (e.g. 500, null, ["order"]), got {value!r}') from None
    try:
        settings = Settings.of(knobs)
    except ValueError as exc:
        raise SystemExit(f"--set: {exc}") from None
    core = ExchangeCore(balances=_pairs(args.balance, "balance") or None, fee_rate=args.fee_rate, settings=settings)
    for symbol, price in prices.items():
        core.set_price(symbol, price)
    sim = Simulator(port=args.port, core=core, fault_delay_s=args.fault_delay, ws_port=args.ws_port)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    with sim:
        print(sim.url, flush=True)
        while not done.wait(3600):
            pass
    return 0
