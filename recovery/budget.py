"""A request budget for reconciliation: a cap, a minimum spacing, backoff on rate limits.

It sits on top of ccxt's own rate limiter (``enableRateLimit``): ccxt spaces
requests by their weight; the budget caps how many recovery may spend at all
(a restart must never hammer the venue) and backs off when the venue says "too
many" (``DDoSProtection`` for HTTP 429/418, ``RateLimitExceeded``). Any other
error is returned to the caller as is, never retried blindly: a network error
is not "not found".

**As long as the venue says.** Binance answers 429 with a ``Retry-After``
header (seconds; rest-api.md "LIMITS": the weight counts per minute) and bans
an IP that goes on (418 "IP banned until <ms>", from 2 minutes to 3 days,
growing for repeat offenders). So a rate-limit refusal is waited out only
when the venue's wait (the ``retry_after`` hook: the header, or the ban's end
in the message) is short (``max_wait_s``); a longer one -- or retries spent --
*blocks* the budget until then: every later request of this reconciliation
raises :class:`RateLimitedUntil` without being sent, the reconciliation ends
incomplete with "rate limited until ...", and :attr:`Budget.blocked_until`
tells the caller (the manager's automatic retry) when to come back.

:meth:`Budget.call` is a flow (:mod:`recovery.flows`): ``result = yield from
budget.call(Call(...))`` yields the waits and the request, so the same budget
serves sync and async clients.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import ccxt

from .errors import BudgetExhausted, RateLimitedUntil
from .flows import Call, Flow, Sleep

__all__ = ["Budget", "BudgetExhausted", "RateLimitedUntil", "retry_after_of"]

_RATE_LIMITED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)
_BANNED_UNTIL = re.compile(r"banned until (\d{12,14})")


def retry_after_of(
    exchange: Any, exchange_offset_ms: Callable[[], int] = lambda: 0
) -> Callable[[BaseException], float | None]:
    """How long ``exchange``'s venue said to wait after the rate-limit refusal ``exc``, in seconds (None: unsaid).

    ccxt keeps the last answer's headers (``last_response_headers``, on by default) but puts neither the
    status's headers nor ``Retry-After`` into its exception: read the header there; a 418's message names
    the end of the ban in the exchange's milliseconds ("IP banned until 1700000000000"), turned into local
    time with ``exchange_offset_ms()`` (the exchange's clock minus ours). The longer of the two wins.
    """

    def retry_after(exc: BaseException) -> float | None:
        waits: list[float] = []
        headers = getattr(exchange, "last_response_headers", None)
        if isinstance(headers, Mapping):
            value = headers.get("Retry-After", headers.get("retry-after"))
            try:
                waits.append(float(value)) if value is not None else None
            except (TypeError, ValueError):
                pass
        banned = _BANNED_UNTIL.search(str(exc))
        if banned:
            waits.append((int(banned.group(1)) - exchange_offset_ms()) / 1000 - time.time())
        return max(waits) if waits else None

    return retry_after


class Budget:
    """Counts requests; spaces them by ``min_interval_s``; retries rate-limit errors.

    ``retries`` rate-limit retries per call, with exponential backoff from
    ``backoff_s`` up to ``max_backoff_s``. ``max_requests`` counts every
    attempt, retries included.
    """

    def __init__(
        self,
        max_requests: int = 200,
        *,
        min_interval_s: float = 0.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_wait_s: float = 10.0,
        retry_after: Callable[[BaseException], float | None] | None = None,
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        self.max_requests = max_requests
        self.min_interval_s = min_interval_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_wait_s = max_wait_s
        self._retry_after = retry_after
        self.requests = 0
        self.rate_limited = 0
        #: Wall-clock time (s) before which nothing may be sent: the venue said so (None: not blocked).
        self.blocked_until: float | None = None
        self._blocked_by = ""
        self._last = 0.0

    def _next_wait(self) -> float:
        if self.blocked_until is not None and time.time() < self.blocked_until:
            raise RateLimitedUntil(self.blocked_until, self._blocked_by)
        if self.requests >= self.max_requests:
            raise BudgetExhausted(
                f"reconciliation used its budget of {self.max_requests} requests; the rest stays unresolved "
                "(raise max_requests, or call reconcile() again later)"
            )
        return max(0.0, self._last + self.min_interval_s - time.monotonic())

    def _backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * (2**attempt))

    def call(self, request: Call) -> Flow[object]:
        """Send ``request`` within the budget: waits, retries rate limits, raises anything else."""
        attempt = 0
        while True:
            wait = self._next_wait()
            if wait:
                yield Sleep(wait)
            self.requests += 1
            self._last = time.monotonic()
            try:
                return (yield request)
            except _RATE_LIMITED as exc:
                self.rate_limited += 1
                said = self._retry_after(exc) if self._retry_after is not None else None
                wait = max(self._backoff(attempt), said or 0.0)
                if attempt >= self.retries or (said is not None and said > self.max_wait_s):
                    # stop hammering: nothing more is sent before the venue's wait is over
                    self.blocked_until = max(self.blocked_until or 0.0, time.time() + wait)
                    told = f"Retry-After {said:.0f} s" if said is not None else "no Retry-After"
                    self._blocked_by = f"{request.method} refused: {type(exc).__name__}, {told}"
                    raise RateLimitedUntil(self.blocked_until, self._blocked_by) from exc
                yield Sleep(wait)
                attempt += 1
