"""What recovery must know about the venue: how long a request may still execute after it was sent.

The *settle window* is how long after a request was sent (or failed) an order
it carries may still appear on the exchange: before it has passed, "not
there" is not proof that it never will be. Binance executes a signed request
up to ``recvWindow`` ms after its timestamp (ccxt sends
``options["recvWindow"]``, 10,000 ms by default, or a per-call
``params["recvWindow"]``, at most 60,000) and refuses timestamps more than
1,000 ms ahead of its clock, so the window is the larger recvWindow plus that
second. :func:`settle_window_ms` is the one place it is computed: the order
helpers and reconciliation both call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CLOCK_SKEW_MS", "DEFAULT_RECV_WINDOW_MS", "MAX_RECV_WINDOW_MS", "settle_window_ms"]

#: Binance refuses a request timestamped more than this ahead of its clock (-1021).
CLOCK_SKEW_MS = 1000
#: What ccxt's binance sends when nothing says otherwise.
DEFAULT_RECV_WINDOW_MS = 10_000
#: Binance refuses a larger recvWindow (-1131).
MAX_RECV_WINDOW_MS = 60_000


def settle_window_ms(exchange: Any, params: Mapping[str, Any] | None = None) -> int:
    """The settle window of a request sent by ``exchange`` with ``params`` (see the module docstring)."""
    options = getattr(exchange, "options", None) or {}
    windows = [options.get("recvWindow"), (params or {}).get("recvWindow")]
    recv = max((int(w) for w in windows if w is not None), default=DEFAULT_RECV_WINDOW_MS)
    return min(recv, MAX_RECV_WINDOW_MS) + CLOCK_SKEW_MS
