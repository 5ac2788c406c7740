"""What the simulated account tells its user data stream: the core's events, in exchange order.

:class:`~recovery.sim.core.ExchangeCore` emits one event per change, under
``core.lock`` and in the order the changes happen, to every listener added with
:meth:`~recovery.sim.core.ExchangeCore.add_listener`. Binance's user data
stream (user-data-stream.md) carries the same three kinds, and
:mod:`recovery.sim.wire` turns them into its JSON:

- :class:`OrderEvent` -- ``executionReport``: an order was accepted (``NEW``),
  traded (``TRADE``), canceled (``CANCELED``), expired (``EXPIRED``: an IOC or
  FOK order that did not cross) or, as the new half of a cancelReplace, refused
  by the matching engine (``REJECTED``, enums.md "Execution types");
- :class:`AccountEvent` -- ``outboundAccountPosition``: after every call that
  moved balances, the assets it touched, as they stand then;
- :class:`BalanceEvent` -- ``balanceUpdate``: a deposit or withdrawal (the test
  hook :meth:`~recovery.sim.core.ExchangeCore.set_balance`).

Every event has ``seq``, the core's own running number (1, 2, ...). It is never
sent on the wire (Binance's stream has no sequence numbers); the stream server
records it beside each frame, so a test can tell exactly which events a client
was sent and which it missed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from recovery.sim.model import Balance, Order, Trade

__all__ = ["EXECUTION_TYPES", "AccountEvent", "BalanceEvent", "EventListener", "OrderEvent", "UserEvent"]

#: The execution types (``x``) the simulator emits; ``REPLACED`` (an amend) and ``TRADE_PREVENTION`` never happen.
EXECUTION_TYPES = frozenset({"NEW", "TRADE", "CANCELED", "EXPIRED", "REJECTED"})


@dataclass(frozen=True)
class OrderEvent:
    """One execution of one order (``executionReport``)."""

    seq: int  # the core's event number (never on the wire)
    time_ms: int  # event time, E
    execution_id: int  # I: account-wide, increasing
    execution_type: str  # x: NEW, TRADE, CANCELED, EXPIRED, REJECTED
    order: Order  # a copy of the order as this execution left it
    trade: Trade | None = None  # the fill, for TRADE
    cancel_client_id: str | None = None  # CANCELED: the cancel request's own id (c); the order's id goes in C
    reject_reason: str = "NONE"  # r, for REJECTED
    expiry_reason: str | None = None  # eR, for EXPIRED


@dataclass(frozen=True)
class AccountEvent:
    """The balances one call touched, after it (``outboundAccountPosition``)."""

    seq: int
    time_ms: int  # E
    update_ms: int  # u: time of the last account update
    balances: tuple[tuple[str, Balance], ...]  # (asset, balance), sorted by asset


@dataclass(frozen=True)
class BalanceEvent:
    """A deposit or withdrawal (``balanceUpdate``)."""

    seq: int
    time_ms: int  # E
    asset: str  # a
    delta: Decimal  # d
    clear_ms: int  # T: clear time


UserEvent = OrderEvent | AccountEvent | BalanceEvent
#: Called under ``core.lock``, once per event, in order; must not block (hand the event to another thread).
EventListener = Callable[[UserEvent], None]
