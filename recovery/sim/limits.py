"""Binance's rate limits, as the simulator enforces them: request weight, IP bans, unfilled order counts.

Limits come from the settings (:mod:`recovery.sim.settings`) at each request,
so turning a knob takes effect at once. Times are the core's clock, in ms.

- **Request weight** (rest-api.md "IP Limits"): each request's weight
  (:func:`request_weight`) counts per calendar minute; every answer carries
  ``X-MBX-USED-WEIGHT-1M``. Over ``weight_limit_1m`` the answer is 429 -1003
  with ``Retry-After`` (seconds to the end of the minute).
- **IP bans** ("Repeatedly violating rate limits and/or failing to back off
  after receiving 429s will result in an automated IP ban (HTTP status
  418)"; "IP bans are tracked and scale in duration for repeat offenders, from
  2 minutes to 3 days"): past ``ban_after_429s`` weight 429s in one minute, the
  next request is answered 418 -1003 "Way too much request weight used; IP
  banned until <ms>." and so is every request until the ban ends
  (``Retry-After``: the seconds left). The first ban lasts ``ban_ms``, each
  further one twice the last, at most 3 days. Binance does not publish its
  threshold. Fault-injected 429s (:mod:`recovery.sim.faults`) are one-off
  answers and do not count towards a ban.
- **Unfilled order count** (rest-api.md "Unfilled Order Count";
  faqs/order_count_decrement.md): every accepted new order (a cancelReplace
  too, even when its new order is not attempted) adds one to the count of the
  current 10-second window and of the current UTC day; an order's first fill
  takes one off each (never below zero); cancels and expiries change nothing.
  A new order while a count is at its limit (``order_limit_10s``,
  ``order_limit_1d``) is refused with 429 -1015 "Too many new orders; current
  limit is %s orders per %s." and ``Retry-After`` (to the end of that
  window). Successful order answers carry ``X-MBX-ORDER-COUNT-10S`` and
  ``X-MBX-ORDER-COUNT-1D``. Not modelled: the larger decrements Binance may
  give maker orders and the "short delay" before a fill lowers the count.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from recovery.sim.errors import ExchangeRejected
from recovery.sim.settings import Settings

__all__ = ["MAX_BAN_MS", "Admission", "UnfilledOrderCount", "WeightLimiter", "request_weight"]

#: The longest ban Binance hands out ("from 2 minutes to 3 days").
MAX_BAN_MS = 3 * 86_400_000
_MINUTE_MS = 60_000
#: The unfilled-order windows: header suffix, length in ms, setting, Binance's wording.
_ORDER_WINDOWS = (
    ("10S", 10_000, "order_limit_10s", "SECOND", 10),
    ("1D", 86_400_000, "order_limit_1d", "DAY", 1),
)


def request_weight(method: str, path: str, params: Mapping[str, str]) -> int:
    """Binance's REQUEST_WEIGHT of one simulated call (rest-api.md, each endpoint's "Weight")."""
    if path == "/api/v3/openOrders":
        if method == "DELETE":  # cancel all: weight 1
            return 1
        return 6 if params.get("symbol") else 80
    if path == "/api/v3/myTrades":
        return 5 if params.get("orderId") else 20
    if path == "/api/v3/order":
        return 4 if method == "GET" else 1
    weights = {
        "/api/v3/exchangeInfo": 20,
        "/api/v3/allOrders": 20,
        "/api/v3/account": 20,
        "/api/v3/rateLimit/order": 40,
    }
    return weights.get(path, 1)


@dataclass(frozen=True)
class Admission:
    """What the IP limits say about one request: ``status`` 200 (go on), 429 or 418, and the headers."""

    status: int
    used: int
    retry_after_s: int = 0
    banned_until_ms: int = 0


class WeightLimiter:
    """REQUEST_WEIGHT per calendar minute and the IP bans it leads to; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minute = -1  # the minute counted, now_ms // 60_000
        self._used = 0  # weight used in that minute
        self._refused = 0  # weight 429s answered in that minute
        self._banned_until = 0  # ms; 0: not banned
        self._bans = 0  # bans so far: each one lasts twice the last

    def admit(self, weight: int, now_ms: int, settings: Settings) -> Admission:
        """Count one request of ``weight``; say whether it may go on."""
        with self._lock:
            if now_ms < self._banned_until:
                return Admission(418, self._used, _seconds(self._banned_until - now_ms), self._banned_until)
            minute = now_ms // _MINUTE_MS
            if minute != self._minute:
                self._minute, self._used, self._refused = minute, 0, 0
            self._used += weight
            limit = settings.weight_limit_1m
            if limit is None or self._used <= limit:
                return Admission(200, self._used)
            self._refused += 1
            if settings.ban_after_429s is not None and self._refused > settings.ban_after_429s:
                self._banned_until = now_ms + min(settings.ban_ms * 2**self._bans, MAX_BAN_MS)
                self._bans += 1
                return Admission(418, self._used, _seconds(self._banned_until - now_ms), self._banned_until)
            return Admission(429, self._used, _seconds((minute + 1) * _MINUTE_MS - now_ms))

    def reset(self) -> None:
        """Forget the weight used, the refusals and any ban (a fresh IP)."""
        with self._lock:
            self._minute, self._used, self._refused, self._banned_until, self._bans = -1, 0, 0, 0, 0


