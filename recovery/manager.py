"""The StateManager a bot links in-process: journal, state, reconciliation, autosave.

::

    from recovery import StateManager

    manager = StateManager("bot.journal", exchange)      # a ccxt exchange (sync)
    report = manager.start()        # open, load state, reconcile, start autosave
    order = manager.place_order("BTC/USDT", "limit", "buy", "0.01", "30000")
    manager.state["orders"]         # read at any time; never touches disk
    manager.save()                  # before a critical operation
    manager.close()                 # final snapshot, release the journal

:class:`AsyncStateManager` is the twin for ``ccxt.async_support`` bots (the
order methods and ``start``/``reconcile`` are coroutines).

**Safe mode.** While an operation is unresolved (the exchange could not say
whether it happened), new orders and edits are refused with
:class:`SafeModeError` -- the bot might otherwise double its exposure -- unless
it passes ``allow_unsafe=True`` (or sets ``manager.allow_unsafe``). Cancels
are always allowed: they only reduce risk. ``reconcile()`` may be called at
any time; when nothing is left unresolved, safe mode ends.

**Errors.** Background work (autosave, compaction, emergency backups) never
raises into the bot; :meth:`health` reports it. Foreground calls raise only
when the bot must not proceed: :class:`SafeModeError`; the order helpers'
:class:`~recovery.orders.OrderInDoubtError` and
:class:`~recovery.orders.OrderAbortedError`; ccxt's own exception for a
definite refusal (the operation is journaled as aborted); and
:class:`~journal.JournalError` when an intent could not be made durable (the
order was not sent).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from journal import Journal
from journal.state import State
from journal.state.autosave import AutoSaver, install_signal_handlers
from journal.state.orders import is_open
from journal.state.reducers import Reducers
from journal.state.store import StateStore

from .aio_orders import AsyncOrderJournal
from .errors import RecoveryError
from .orders import OrderInDoubtError, OrderJournal
from .reconcile import AsyncReconciler, Reconciler, ReconcileReport

__all__ = ["AsyncStateManager", "SafeModeError", "StateManager", "scrub_exchange_logs"]

log = logging.getLogger("recovery.manager")

OrdersT = TypeVar("OrdersT", OrderJournal, AsyncOrderJournal)


class _ScrubSecrets(logging.Filter):
    """Removes an exchange's credentials from log records (ccxt logs request headers at DEBUG)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for s in self.secrets:
                message = message.replace(s, "***")
            record.msg, record.args = message, None
        return True


#: ccxt's loggers (filters are not inherited by child loggers, so each is named).
_CCXT_LOGGERS = ("ccxt", "ccxt.base.exchange", "ccxt.async_support.base.exchange")


def scrub_exchange_logs(exchange: Any) -> None:
    """Keep ``exchange``'s API key and secret out of ccxt's log records (idempotent)."""
    secrets = [str(getattr(exchange, name, "") or "") for name in ("apiKey", "secret", "password", "privateKey")]
    for name in _CCXT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ScrubSecrets) and f.secrets == [s for s in secrets if s and len(s) >= 4]
                   for f in logger.filters):  # fmt: skip
            logger.addFilter(_ScrubSecrets(secrets))


class SafeModeError(RecoveryError):
    """New orders are refused while operations are unresolved."""


