"""What the order helpers store, and how they read what the exchange says.

Pure functions used by :mod:`recovery.orders` and :mod:`recovery.reconcile`
(no I/O, no clock): they turn ccxt's order and trade dicts into the shapes of
``docs/records.md``, build and check intent data, keep credentials out of
journaled error messages, and interpret a lookup's answer.

Normalised shapes (the contract in ``docs/records.md``): every amount and price
is an exact ``Decimal`` (ccxt floats go through ``Decimal(str(x))``), times
from the exchange are integer milliseconds, and nothing else of the ccxt dict
is kept -- never the raw ``info`` (it may echo request details), never a
credential.

Reading a lookup (:func:`create_verdict`, :func:`cancel_verdict`): an order
that the exchange reports is the truth; an order it says it does not know, or
a cancel it reports as not applied, is only the truth once the venue's *settle
window* has passed: until then the request may still be on its way (Binance
executes a signed request up to ``recvWindow`` ms after its timestamp).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from journal.state.orders import ORDER_FIELDS, TRADE_FIELDS

__all__ = [
    "CANCEL_NOT_APPLIED",
    "FORGOTTEN_UNFILLED",
    "NOT_ON_EXCHANGE",
    "ORDER_FIELDS",
    "TARGET_NOT_ON_EXCHANGE",
    "TRADE_FIELDS",
    "Verdict",
    "archived_order",
    "cancel_verdict",
    "create_verdict",
    "edit_intent",
    "place_intent",
    "refusal_reason",
    "normalize_order",
    "normalize_trade",
    "scrub",
    "scrubbed_error",
    "target_of",
    "to_decimal",
    "wire_number",
]


#: Abort reasons written after a lookup (tests and tools match on them).
NOT_ON_EXCHANGE = "not on exchange after settle window"
#: Past the venue's lookup horizon, with no trade the order could have made: nothing was filled.
FORGOTTEN_UNFILLED = (
    "not on exchange past its lookup horizon, and no trade it could have made: never placed, or canceled or "
    "expired with nothing filled"
)
CANCEL_NOT_APPLIED = "cancel not applied: the order is still open"
TARGET_NOT_ON_EXCHANGE = "cancel not applied: the order is not on the exchange"

#: Client-id parameters the journal owns: a caller may not pass them.
_RESERVED_PARAMS = frozenset({"clientOrderId", "newClientOrderId", "origClientOrderId", "cancelOrigClientOrderId"})
_OPEN = "open"


# ------------------------------------------------------------------ numbers
def to_decimal(value: Any, *, name: str = "value") -> Decimal | None:
    """An exact ``Decimal`` from what ccxt or a caller gives (None stays None).

    Floats go through ``str`` (``0.1`` -> ``Decimal("0.1")``, not the binary
    expansion); NaN, infinities and booleans are refused with ``ValueError``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise ValueError(f"{name} must be a number (Decimal, int, float or str), got {value!r}")
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def wire_number(value: Decimal | None) -> str | None:
    """A Decimal as ccxt should receive it: plain notation (``1E-7`` -> ``"0.0000001"``)."""
    return None if value is None else format(value, "f")


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _fee(fee: Any) -> dict[str, Any] | None:
    if not isinstance(fee, Mapping) or fee.get("cost") is None:
        return None
    return {"cost": to_decimal(fee["cost"], name="fee cost"), "currency": _str_or_none(fee.get("currency"))}


# ------------------------------------------------------------ normalisation
def normalize_trade(
    trade: Mapping[str, Any],
    *,
    order_id: str | None = None,
    client_id: str | None = None,
    symbol: str | None = None,
    side: str | None = None,
) -> dict[str, Any]:
    """A ccxt trade as the journal stores it (``docs/records.md`` "normalised trade").

    The keyword arguments fill what the trade itself does not say (Binance's
    fills inside an order answer carry no order id nor side).
    """
    return {
        "id": _str_or_none(trade.get("id")),
        "order_id": _str_or_none(trade.get("order") or trade.get("order_id")) or order_id,
        "client_id": client_id or _str_or_none(trade.get("clientOrderId") or trade.get("client_id")),
        "symbol": trade.get("symbol") or symbol,
        "side": trade.get("side") or side,
        "amount": to_decimal(trade.get("amount"), name="trade amount"),
        "price": to_decimal(trade.get("price"), name="trade price"),
        "cost": to_decimal(trade.get("cost"), name="trade cost"),
        "fee": _fee(trade.get("fee")),
        "timestamp": _int_or_none(trade.get("timestamp")),
    }


