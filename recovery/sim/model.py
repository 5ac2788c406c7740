"""Data model of the exchange simulator: markets, orders, trades, balances, errors.

Plain dataclasses with exact ``Decimal`` amounts, shared by
:mod:`recovery.sim.core` (which re-exports them) and the HTTP layer.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from recovery.sim.errors import ExchangeRejected, SimulatorError

__all__ = [
    "CLIENT_ID_PATTERN",
    "DEFAULT_BALANCES",
    "DEFAULT_MARKETS",
    "DEFAULT_PRICES",
    "OPEN_STATUSES",
    "Balance",
    "ExchangeRejected",
    "Market",
    "Number",
    "Order",
    "OrderRequest",
    "SimulatorError",
    "Trade",
    "new_client_id",
    "to_decimal",
]

#: Binance spot's rule for every client order id parameter (fix-api.md: "Client order ID fields must
#: conform to the regex ``^[a-zA-Z0-9-_]{1,36}$``"; REST answers -1100 otherwise).
CLIENT_ID_PATTERN = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
_ZERO = Decimal(0)

Number = Decimal | str | int


def to_decimal(value: Number) -> Decimal:
    """An exact amount from a Decimal, str or int; floats are refused (they are inexact)."""
    if isinstance(value, float):  # floats are inexact: refuse them loudly
        raise TypeError(f"pass amounts as Decimal, str or int, not float ({value!r})")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"amount must be finite, got {value!r}")
    return result


@dataclass(frozen=True)
class Market:
    """A spot market with Binance's PRICE_FILTER, LOT_SIZE, NOTIONAL and MAX_NUM_ORDERS filters.

    MAX_NUM_ORDERS is the ``max_num_orders`` setting (:mod:`recovery.sim.settings`).
    """

    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal = Decimal("5")
    max_qty: Decimal = Decimal("9000")
    max_price: Decimal = Decimal("1000000")
    max_notional: Decimal = Decimal("9000000")  # NOTIONAL's maxNotional, not applied to MARKET orders

    @property
    def symbol(self) -> str:
        """Unified symbol, e.g. ``BTC/USDT``."""
        return f"{self.base}/{self.quote}"

    @property
    def id(self) -> str:
        """Exchange symbol, e.g. ``BTCUSDT``."""
        return self.base + self.quote


DEFAULT_MARKETS: tuple[Market, ...] = (
    Market("BTC", "USDT", Decimal("0.01"), Decimal("0.00001")),
    Market("ETH", "USDT", Decimal("0.01"), Decimal("0.0001")),
    Market("SOL", "USDT", Decimal("0.01"), Decimal("0.001")),
    Market("BNB", "USDT", Decimal("0.01"), Decimal("0.001")),
    Market("XRP", "USDT", Decimal("0.0001"), Decimal("0.1"), max_qty=Decimal("9000000")),
)
DEFAULT_PRICES: Mapping[str, str] = {
    "BTC/USDT": "30000",
    "ETH/USDT": "2000",
    "SOL/USDT": "100",
    "BNB/USDT": "300",
    "XRP/USDT": "0.5",
}
DEFAULT_BALANCES: Mapping[str, str] = {
    "USDT": "100000",
    "BTC": "1",
    "ETH": "10",
    "SOL": "100",
    "BNB": "10",
    "XRP": "10000",
}


@dataclass(frozen=True)
class OrderRequest:
    """The new-order half of a cancel-replace (the arguments of :meth:`ExchangeCore.place_order`)."""

    side: str
    type: str
    quantity: Decimal | None = None
    quote_order_qty: Decimal | None = None
    price: Decimal | None = None
    time_in_force: str | None = None
    client_order_id: str | None = None
    strategy_id: int | None = None
    strategy_type: int | None = None


@dataclass
class Order:
    """One order; :meth:`ExchangeCore.orders` hands out copies."""

    order_id: int
    client_order_id: str
    symbol: str  # exchange id, e.g. BTCUSDT
    side: str  # BUY | SELL
    type: str  # LIMIT | MARKET | LIMIT_MAKER
    time_in_force: str | None
    price: Decimal
    orig_qty: Decimal
    time_ms: int
    orig_quote_order_qty: Decimal = _ZERO
    executed_qty: Decimal = _ZERO
    cummulative_quote_qty: Decimal = _ZERO
    status: str = "NEW"
    update_time_ms: int = 0
    locked: Decimal = _ZERO  # still reserved for this order, in the lock asset
    strategy_id: int | None = None  # echoed in every answer about the order when it was sent
    strategy_type: int | None = None  # likewise (>= 1000000)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty


@dataclass(frozen=True)
class Trade:
    """One fill of one order (Binance's ``myTrades`` row)."""

    trade_id: int
    order_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_buyer: bool
    is_maker: bool


@dataclass(frozen=True)
class Balance:
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


def new_client_id() -> str:
    """A fresh client id as Binance makes them when none is sent (22 alphanumerics)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(22))
