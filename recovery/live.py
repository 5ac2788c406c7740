"""The live feed: the exchange's order and trade stream (ccxt.pro), journaled as it arrives.

A bot that learns about fills from the websocket either hands each batch to
the manager itself::

    orders = await pro.watch_orders()
    await manager.ingest_orders(orders)          # and ingest_trades(await pro.watch_my_trades())

or lets the manager run the watch loops for it::

    feed = await manager.start_live_feed(pro)    # a ccxt.pro exchange (it may be the manager's own)
    ...
    await manager.close()                        # stops the feed too

**Once.** Every event is journaled at most once: a trade by its symbol and trade
id (a replayed or duplicated frame changes nothing), an order update only when
it moves the order forward -- a new status, or more filled. ccxt.pro applies
frames in arrival order and has no sequence numbers, so a stale report that
arrives late (``PARTIALLY_FILLED`` after ``FILLED``) would move an order back;
:func:`advances` refuses that.

**Gaps.** The stream has no sequence numbers and Binance does not replay what
was sent while nobody listened, so a gap is assumed whenever a ``watch_*`` call
fails (a dropped socket is ``NetworkError``; a refused or lost subscription
surfaces as ``KeyError``, ``ExchangeError`` or a call that never returns, which
the feed bounds with ``first_event_timeout_s``): the feed closes a wedged websocket
client, subscribes again, and repairs the gap from REST with an incremental
reconciliation (the truth) -- at once, and once more ``resubscribe_settle_s``
later, since what happens between the first repair and the new subscription's
confirmation reaches neither. A quiet stream looks like a dead one, so
a reconciliation also runs every ``sync_interval_s`` as a backstop; it writes
nothing when nothing changed.

**Sources.** Records learned from the stream carry ``"via": "websocket"`` in
their data; what reconciliation learns from REST is journaled with
``source="recovery"``: the journal says which source taught it what. REST is
the truth: when the two disagree, the next reconciliation's record wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ccxt

from journal.state.orders import ORDER_STATUSES

if TYPE_CHECKING:
    from .manager import AsyncStateManager

__all__ = ["LiveFeed", "advances"]

log = logging.getLogger("recovery.live")

_RANK = {"pending": 0, "open": 1, "closed": 2, "canceled": 2, "expired": 2, "rejected": 2}


def advances(known: Mapping[str, Any] | None, seen: Mapping[str, Any]) -> bool:
    """Whether the order ``seen`` on the stream moves the ``known`` state forward (never backwards)."""
    if seen.get("status") not in ORDER_STATUSES:
        return False
    if known is None:
        return True
    known_filled, seen_filled = known.get("filled") or 0, seen.get("filled") or 0
    if seen_filled < known_filled:
        return False  # a stale report: less filled than we know
    if _RANK.get(seen["status"], 0) < _RANK.get(known.get("status") or "pending", 0):
        return False  # back from a final status to open
    return seen_filled > known_filled or seen["status"] != known.get("status")


class LiveFeed:
    """Runs ``watch_orders`` and ``watch_my_trades`` on a ccxt.pro exchange for an :class:`AsyncStateManager`.

    Made by :meth:`AsyncStateManager.start_live_feed`. ``symbols`` restricts the
    watch (default: every symbol); ``sync_interval_s`` is the backstop
    reconciliation's period; ``reconnect_backoff_s`` and ``reconnect_max_s``
    bound the wait before a resubscription after a failure.
    """

    def __init__(
        self,
        manager: AsyncStateManager,
        exchange: Any,
        *,
        sync_interval_s: float = 30.0,
        reconnect_backoff_s: float = 0.2,
        reconnect_max_s: float = 30.0,
        first_event_timeout_s: float | None = None,
        resubscribe_settle_s: float = 1.0,
    ) -> None:
        if not hasattr(exchange, "watch_orders") or not hasattr(exchange, "watch_my_trades"):
            raise TypeError(
                f"the live feed needs a ccxt.pro exchange (watch_orders, watch_my_trades), got {exchange!r}"
            )
        #: The manager the events are journaled through.
        self.manager = manager
        #: The ccxt.pro exchange watched.
        self.exchange = exchange
        self.sync_interval_s = sync_interval_s
        self.reconnect_backoff_s = reconnect_backoff_s
        self.reconnect_max_s = reconnect_max_s
        self.first_event_timeout_s = first_event_timeout_s
        #: After a gap, a second repair runs this long later: events between the first repair and the
        #: new subscription's confirmation reach neither the stream nor that repair.
        self.resubscribe_settle_s = resubscribe_settle_s
        self._second_repair_at: float | None = None
        #: Gaps seen (each repaired by a reconciliation), and the last one's cause.
        self.gaps = 0
        self.last_gap: str | None = None
        #: Records written from the stream.
        self.events_journaled = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._repair = asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch("watch_orders", self.manager.ingest_orders), name="live-feed:orders"),
            loop.create_task(self._watch("watch_my_trades", self.manager.ingest_trades), name="live-feed:trades"),
            loop.create_task(self._journal(), name="live-feed:journal"),
            loop.create_task(self._backstop(), name="live-feed:sync"),
        ]

    async def _watch(self, method: str, ingest: Any) -> None:
        attempt = 0
        fresh = True  # the next call subscribes (again): bound it if asked (an unanswered subscribe waits forever)
        while not self._stopping:
            try:
                call = getattr(self.exchange, method)()
                if fresh and self.first_event_timeout_s is not None:
                    batch = await asyncio.wait_for(call, self.first_event_timeout_s)
                else:
                    batch = await call
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure is a gap: events may have been missed
                await self._gap(f"{method}: {type(exc).__name__}: {exc}", wedged=not isinstance(exc, ccxt.NetworkError))
                delay = min(self.reconnect_max_s, self.reconnect_backoff_s * 2**attempt)
                attempt += 1
                fresh = True
                await asyncio.sleep(delay)
                continue
            attempt, fresh = 0, False
            # Hand the batch over and re-arm at once: ccxt.pro only wakes a watch that is pending
            # when an event arrives; one that lands while we journal would wait for the next event.
            self._queue.put_nowait((method, ingest, batch))

    async def _journal(self) -> None:
        while True:
            method, ingest, batch = await self._queue.get()
            try:
                self.events_journaled += await ingest(batch)
            except Exception:  # a bad event must not stop the feed; REST repairs what it meant
                log.exception(
                    "%s: journaling a %s batch failed; reconciliation will repair it", self.manager.path, method
                )
                self._repair.set()

    async def _gap(self, cause: str, *, wedged: bool) -> None:
        self.gaps += 1
        self.last_gap = cause
        log.warning("%s: live feed gap (%s): resubscribing, then repairing from REST", self.manager.path, cause)
        if wedged:
            # a refused or unanswered subscription stays wedged on its connection (ccxt keeps it
            # claimed): start afresh. A dropped connection is already gone from exchange.clients.
            for client in list(getattr(self.exchange, "clients", {}).values()):
                with contextlib.suppress(Exception):
                    await client.close()
        self._second_repair_at = time.monotonic() + self.reconnect_backoff_s + self.resubscribe_settle_s
        self._repair.set()

    async def _backstop(self) -> None:
        last = time.monotonic()
        while not self._stopping:
            due = last + self.sync_interval_s
            if self._second_repair_at is not None:
                due = min(due, self._second_repair_at)
            timeout = max(0.0, due - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._repair.wait(), timeout)
            self._repair.clear()
            if self._stopping:
                return
            now = time.monotonic()
            if self._second_repair_at is not None and now >= self._second_repair_at:
                self._second_repair_at = None
            last = now
            try:
                await self.manager.reconcile()
            except Exception:
                log.exception("%s: live feed repair (reconciliation) failed; retrying later", self.manager.path)

    async def stop(self) -> None:
        """Stop watching (the websocket connections are closed with the exchange by its owner)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def status(self) -> dict[str, Any]:
        return {"running": bool(self._tasks), "gaps": self.gaps, "last_gap": self.last_gap,
                "events_journaled": self.events_journaled}  # fmt: skip
