"""The StateManager a bot links in-process: journal, state, reconciliation, autosave.

::

    from recovery import StateManager

    manager = StateManager("bot.journal", exchange)      # a ccxt exchange (sync)
    report = manager.start()        # open, load state, reconcile, start autosave
    order = manager.place_order("BTC/USDT", "limit", "buy", "0.01", "30000")
    manager.state["orders"]         # read at any time; never touches disk
    manager.save()                  # before a critical operation
    manager.close()                 # final snapshot, release the journal

:class:`AsyncStateManager` is the same manager for ``ccxt.async_support`` bots:
every method that talks to the exchange or the disk is a coroutine, journal
writes run in a worker thread (never an fsync on the event loop), and it is an
async context manager (``async with AsyncStateManager(path, exchange) as m``).
Both classes bind one implementation (:class:`ManagerFlows`, see
:mod:`recovery.flows`): their methods share signature and documentation.

**Safe mode.** While an operation is unresolved (the exchange could not say
whether it happened), or the last reconciliation could not ask the exchange
everything it needed (the exchange unreachable, the API key refused), new
orders and edits are refused with :class:`SafeModeError` -- the bot might
otherwise double its exposure or trade on a stale state -- unless it passes
``allow_unsafe=True`` (or sets ``manager.allow_unsafe``). Cancels are always
allowed: they only reduce risk. :meth:`ManagerFlows.safe_mode_reasons` says
why; ``health()`` shows it; a bot can subscribe with
:meth:`ManagerFlows.on_safe_mode` instead of polling, and every transition is
journaled as a ``safe_mode`` event (and the status once per run, at its first
reconciliation, so the journal's last such event is the bot's status). After an
incomplete reconciliation the manager retries by itself, with backoff
(``retry_backoff_s`` doubling up to ``retry_max_s``), each try inside the
reconciliation's request budget, and leaves safe mode on the first complete
one. After a complete one that left an operation inside its settle window, it
reconciles again by itself once that window has passed.

**Errors.** Background work (autosave, compaction, emergency backups, the
retries) never raises into the bot; :meth:`ManagerFlows.health` reports it.
Foreground calls raise only when the bot must not proceed: :class:`SafeModeError`;
the order helpers' :class:`~recovery.errors.OrderInDoubtError` and
:class:`~recovery.errors.OrderAbortedError`; ccxt's own exception for a
definite refusal (the operation is journaled as aborted); and
:class:`~journal.JournalError` when an intent could not be made durable (the
order was not sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from journal import AutoSaveSettings, Journal, JournalSettings, StoreSettings, settings_from
from journal.state.autosave import AutoSaver, install_signal_handlers
from journal.state.orders import is_open, trade_key
from journal.state.reducers import Reducers
from journal.state.state import State
from journal.state.store import StateStore

from .errors import ManagerStateError, OrderInDoubtError, SafeModeError
from .flows import Flow, arun, blocking, local
from .live import LiveFeed, advances
from .normalize import normalize_order, normalize_trade
from .orders import Order, OrderFlows, OrderSettings, Params, Target, record_new_fills
from .reconcile import ReconcileFlows, ReconcileReport, ReconcileSettings
from .venue import VenueProfile, profile_for, settle_window_ms

__all__ = ["AsyncStateManager", "ManagerFlows", "SafeModeError", "SafeModeListener", "StateManager",
           "scrub_exchange_logs"]  # fmt: skip

log = logging.getLogger("recovery.manager")

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound="ManagerFlows")

#: ``listener(active, reasons)``: called when the manager enters (True) or leaves (False) safe mode.
SafeModeListener = Callable[[bool, list[str]], Any]


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


def _exchange_reason(report: ReconcileReport) -> str:
    """Why a reconciliation was incomplete, as an operator would want to read it."""
    first = report.errors[0]
    if "AuthenticationError" in first or "PermissionDenied" in first:
        return f"the exchange refused the credentials ({first}); check the API key, its permissions and IP whitelist"
    if "offline" in first:
        return "offline: no exchange given, nothing could be checked"
    if any(name in first for name in ("NetworkError", "RequestTimeout", "ExchangeNotAvailable", "DDoSProtection",
                                      "RateLimitExceeded", "OnMaintenance", "BudgetExhausted")):  # fmt: skip
        return f"exchange unreachable or refusing requests ({first}); the state may be stale"
    return f"reconciliation incomplete ({first})"


class ManagerFlows:
    """The state manager, written once as flows; :class:`StateManager` and :class:`AsyncStateManager` bind it.

    ``journal_settings``, ``store_settings``, ``autosave_settings``,
    ``reconcile_settings`` and ``order_settings`` are the typed settings of
    each part (:class:`~journal.JournalSettings`, :class:`~journal.StoreSettings`,
    :class:`~journal.AutoSaveSettings`, :class:`~recovery.reconcile.ReconcileSettings`,
    :class:`~recovery.orders.OrderSettings`) or mappings of their fields,
    checked here: a misspelt key is a ``ValueError`` naming it and the known
    ones, before anything is opened.
    """

    #: The live feed (async managers, once started; see :mod:`recovery.live`).
    live_feed: LiveFeed | None = None

    def __init__(
        self,
        path: str | os.PathLike[str],
        exchange: Any = None,
        *,
        reducers: Reducers | None = None,
        journal_settings: JournalSettings | Mapping[str, Any] | None = None,
        store_settings: StoreSettings | Mapping[str, Any] | None = None,
        autosave_settings: AutoSaveSettings | Mapping[str, Any] | None = None,
        reconcile_settings: ReconcileSettings | Mapping[str, Any] | None = None,
        order_settings: OrderSettings | Mapping[str, Any] | None = None,
        allow_unsafe: bool = False,
        signal_handlers: bool = False,
        retry_backoff_s: float = 1.0,
        retry_max_s: float = 60.0,
        venue: VenueProfile | None = None,
    ) -> None:
        #: The journal directory.
        self.path = os.fspath(path)
        #: The ccxt exchange (None: offline, nothing can be sent or checked).
        self.exchange = exchange
        if exchange is not None:
            scrub_exchange_logs(exchange)
        #: Refuse nothing in safe mode (a bot that knows better).
        self.allow_unsafe = allow_unsafe
        self._reducers = reducers
        self._journal_settings = settings_from(JournalSettings, journal_settings, owner="Journal")
        self._store_settings = settings_from(StoreSettings, store_settings, owner="StateStore")
        self._autosave_settings = settings_from(AutoSaveSettings, autosave_settings, owner="AutoSaver")
        self._reconcile_settings = settings_from(ReconcileSettings, reconcile_settings, owner="reconcile")
        self._order_settings = settings_from(OrderSettings, order_settings, owner="order helper")
        if retry_backoff_s <= 0 or retry_max_s < retry_backoff_s:
            raise ValueError("retry_backoff_s must be > 0 and retry_max_s >= retry_backoff_s")
        self._retry_backoff_s = retry_backoff_s
        self._retry_max_s = retry_max_s
        self._signal_handlers = signal_handlers
        #: What the venue keeps findable (default: by the exchange's ccxt id; see :mod:`recovery.venue`).
        self.venue = venue or profile_for(exchange)
        #: The open journal (None before start()).
        self.journal: Journal | None = None
        #: The state kept beside it.
        self.store: StateStore | None = None
        #: The autosave service.
        self.saver: AutoSaver | None = None
        #: The order helper's flows (None offline).
        self.orders: OrderFlows | None = None
        #: The last reconciliation's report.
        self.last_report: ReconcileReport | None = None
        #: Operations the exchange could not settle (safe mode while any).
        self.unresolved: list[dict[str, Any]] = []
        #: Why the last reconciliation was incomplete (safe mode while set), else None.
        self.exchange_problem: str | None = None
        #: Errors counted in the foreground (failed saves...).
        self.errors = 0
        #: When start() ran (wall clock, ns).
        self.started_ns: int | None = None
        self._closed = False
        self._listeners: list[SafeModeListener] = []
        self._was_safe = False
        self._safe_mode_journaled = False  # the first reconcile of a run journals safe mode, changed or not
        self._retries = 0
        self._retry_at: float | None = None  # monotonic time of the next automatic reconcile
        self._state_lock = threading.Lock()
        #: One fill checked against the state and journaled at a time, whichever thread journals it (the
        #: journal-io pool has several): the cancel's lookup, reconciliation and the live feed never write a
        #: trade twice.
        self._fills_lock = threading.Lock()

    # -- driving -------------------------------------------------------------

    def io_executor(self) -> Executor | None:
        """Where journal writes run under the async driver (None: run inline)."""
        return None

    # -- lifecycle -----------------------------------------------------------

    def _open(self) -> None:
        if self.journal is not None:
            raise ManagerStateError(f"{self.path}: start() was already called")
        self.journal = Journal(self.path, self._journal_settings)
        try:
            self.store = StateStore(self.journal, reducers=self._reducers, settings=self._store_settings)
        except BaseException:
            self.journal.close()
            self.journal = None
            raise
        self.started_ns = time.time_ns()
        self.unresolved = [{"op": op, "why": "not reconciled yet"} for op in self.journal.pending_ids()]
        if self.exchange is not None:
            self.orders = OrderFlows(self.journal, self.exchange, self._order_settings, venue=self.venue,
                                     trade_known=self._trade_known, fills_lock=self._fills_lock)  # fmt: skip
        self.saver = AutoSaver(self.store, self._autosave_settings)

    def start_flow(self) -> Flow[ReconcileReport]:
        """Open the journal, load the state, start the autosave, and reconcile with the exchange.

        Returns the reconciliation's report. If it was incomplete (the exchange
        could not be asked), the manager is in safe mode with the reason and
        retries by itself (see the module docstring).
        """
        yield local(self._open)
        return (yield from self.reconcile_flow())

    def reconcile_flow(self) -> Flow[ReconcileReport]:
        """Settle pending operations and sync orders, fills and balances (idempotent; any time)."""
        j = self._check_open()
        assert self.store is not None
        if self.exchange is None:
            report = ReconcileReport(
                unresolved=[
                    {
                        "op": r.op,
                        "client_id": r.client_id,
                        "symbol": (r.data or {}).get("symbol"),
                        "why": "offline: no exchange",
                    }
                    for r in j.pending()
                ],  # fmt: skip
                errors=["offline: no exchange given"],
            )
        else:
            reconciler = ReconcileFlows(j, self.store, self.exchange, self._reconcile_settings, venue=self.venue,
                                        fills_lock=self._fills_lock)  # fmt: skip
            report = yield from reconciler.run_flow()
        yield local(self._after_reconcile, report)
        return report

    def _after_reconcile(self, report: ReconcileReport) -> None:
        with self._state_lock:
            self.last_report = report
            self.unresolved = list(report.unresolved)
            if report.complete:
                self.exchange_problem = None
                self._retries = 0
                self._retry_at = self._settle_retry_at(report)
            else:
                self.exchange_problem = _exchange_reason(report)
                delay = min(self._retry_max_s, self._retry_backoff_s * 2**self._retries)
                if report.rate_limited_until_ms is not None:  # the venue said when (Retry-After, a ban): not before
                    delay = max(delay, report.rate_limited_until_ms / 1000 - time.time())
                self._retries += 1
                self._retry_at = time.monotonic() + delay if self.exchange is not None else None
        if self.unresolved:
            log.warning("%s: %d operation(s) unresolved: safe mode (new orders refused) until they are settled",
                        self.path, len(self.unresolved))  # fmt: skip
        if self.exchange_problem:
            log.warning("%s: safe mode: %s", self.path, self.exchange_problem)
        self._safe_mode_changed()
        if self.saver is not None:
            self.saver.save_now()

    def _settle_retry_at(self, report: ReconcileReport) -> float | None:
        """When to reconcile again by itself after a complete reconciliation (monotonic; None: no need).

        An operation left inside its settle window cannot be decided yet; it can
        be once the window has passed, so the manager reconciles then (or after
        ``retry_max_s``, if sooner) instead of keeping the bot in safe mode until
        someone calls ``reconcile()``.
        """
        waiting = [u["op"] for u in report.unresolved if u.get("why") == "inside the settle window" and u.get("op")]
        if not waiting or self.exchange is None or self.journal is None:
            return None
        cfg_window = self._reconcile_settings.settle_window_ms
        window_ns = (settle_window_ms(self.exchange) if cfg_window is None else int(cfg_window)) * 1_000_000
        try:
            ends = min(self.journal.get(int(op)).ts_ns for op in waiting) + window_ns
        except Exception:  # an op compacted away meanwhile: try again after one window
            ends = time.time_ns() + window_ns
        # A little past the window by the local clock, never a busy loop, and never longer than retry_max_s:
        # the window is judged by the exchange's clock, which the local one only estimates.
        delay_s = min(self._retry_max_s, max(0.25, (ends - time.time_ns()) / 1e9 + 0.2))
        return time.monotonic() + delay_s

    # -- safe mode -----------------------------------------------------------

    @property
    def safe_mode(self) -> bool:
        """True while operations are unresolved or the exchange could not be checked (new orders refused)."""
        return bool(self.unresolved) or self.exchange_problem is not None

    def safe_mode_reasons(self) -> list[str]:
        """Why the manager is in safe mode (empty when it is not)."""
        reasons = []
        if self.exchange_problem is not None:
            reasons.append(self.exchange_problem)
        if self.unresolved:
            ops = ", ".join(f"op {u.get('op')} ({u.get('why')})" for u in self.unresolved[:5])
            more = f" and {len(self.unresolved) - 5} more" if len(self.unresolved) > 5 else ""
            reasons.append(f"{len(self.unresolved)} operation(s) unresolved: {ops}{more}")
        return reasons

    def on_safe_mode(self, listener: SafeModeListener) -> None:
        """Call ``listener(active, reasons)`` whenever safe mode begins or ends.

        A listener that is a coroutine function is scheduled on the running
        event loop (async managers). A listener's exception is logged, never
        raised into the bot.
        """
        self._listeners.append(listener)

    def _safe_mode_changed(self) -> None:
        active = self.safe_mode
        changed = active != self._was_safe
        if not changed and self._safe_mode_journaled:
            return
        self._was_safe = active
        reasons = self.safe_mode_reasons()
        if self.journal is not None and not self._closed:
            # Journaled at every change and once per run at its first reconcile, changed or not: the last
            # safe_mode event in a journal is the bot's status (a run that ended in safe mode is followed by
            # the next run's {active: false}), for `journal dump` and the fleet view.
            try:
                self.journal.record("safe_mode", {"active": active, "reasons": reasons}, source="recovery")
                self._safe_mode_journaled = True
            except Exception:
                log.exception("could not journal the safe-mode change of %s", self.path)
        if not changed:
            return
        log.log(logging.WARNING if active else logging.INFO, "%s: safe mode %s%s", self.path,
                "entered" if active else "left", f": {'; '.join(reasons)}" if reasons else "")  # fmt: skip
        for listener in list(self._listeners):
            try:
                result = listener(active, reasons)
                if asyncio.iscoroutine(result):
                    asyncio.get_running_loop().create_task(result)
            except Exception:
                log.exception("safe-mode listener of %s failed", self.path)

    def _check_open(self) -> Journal:
        if self.journal is None or self.store is None:
            raise ManagerStateError(f"{self.path}: call start() first")
        if self._closed:
            raise ManagerStateError(f"{self.path}: the manager is closed")
        return self.journal

    def _orders(self) -> OrderFlows:
        if self.orders is None:
            raise ManagerStateError(f"{self.path}: no exchange given: orders cannot be sent (offline start)")
        return self.orders

    def _check_safe(self, what: str, allow_unsafe: bool | None) -> None:
        self._check_open()
        if self.safe_mode and not (self.allow_unsafe if allow_unsafe is None else allow_unsafe):
            raise SafeModeError(f"{self.path}: {what} refused: safe mode: {'; '.join(self.safe_mode_reasons())}; "
                                f"{SafeModeError.remedy}")  # fmt: skip

    @contextlib.contextmanager
    def _watch_doubt(self) -> Iterator[None]:
        """An operation left pending at run time puts the manager in safe mode until a reconcile."""
        try:
            yield
        except OrderInDoubtError as exc:
            self.unresolved.append({"op": exc.op_id, "client_id": exc.client_id, "symbol": exc.symbol,
                                    "why": "in doubt at run time"})  # fmt: skip
            self._safe_mode_changed()
            raise

    def retry_due(self) -> bool:
        """True when an automatic reconcile is due (after an incomplete one, once its backoff has passed)."""
        return self._retry_at is not None and time.monotonic() >= self._retry_at and not self._closed

    # -- reading -------------------------------------------------------------

    @property
    def state(self) -> State:
        """The live state (sections are read-only views; use :meth:`view` from other threads)."""
        if self.store is None:
            raise ManagerStateError(f"{self.path}: call start() first")
        return self.store.state

    def view(self) -> State:
        """A consistent copy of the state."""
        if self.store is None:
            raise ManagerStateError(f"{self.path}: call start() first")
        return self.store.view()

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Orders in flight or open, optionally of one symbol."""
        return [
            o for o in self.view()["orders"].values() if is_open(o) and (symbol is None or o.get("symbol") == symbol)
        ]

    def health(self) -> dict[str, Any]:
        """Safe mode and why, lag, last save, unresolved operations, errors counted, journal latencies."""
        out: dict[str, Any] = {"path": self.path, "started": self.journal is not None, "closed": self._closed}
        if self.journal is None or self.store is None:
            return out
        saver = self.saver.status() if self.saver else {}
        now = time.time_ns()
        last_save = self.store.last_save_ns
        jstats = self.journal.stats() if not self._closed else {}
        report = self.last_report
        reconcile_errors = list(report.errors) if report is not None else []
        out.update(
            {
                "safe_mode": self.safe_mode,
                "safe_mode_reasons": self.safe_mode_reasons(),
                "unresolved": list(self.unresolved),
                "exchange_problem": self.exchange_problem,
                "pending": len(self.journal.pending_ids()) if not self._closed else None,
                "records_since_save": self.store.records_since_save,
                "last_save_age_s": None if last_save is None else round((now - last_save) / 1e9, 3),
                "errors": self.errors
                + int(saver.get("failures", 0))
                + self.store.reducer_errors
                + len(reconcile_errors),
                "reconcile_errors": reconcile_errors,
                "autosave": saver,
                "last_reconcile": None if report is None else report.as_dict(),
                "live_feed": None if self.live_feed is None else self.live_feed.status(),
                "append_latency": jstats.get("append_latency"),
                "sync_latency": jstats.get("sync_latency"),
            }
        )
        return out

    # -- orders --------------------------------------------------------------

    def place_order_flow(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: Any,
        price: Any = None,
        params: Params = None,
        *,
        tag: Any = None,
        allow_unsafe: bool | None = None,
    ) -> Flow[Order]:
        """Place an order through the journal (see :class:`~recovery.orders.OrderJournal`); refused in safe mode.

        ``tag`` (a grid level, a strategy leg) is journaled with the intent and kept on the order in
        ``state["orders"]``: a crash between placing and recording the link cannot lose it.
        """
        self._check_safe("place_order", allow_unsafe)
        with self._watch_doubt():
            return (yield from self._orders().place_order_flow(symbol, type, side, amount, price, params, tag=tag))

    def cancel_order_flow(self, client_id_or_order: Target, symbol: str) -> Flow[Order]:
        """Cancel an order through the journal (allowed in safe mode: it only reduces risk)."""
        self._check_open()
        with self._watch_doubt():
            return (yield from self._orders().cancel_order_flow(client_id_or_order, symbol))

    def edit_order_flow(
        self,
        client_id_or_order: Target,
        symbol: str,
        type: str,
        side: str,
        amount: Any,
        price: Any = None,
        *,
        tag: Any = None,
        allow_unsafe: bool | None = None,
    ) -> Flow[Order]:
        """Replace an order through the journal; returns the new order (keeping the old one's tag unless
        ``tag`` is given); refused in safe mode."""
        self._check_safe("edit_order", allow_unsafe)
        with self._watch_doubt():
            return (
                yield from self._orders().edit_order_flow(
                    client_id_or_order, symbol, type, side, amount, price, tag=tag
                )
            )

    def record_fill_flow(self, trade: Mapping[str, Any], client_id: str | None = None) -> Flow[int]:
        """Journal a fill the bot saw (websocket, polling)."""
        self._check_open()
        return (yield from self._orders().record_fill_flow(trade, client_id))

    def record_order_update_flow(self, order: Mapping[str, Any], client_id: str | None = None) -> Flow[int]:
        """Journal an order status change the bot saw."""
        self._check_open()
        return (yield from self._orders().record_order_update_flow(order, client_id))

    # -- the live feed (ccxt.pro events) ----------------------------------------

    def ingest_orders_flow(self, orders: Iterable[Mapping[str, Any]]) -> Flow[int]:
        """Journal the orders a ``watch_orders`` batch reports, each change once; returns records written.

        An order of this journal that moves forward (a new status, more filled) becomes an
        ``order_update`` with ``"via": "websocket"``; a repeated or stale report (less filled, back
        from a final status) changes nothing. Orders the state does not know are left to
        reconciliation (adoption or the external-order policy).
        """
        j = self._check_open()
        assert self.store is not None
        written = 0
        for raw in orders:
            data = normalize_order(raw)
            cid = data.get("client_id")
            known = self.store.state.get("orders", cid) if cid else None
            if cid is None or known is None or not advances(known, data):
                continue
            data["via"] = "websocket"
            data.pop("trades", None)  # fills come from watch_my_trades, by trade id
            yield local(j.record, "order_update", data, op=j.op_id_of(cid))
            written += 1
        return written

    def _trade_known(self, symbol: str, trade_id: Any) -> bool:
        """Is this trade in the state already (applied, or archived)?"""
        return self.store is not None and self.store.state.get("trades", trade_key(symbol, trade_id)) is not None

    def ingest_trades_flow(self, trades: Iterable[Mapping[str, Any]]) -> Flow[int]:
        """Journal the fills a ``watch_my_trades`` batch reports, each trade once; returns records written."""
        j = self._check_open()
        assert self.store is not None
        state = self.store.state
        by_id = {(o.get("symbol"), o.get("id")): cid for cid, o in state["orders"].items() if o.get("id")}
        fresh = []
        for raw in trades:
            data = normalize_trade(raw)
            symbol, tid = data.get("symbol"), data.get("id")
            if not symbol or tid is None or state.get("trades", trade_key(symbol, tid)) is not None:
                continue  # no id, or applied already (a replayed or duplicated frame)
            cid = data.get("client_id") or by_id.get((symbol, data.get("order_id")))
            if cid is None:
                continue  # an order the state does not know: reconciliation decides about it
            data["client_id"] = cid
            data["via"] = "websocket"
            fresh.append(data)
        if not fresh:
            return 0
        # checked again under the fills lock: the bot's own cancel (or a reconciliation) may have journaled
        # one of them since the check above
        return int((yield local(record_new_fills, j, fresh, known=self._trade_known, lock=self._fills_lock)))

    # -- state ---------------------------------------------------------------

    def save_flow(self) -> Flow[bool]:
        """A snapshot now (before a critical operation); False if it failed (logged, backed up)."""
        self._check_open()
        assert self.saver is not None
        return bool((yield local(self.saver.save_now)))

    def set_strategy_flow(
        self, name: str, *, active: bool | None = None, params: Mapping[str, Any] | None = None, context: Any = None
    ) -> Flow[int]:
        """Journal a strategy change (merged into ``state['strategies'][name]``); returns its seq."""
        j = self._check_open()
        data: dict[str, Any] = {"name": name}
        if active is not None:
            data["active"] = active
        if params is not None:
            data["params"] = dict(params)
        if context is not None:
            data["context"] = context
        return (yield local(j.record, "strategy", data))

    def set_flow(self, section: str, key: str, value: Any, *, reason: str = "") -> Flow[int]:
        """Journal a direct state change (custom sections); None deletes; returns its seq."""
        self._check_open()
        assert self.store is not None
        return (yield local(self.store.set, section, key, value, reason=reason))

    def _close(self) -> None:
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


