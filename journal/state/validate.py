"""Consistency invariants of a state, checked on load and on demand.

Each violation names the section, the key and the records involved (the
``last_seq`` that last changed the value, the op id), so an operator can go
straight to ``journal show`` or ``journal dump --from``.

Invariants:

- every order has exactly one known status (``pending``, ``open``, ``closed``,
  ``canceled``, ``expired``, ``rejected``);
- ``0 <= filled <= amount`` for every order that states both;
- a position not marked ``adjusted`` (a manual correction) equals the signed
  sum of the applied trades of its symbol (those in memory, plus the sum the
  archive keeps of the archived ones);
- no operation is both pending and settled: the ``inflight`` section and the
  journal's pending set hold the same op ids, and an order still ``pending``
  has its placing operation in flight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter, le
from typing import Any

from .archive import signed_amount
from .orders import ORDER_STATUSES
from .state import State

__all__ = ["Violation", "validate"]


@dataclass(frozen=True)
class Violation:
    """One broken invariant."""

    section: str
    key: str
    problem: str
    seqs: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = f" (records: {', '.join(map(str, self.seqs))})" if self.seqs else ""
        return f"{self.section}[{self.key!r}]: {self.problem}{where}"


def _seqs(value: Any, *more: Any) -> tuple[int, ...]:
    out = []
    for v in (value, *more):
        if isinstance(v, dict):
            for k in ("op", "last_seq", "seq"):
                if isinstance(v.get(k), int):
                    out.append(v[k])
        elif isinstance(v, int):
            out.append(v)
    return tuple(sorted(set(out)))


def _order_problems(key: str, order: Any) -> list[Violation]:
    if not isinstance(order, dict):
        return [Violation("orders", key, f"is a {type(order).__name__}, not a map")]
    out = []
    status = order.get("status")
    if status not in ORDER_STATUSES:
        out.append(Violation("orders", key, f"unknown status {status!r}", _seqs(order)))
    filled, amount = order.get("filled"), order.get("amount")
    if isinstance(filled, Decimal | int | float) and filled < 0:
        out.append(Violation("orders", key, f"filled {filled} is negative", _seqs(order)))
    if isinstance(filled, Decimal | int | float) and isinstance(amount, Decimal | int | float) and filled > amount:
        out.append(Violation("orders", key, f"filled {filled} exceeds amount {amount}", _seqs(order)))
    return out


_STATUS = itemgetter("status")
_FILLED = itemgetter("filled")
_AMOUNT = itemgetter("amount")
_ZERO = Decimal(0)


def _orders_hold(orders: Mapping[str, Any]) -> tuple[bool, list[Any]]:
    """Whether every order has a known status and ``0 <= filled <= amount``, in C loops; and the statuses.

    The common case (every order sound) costs a few passes of ``map`` instead of
    Python code per order; anything unusual (a missing field, a None, a value
    that is not a map) answers False and the caller looks at each order.
    """
    values = list(orders.values())
    try:
        statuses = list(map(_STATUS, values))
        filled = list(map(_FILLED, values))
        sound = (
            set(statuses) <= ORDER_STATUSES
            and all(map(_ZERO.__le__, filled))
            and all(map(le, filled, map(_AMOUNT, values)))
        )
    except (KeyError, TypeError):
        return False, []
    return sound, statuses


def _trade_sums(state: State) -> dict[str, Decimal]:
    """Signed sum of the applied trades per symbol: in memory, and archived (minus archived ones changed since)."""
    sums: dict[str, Decimal] = {}
    archive = state.archive
    if archive is not None:
        sums.update(archive.info.trade_sums)
        for key in state.shadowed("trades"):
            signed = signed_amount(archive.get("trades", key))
            if signed is not None:
                sums[signed[0]] = sums.get(signed[0], _ZERO) - signed[1]
    for trade in state.raw_sections().get("trades", {}).values():
        signed = signed_amount(trade)
        if signed is not None:
            sums[signed[0]] = sums.get(signed[0], _ZERO) + signed[1]
    return sums


def validate(state: State, pending_ops: Iterable[int] | None = None) -> list[Violation]:
    """Check every invariant; returns the violations (empty when consistent)."""
    out: list[Violation] = []
    orders = state.raw_sections().get("orders", {})
    sound, statuses = _orders_hold(orders)
    if not sound:
        statuses = []
        for key, order in orders.items():
            # the common case first, cheaply: a map with a known status and filled <= amount
            try:
                if order["status"] in ORDER_STATUSES and 0 <= order["filled"] <= order["amount"]:
                    continue
            except (KeyError, TypeError):
                pass
            out.extend(_order_problems(key, order))
    sums = _trade_sums(state)
    for symbol, pos in state.raw_sections().get("positions", {}).items():
        if not isinstance(pos, dict) or pos.get("adjusted"):
            continue
        expected = sums.get(symbol, Decimal(0))
        if pos.get("amount") != expected:
            out.append(
                Violation(
                    "positions", symbol, f"amount {pos.get('amount')} but its trades sum to {expected}", _seqs(pos)
                )
            )
    inflight = {int(k) for k in state.raw_sections().get("inflight", {})}
    if pending_ops is not None:
        pending = set(pending_ops)
        for op in sorted(inflight - pending):
            out.append(Violation("inflight", str(op), "in flight in the state but settled in the journal", _seqs(op)))
        for op in sorted(pending - inflight):
            out.append(Violation("inflight", str(op), "pending in the journal but not in flight in the state", (op,)))
    if not sound or "pending" in statuses:
        for key, order in orders.items():
            if isinstance(order, dict) and order.get("status") == "pending" and order.get("op") not in inflight:
                out.append(Violation("orders", key, "status pending but its operation is settled", _seqs(order)))
    return out
