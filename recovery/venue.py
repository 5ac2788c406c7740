"""What recovery must know about the venue: how long a request may still execute, how long orders stay findable.

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
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BINANCE_SPOT",
    "BYBIT",
    "CLOCK_SKEW_MS",
    "DEFAULT_RECV_WINDOW_MS",
    "GATE",
    "MAX_RECV_WINDOW_MS",
    "OKX",
    "PROFILES",
    "VenueProfile",
    "profile_for",
    "settle_window_ms",
]

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


# -- venue profiles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VenueProfile:
    """What recovery must know about one venue: data, not forks of the code.

    Another venue is a new profile (and a new simulator dialect), never a branch in recovery.
    """

    #: ccxt's id of the venue (``exchange.id``).
    name: str
    #: Client ids the venue accepts (the journal's are ``tj`` + alphanumerics, at most 28).
    client_id_pattern: str = r"^[A-Za-z0-9]{1,32}$"
    #: How long after it was placed an order that ended canceled or expired with nothing filled can
    #: still be found by client id (ms); None: always. Past it, "not found" proves nothing.
    unfilled_lookup_horizon_ms: int | None = None
    #: The venue keeps only this many most recent closed orders queryable (None: no such limit).
    closed_orders_kept: int | None = None
    #: Error codes meaning "that order existed, ended with nothing filled, and was archived".
    archived_codes: tuple[str, ...] = ()
    #: How a venue's order history shows such orders: False when it omits them (Binance's allOrders).
    history_lists_archived: bool = True

    def archived(self, exc: BaseException) -> bool:
        """Whether ``exc`` (from a lookup by client id) says the order was archived with nothing filled."""
        return any(code in str(exc) for code in self.archived_codes)

    def forgets(self, age_ms: int) -> bool:
        """Whether an order placed ``age_ms`` ago may be gone from the venue without a trace (no archive
        answer), so that "not found" no longer proves it was never placed."""
        if self.closed_orders_kept is not None:
            return True
        if self.unfilled_lookup_horizon_ms is None or self.archived_codes:
            return False  # kept, or the venue says "archived" explicitly (Binance -2026)
        return age_ms > self.unfilled_lookup_horizon_ms

    def history_may_omit(self, age_ms: int) -> bool:
        """Whether the order history may omit an order placed ``age_ms`` ago (look it up one by one)."""
        return (
            self.unfilled_lookup_horizon_ms is not None
            and age_ms > self.unfilled_lookup_horizon_ms
            and (not self.history_lists_archived or not self.archived_codes)
        )

    def horizon_text(self) -> str:
        parts = []
        if self.unfilled_lookup_horizon_ms is not None:
            parts.append(f"{self.name} forgets canceled or expired orders with no fill after "
                         f"{_duration(self.unfilled_lookup_horizon_ms)}")  # fmt: skip
        if self.closed_orders_kept is not None:
            parts.append(f"{self.name} keeps only the {self.closed_orders_kept} most recent closed orders")
        return "; ".join(parts) or f"{self.name} keeps every order queryable"


def _duration(ms: int) -> str:
    for unit, size in (("days", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms / size:g} {unit}"
    return f"{ms} ms"


#: Binance spot (rest-api.md, errors.md -2026 ORDER_ARCHIVED; CHANGELOG 2023-06: canceled or expired orders
#: with no executed quantity are archived after 90 days; allOrders no longer returns them).
BINANCE_SPOT = VenueProfile(
    name="binance",
    client_id_pattern=r"^[a-zA-Z0-9-_]{1,36}$",
    unfilled_lookup_horizon_ms=90 * 86_400_000,
    archived_codes=("-2026",),
    history_lists_archived=False,
)
#: OKX: canceled orders with no fill can be queried for 2 hours only.
OKX = VenueProfile(name="okx", unfilled_lookup_horizon_ms=2 * 3_600_000)
#: Bybit: only the 500 most recent closed orders are queryable.
BYBIT = VenueProfile(name="bybit", client_id_pattern=r"^[A-Za-z0-9_-]{1,36}$", closed_orders_kept=500)
#: Gate futures: canceled orders with no fill are queryable for 1 hour.
GATE = VenueProfile(name="gate", unfilled_lookup_horizon_ms=3_600_000)

PROFILES = {p.name: p for p in (BINANCE_SPOT, OKX, BYBIT, GATE)}


def profile_for(exchange: Any) -> VenueProfile:
    """The profile of ``exchange`` (by ccxt id); an unknown venue gets a cautious generic one."""
    name = str(getattr(exchange, "id", "") or "unknown")
    return PROFILES.get(name) or VenueProfile(name=name)