class StateManager(ManagerFlows):
    """The state manager for a bot using a sync ccxt exchange (or none: offline). See the module docstring.

    After an incomplete reconciliation a daemon thread retries it with backoff,
    using the same ccxt exchange object as the bot (ccxt's sync clients may be
    shared by threads); while it runs, new orders are refused anyway (safe
    mode), cancels still go through.
    """

    place_order = blocking(ManagerFlows.place_order_flow)
    cancel_order = blocking(ManagerFlows.cancel_order_flow)
    edit_order = blocking(ManagerFlows.edit_order_flow)
    record_fill = blocking(ManagerFlows.record_fill_flow)
    record_order_update = blocking(ManagerFlows.record_order_update_flow)
    save = blocking(ManagerFlows.save_flow)
    set_strategy = blocking(ManagerFlows.set_strategy_flow)
    set = blocking(ManagerFlows.set_flow)
    reconcile = blocking(ManagerFlows.reconcile_flow)
    ingest_orders = blocking(ManagerFlows.ingest_orders_flow)
    ingest_trades = blocking(ManagerFlows.ingest_trades_flow)

    def start(self) -> ReconcileReport:
        report = blocking(ManagerFlows.start_flow)(self)
        if self._signal_handlers:
            install_signal_handlers(self.close)
        self._retry_thread = threading.Thread(target=self._retry_loop, name=f"reconcile-retry:{self.path}",
                                              daemon=True)  # fmt: skip
        self._retry_stop = threading.Event()
        self._retry_thread.start()
        return report

    start.__doc__ = ManagerFlows.start_flow.__doc__

    def _retry_loop(self) -> None:
        while not self._retry_stop.wait(0.1):
            if not self.retry_due():
                continue
            try:
                self.reconcile()
            except Exception:  # never into the bot: the next try comes after a longer backoff
                log.exception("automatic reconcile of %s failed", self.path)
                with self._state_lock:
                    self._retry_at = time.monotonic() + self._retry_max_s

    def close(self) -> None:
        """Graceful shutdown: final snapshot, release the journal. Idempotent; never raises."""
        stop = getattr(self, "_retry_stop", None)
        if stop is not None:
            stop.set()
            thread = self._retry_thread
            if thread is not threading.current_thread():
                thread.join(timeout=30)
        self._close()

    def __enter__(self) -> StateManager:
        if self.journal is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tracked(
    method: Callable[Concatenate[AsyncStateManager, P], Flow[T]],
) -> Callable[Concatenate[AsyncStateManager, P], Coroutine[Any, Any, T]]:
    """The coroutine twin of a flow method, counted as in flight (a signal lets it finish before closing)."""

    @functools.wraps(method)
    async def asynchronous(self: AsyncStateManager, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closing and not self._closed:
            # A signal is shutting the manager down: a new operation waits for the close (the signal
            # then ends the process as it would have) instead of failing the bot mid-shutdown.
            await self._closed_event.wait()
        if self._closed:
            raise ManagerStateError(f"{self.path}: the manager is closed")
        self._in_flight += 1
        self._idle.clear()
        try:
            return await arun(method(self, *args, **kwargs), self.exchange, io=self.io_executor())
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    return asynchronous


class AsyncStateManager(ManagerFlows):
    """The state manager for a bot using a ``ccxt.async_support`` exchange. See the module docstring.

    Every method that touches the exchange or the disk is a coroutine; journal
    writes run in the manager's own thread pool (``journal-io``), so the event
    loop never waits on an fsync. After an incomplete reconciliation a task
    retries it with backoff. With ``signal_handlers=True``, SIGTERM and SIGINT
    (through ``loop.add_signal_handler``) stop new operations, let those in
    flight finish their journaling, save, close, and then let the signal do
    what it would have done.
    """

    place_order = _tracked(ManagerFlows.place_order_flow)
    cancel_order = _tracked(ManagerFlows.cancel_order_flow)
    edit_order = _tracked(ManagerFlows.edit_order_flow)
    record_fill = _tracked(ManagerFlows.record_fill_flow)
    record_order_update = _tracked(ManagerFlows.record_order_update_flow)
    save = _tracked(ManagerFlows.save_flow)
    set_strategy = _tracked(ManagerFlows.set_strategy_flow)
    set = _tracked(ManagerFlows.set_flow)
    reconcile = _tracked(ManagerFlows.reconcile_flow)
    ingest_orders = _tracked(ManagerFlows.ingest_orders_flow)
    ingest_trades = _tracked(ManagerFlows.ingest_trades_flow)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._io: ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._closed_event = asyncio.Event()
        self._retry_task: asyncio.Task[None] | None = None
        self._signals: dict[int, Any] = {}

    __init__.__doc__ = ManagerFlows.__init__.__doc__

    def io_executor(self) -> Executor:
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="journal-io")
        return self._io

    async def start(self) -> ReconcileReport:
        report = await _tracked(ManagerFlows.start_flow)(self)
        loop = asyncio.get_running_loop()
        self._retry_task = loop.create_task(self._retry_loop(), name=f"reconcile-retry:{self.path}")
        if self._signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._signals[sig] = signal.getsignal(sig)
                loop.add_signal_handler(sig, self._on_signal, sig)
        return report

    start.__doc__ = ManagerFlows.start_flow.__doc__

    async def start_live_feed(self, exchange: Any = None, **settings: Any) -> LiveFeed:
        """Watch the exchange's order and trade stream and journal it (see :mod:`recovery.live`).

        ``exchange`` is a ccxt.pro exchange (default: the manager's own, if it is one); ``settings``
        go to :class:`~recovery.live.LiveFeed`. The feed stops when the manager closes.
        """
        self._check_open()
        if self.live_feed is not None:
            raise ManagerStateError(f"{self.path}: the live feed is already running")
        self.live_feed = LiveFeed(self, exchange if exchange is not None else self.exchange, **settings)
        await self.live_feed.start()
        return self.live_feed

    async def _retry_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(0.1)
            if not self.retry_due() or self._closing:
                continue
            try:
                await self.reconcile()
            except Exception:
                log.exception("automatic reconcile of %s failed", self.path)
                self._retry_at = time.monotonic() + self._retry_max_s

    def _on_signal(self, signum: int) -> None:
        if self._closing:
            return
        log.warning("%s: signal %d: finishing %d operation(s) in flight, then saving and closing",
                    self.path, signum, self._in_flight)  # fmt: skip
        self._closing = True
        asyncio.get_running_loop().create_task(self._shutdown_on_signal(signum))

    async def _shutdown_on_signal(self, signum: int) -> None:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=30)
        except TimeoutError:
            log.error("%s: operations still in flight after 30 s; closing anyway (they stay pending)", self.path)
        await self.close()
        loop = asyncio.get_running_loop()
        for sig, previous in self._signals.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)
        self._signals.clear()
        signal.raise_signal(signum)  # what the signal would have done without us

    async def close(self) -> None:
        """Graceful shutdown: stop the live feed, final snapshot, release the journal. Idempotent; never raises."""
        self._closing = True
        if self.live_feed is not None:
            await self.live_feed.stop()
        if self._retry_task is not None and self._retry_task is not asyncio.current_task():
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._retry_task
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.io_executor(), self._close)
        finally:
            self._closed_event.set()
            if self._io is not None:
                self._io.shutdown(wait=False)

    async def __aenter__(self) -> AsyncStateManager:
        if self.journal is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
