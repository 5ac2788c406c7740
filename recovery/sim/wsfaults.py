"""Faults of the simulated user data stream (:mod:`recovery.sim.ws`), and what ccxt.pro 4.5 does under each.

Armed like the REST faults (:mod:`recovery.sim.faults`): ``kind``, a count
(``times``, default 1; ``None`` keeps the fault until :meth:`StreamFaults.disarm`),
options; consumed in arming order. The event faults take optional filters,
``event`` (``executionReport``, ``outboundAccountPosition``, ``balanceUpdate``)
and ``execution_type`` (``NEW``, ``TRADE``, ``CANCELED``, ``EXPIRED``,
``REJECTED``), and are consumed only by an event that matches and that some
connection is subscribed to (an event nobody would be sent does not use one up).
Three faults are actions, not armed: :meth:`~recovery.sim.ws.UserDataStream.drop`,
:meth:`~recovery.sim.ws.UserDataStream.terminate` and
:meth:`~recovery.sim.ws.UserDataStream.server_shutdown`; the connection age is a
setting (``stream_max_connection_ms``, :mod:`recovery.sim.settings`).

=================== ============================================= ===============================================
kind                what the stream server does                   what a ccxt.pro ``binance`` consumer sees
=================== ============================================= ===============================================
drop_before_event   the next matching event is not sent: every    pending ``watch_*`` raise ``NetworkError``
                    connection is closed instead (``mode``        ("closing code 1001", or 1006 for ``abort``);
                    ``"close"``: close frame 1001; ``"abort"``:   the event never arrives, nor does any event
                    TCP abort), after the frames already queued   until a ``watch_*`` call re-dials and
                    (the stream's commit-then-drop; an abort may  re-subscribes: nothing is replayed
                    lose those too, as a reset does)
duplicate           each of the next ``times`` matching events    ``watch_my_trades`` returns the trade again
                    is sent twice (the same frame)                but ``myTrades`` keeps one copy (by id); the
                                                                  order's ``fee`` and ``trades`` count it twice
reorder             the next matching event is held and sent      last writer wins: the older report overwrites
                    right after the next event that matches the   the newer (an order goes from closed back to
                    same filters (a pair swapped; the events in   open, ``filled`` shrinks)
                    between pass)
delay               each of the next ``times`` matching events    nothing but lateness; later events queue
                    is sent ``delay_ms`` late; order is kept      behind it (order kept)
subscribe_delay     the next ``userDataStream.subscribe.          the ``watch_*`` call waits; ``delay_ms=None``:
                    signature`` is answered ``delay_ms`` late     forever, and the connection stays wedged
                    (``None``: never; the subscription is only    (ccxt claims the subscription before the
                    active once answered)                         answer: later ``watch_*`` send no subscribe)
subscribe_reject    the next subscribe is answered with an        ``KeyError('spot')`` (a ccxt 4.5.90 bug; its
                    error: ``code`` (-1022, -2015, -1021, ...),   ``__context__`` is the mapped error, e.g.
                    ``msg``/``status`` default from Binance's     ``AuthenticationError``), and the connection
                    table                                         is wedged: later ``watch_*`` hang
no_pong             the next ``times`` ping frames of the client  ``RequestTimeout`` ("ping-pong keepalive
                    go unanswered                                 missing on time") after ``keepAlive`` x 2
refuse_connections  the next ``times`` connection attempts are    the ``watch_*`` call raises ``NetworkError``
                    answered HTTP 503 (``mode="503"``) or cut     (503 "Invalid response status", or "Server
                    before the handshake (``mode="drop"``)        disconnected"); ccxt backs off its next dial
                                                                  (0.2 s, doubling, at most 30 s). aiohttp
                                                                  dials once more by itself after a cut: arm
                                                                  ``times=2`` for ccxt to see one
=================== ============================================= ===============================================

The actions: ``drop(mode)`` closes every connection at once (frames still queued
are lost): pending ``watch_*`` raise ``NetworkError``. ``terminate()`` sends
``eventStreamTerminated`` on every subscription and ends it, the socket stays
open: ccxt forgets its subscription and wakes no one (pending ``watch_*`` hang
until some ``watch_*`` call subscribes again). ``server_shutdown()`` sends
``serverShutdown`` (web-socket-api.md "Server Shutdown"), and closes the
connections after ``close_after_ms`` if given: ccxt ignores the event and raises
``NetworkError`` at the close. A connection older than
``stream_max_connection_ms`` is closed (close frame 1000): ``NetworkError``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recovery.sim.events import EXECUTION_TYPES

__all__ = ["EVENT_FAULT_KINDS", "STREAM_FAULT_KINDS", "StreamFault", "StreamFaults"]

#: Faults consumed by events (the rest by subscribe requests, client pings, connection attempts).
EVENT_FAULT_KINDS = frozenset({"drop_before_event", "duplicate", "reorder", "delay"})
STREAM_FAULT_KINDS = EVENT_FAULT_KINDS | {"subscribe_delay", "subscribe_reject", "no_pong", "refuse_connections"}
_FILTERS = {"event", "execution_type"}
_OPTIONS: Mapping[str, frozenset[str]] = {
    "drop_before_event": frozenset({"mode"} | _FILTERS),
    "duplicate": frozenset(_FILTERS),
    "reorder": frozenset(_FILTERS),
    "delay": frozenset({"delay_ms"} | _FILTERS),
    "subscribe_delay": frozenset({"delay_ms"}),
    "subscribe_reject": frozenset({"code", "msg", "status"}),
    "no_pong": frozenset(),
    "refuse_connections": frozenset({"mode"}),
}
_EVENTS = frozenset({"executionReport", "outboundAccountPosition", "balanceUpdate"})

#: Binance's message and status for the errors a subscribe may be refused with (errors.md).
SUBSCRIBE_ERRORS: Mapping[int, tuple[str, int]] = {
    -1021: ("Timestamp for this request is outside of the recvWindow.", 400),
    -1022: ("Signature for this request is not valid.", 400),
    -1102: ("Mandatory parameter 'signature' was not sent, was empty/null, or malformed.", 400),
    -2014: ("API-key format invalid.", 401),
    -2015: ("Invalid API-key, IP, or permissions for action.", 401),
    -2035: ("User Data Stream subscription already active.", 400),
    -1008: ("Server is currently overloaded with other requests. Please try again in a few minutes.", 503),
}


@dataclass
class StreamFault:
    """One armed stream fault; ``remaining`` is ``None`` for "until disarmed"."""

    kind: str
    remaining: int | None
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether an event (the wire ``event`` object) passes this fault's filters."""
        wanted = self.options.get("event")
        execution = self.options.get("execution_type")
        if wanted is not None and event.get("e") != wanted:
            return False
        return execution is None or (event.get("e") == "executionReport" and event.get("x") == execution)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "times": self.remaining, "options": dict(self.options)}


