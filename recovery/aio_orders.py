"""The async twin of :mod:`recovery.orders`, for ``ccxt.async_support`` exchanges.

:class:`AsyncOrderJournal` runs the very flows of :class:`~recovery.orders.OrderJournal`
(intent, one ccxt call, outcome or lookup; see that module's docstring) with
``await``: only the driver differs. Journal writes are made directly from the
event loop; they block for well under a millisecond (an intent is one synced
LMDB transaction), which is acceptable, and keeps the intent durable *before*
the request can leave.

Two async specifics:

- aiohttp silently re-sends a GET or DELETE once when a connection drops
  unanswered, so a cancel whose answer was lost can come back as
  ``OrderNotFound`` although it succeeded; the cancel flow looks the order up
  on ``OrderNotFound`` and commits the cancel it finds. POSTs are never
  re-sent.
- A task cancelled while its ccxt call runs leaves the operation pending (in
  doubt) and re-raises ``CancelledError`` at once: no lookup runs in a
  cancelled task. :meth:`AsyncOrderJournal.resolve` or startup reconciliation
  settles it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

from recovery.orders import (
    Call,
    Flow,
    FlowRunner,
    Order,
    OrderAbortedError,
    OrderFlows,
    OrderInDoubtError,
    OrderLookupError,
    Params,
    Target,
)

__all__ = ["AsyncOrderJournal", "OrderAbortedError", "OrderInDoubtError", "OrderLookupError"]

T = TypeVar("T")


class AsyncOrderJournal(OrderFlows):
    """:class:`~recovery.orders.OrderJournal` for an async ccxt exchange: the same methods, as coroutines.

    Same settings, results and exceptions as the sync class. One instance may
    serve many tasks of one event loop (the ccxt client is bound to it).
    """

    async def _drive(self, flow: Flow[T]) -> T:
        with FlowRunner(flow) as runner:
            while (step := runner.step) is not None:
                try:
                    value = await (step.run(self.exchange) if isinstance(step, Call) else asyncio.sleep(step.seconds))
                except Exception as exc:
                    runner.throw(exc)
                else:
                    runner.send(value)
        return runner.result

    async def place_order(
        self, symbol: str, type: str, side: str, amount: Any, price: Any = None, params: Params = None
    ) -> Order:
        """See :meth:`OrderJournal.place_order <recovery.orders.OrderJournal.place_order>`."""
        return await self._drive(self._place(symbol, type, side, amount, price, params))

    async def cancel_order(self, client_id_or_order: Target, symbol: str) -> Order:
        """See :meth:`OrderJournal.cancel_order <recovery.orders.OrderJournal.cancel_order>`."""
        return await self._drive(self._cancel(client_id_or_order, symbol))

    async def edit_order(
        self, client_id_or_order: Target, symbol: str, type: str, side: str, amount: Any, price: Any = None
    ) -> Order:
        """See :meth:`OrderJournal.edit_order <recovery.orders.OrderJournal.edit_order>`."""
        return await self._drive(self._edit(client_id_or_order, symbol, type, side, amount, price))

    async def lookup(self, client_id: str, symbol: str) -> Order | None:
        """See :meth:`OrderJournal.lookup <recovery.orders.OrderJournal.lookup>`."""
        return await self._drive(self._lookup(client_id, symbol))

    async def resolve(self, op: int | str) -> Order:
        """See :meth:`OrderJournal.resolve <recovery.orders.OrderJournal.resolve>`."""
        return await self._drive(self._resolve(op))

    async def record_order_update(self, order: Mapping[str, Any], client_id: str | None = None) -> int:
        """See :meth:`OrderJournal.record_order_update <recovery.orders.OrderJournal.record_order_update>`."""
        return self._record_order_update(order, client_id)

    async def record_fill(self, trade: Mapping[str, Any], client_id: str | None = None) -> int:
        """See :meth:`OrderJournal.record_fill <recovery.orders.OrderJournal.record_fill>`."""
        return self._record_fill(trade, client_id)
