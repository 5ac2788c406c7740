"""Everything that talks to an exchange: reconciliation, journaled orders, the simulator.

The lifecycle of a bot with tradejournal:

1. ``StateManager(path, exchange).start()`` opens the journal (one writer per
   directory), loads the state (newest valid snapshot + replay), and
   **reconciles**: every pending operation is looked up on the exchange by its
   client order id and settled with a journaled decision (``source="recovery"``);
   orders, fills and balances that changed while the bot was down are
   journaled; orders of this journal the state does not know are adopted,
   others reported. What the exchange cannot answer stays pending, and the
   manager refuses new orders (safe mode) until a later ``reconcile()``.
2. The bot trades through ``place_order`` / ``cancel_order`` / ``edit_order``
   (:mod:`recovery.orders`): intent durable first, then the ccxt call with the
   journal's client id, then the commit with the exchange's answer -- or the
   abort for a definite refusal (:mod:`recovery.classify`), or a lookup when
   the outcome is in doubt.
3. Autosave snapshots every 30 s and before critical operations; ``close()``
   (or SIGTERM with signal handlers) saves and releases the journal.

Sync and async: the order helpers, reconciliation and the managers are written
once, as sans-IO flows (:mod:`recovery.flows`), and bound twice: to plain
calls for sync ccxt (``StateManager``) and to ``await`` for
``ccxt.async_support`` (``AsyncStateManager``), where every journal write runs
in a worker thread so the event loop never waits on an fsync.

The Binance-spot simulator (:mod:`recovery.sim`, loaded on first use) and the ccxt factory
(:mod:`recovery.exchanges`) let bot authors crash-test their own bots on
127.0.0.1.
"""

from __future__ import annotations

from typing import Any

from .budget import Budget
from .classify import Outcome, classify, is_definite_refusal
from .errors import (
    BudgetExhausted,
    ManagerStateError,
    OperationError,
    OrderAbortedError,
    OrderInDoubtError,
    OrderLookupError,
    OrderRefusedLocally,
    RateLimitedUntil,
    RecoveryError,
    SafeModeError,
)
from .manager import AsyncStateManager, StateManager
from .orders import AsyncOrderJournal, OrderJournal, OrderSettings
from .reconcile import AsyncReconciler, Reconciler, ReconcileReport, ReconcileSettings

#: Names served by the simulator package, imported only when first used: ``import recovery``
#: must not load the simulator (nor ``http.server``) into a bot that never uses it.
_SIMULATOR_NAMES = frozenset({"TEST_API_KEY", "TEST_SECRET", "Simulator", "SimulatorClient"})


def __getattr__(name: str) -> Any:
    if name in _SIMULATOR_NAMES:
        from . import sim

        return getattr(sim, name)
    raise AttributeError(f"module 'recovery' has no attribute {name!r}")


__all__ = [
    "AsyncOrderJournal",
    "AsyncReconciler",
    "AsyncStateManager",
    "Budget",
    "BudgetExhausted",
    "ManagerStateError",
    "OperationError",
    "OrderAbortedError",
    "OrderInDoubtError",
    "OrderJournal",
    "OrderLookupError",
    "OrderRefusedLocally",
    "OrderSettings",
    "Outcome",
    "RateLimitedUntil",
    "ReconcileReport",
    "ReconcileSettings",
    "Reconciler",
    "RecoveryError",
    "SafeModeError",
    "Simulator",
    "SimulatorClient",
    "StateManager",
    "TEST_API_KEY",
    "TEST_SECRET",
    "classify",
    "is_definite_refusal",
]
