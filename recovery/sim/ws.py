"""The simulated account's user data stream: Binance's spot WebSocket API on 127.0.0.1, served by aiohttp.

What the installed ccxt.pro (4.5) uses for Binance spot user data is the
WebSocket API, not a listenKey stream: it connects to
``urls['api']['ws']['ws-api']['spot']`` (``wss://ws-api.binance.com:443/ws-api/v3``
on Binance), sends ``userDataStream.subscribe.signature`` and reads the events
that follow, wrapped as ``{"subscriptionId": n, "event": {...}}``
(web-socket-api.md "User Data Stream requests", "Event format"). This module
serves exactly that at ``ws://127.0.0.1:<port>/ws-api/v3``
(:attr:`UserDataStream.url`; ``Simulator.ws_url``):

- ``userDataStream.subscribe.signature``: ``apiKey``, ``timestamp``,
  ``recvWindow`` (default 5000, at most 60000) and ``signature``, the hex
  HMAC-SHA256 under the secret of every other parameter sorted by name and
  joined as ``k=v&...`` (web-socket-api.md "SIGNED request example (HMAC)"),
  checked like REST: -1102 for a missing parameter, -2015 (status 401) for
  another key, -1022 for a bad signature, -1021 outside the recvWindow. The
  answer is ``{"id", "status": 200, "result": {"subscriptionId": n}}``, ``n``
  counting from 0 per connection; one subscription per account and connection
  (another one: -2035);
- ``userDataStream.unsubscribe`` (all, or one ``subscriptionId``): answers
  ``{}``, then ``eventStreamTerminated`` for each subscription it ended;
  ``session.subscriptions``, ``ping``, ``time``; any other method is -1020;
- ping frames answered with pong; the server pings every
  ``stream_ping_interval_ms`` and closes a connection that leaves one
  unanswered ``stream_pong_timeout_ms``, and closes any connection older than
  ``stream_max_connection_ms`` (:mod:`recovery.sim.settings`: 20 s, 60 s, 24 h
  as Binance documents them).

Events come from the core's listener hook (:mod:`recovery.sim.events`), in
exchange order: ``executionReport`` (``NEW``; ``TRADE`` per fill;
``CANCELED``; ``EXPIRED``; ``REJECTED`` for the refused new half of a
cancelReplace), then one ``outboundAccountPosition`` per call that moved
balances, and ``balanceUpdate`` for deposits (``set_balance``); shapes in
:mod:`recovery.sim.wire`. Each event goes to every live subscription, in the
order the core made them, each connection's frames through one queue (so a
delayed event holds back the ones after it). Nothing is buffered for a client
that is not subscribed: as on Binance, an event nobody is subscribed to is
lost, and a reconnecting client must catch up over REST.

Threads: the server runs its own asyncio loop on its own thread (the REST side
stays on ``http.server``). The core calls the listener under ``core.lock`` in
whatever thread changed it; the listener turns the event into JSON there and
hands it over with ``loop.call_soon_threadsafe``, which keeps the order. Every
public method is thread-safe and may be called from any thread but the
server's own (the actions wait for the server loop to carry them out).

Faults: :attr:`UserDataStream.faults` (:mod:`recovery.sim.wsfaults`, with what
ccxt.pro does under each) and the actions :meth:`UserDataStream.drop`,
:meth:`~UserDataStream.terminate` and :meth:`~UserDataStream.server_shutdown`;
all of them also over ``/_sim/stream`` (:mod:`recovery.sim.control`).
What was sent is in :meth:`UserDataStream.frames` (the last 10,000 frames,
both ways) and what the core emitted in :meth:`UserDataStream.events`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import ipaddress
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import WSMsgType, web

from recovery.sim import wire
from recovery.sim.core import ExchangeCore, SimulatorError
from recovery.sim.events import UserEvent
from recovery.sim.wsfaults import StreamFault, StreamFaults

__all__ = ["LOG_SIZE", "WS_PATH", "StreamConnection", "StreamEvent", "StreamFrame", "UserDataStream"]

#: The path of Binance's WebSocket API (v3).
WS_PATH = "/ws-api/v3"
#: How many frames and events the stream keeps for :meth:`UserDataStream.frames` / :meth:`~UserDataStream.events`.
LOG_SIZE = 10_000
_MAX_RECV_WINDOW = 60_000
_TICK_S = 0.1  # how often a connection's age and pings are looked at (settings may change meanwhile)
_ACTION_TIMEOUT_S = 10.0
T = TypeVar("T")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class StreamFrame:
    """One text frame on one connection: ``"in"`` from the client, ``"out"`` to it (``seq``: the core event's)."""

    connection: int
    direction: Literal["in", "out"]
    time_ms: int  # wall clock when it was read or written
    payload: Any  # the decoded JSON (the raw text if it was not JSON)
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "direction": self.direction,
            "time_ms": self.time_ms,
            "seq": self.seq,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class StreamEvent:
    """One event the core emitted, as the stream received it (``subscribed``: connections it went to)."""

    seq: int
    time_ms: int  # wall clock when the stream received it
    event: dict[str, Any]
    subscribed: int

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time_ms": self.time_ms, "event": self.event, "subscribed": self.subscribed}


@dataclass(frozen=True)
class StreamConnection:
    """A snapshot of one connection (numbered from 1 since the stream started)."""

    number: int
    open: bool
    subscriptions: tuple[int, ...]
    opened_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "open": self.open,
            "subscriptions": list(self.subscriptions),
            "opened_ms": self.opened_ms,
        }


