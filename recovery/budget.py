"""A request budget for reconciliation: a cap, a minimum spacing, backoff on rate limits.

It sits on top of ccxt's own rate limiter (``enableRateLimit``): ccxt spaces
requests by their weight; the budget caps how many recovery may spend at all
(a restart must never hammer the venue) and backs off when the venue says "too
many" (``DDoSProtection`` for HTTP 429/418, ``RateLimitExceeded``). Any other
error is returned to the caller as is, never retried blindly: a network error
is not "not found".

:meth:`Budget.call` is a flow (:mod:`recovery.flows`): ``result = yield from
budget.call(Call(...))`` yields the waits and the request, so the same budget
serves sync and async clients.
"""

from __future__ import annotations

import time

import ccxt

from .errors import BudgetExhausted
from .flows import Call, Flow, Sleep

__all__ = ["Budget", "BudgetExhausted"]

_RATE_LIMITED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)


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
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        self.max_requests = max_requests
        self.min_interval_s = min_interval_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.requests = 0
        self.rate_limited = 0
        self._last = 0.0

    def _next_wait(self) -> float:
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
            except _RATE_LIMITED:
                self.rate_limited += 1
                if attempt >= self.retries:
                    raise
                yield Sleep(self._backoff(attempt))
                attempt += 1