class UnfilledOrderCount:
    """The account's unfilled order count per window; the core's lock guards it (no lock of its own)."""

    def __init__(self) -> None:
        self._windows = {name: (-1, 0) for name, *_ in _ORDER_WINDOWS}  # name -> (window index, count)

    def counts(self, now_ms: int) -> dict[str, int]:
        """``{"10S": n, "1D": m}`` for the windows ``now_ms`` falls in."""
        result = {}
        for name, span, *_ in _ORDER_WINDOWS:
            index, count = self._windows[name]
            result[name] = count if index == now_ms // span else 0
        return result

    def _change(self, now_ms: int, delta: int) -> None:
        for name, count in self.counts(now_ms).items():
            span = next(s for n, s, *_ in _ORDER_WINDOWS if n == name)
            self._windows[name] = (now_ms // span, max(0, count + delta))

    def refusal(self, now_ms: int, settings: Settings) -> ExchangeRejected | None:
        """The -1015 a new order gets now, or ``None`` if every count is under its limit."""
        counts = self.counts(now_ms)
        for name, span, knob, unit, number in _ORDER_WINDOWS:
            limit = getattr(settings, knob)
            if limit is not None and counts[name] >= limit:
                retry_after = _seconds((now_ms // span + 1) * span - now_ms)
                return ExchangeRejected(
                    -1015,
                    f"Too many new orders; current limit is {limit} orders per {number} {unit}.",
                    429,
                    headers={"Retry-After": str(retry_after)},
                )
        return None

    def add(self, now_ms: int) -> None:
        """An accepted new order."""
        self._change(now_ms, +1)

    def undo(self, now_ms: int) -> None:
        """Take back :meth:`add` for an order the matching engine refused."""
        self._change(now_ms, -1)

    def filled(self, now_ms: int) -> None:
        """An order's first fill: one off every window, never below zero."""
        self._change(now_ms, -1)

    def headers(self, now_ms: int) -> dict[str, str]:
        """``X-MBX-ORDER-COUNT-10S`` and ``-1D``, as a successful order answer carries them."""
        return {f"X-MBX-ORDER-COUNT-{name}": str(count) for name, count in self.counts(now_ms).items()}

    def report(self, now_ms: int, settings: Settings) -> list[dict[str, object]]:
        """``GET /api/v3/rateLimit/order``: each limited window with its limit and count."""
        counts = self.counts(now_ms)
        return [
            {"rateLimitType": "ORDERS", "interval": unit, "intervalNum": number, "limit": limit, "count": counts[name]}
            for name, _span, knob, unit, number in _ORDER_WINDOWS
            if (limit := getattr(settings, knob)) is not None
        ]


def _seconds(ms: int) -> int:
    """Whole seconds to wait, rounded up, at least 1."""
    return max(1, -(-ms // 1000))