def normalize_order(order: Mapping[str, Any], *, client_id: str | None = None) -> dict[str, Any]:
    """A ccxt order as the journal stores it (``docs/records.md`` "normalised order").

    ``client_id`` names the order when the answer does not: Binance's cancel
    answer carries the *cancel's* new id in ``clientOrderId`` and the order's
    in ``info["origClientOrderId"]``, which is read here (and only that: the
    raw ``info`` is never copied). Normalising a normalised order gives it back.
    """
    info = order.get("info")
    original = info.get("origClientOrderId") if isinstance(info, Mapping) else None
    cid = client_id or _str_or_none(original or order.get("clientOrderId") or order.get("client_id"))
    order_id = _str_or_none(order.get("id"))
    symbol, side = order.get("symbol"), order.get("side")
    trades = order.get("trades") or []
    return {
        "id": order_id,
        "client_id": cid,
        "symbol": symbol,
        "side": side,
        "type": order.get("type"),
        "status": order.get("status"),
        "price": to_decimal(order.get("price"), name="price"),
        "amount": to_decimal(order.get("amount"), name="amount"),
        "filled": to_decimal(order.get("filled"), name="filled"),
        "remaining": to_decimal(order.get("remaining"), name="remaining"),
        "average": to_decimal(order.get("average"), name="average"),
        "cost": to_decimal(order.get("cost"), name="cost"),
        "fee": _fee(order.get("fee")),
        "trades": [normalize_trade(t, order_id=order_id, client_id=cid, symbol=symbol, side=side) for t in trades],
        "timestamp": _int_or_none(order.get("timestamp")),
    }


def archived_order(client_id: str, symbol: str) -> dict[str, Any]:
    """The order a venue reported archived (Binance -2026): it existed, and ended with nothing filled."""
    out = normalize_order({"clientOrderId": client_id, "symbol": symbol, "status": "canceled", "filled": 0})
    out["archived"] = True
    return out


# ------------------------------------------------------------ intent data
def _side(side: str) -> str:
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    return side


def _amount_and_price(type: str, amount: Any, price: Any) -> tuple[Decimal, Decimal | None]:
    if not isinstance(type, str) or not type:
        raise ValueError(f"order type must be a non-empty str such as 'limit' or 'market', got {type!r}")
    qty = to_decimal(amount, name="amount")
    if qty is None or qty <= 0:
        raise ValueError(f"amount must be > 0, got {amount!r}")
    limit = to_decimal(price, name="price")
    if type == "market" and limit is not None:
        # ccxt's binance would turn amount * price into quoteOrderQty: a different order than journaled
        raise ValueError("a market order takes no price (pass price=None)")
    if type == "limit" and (limit is None or limit <= 0):
        raise ValueError(f"a limit order needs a price > 0, got {price!r}")
    return qty, limit


def place_intent(
    symbol: str,
    type: str,
    side: str,
    amount: Any,
    price: Any = None,
    params: Mapping[str, Any] | None = None,
    tag: Any = None,
) -> dict[str, Any]:
    """The data of a ``place_order`` intent; ``ValueError`` for arguments no exchange would accept.

    ``tag`` (any plain value the journal stores) is the bot's own link to the order -- a grid level, a
    strategy leg -- journaled with the intent, so a crash can never separate the order from it.
    """
    qty, limit = _amount_and_price(type, amount, price)
    extra = dict(params or {})
    reserved = _RESERVED_PARAMS & set(extra)
    if reserved:
        raise ValueError(f"params may not set {sorted(reserved)}: the journal chooses the client order id")
    out = {"symbol": symbol, "side": _side(side), "type": type, "amount": qty, "price": limit, "params": extra}
    if tag is not None:
        out["tag"] = tag
    return out