class StreamFaults:
    """Armed faults of one user data stream; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[StreamFault] = []

    def arm(self, kind: str, *, times: int | None = 1, **options: Any) -> StreamFault:
        """Arm ``kind`` for the next ``times`` events / requests / pings / connections (``None``: until disarmed).

        Example: ``sim.stream.faults.arm("drop_before_event", execution_type="TRADE")``.
        """
        if kind not in STREAM_FAULT_KINDS:
            raise ValueError(f"unknown stream fault kind {kind!r}; choose one of {sorted(STREAM_FAULT_KINDS)}")
        allowed = _OPTIONS[kind]
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"stream fault {kind!r} takes no option(s) {sorted(unknown)}; it takes {sorted(allowed)}")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
            raise ValueError(f"times must be an integer >= 1 or None (until disarmed), got {times!r}")
        options = dict(options)
        if options.get("event") is not None and options["event"] not in _EVENTS:
            raise ValueError(f"event must be one of {sorted(_EVENTS)}, got {options['event']!r}")
        if options.get("execution_type") is not None and options["execution_type"] not in EXECUTION_TYPES:
            raise ValueError(
                f"execution_type must be one of {sorted(EXECUTION_TYPES)}, got {options['execution_type']!r}"
            )
        if kind == "drop_before_event" and options.setdefault("mode", "close") not in ("close", "abort"):
            raise ValueError(f"drop mode must be 'close' or 'abort', got {options['mode']!r}")
        if kind == "refuse_connections" and options.setdefault("mode", "503") not in ("503", "drop"):
            raise ValueError(f"refuse_connections mode must be '503' or 'drop', got {options['mode']!r}")
        if kind == "delay":
            _milliseconds(options, required=True)
        if kind == "subscribe_delay":
            options.setdefault("delay_ms", None)
            _milliseconds(options, required=False)
        if kind == "subscribe_reject":
            if "code" not in options or not isinstance(options["code"], int):
                raise ValueError(
                    "a 'subscribe_reject' fault needs code=<Binance error code>, e.g. -1022 "
                    f"(standard ones: {sorted(SUBSCRIBE_ERRORS)}; pass msg= and status= for others)"
                )
            msg, status = SUBSCRIBE_ERRORS.get(options["code"], (None, 400))
            options.setdefault("msg", msg)
            options.setdefault("status", status)
            if options["msg"] is None:
                raise ValueError(f"code {options['code']} has no standard message here; pass msg=")
        fault = StreamFault(kind, times, options)
        with self._lock:
            self._armed.append(fault)
        return StreamFault(kind, times, dict(options))

    def disarm(self, kind: str | None = None) -> int:
        """Remove the armed faults of ``kind`` (all of them by default); returns how many."""
        with self._lock:
            keep = [f for f in self._armed if kind is not None and f.kind != kind]
            removed = len(self._armed) - len(keep)
            self._armed = keep
            return removed

    def armed(self) -> list[StreamFault]:
        with self._lock:
            return [StreamFault(f.kind, f.remaining, dict(f.options)) for f in self._armed]

    def take(self, kind: str) -> StreamFault | None:
        """Consume the oldest armed fault of ``kind`` (for subscribe requests, pings, connection attempts)."""
        with self._lock:
            return self._consume(next((f for f in self._armed if f.kind == kind), None))

    def take_for_event(self, event: Mapping[str, Any], *, holding: bool) -> dict[str, StreamFault]:
        """The faults one event meets: a ``drop_before_event`` alone, else the oldest match of each other kind.

        ``holding``: an event is already held back by ``reorder``, so no second one is taken.
        """
        with self._lock:
            matching = [f for f in self._armed if f.kind in EVENT_FAULT_KINDS and f.matches(event)]
            taken: dict[str, StreamFault] = {}
            drop = self._consume(next((f for f in matching if f.kind == "drop_before_event"), None))
            if drop is not None:
                taken["drop_before_event"] = drop
                return taken
            for kind in ("delay", "duplicate", "reorder"):
                if kind == "reorder" and holding:
                    continue
                fault = self._consume(next((f for f in matching if f.kind == kind), None))
                if fault is not None:
                    taken[kind] = fault
            return taken

    def _consume(self, fault: StreamFault | None) -> StreamFault | None:
        if fault is None:
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining == 0:
                self._armed.remove(fault)
        return StreamFault(fault.kind, fault.remaining, dict(fault.options))


def _milliseconds(options: dict[str, Any], *, required: bool) -> None:
    value = options.get("delay_ms")
    if value is None and not required:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        none = " or None (never)" if not required else ""
        raise ValueError(f"delay_ms must be an integer >= 0{none}, got {value!r}")
