"""Fault injection and the request log of the exchange simulator.

Faults are armed per ``(method, path)`` (``"*"`` matches any) with a count, and
consumed in arming order by the requests that match; ``times=None`` keeps a
fault armed until :meth:`Faults.disarm`. Control paths (``/_sim/...``) are
never faulted. Kinds, and what real ccxt 4.5 (binance, sync and async) raises:

================== ================================================ ==============================
kind               what the simulator does                          ccxt raises
================== ================================================ ==============================
reject             refuse before the core sees it, with ``code``/   per code: -2010 InsufficientFunds
                   ``msg``/``status`` (msg and status default from  or InvalidOrder, -2011/-2013
                   Binance's table for the code)                    OrderNotFound, -1013 BadRequest
                                                                    (InvalidOrder for LOT_SIZE /
                                                                    PRICE_FILTER), -1022 / -2015
                                                                    AuthenticationError, -1021
                                                                    InvalidNonce
commit_then_delay  apply, then sleep ``delay_s`` (default the       RequestTimeout (client timeout
                   simulator's ``fault_delay_s``) before answering  shorter than the delay)
commit_then_drop   apply, then close the connection, no answer      NetworkError (sync),
                                                                    ExchangeNotAvailable (async)
http_429           429 ``{"code":-1003,"msg":"Too much request      DDoSProtection
                   weight used; ..."}`` + Retry-After, not applied
http_418           418 -1003 "Way too much request weight used; IP  DDoSProtection
                   banned until <ms>. ...", not applied
rate_limit_orders  -1015 "Too many new orders; ..." with ``status`` DDoSProtection (429);
                   (default 429, as Binance sends) + Retry-After,   RateLimitExceeded (status=400)
                   not applied
http_503_1007      503 ``{"code":-1007,"msg":"Timeout waiting for   RequestTimeout
                   response from backend server. ..."}``; applied
                   unless ``applied=False``
http_502_html      502 with an HTML body; not applied unless        ExchangeNotAvailable
                   ``applied=True``
down               drop every matching connection (``mode="drop"``) NetworkError (sync) /
                   or answer 503 "Service Unavailable."             ExchangeNotAvailable (async);
                   (``mode="503"``) until disarmed; not applied     ExchangeNotAvailable for 503
                   unless ``applied=True`` (the gateway fails, the
                   matching engine still acts)
================== ================================================ ==============================

Beware: aiohttp (so async ccxt) re-sends an idempotent request (GET, DELETE)
once when its connection closes unanswered. A ``commit_then_drop`` armed once
on ``DELETE /api/v3/order`` therefore cancels, then the re-sent cancel gets
-2011 and async ccxt raises OrderNotFound for a cancel that succeeded; on a GET
the retry simply succeeds. Sync ccxt never re-sends.

Faults are one-off answers: an ``http_429`` does not count towards an IP ban;
the real rate limits (weight, bans, unfilled order counts) are
:mod:`recovery.sim.limits`.

The request log records every ``/api/...`` request: method, path, decoded
parameters without ``signature``, status (``None`` when dropped), Binance error
code, the fault applied, the time and whether an API key header was present
(never the key or the secret).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FAULT_KINDS", "Fault", "Faults", "LoggedRequest", "RequestLog"]

FAULT_KINDS = frozenset(
    {
        "reject",
        "commit_then_delay",
        "commit_then_drop",
        "http_429",
        "http_418",
        "rate_limit_orders",
        "http_503_1007",
        "http_502_html",
        "down",
    }
)
_OPTIONS = {
    "reject": {"code", "msg", "status"},
    "commit_then_delay": {"delay_s"},
    "http_418": {"ban_ms"},
    "rate_limit_orders": {"status"},
    "http_503_1007": {"applied"},
    "http_502_html": {"applied"},
    "down": {"mode", "applied"},
}

#: Binance's standard message and HTTP status per error code, for ``reject``.
STANDARD_ERRORS: Mapping[int, tuple[str, int]] = {
    -1000: ("An unknown error occurred while processing the request.", 400),
    -1013: ("Filter failure: LOT_SIZE", 400),
    -1021: ("Timestamp for this request is outside of the recvWindow.", 400),
    -1022: ("Signature for this request is not valid.", 400),
    -1121: ("Invalid symbol.", 400),
    -2010: ("Account has insufficient balance for requested action.", 400),
    -2011: ("Unknown order sent.", 400),
    -2013: ("Order does not exist.", 400),
    -2014: ("API-key format invalid.", 401),
    -2015: ("Invalid API-key, IP, or permissions for action.", 401),
}


@dataclass
class Fault:
    """One armed fault; ``remaining`` is ``None`` for "until disarmed"."""

    method: str
    path: str
    kind: str
    remaining: int | None
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.path in ("*", path)


class Faults:
    """Armed faults of one simulator; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[Fault] = []

    def arm(self, method: str, path: str, kind: str, *, times: int | None = 1, **options: Any) -> Fault:
        """Arm ``kind`` for the next ``times`` requests to ``method path`` (``None``: until disarmed).

        Example: ``sim.faults.arm("POST", "/api/v3/order", "commit_then_drop")``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of {sorted(FAULT_KINDS)}")
        unknown = set(options) - _OPTIONS.get(kind, set())
        if unknown:
            raise ValueError(
                f"fault {kind!r} takes no option(s) {sorted(unknown)}; it takes {sorted(_OPTIONS.get(kind, ()))}"
            )
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None (until disarmed), got {times}")
        if kind == "reject":
            if "code" not in options:
                raise ValueError(
                    "a 'reject' fault needs code=<Binance error code> (and msg= unless the code is standard)"
                )
            msg, status = STANDARD_ERRORS.get(int(options["code"]), (None, 400))
            options.setdefault("msg", msg)
            options.setdefault("status", status)
            if options["msg"] is None:
                raise ValueError(f"code {options['code']} has no standard message here; pass msg=")
        if kind == "down" and options.setdefault("mode", "drop") not in ("drop", "503"):
            raise ValueError(f"down mode must be 'drop' or '503', got {options['mode']!r}")
        if "applied" in options and not isinstance(options["applied"], bool):
            raise ValueError(f"applied must be true or false, got {options['applied']!r}")
        fault = Fault(method.upper() if method != "*" else "*", path, kind, times, dict(options))
        with self._lock:
            self._armed.append(fault)
        return fault

    def down(self, mode: str = "drop", *, applied: bool = False) -> Fault:
        """The whole exchange refuses (``mode`` ``"drop"`` or ``"503"``) until :meth:`up`.

        ``applied=True``: every request is still carried out, only its answer is
        lost (Binance: a 5XX means "the execution status is UNKNOWN and could
        have been a success", rest-api.md "HTTP Return Codes").
        """
        return self.arm("*", "*", "down", times=None, mode=mode, applied=applied)

    def up(self) -> None:
        """Undo :meth:`down`."""
        self.disarm(kind="down")

    def disarm(self, method: str | None = None, path: str | None = None, kind: str | None = None) -> int:
        """Remove the armed faults matching all given filters (all of them by default); returns how many."""
        with self._lock:
            keep = [
                f
                for f in self._armed
                if not (
                    (method is None or f.method == method.upper() or f.method == method)
                    and (path is None or f.path == path)
                    and (kind is None or f.kind == kind)
                )
            ]
            removed = len(self._armed) - len(keep)
            self._armed = keep
            return removed

    def armed(self) -> list[Fault]:
        with self._lock:
            return [Fault(f.method, f.path, f.kind, f.remaining, dict(f.options)) for f in self._armed]

    def take(self, method: str, path: str) -> Fault | None:
        """Consume the fault for this request: ``down`` first, then the oldest match."""
        with self._lock:
            matching = [f for f in self._armed if f.matches(method, path)]
            if not matching:
                return None
            fault = next((f for f in matching if f.kind == "down"), matching[0])
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._armed.remove(fault)
            return Fault(fault.method, fault.path, fault.kind, fault.remaining, dict(fault.options))


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the simulator saw it (``params`` without ``signature``)."""

    method: str
    path: str
    params: dict[str, str]
    status: int | None
    code: int | None
    fault: str | None
    time_ms: int
    had_key: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Every ``/api/...`` request, oldest first; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def requests(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [
                e
                for e in self._entries
                if (method is None or e.method == method.upper()) and (path is None or e.path == path)
            ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