def target_of(target: str | Mapping[str, Any]) -> tuple[str, str | None]:
    """``(client id, exchange id or None)`` of an order given by client id or as an order dict.

    A dict may be a normalised order (``client_id``/``id``) or a ccxt order
    (``clientOrderId``/``id``).
    """
    if isinstance(target, str):
        if not target:
            raise ValueError("the order's client id is empty")
        return target, None
    if isinstance(target, Mapping):
        client_id = target.get("client_id") or target.get("clientOrderId")
        if not client_id:
            raise ValueError("the order has no client id ('client_id' or 'clientOrderId'); orders are keyed by it")
        return str(client_id), _str_or_none(target.get("id"))
    raise TypeError(f"pass the order's client id (str) or the order (dict), not {type(target).__name__}")


def edit_intent(
    target: str | Mapping[str, Any], symbol: str, type: str, side: str, amount: Any, price: Any, tag: Any = None
) -> dict[str, Any]:
    """The data of an ``edit_order`` intent (without ``tag``, the new order keeps the replaced one's)."""
    client_id, order_id = target_of(target)
    qty, limit = _amount_and_price(type, amount, price)
    out = {
        "client_id": client_id,
        "id": order_id,
        "symbol": symbol,
        "side": _side(side),
        "type": type,
        "amount": qty,
        "price": limit,
    }
    if tag is not None:
        out["tag"] = tag
    return out


# ------------------------------------------------------------ credentials
_SIGNATURE = re.compile(r"(signature=)[0-9A-Fa-f]+")


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` without the given credentials nor request signatures (ccxt puts URLs in messages)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _SIGNATURE.sub(r"\1***", text)


def scrubbed_error(exc: BaseException, secrets: Iterable[str | None]) -> BaseException:
    """``exc``, or a copy of the same class whose message is :func:`scrub`-bed (for journaling)."""
    text = str(exc)
    clean = scrub(text, secrets)
    if clean == text:
        return exc
    copy = type(exc).__new__(type(exc))
    copy.args = (clean,)
    return copy


def refusal_reason(exc: BaseException) -> str:
    """The abort reason of a definite refusal."""
    return f"refused by the exchange: {type(exc).__name__}"


# ------------------------------------------------------------ lookups
class Verdict(enum.Enum):
    """What a lookup's answer means for an operation in doubt."""

    COMMIT = "commit"  #: the exchange shows the result: commit with it
    ABORT = "abort"  #: the operation definitely did not happen
    WAIT = "wait"  #: not conclusive before the settle window has passed


def create_verdict(found: Mapping[str, Any] | None, *, settled: bool) -> tuple[Verdict, str | None]:
    """A placed (or edit's new) order looked up by its client id.

    Found: commit, whatever its status. Absent: abort once settled, else wait.
    """
    if found is not None:
        return Verdict.COMMIT, None
    return (Verdict.ABORT, NOT_ON_EXCHANGE) if settled else (Verdict.WAIT, None)


def cancel_verdict(found: Mapping[str, Any] | None, *, settled: bool) -> tuple[Verdict, str | None]:
    """The target of a cancel, looked up after the cancel failed or was answered "not found".

    No longer open (canceled by us or anyone, filled, expired): commit with it
    (the cancel applied, or is moot). Still open: the cancel was not applied,
    once settled (``settled`` is also true when the exchange *answered* the
    cancel, e.g. with OrderNotFound: that request is done). Absent: abort.
    """
    if found is None:
        return Verdict.ABORT, TARGET_NOT_ON_EXCHANGE
    if found.get("status") not in (_OPEN, None):
        return Verdict.COMMIT, None
    return (Verdict.ABORT, CANCEL_NOT_APPLIED) if settled else (Verdict.WAIT, None)
