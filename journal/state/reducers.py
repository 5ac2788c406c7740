"""Reducers: how each record changes the state.

A reducer is ``fn(state, record) -> None``; it reads the record and changes the
state only through ``state.put/patch/delete``. It must be deterministic: the
same state and record always give the same result (no clock, no randomness,
no I/O), so replaying the journal rebuilds exactly the live state.

:class:`Reducers` maps ``(kind, type)`` to a reducer; ``kind`` ``"*"``
matches every kind. The built-in ones implement docs/records.md: order
placement, cancel, edit, order updates, fills (partial and full, with fees),
balances, strategies and direct corrections (``state_set``). A bot registers
its own::

    reducers = Reducers.default()

    @reducers.register("event", "grid_level")
    def grid_level(state, record):
        state.put("grid", record.data["level"], record.data)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from ..log.record import Record
from .orders import OPEN_STATUSES, STORED_ORDER_FIELDS, trade_key
from .state import State

__all__ = ["Reducer", "Reducers"]

Reducer = Callable[[State, Record], None]

_ZERO = Decimal(0)


class Reducers:
    """A registry of reducers keyed by ``(kind, type)``."""

    def __init__(self) -> None:
        self._table: dict[tuple[str, str], Reducer] = {}
        self.custom = False

    @classmethod
    def default(cls) -> Reducers:
        """The built-in reducers (docs/records.md)."""
        r = cls()
        for (kind, type_), fn in _BUILTIN.items():
            r._table[(kind, type_)] = fn
        return r

    def register(self, kind: str, type_: str) -> Callable[[Reducer], Reducer]:
        """Decorator: ``fn`` reduces records of ``kind`` (or ``"*"``) and ``type_``.

        A registered reducer replaces a built-in one for the same key. Values
        it puts are checked with the codec at the point of change.
        """
        if kind not in ("intent", "commit", "abort", "event", "*"):
            raise ValueError(f"kind must be intent, commit, abort, event or '*', got {kind!r}")

        def deco(fn: Reducer) -> Reducer:
            self._table[(kind, type_)] = fn
            self.custom = True
            return fn

        return deco

    def types(self) -> Iterable[tuple[str, str]]:
        return self._table.keys()

    def apply(self, state: State, record: Record) -> None:
        """Apply one record (records without a reducer change nothing but ``seq``)."""
        fn = self._table.get((record.kind, record.type)) or self._table.get(("*", record.type))
        if fn is not None:
            fn(state, record)
        state.seq = record.seq


# -- orders ------------------------------------------------------------------


# Equal prices and amounts share one Decimal: an order's amount and remaining, the zeros of
# every filled and cost, the levels of a grid. Fewer objects in memory, and a hit costs a dict
# lookup instead of parsing (decimals are immutable, so sharing changes no value).
_DECIMALS: dict[str, Decimal] = {}
_DECIMALS_KEPT = 65536


def _dec(value: Any) -> Any:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | str):
        text = value if type(value) is str else str(value)
        found = _DECIMALS.get(text)
        if found is not None:
            return found
        try:
            parsed = Decimal(text)
        except ArithmeticError:
            return value
        if len(_DECIMALS) >= _DECIMALS_KEPT:
            _DECIMALS.clear()
        _DECIMALS[text] = parsed
        return parsed
    return value


def _order_view(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: data[k] for k in STORED_ORDER_FIELDS if k in data}
    for k in ("price", "amount", "filled", "remaining", "average", "cost"):
        if k in out:
            out[k] = _dec(out[k])
    return out


def _begin(state: State, rec: Record, target: str | None) -> None:
    state.put("inflight", str(rec.op), {"type": rec.type, "target": target, "seq": rec.seq})


def _settled(state: State, rec: Record) -> str | None:
    """Forget an in-flight op; return the client id its intent targeted."""
    entry = state.get("inflight", str(rec.op))
    state.delete("inflight", str(rec.op))
    return entry.get("target") if entry else None


def _place_intent(state: State, rec: Record) -> None:
    d = rec.data or {}
    _begin(state, rec, rec.client_id)
    state.put(
        "orders",
        rec.client_id or str(rec.op),
        {
            "client_id": rec.client_id,
            "op": rec.op,
            "id": None,
            "symbol": d.get("symbol"),
            "side": d.get("side"),
            "type": d.get("type"),
            "status": "pending",
            "price": _dec(d.get("price")),
            "amount": _dec(d.get("amount")),
            "filled": _ZERO,
            "last_seq": rec.seq,
        },
        new=rec.client_id is not None,  # a client id is drawn fresh for every operation: never archived
    )
    if d.get("tag") is not None:  # the bot's own link to the order (a grid level...), from the intent on
        state.patch("orders", rec.client_id or str(rec.op), {"tag": d["tag"]})


def _apply_order(state: State, key: str, data: dict[str, Any], seq: int) -> None:
    """Merge a normalised order into ``orders[key]`` and apply its trades once."""
    changes = _order_view(data)
    changes["last_seq"] = seq
    old = state.get("orders", key) or {}
    if changes.get("filled") is not None:
        # filled is the larger of what the exchange reported and the trades applied:
        # a stale answer never moves it backwards, a trade is never counted twice
        changes["filled"] = max(changes["filled"], old.get("filled") or _ZERO, old.get("trades_filled") or _ZERO)
    if "client_id" not in old:
        changes["client_id"] = key
    state.patch("orders", key, changes)
    for trade in data.get("trades") or ():
        _apply_trade(state, dict(trade, client_id=key, symbol=trade.get("symbol") or data.get("symbol")), seq)


def _place_commit(state: State, rec: Record) -> None:
    _settled(state, rec)
    key = rec.client_id or str(rec.op)
    _apply_order(state, key, rec.data or {}, rec.seq)
    state.patch("orders", key, {"status": (rec.data or {}).get("status") or "open"})


def _place_abort(state: State, rec: Record) -> None:
    _settled(state, rec)
    key = rec.client_id or str(rec.op)
    d = rec.data or {}
    state.patch("orders", key, {"status": "rejected", "reason": d.get("reason"), "last_seq": rec.seq})


def _cancel_intent(state: State, rec: Record) -> None:
    key = (rec.data or {}).get("client_id")
    _begin(state, rec, key)
    if key and state.get("orders", key) is not None:
        state.patch("orders", key, {"cancel_pending": rec.op, "last_seq": rec.seq})


def _cancel_commit(state: State, rec: Record) -> None:
    key = _settled(state, rec) or (rec.data or {}).get("client_id")
    if key is None:
        return
    _apply_order(state, key, rec.data or {}, rec.seq)
    order = state.get("orders", key)
    changes: dict[str, Any] = {"cancel_pending": None}
    if order is not None and order.get("status") in OPEN_STATUSES:
        changes["status"] = "canceled"
    state.patch("orders", key, changes)


def _cancel_abort(state: State, rec: Record) -> None:
    key = _settled(state, rec)
    if key is not None and state.get("orders", key) is not None:
        state.patch("orders", key, {"cancel_pending": None, "last_seq": rec.seq})


def _edit_intent(state: State, rec: Record) -> None:
    d = rec.data or {}
    old_key = d.get("client_id")
    if old_key and state.get("orders", old_key) is not None:
        state.patch("orders", old_key, {"edit_pending": rec.op, "last_seq": rec.seq})
    _place_intent(state, rec)
    state.put("inflight", str(rec.op), {"type": rec.type, "target": old_key, "seq": rec.seq})
    changes: dict[str, Any] = {"replaces": old_key}
    old = state.get("orders", old_key) if old_key else None
    if d.get("tag") is None and old is not None and old.get("tag") is not None:
        changes["tag"] = old["tag"]  # the replacement keeps the replaced order's tag
    state.patch("orders", rec.client_id or str(rec.op), changes)


def _edit_commit(state: State, rec: Record) -> None:
    old_key = _settled(state, rec)
    if old_key is not None and state.get("orders", old_key) is not None:
        status = state.get("orders", old_key).get("status")
        state.patch(
            "orders",
            old_key,
            {"edit_pending": None, "status": "canceled" if status in OPEN_STATUSES else status,
             "replaced_by": rec.client_id, "last_seq": rec.seq},
        )  # fmt: skip
    key = rec.client_id or str(rec.op)
    _apply_order(state, key, rec.data or {}, rec.seq)
    state.patch("orders", key, {"status": (rec.data or {}).get("status") or "open"})


def _edit_abort(state: State, rec: Record) -> None:
    old_key = _settled(state, rec)
    if old_key is not None and state.get("orders", old_key) is not None:
        state.patch("orders", old_key, {"edit_pending": None, "last_seq": rec.seq})
    state.patch("orders", rec.client_id or str(rec.op), {"status": "rejected", "reason": (rec.data or {}).get("reason"),
                                                         "last_seq": rec.seq})  # fmt: skip


def _order_update(state: State, rec: Record) -> None:
    d = rec.data or {}
    key = d.get("client_id")
    if not key:
        return
    _apply_order(state, key, d, rec.seq)


# -- fills and positions -----------------------------------------------------


def _apply_trade(state: State, trade: dict[str, Any], seq: int) -> bool:
    """Apply a trade once (keyed by symbol and trade id); returns whether it was new."""
    symbol = trade.get("symbol")
    trade_id = trade.get("id")
    if not symbol or trade_id is None:
        return False
    tkey = trade_key(symbol, trade_id)
    if state.get("trades", tkey) is not None:  # reads through to the archive: a trade is applied once, ever
        return False
    amount = _dec(trade.get("amount")) or _ZERO
    price = _dec(trade.get("price")) or _ZERO
    cost = _dec(trade.get("cost"))
    if cost is None:
        cost = amount * price
    side = trade.get("side")
    client_id = trade.get("client_id")
    fee = trade.get("fee")
    state.put(
        "trades",
        tkey,
        {"id": str(trade_id), "symbol": symbol, "side": side, "client_id": client_id, "amount": amount,
         "price": price, "cost": cost, "fee": fee, "timestamp": trade.get("timestamp"), "seq": seq},
        new=True,  # just looked: neither in memory nor archived
    )  # fmt: skip
    signed = amount if side == "buy" else -amount
    signed_cost = cost if side == "buy" else -cost
    pos = state.get("positions", symbol) or {"symbol": symbol, "amount": _ZERO, "cost": _ZERO, "fees": {}}
    fees = dict(pos.get("fees") or {})
    if isinstance(fee, dict) and fee.get("currency") and fee.get("cost") is not None:
        fees[fee["currency"]] = fees.get(fee["currency"], _ZERO) + (_dec(fee["cost"]) or _ZERO)
    state.put(
        "positions",
        symbol,
        dict(pos, amount=pos["amount"] + signed, cost=pos["cost"] + signed_cost, fees=fees, last_seq=seq),
    )
    order = state.get("orders", client_id) if client_id else None
    if order is not None and client_id is not None:
        trades_filled = (order.get("trades_filled") or _ZERO) + amount
        filled = max(order.get("filled") or _ZERO, trades_filled)
        changes: dict[str, Any] = {"filled": filled, "trades_filled": trades_filled, "last_seq": seq}
        total = order.get("amount")
        if total is not None:
            changes["remaining"] = max(total - filled, _ZERO)
            if filled >= total and order.get("status") in OPEN_STATUSES:
                changes["status"] = "closed"
        state.patch("orders", client_id, changes)
    return True


def _fill(state: State, rec: Record) -> None:
    _apply_trade(state, dict(rec.data or {}), rec.seq)


# -- balances, strategies, corrections ---------------------------------------


def _balances(state: State, rec: Record) -> None:
    for asset, bal in ((rec.data or {}).get("balances") or {}).items():
        if bal is None:
            state.delete("balances", asset)
        else:
            state.put("balances", asset, {k: _dec(v) for k, v in bal.items()})


def _strategy(state: State, rec: Record) -> None:
    d = rec.data or {}
    name = d.get("name")
    if not name:
        return
    old = state.get("strategies", name) or {"name": name, "active": False, "params": {}, "context": {}}
    new = dict(old)
    if "active" in d:
        new["active"] = bool(d["active"])
    if "params" in d:
        new["params"] = {**(old.get("params") or {}), **(d["params"] or {})}
    if "context" in d:
        new["context"] = d["context"]
    new["last_seq"] = rec.seq
    state.put("strategies", name, new)


def _state_set(state: State, rec: Record) -> None:
    d = rec.data or {}
    section, key = d.get("section"), d.get("key")
    if not isinstance(section, str) or not isinstance(key, str):
        return
    if d.get("value") is None:
        state.delete(section, key)
    else:
        value = d["value"]
        if section == "positions" and isinstance(value, dict):
            value = dict(value, adjusted=True)
        state.put(section, key, value)


_BUILTIN: dict[tuple[str, str], Reducer] = {
    ("intent", "place_order"): _place_intent,
    ("commit", "place_order"): _place_commit,
    ("abort", "place_order"): _place_abort,
    ("intent", "cancel_order"): _cancel_intent,
    ("commit", "cancel_order"): _cancel_commit,
    ("abort", "cancel_order"): _cancel_abort,
    ("intent", "edit_order"): _edit_intent,
    ("commit", "edit_order"): _edit_commit,
    ("abort", "edit_order"): _edit_abort,
    ("event", "order_update"): _order_update,
    ("event", "fill"): _fill,
    ("event", "balances"): _balances,
    ("event", "strategy"): _strategy,
    ("event", "state_set"): _state_set,
}