@dataclass
class _Out:
    """One item of a connection's send queue: a frame, or the order to drop the connection there."""

    payload: dict[str, Any] | None
    seq: int | None = None
    not_before: float = 0.0  # loop time
    drop_mode: str | None = None


@dataclass
class _Session:
    """One accepted connection (owned by the server loop; ``subscriptions`` also read under the stream's lock)."""

    number: int
    ws: web.WebSocketResponse
    request: web.Request
    opened: float  # loop time
    opened_ms: int
    subscriptions: list[int] = field(default_factory=list)  # active subscription ids, oldest first
    next_subscription_id: int = 0
    queue: asyncio.Queue[_Out] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # writer, keepalive, late subscribe answers
    ping_sent: float | None = None  # loop time of the oldest unanswered server ping
    next_ping: float | None = None  # loop time of the next server ping
    gone: bool = False  # dropped or closed: sends nothing more

    @property
    def live(self) -> bool:
        return not self.gone and not self.ws.closed


class UserDataStream:
    """Binance spot's user data stream (WebSocket API subset) for one simulated account, on 127.0.0.1.

    ``start()``/``stop()`` take milliseconds; ``stop()`` is idempotent and cuts
    every connection; ``start()`` after ``stop()`` serves on the same port.
    Thread-safe; the actions must not be called from the server's own thread.
    """

    def __init__(
        self, core: ExchangeCore, *, api_key: str, secret: str, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if host != "127.0.0.1":
            raise ValueError(f"the exchange simulator binds to 127.0.0.1 only, not {host!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        self.core = core
        self.faults = StreamFaults()  # armed stream faults (wsfaults.py)
        self.host = host
        self._port = port  # 0 until the first start picks one; kept across restarts
        self._api_key = api_key
        self._secret = secret.encode()
        self._lock = threading.Lock()  # guards the logs, counters and session lists read from other threads
        self._frames: deque[StreamFrame] = deque(maxlen=LOG_SIZE)
        self._events: deque[StreamEvent] = deque(maxlen=LOG_SIZE)
        self._sessions: list[_Session] = []  # every connection since start, oldest first
        self._subscribe_requests = 0  # userDataStream.subscribe.signature requests received
        # reorder: the event held back (seq, event, its faults, the reorder fault), until the next one like it
        self._held: tuple[int, dict[str, Any], dict[str, StreamFault], StreamFault] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -------------------------------------------------------------- lifecycle
    def start(self) -> UserDataStream:
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"simulator-ws:{self._port}", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result(_ACTION_TIMEOUT_S)
        except BaseException:
            self._halt()
            raise
        self.core.add_listener(self._on_core_event)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self.core.remove_listener(self._on_core_event)
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(_ACTION_TIMEOUT_S)
        finally:
            self._halt()

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join()
        if loop is not None:
            loop.close()

    @property
    def running(self) -> bool:
        return self._loop is not None

    @property
    def port(self) -> int:
        if self._loop is None:
            raise SimulatorError("the user data stream is not running; start the simulator first")
        return self._port

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/ws-api/v3``: what ccxt.pro's ``urls['api']['ws']['ws-api']['spot']`` should be."""
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_get(WS_PATH, self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port, reuse_address=True)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def _close(self) -> None:
        for session in self._live():
            self._cut(session, "abort")
        self._held = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        stray = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]  # closes still in flight
        for task in stray:
            task.cancel()
        await asyncio.gather(*stray, return_exceptions=True)

    # ---------------------------------------------------------- observation
    def connections(self) -> list[StreamConnection]:
        """Every connection since the stream started, oldest first."""
        with self._lock:
            return [StreamConnection(s.number, s.live, tuple(s.subscriptions), s.opened_ms) for s in self._sessions]

    def frames(self, connection: int | None = None, direction: str | None = None) -> list[StreamFrame]:
        """The last frames read and written, oldest first, optionally of one connection / direction."""
        with self._lock:
            return [
                f
                for f in self._frames
                if (connection is None or f.connection == connection)
                and (direction is None or f.direction == direction)
            ]

    def events(self) -> list[StreamEvent]:
        """The last events the core emitted while the stream ran, oldest first, sent or not."""
        with self._lock:
            return list(self._events)

    def sent_seqs(self, connection: int | None = None) -> list[int]:
        """The core event numbers written, in wire order (a duplicate twice; ``connection``: to that one only)."""
        return [f.seq for f in self.frames(connection, "out") if f.seq is not None]

    @property
    def subscribe_requests(self) -> int:
        """How many ``userDataStream.subscribe.signature`` requests arrived since the stream started."""
        with self._lock:
            return self._subscribe_requests

    def clear_log(self) -> None:
        """Forget the logged frames and events (connections and counters stay)."""
        with self._lock:
            self._frames.clear()
            self._events.clear()

    # -------------------------------------------------------------- actions
    def drop(self, mode: str = "close") -> int:
        """Cut every connection now: ``"close"`` (close frame 1001) or ``"abort"`` (TCP abort, no close frame).

        Frames still queued (delayed ones) are lost. Returns how many connections were cut.
        """
        if mode not in ("close", "abort"):
            raise ValueError(f"drop mode must be 'close' or 'abort', got {mode!r}")

        async def act() -> int:
            live = self._live()
            for session in live:
                self._cut(session, mode)
            return len(live)

        return self._act(act)

    def terminate(self) -> int:
        """End every subscription with ``eventStreamTerminated``; the connections stay open. Returns how many."""

        async def act() -> int:
            ended = 0
            for session in self._live():
                ended += self._end_subscriptions(session, list(session.subscriptions))
            return ended

        return self._act(act)

    def server_shutdown(self, close_after_ms: int | None = None) -> int:
        """Send ``serverShutdown`` on every connection (web-socket-api.md "Server Shutdown").

        With ``close_after_ms``, close them (frame 1001) that much later, as the
        shutdown happens; until then events still flow. Returns how many connections were told.
        """
        if close_after_ms is not None and (not isinstance(close_after_ms, int) or close_after_ms < 0):
            raise ValueError(f"close_after_ms must be an integer >= 0 or None, got {close_after_ms!r}")

        async def act() -> int:
            live = self._live()
            for session in live:
                self._enqueue(session, {"event": {"e": "serverShutdown", "E": self.core.now_ms()}})
                if close_after_ms is not None:
                    asyncio.get_running_loop().call_later(close_after_ms / 1000, self._cut, session, "close")
            return len(live)

        return self._act(act)

    def _act(self, action: Callable[[], Coroutine[Any, Any, T]]) -> T:
        loop, thread = self._loop, self._thread
        if loop is None:
            raise SimulatorError("the user data stream is not running; start the simulator first")
        if thread is threading.current_thread():
            raise SimulatorError("call the user data stream's actions from another thread than its own loop")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(action(), loop)
        return future.result(_ACTION_TIMEOUT_S)

    # --------------------------------------------------------------- events
    def _on_core_event(self, event: UserEvent) -> None:
        """The core's listener: under ``core.lock``, in the changing thread; hands the event to the loop, in order."""
        loop = self._loop
        if loop is None:
            return
        payload = wire.user_event_json(event)
        try:
            loop.call_soon_threadsafe(self._deliver, event.seq, payload)
        except RuntimeError:  # the loop closed meanwhile: the stream is stopping
            pass

    def _deliver(self, seq: int, event: dict[str, Any]) -> None:
        targets = [s for s in self._live() if s.subscriptions]
        with self._lock:
            self._events.append(StreamEvent(seq, _now_ms(), event, len(targets)))
        if not targets:
            return  # as on Binance: nothing is kept for a client that is not subscribed
        faults = self.faults.take_for_event(event, holding=self._held is not None)
        drop = faults.get("drop_before_event")
        if drop is not None:
            for session in targets:
                session.queue.put_nowait(_Out(None, drop_mode=str(drop.options["mode"])))
                self._unsubscribe_all(session)
            self._held = None
            return
        reorder = faults.get("reorder")
        if reorder is not None:
            self._held = (seq, event, faults, reorder)
            return
        self._send(targets, seq, event, faults)
        held = self._held
        if held is not None and held[3].matches(event):  # the next event like it: the pair is swapped
            self._held = None
            self._send([s for s in self._live() if s.subscriptions], held[0], held[1], held[2])

    def _send(self, targets: list[_Session], seq: int, event: dict[str, Any], faults: dict[str, StreamFault]) -> None:
        delay = faults.get("delay")
        not_before = asyncio.get_running_loop().time() + (delay.options["delay_ms"] / 1000 if delay else 0.0)
        copies = 2 if "duplicate" in faults else 1
        for session in targets:
            for sid in session.subscriptions:
                for _ in range(copies):
                    self._enqueue(session, {"subscriptionId": sid, "event": event}, seq, not_before)

    # ------------------------------------------------------------ sessions
    def _live(self) -> list[_Session]:
        with self._lock:
            return [s for s in self._sessions if s.live]

    def _enqueue(
        self, session: _Session, payload: dict[str, Any], seq: int | None = None, not_before: float = 0.0
    ) -> None:
        if session.live:
            session.queue.put_nowait(_Out(payload, seq, not_before))

    def _log(self, session: _Session, direction: Literal["in", "out"], payload: Any, seq: int | None = None) -> None:
        with self._lock:
            self._frames.append(StreamFrame(session.number, direction, _now_ms(), payload, seq))

    def _unsubscribe_all(self, session: _Session) -> None:
        with self._lock:
            session.subscriptions.clear()

    def _end_subscriptions(self, session: _Session, ids: list[int]) -> int:
        """``eventStreamTerminated`` for each of ``ids`` (user-data-stream.md "Event Stream Terminated")."""
        ended = 0
        for sid in ids:
            if sid in session.subscriptions:
                with self._lock:
                    session.subscriptions.remove(sid)
                payload = {"subscriptionId": sid, "event": {"e": "eventStreamTerminated", "E": self.core.now_ms()}}
                self._enqueue(session, payload)
                ended += 1
        return ended

    def _cut(self, session: _Session, mode: str, code: int = 1001, reason: bytes = b"going away") -> None:
        """Cut one connection now: subscriptions end, the send queue is abandoned."""
        if session.gone:
            return
        session.gone = True
        self._unsubscribe_all(session)
        for task in session.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if mode == "abort":
            transport = session.request.transport
            if transport is not None:
                transport.abort()
        else:
            # not awaited: the close handshake waits for the client, which may be slow to answer
            asyncio.get_running_loop().create_task(session.ws.close(code=code, message=reason))

    async def _write(self, session: _Session) -> None:
        """The connection's sender: frames in queue order, each not before its time."""
        loop = asyncio.get_running_loop()
        while True:
            item = await session.queue.get()
            if item.drop_mode is not None:
                self._cut(session, item.drop_mode)
                return
            wait = item.not_before - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if session.ws.closed:
                return
            self._log(session, "out", item.payload, item.seq)
            try:
                await session.ws.send_str(json.dumps(item.payload, separators=(",", ":")))
            except (ConnectionError, RuntimeError):  # the client went away meanwhile
                return

    async def _keepalive(self, session: _Session) -> None:
        """Server pings, the pong timeout and the maximum connection age (read from the settings as they change)."""
        loop = asyncio.get_running_loop()
        while session.live:
            settings, now = self.core.settings, loop.time()
            age = settings.stream_max_connection_ms
            if age is not None and now - session.opened >= age / 1000:
                self._cut(session, "close", 1000, b"connection reached its maximum age")
                return
            interval = settings.stream_ping_interval_ms
            if session.ping_sent is not None and now - session.ping_sent >= settings.stream_pong_timeout_ms / 1000:
                self._cut(session, "close", 1001, b"no pong")
                return
            if interval is None:
                session.next_ping = None
            else:
                if session.next_ping is None:
                    session.next_ping = now + interval / 1000
                if now >= session.next_ping:
                    try:
                        await session.ws.ping(b"")
                    except (ConnectionError, RuntimeError):
                        return
                    if session.ping_sent is None:
                        session.ping_sent = now
                    session.next_ping = now + interval / 1000
            await asyncio.sleep(_TICK_S)

    # -------------------------------------------------------------- handler
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.remote is None or not ipaddress.ip_address(request.remote).is_loopback:
            return web.Response(status=403, text="loopback only")
        refusal = self.faults.take("refuse_connections")
        if refusal is not None:
            if refusal.options["mode"] == "drop" and request.transport is not None:
                request.transport.abort()
            return web.Response(status=503, text="Service Unavailable.")
        ws = web.WebSocketResponse(autoping=False, timeout=2.0)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        with self._lock:
            session = _Session(len(self._sessions) + 1, ws, request, loop.time(), _now_ms())
            self._sessions.append(session)
        session.tasks += [loop.create_task(self._write(session)), loop.create_task(self._keepalive(session))]
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._request(session, msg.data)
                elif msg.type == WSMsgType.PING:
                    if self.faults.take("no_pong") is None:
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    session.ping_sent = None
        finally:
            session.gone = True
            self._unsubscribe_all(session)
            for task in session.tasks:
                task.cancel()
        return ws

    def _request(self, session: _Session, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            self._log(session, "in", text)
            self._answer(session, None, error=(400, -1000, "An unknown error occurred while processing the request."))
            return
        self._log(session, "in", request)
        if not isinstance(request, dict):
            self._answer(session, None, error=(400, -1000, "An unknown error occurred while processing the request."))
            return
        rid, method = request.get("id"), request.get("method")
        params = request.get("params") or {}
        if not isinstance(params, dict):
            self._answer(session, rid, error=(400, -1000, "An unknown error occurred while processing the request."))
            return
        if isinstance(method, str) and method.startswith("v3/"):  # "Request method names may be prefixed"
            method = method[3:]
        if method == "userDataStream.subscribe.signature":
            self._subscribe(session, rid, params)
        elif method == "userDataStream.unsubscribe":
            wanted = params.get("subscriptionId")
            ids = list(session.subscriptions) if wanted is None else [i for i in session.subscriptions if i == wanted]
            self._answer(session, rid, {})
            self._end_subscriptions(session, ids)
        elif method == "session.subscriptions":
            self._answer(session, rid, [{"subscriptionId": i} for i in session.subscriptions])
        elif method == "ping":
            self._answer(session, rid, {})
        elif method == "time":
            self._answer(session, rid, {"serverTime": self.core.now_ms()})
        else:
            self._answer(session, rid, error=(400, -1020, "This operation is not supported."))

    def _answer(
        self, session: _Session, rid: Any, result: Any = None, *, error: tuple[int, int, str] | None = None
    ) -> None:
        if error is None:
            self._enqueue(session, {"id": rid, "status": 200, "result": result})
        else:
            status, code, msg = error
            self._enqueue(session, {"id": rid, "status": status, "error": {"code": code, "msg": msg}})

    def _subscribe(self, session: _Session, rid: Any, params: dict[str, Any]) -> None:
        """Check at once (the recvWindow counts from arrival), answer now or as ``subscribe_delay`` says."""
        with self._lock:
            self._subscribe_requests += 1
        delay = self.faults.take("subscribe_delay")
        reject = self.faults.take("subscribe_reject")
        error = (
            (int(reject.options["status"]), int(reject.options["code"]), str(reject.options["msg"]))
            if reject is not None
            else self._check_signature(params)
        )

        def finish() -> None:
            if not session.live:
                return
            if error is not None:
                self._answer(session, rid, error=error)
            elif session.subscriptions:  # "only one active subscription for a given account on a given connection"
                self._answer(session, rid, error=(400, -2035, "User Data Stream subscription already active."))
            else:
                sid = session.next_subscription_id
                session.next_subscription_id += 1
                self._answer(session, rid, {"subscriptionId": sid})
                with self._lock:
                    session.subscriptions.append(sid)  # after the answer: events follow it in the queue

        if delay is None:
            finish()
            return
        if delay.options["delay_ms"] is None:
            return  # never answered, never active

        async def late() -> None:
            await asyncio.sleep(delay.options["delay_ms"] / 1000)
            finish()

        session.tasks.append(asyncio.get_running_loop().create_task(late()))

    def _check_signature(self, params: dict[str, Any]) -> tuple[int, int, str] | None:
        """web-socket-api.md "SIGNED request security" and "Timing security"; (status, code, msg) or ``None``."""
        for name in ("apiKey", "timestamp", "signature"):
            if params.get(name) in (None, ""):
                return 400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        if not hmac.compare_digest(str(params["apiKey"]).encode(), self._api_key.encode()):
            return 401, -2015, "Invalid API-key, IP, or permissions for action."
        try:
            timestamp = int(params["timestamp"])
            recv_window = float(params.get("recvWindow", 5000))
        except (TypeError, ValueError):
            return 400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
        if timestamp > 10**14:  # microseconds are allowed too
            timestamp //= 1000
        if recv_window > _MAX_RECV_WINDOW:
            return 400, -1102, f"'recvWindow' contains unexpected value. Cannot be greater than {_MAX_RECV_WINDOW}."
        payload = "&".join(f"{k}={_text(params[k])}" for k in sorted(params) if k != "signature")
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(params["signature"]).lower()):
            return 400, -1022, "Signature for this request is not valid."
        now = self.core.now_ms()
        if timestamp >= now + 1000:
            return 400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
        if now - timestamp > recv_window:
            return 400, -1021, "Timestamp for this request is outside of the recvWindow."
        return None


def _text(value: Any) -> str:
    """A parameter as it appears in the signed payload: strings as they are, other JSON values as JSON."""
    return value if isinstance(value, str) else json.dumps(value)
