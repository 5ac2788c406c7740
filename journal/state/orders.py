"""The order contract: the statuses, fields and shapes every layer agrees on (docs/records.md).

The reducers, the invariant checks, the exchange side's normalisation
(:mod:`recovery.normalize`) and the managers all read these names from here,
so an order means the same thing everywhere.

Statuses (ccxt's unified ones, plus ``pending``):

- ``pending`` -- the intent is durable, the exchange's answer is not known yet;
- ``open`` -- resting on the exchange (partly filled or not);
- ``closed`` (fully filled), ``canceled``, ``expired``, ``rejected`` -- settled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "OPEN_STATUSES",
    "ORDER_FIELDS",
    "ORDER_STATUSES",
    "SETTLED_STATUSES",
    "STORED_ORDER_FIELDS",
    "TRADE_FIELDS",
    "fills_missing",
    "is_open",
    "trade_key",
]

#: Every status an order in the state may have.
ORDER_STATUSES = frozenset({"pending", "open", "closed", "canceled", "expired", "rejected"})
#: The order may still change on the exchange (in flight, or resting).
OPEN_STATUSES = frozenset({"pending", "open"})
#: The order is done: nothing more happens to it on the exchange.
SETTLED_STATUSES = ORDER_STATUSES - OPEN_STATUSES

#: Keys of a normalised order (what the exchange side journals), in the order of docs/records.md.
ORDER_FIELDS = (
    "id",
    "client_id",
    "symbol",
    "side",
    "type",
    "status",
    "price",
    "amount",
    "filled",
    "remaining",
    "average",
    "cost",
    "fee",
    "trades",
    "timestamp",
)
#: Keys of a normalised order the reducers copy into ``state["orders"]`` (trades go to ``state["trades"]``).
STORED_ORDER_FIELDS = tuple(k for k in ORDER_FIELDS if k not in ("client_id", "trades"))
#: Keys of a normalised trade.
TRADE_FIELDS = ("id", "order_id", "client_id", "symbol", "side", "amount", "price", "cost", "fee", "timestamp")


def is_open(order: Mapping[str, Any]) -> bool:
    """Whether an order (a state value) is in flight or resting."""
    return order.get("status") in OPEN_STATUSES


def trade_key(symbol: str, trade_id: Any) -> str:
    """A trade's key in the state's ``trades`` section: trade ids are unique per symbol only."""
    return f"{symbol}:{trade_id}"


def fills_missing(order: Mapping[str, Any]) -> bool:
    """Whether the exchange reported more filled than the trades applied to the order (fetch its trades)."""
    filled = order.get("filled") or 0
    return bool(filled) and filled > (order.get("trades_filled") or 0)
