"""The simulator's knobs: how strict, how laggy, how forgetful the simulated Binance is.

One frozen :class:`Settings` per exchange core (``core.settings``), replaced
whole by :meth:`Settings.replace` (so a reader never sees half a change).
Defaults follow Binance's own spot API documentation
(binance/binance-spot-api-docs: rest-api.md, errors.md, filters.md), so the
simulator refuses what Binance refuses; where Binance's default is
"consistent" (no lag) the knob is off. A test that needs more (a grid of 500
orders in a second) raises a limit for itself.

============================== ============ =========================================================
knob                           default      what it does
============================== ============ =========================================================
``lag_ms``                     ``0``        queries in ``lagging_queries`` see the account as it
                                            was ``lag_ms`` ago: an accepted order is invisible
                                            to them (GET order: -2013) and a fill or cancel
                                            shows late (rest-api.md "Data Sources": the API is
                                            asynchronous; allOrders reads the Database, which
                                            lags the Matching Engine). Cancels and new orders
                                            always act on the truth
``lagging_queries``            allOrders    which queries lag: any of ``order`` (GET order),
                                            ``openOrders``, ``allOrders``, ``myTrades`` (a JSON
                                            list over ``/_sim/settings``)
``archive_after_ms``           90 days      an order CANCELED or EXPIRED with nothing executed
                                            longer ago than this is archived: GET order
                                            answers -2026 ORDER_ARCHIVED (errors.md; ccxt:
                                            InvalidOrder), allOrders leaves it out; ``None``:
                                            never. Recovery's venue horizons test against it
``max_num_orders``             ``200``      open orders per symbol (filters.md MAX_NUM_ORDERS,
                                            shown in exchangeInfo); a new order beyond it is
                                            -1013 "Filter failure: MAX_NUM_ORDERS"
``order_id_offset_per_symbol`` ``10**6``    order ids count per symbol (faqs/spot_glossary.md
                                            ``orderId``: "uniquely identifies the order on a
                                            symbol"); the i-th market's first id is
                                            ``i * offset + 1``; ``0``: every symbol starts at 1
                                            and ids collide across symbols. Read at a symbol's
                                            first order
``weight_limit_1m``            ``6000``     REQUEST_WEIGHT per minute, beyond it 429 -1003 with
                                            Retry-After (rest-api.md "IP Limits"); ``None``:
                                            count only
``ban_after_429s``             ``3``        weight 429s an IP may collect in one minute; the
                                            next request is answered 418 and bans the IP
                                            ("failing to back off after receiving 429s will
                                            result in an automated IP ban"; Binance does not
                                            publish the number); ``None``: never ban
``ban_ms``                     2 minutes    the first ban; each further one lasts twice the
                                            last, at most 3 days ("from 2 minutes to 3 days")
``order_limit_10s``            ``100``      unfilled orders per 10 s (rest-api.md "Unfilled
                                            Order Count", faqs/order_count_decrement.md); a
                                            new order at the limit is 429 -1015 with
                                            Retry-After; ``None``: count only
``order_limit_1d``             ``200000``   unfilled orders per UTC day, likewise
``stream_max_connection_ms``   24 hours     the user data stream (:mod:`recovery.sim.ws`) closes a
                                            connection this old (web-socket-api.md "General API
                                            Information": "A single connection to the API is only
                                            valid for 24 hours"); ``None``: never
``stream_ping_interval_ms``    ``20000``    the stream server pings every connection this often
                                            ("The WebSocket server will send a ping frame every 20
                                            seconds"); ``None``: never
``stream_pong_timeout_ms``     ``60000``    a connection that leaves a ping unanswered this long
                                            is closed ("within a minute")
============================== ============ =========================================================

Set them at construction (``Simulator(settings={"lag_ms": 500})``), at run
time (``sim.configure(lag_ms=500)``), from another process
(``SimulatorClient(url).configure(lag_ms=500, lagging_queries=["order"])``,
i.e. ``POST /_sim/settings`` with that JSON body) or on the command line
(``python -m recovery.sim --set lag_ms=500 --set 'lagging_queries=["order"]'``).
An unknown name is a ``ValueError`` naming the known ones. Which requests are
carried out before a 5XX, a -1007 or a dropped connection is not a setting but
a fault armed per request (:mod:`recovery.sim.faults`: ``http_503_1007``,
``commit_then_drop``, ``http_502_html`` and ``down`` with ``applied=True``);
so are the user data stream's faults (:mod:`recovery.sim.wsfaults`). The
stream reads its three knobs while it runs: a connection's age and pings
follow a change within a tenth of a second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_SETTINGS", "LAGGABLE_QUERIES", "Settings"]

#: Queries that may lag (``lagging_queries``), named by their REST path under ``/api/v3/``.
LAGGABLE_QUERIES = frozenset({"order", "openOrders", "allOrders", "myTrades"})
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Settings:
    """The simulator's knobs (see the module docstring for each one)."""

    lag_ms: int = 0
    lagging_queries: frozenset[str] = field(default_factory=lambda: frozenset({"allOrders"}))
    archive_after_ms: int | None = 90 * _DAY_MS
    max_num_orders: int = 200
    order_id_offset_per_symbol: int = 1_000_000
    weight_limit_1m: int | None = 6000
    ban_after_429s: int | None = 3
    ban_ms: int = 120_000
    order_limit_10s: int | None = 100
    order_limit_1d: int | None = 200_000
    stream_max_connection_ms: int | None = _DAY_MS
    stream_ping_interval_ms: int | None = 20_000
    stream_pong_timeout_ms: int = 60_000

    def __post_init__(self) -> None:
        queries = self.lagging_queries
        if isinstance(queries, str) or not isinstance(queries, Iterable):
            raise ValueError(f"lagging_queries must be a collection of query names, not {queries!r}")
        names = frozenset(queries)
        unknown = sorted(names - LAGGABLE_QUERIES)
        if unknown:
            raise ValueError(f"lagging_queries: unknown {unknown}; choose from {sorted(LAGGABLE_QUERIES)}")
        object.__setattr__(self, "lagging_queries", names)
        for name, low, optional in (
            ("lag_ms", 0, False),
            ("archive_after_ms", 0, True),
            ("max_num_orders", 1, False),
            ("order_id_offset_per_symbol", 0, False),
            ("weight_limit_1m", 1, True),
            ("ban_after_429s", 0, True),
            ("ban_ms", 1, False),
            ("order_limit_10s", 1, True),
            ("order_limit_1d", 1, True),
            ("stream_max_connection_ms", 1, True),
            ("stream_ping_interval_ms", 1, True),
            ("stream_pong_timeout_ms", 1, False),
        ):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                none = " or None" if optional else ""
                raise ValueError(f"simulator setting {name} must be an integer >= {low}{none}, got {value!r}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``; an unknown name is a ``ValueError`` that lists the known ones."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown simulator setting(s) {unknown}; the settings are {self.names()}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, settings: Settings | Mapping[str, Any] | None) -> Settings:
        """``settings`` itself, the defaults (``None``), or the defaults with a mapping's changes."""
        if settings is None:
            return DEFAULT_SETTINGS
        if isinstance(settings, Settings):
            return settings
        return DEFAULT_SETTINGS.replace(**settings)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lagging_queries"] = sorted(self.lagging_queries)
        return data


DEFAULT_SETTINGS = Settings()