class _Core(Generic[OrdersT]):
    orders: OrdersT | None = None

    def __init__(
        self,
        path: str | os.PathLike[str],
        exchange: Any = None,
        *,
        reducers: Reducers | None = None,
        journal_settings: Mapping[str, Any] | None = None,
        store_settings: Mapping[str, Any] | None = None,
        autosave_settings: Mapping[str, Any] | None = None,
        reconcile_settings: Mapping[str, Any] | None = None,
        order_settings: Mapping[str, Any] | None = None,
        allow_unsafe: bool = False,
        signal_handlers: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.exchange = exchange
        if exchange is not None:
            scrub_exchange_logs(exchange)
        self.allow_unsafe = allow_unsafe
        self._reducers = reducers
        self._journal_settings = dict(journal_settings or {})
        self._store_settings = dict(store_settings or {})
        self._autosave_settings = dict(autosave_settings or {})
        self._reconcile_settings = dict(reconcile_settings or {})
        self._order_settings = dict(order_settings or {})
        self._signal_handlers = signal_handlers
        self.journal: Journal | None = None
        self.store: StateStore | None = None
        self.saver: AutoSaver | None = None
        self.last_report: ReconcileReport | None = None
        self.unresolved: list[dict[str, Any]] = []
        self.errors = 0
        self.started_ns: int | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------

    def _open(self) -> None:
        if self.journal is not None:
            raise RecoveryError(f"{self.path}: start() was already called")
        self.journal = Journal(self.path, **self._journal_settings)
        try:
            self.store = StateStore(self.journal, reducers=self._reducers, **self._store_settings)
        except BaseException:
            self.journal.close()
            self.journal = None
            raise
        self.started_ns = time.time_ns()
        pending = self.journal.pending_ids()
        self.unresolved = [{"op": op, "why": "not reconciled yet"} for op in pending]
        if self._signal_handlers:
            install_signal_handlers(self.close)

    def _start_autosave(self) -> None:
        assert self.store is not None
        self.saver = AutoSaver(self.store, **self._autosave_settings)

    def _after_reconcile(self, report: ReconcileReport) -> ReconcileReport:
        self.last_report = report
        self.unresolved = list(report.unresolved)
        if self.unresolved:
            log.warning(
                "%s: %d operation(s) unresolved: safe mode (new orders refused) until reconcile() settles them",
                self.path,
                len(self.unresolved),
            )
        if self.saver is not None:
            self.saver.save_now()
        return report

    def _offline_report(self) -> ReconcileReport:
        assert self.journal is not None
        report = ReconcileReport(
            unresolved=[
                {
                    "op": r.op,
                    "client_id": r.client_id,
                    "symbol": (r.data or {}).get("symbol"),
                    "why": "offline: no exchange",
                }
                for r in self.journal.pending()
            ],  # fmt: skip
            errors=["offline: no exchange given"],
        )
        return report

    @property
    def safe_mode(self) -> bool:
        """True while operations are unresolved (new orders refused unless ``allow_unsafe``)."""
        return bool(self.unresolved)

    def _check_open(self) -> Journal:
        if self.journal is None or self.store is None:
            raise RecoveryError(f"{self.path}: call start() first")
        if self._closed:
            raise RecoveryError(f"{self.path}: the manager is closed")
        return self.journal

    def _orders(self) -> OrdersT:
        """The order helper (sync or async, by subclass); an offline manager has none."""
        if self.orders is None:
            raise RecoveryError(f"{self.path}: no exchange given: orders cannot be sent (offline start)")
        return self.orders

    @contextmanager
    def _watch_doubt(self) -> Iterator[None]:
        """An operation left pending at run time puts the manager in safe mode until a reconcile."""
        try:
            yield
        except OrderInDoubtError as exc:
            self.unresolved.append({"op": exc.op_id, "client_id": exc.client_id, "symbol": exc.symbol,
                                    "why": "in doubt at run time"})  # fmt: skip
            log.warning("%s: op %d in doubt: safe mode until reconcile() settles it", self.path, exc.op_id)
            raise

    def _check_safe(self, what: str, allow_unsafe: bool | None) -> None:
        self._check_open()
        if self.safe_mode and not (self.allow_unsafe if allow_unsafe is None else allow_unsafe):
            ops = ", ".join(str(u.get("op")) for u in self.unresolved[:5])
            raise SafeModeError(
                f"{self.path}: {what} refused: {len(self.unresolved)} operation(s) unresolved (op {ops}); "
                "call reconcile() when the exchange answers, settle them with `journal resolve`, "
                "or pass allow_unsafe=True"
            )

    # -- reading -------------------------------------------------------------

    @property
    def state(self) -> State:
        """The live state (sections are read-only views; use :meth:`view` from other threads)."""
        if self.store is None:
            raise RecoveryError(f"{self.path}: call start() first")
        return self.store.state

    def view(self) -> State:
        """A consistent copy of the state."""
        if self.store is None:
            raise RecoveryError(f"{self.path}: call start() first")
        return self.store.view()

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Orders in flight or open, optionally of one symbol."""
        return [
            o for o in self.view()["orders"].values()
            if is_open(o) and (symbol is None or o.get("symbol") == symbol)
        ]  # fmt: skip

    def health(self) -> dict[str, Any]:
        """Lag, last save, unresolved operations, errors counted, journal latencies."""
        out: dict[str, Any] = {"path": self.path, "started": self.journal is not None, "closed": self._closed}
        if self.journal is None or self.store is None:
            return out
        saver = self.saver.status() if self.saver else {}
        now = time.time_ns()
        last_save = self.store.last_save_ns
        jstats = self.journal.stats() if not self._closed else {}
        out.update(
            {
                "safe_mode": self.safe_mode,
                "unresolved": list(self.unresolved),
                "pending": len(self.journal.pending_ids()) if not self._closed else None,
                "records_since_save": self.store.records_since_save,
                "last_save_age_s": None if last_save is None else round((now - last_save) / 1e9, 3),
                "errors": self.errors + int(saver.get("failures", 0)) + self.store.reducer_errors,
                "autosave": saver,
                "last_reconcile": None if self.last_report is None else self.last_report.as_dict(),
                "append_latency": jstats.get("append_latency"),
                "sync_latency": jstats.get("sync_latency"),
            }
        )
        return out

    # -- writing -------------------------------------------------------------

    def save(self) -> bool:
        """A snapshot now (before a critical operation); False if it failed (logged, backed up)."""
        self._check_open()
        if self.saver is not None:
            return self.saver.save_now()
        try:
            assert self.store is not None
            self.store.save()
            return True
        except Exception:
            self.errors += 1
            log.exception("save of %s failed", self.path)
            return False

    def set_strategy(
        self, name: str, *, active: bool | None = None, params: Mapping[str, Any] | None = None, context: Any = None
    ) -> int:
        """Journal a strategy change (merged into ``state['strategies'][name]``)."""
        j = self._check_open()
        data: dict[str, Any] = {"name": name}
        if active is not None:
            data["active"] = active
        if params is not None:
            data["params"] = dict(params)
        if context is not None:
            data["context"] = context
        return j.record("strategy", data)

    def set(self, section: str, key: str, value: Any, *, reason: str = "") -> int:
        """Journal a direct state change (custom sections); None deletes."""
        self._check_open()
        assert self.store is not None
        return self.store.set(section, key, value, reason=reason)

    def close(self) -> None:
        """Graceful shutdown: final snapshot, release the journal. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.saver is not None:
                self.saver.close()
            elif self.store is not None:
                self.store.save()
        except Exception:
            log.exception("final save of %s failed", self.path)
        finally:
            if self.journal is not None:
                try:
                    self.journal.close()
                except Exception:
                    log.exception("closing %s failed", self.path)
            log.info("state manager of %s closed", self.path)


class StateManager(_Core[OrderJournal]):
    """The state-management service for a bot using a sync ccxt exchange (or none: offline)."""

    def start(self) -> ReconcileReport:
        """Open the journal, load the state, reconcile with the exchange, start the autosave."""
        self._open()
        assert self.journal is not None
        if self.exchange is not None:
            self.orders = OrderJournal(self.journal, self.exchange, **self._order_settings)
        self._start_autosave()
        return self.reconcile()

    def reconcile(self) -> ReconcileReport:
        """Settle pending operations and sync orders, fills and balances (idempotent)."""
        j = self._check_open()
        assert self.store is not None
        if self.exchange is None:
            return self._after_reconcile(self._offline_report())
        report = Reconciler(j, self.store, self.exchange, **self._reconcile_settings).run()
        return self._after_reconcile(report)

    def place_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: Any,
        price: Any = None,
        params: Mapping[str, Any] | None = None,
        *,
        allow_unsafe: bool | None = None,
    ) -> dict[str, Any]:
        """Place an order through the journal (see :class:`~recovery.orders.OrderJournal`)."""
        self._check_safe("place_order", allow_unsafe)
        with self._watch_doubt():
            return self._orders().place_order(symbol, type, side, amount, price, params)

    def cancel_order(self, client_id_or_order: str | Mapping[str, Any], symbol: str) -> dict[str, Any]:
        """Cancel an order through the journal (allowed in safe mode)."""
        self._check_open()
        with self._watch_doubt():
            return self._orders().cancel_order(client_id_or_order, symbol)

    def edit_order(
        self,
        client_id_or_order: str | Mapping[str, Any],
        symbol: str,
        type: str,
        side: str,
        amount: Any,
        price: Any = None,
        *,
        allow_unsafe: bool | None = None,
    ) -> dict[str, Any]:
        """Replace an order through the journal; returns the new order."""
        self._check_safe("edit_order", allow_unsafe)
        with self._watch_doubt():
            return self._orders().edit_order(client_id_or_order, symbol, type, side, amount, price)

    def record_fill(self, trade: Mapping[str, Any], client_id: str | None = None) -> int:
        """Journal a fill the bot saw (websocket, polling)."""
        self._check_open()
        return self._orders().record_fill(trade, client_id)

    def record_order_update(self, order: Mapping[str, Any], client_id: str | None = None) -> int:
        """Journal an order status change the bot saw."""
        self._check_open()
        return self._orders().record_order_update(order, client_id)

    def __enter__(self) -> StateManager:
        if self.journal is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStateManager(_Core[AsyncOrderJournal]):
    """The twin of :class:`StateManager` for ``ccxt.async_support`` exchanges."""

    async def start(self) -> ReconcileReport:
        self._open()
        assert self.journal is not None
        if self.exchange is not None:
            self.orders = AsyncOrderJournal(self.journal, self.exchange, **self._order_settings)
        self._start_autosave()
        return await self.reconcile()

    async def reconcile(self) -> ReconcileReport:
        j = self._check_open()
        assert self.store is not None
        if self.exchange is None:
            return self._after_reconcile(self._offline_report())
        report = await AsyncReconciler(j, self.store, self.exchange, **self._reconcile_settings).run()
        return self._after_reconcile(report)

    async def place_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: Any,
        price: Any = None,
        params: Mapping[str, Any] | None = None,
        *,
        allow_unsafe: bool | None = None,
    ) -> dict[str, Any]:
        self._check_safe("place_order", allow_unsafe)
        with self._watch_doubt():
            return await self._orders().place_order(symbol, type, side, amount, price, params)

    async def cancel_order(self, client_id_or_order: str | Mapping[str, Any], symbol: str) -> dict[str, Any]:
        self._check_open()
        with self._watch_doubt():
            return await self._orders().cancel_order(client_id_or_order, symbol)

    async def edit_order(
        self,
        client_id_or_order: str | Mapping[str, Any],
        symbol: str,
        type: str,
        side: str,
        amount: Any,
        price: Any = None,
        *,
        allow_unsafe: bool | None = None,
    ) -> dict[str, Any]:
        self._check_safe("edit_order", allow_unsafe)
        with self._watch_doubt():
            return await self._orders().edit_order(client_id_or_order, symbol, type, side, amount, price)

    async def record_fill(self, trade: Mapping[str, Any], client_id: str | None = None) -> int:
        self._check_open()
        return await self._orders().record_fill(trade, client_id)

    async def record_order_update(self, order: Mapping[str, Any], client_id: str | None = None) -> int:
        self._check_open()
        return await self._orders().record_order_update(order, client_id)
