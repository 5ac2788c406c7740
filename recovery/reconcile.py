"""Startup reconciliation: settle every pending operation from the exchange, then sync.

:class:`Reconciler` (sync ccxt) and :class:`AsyncReconciler` (``ccxt.async_support``)
share everything but the line that sends a request:

1. **Inputs** -- the journal's pending intents and the state's orders, trades,
   balances.
2. **Gather** -- :func:`_gather` is a flow (:mod:`recovery.flows`) that
   yields the requests to send and receives their answers, so one piece of
   code plans the requests for both clients: one ``fetch_open_orders()`` for every symbol; per symbol,
   either a lookup by client id (one or two orders to find) or one
   ``fetch_orders(symbol, since)`` (more: one request covers them all,
   paginated); one ``fetch_my_trades(symbol, since)`` per symbol with orders;
   one ``fetch_balance()``. So P pending operations over M symbols cost
   O(M) requests, never P x retries. Every request goes through a
   :class:`~recovery.budget.Budget`.
3. **Decide** -- :func:`recovery.decide.decide`, pure.
4. **Apply** -- every decision is a journal record with ``source="recovery"``
   (commit, abort, ``order_update``, ``fill``, ``balances``), written in one
   synced transaction, then a ``reconcile_report`` event.

**Orders of a lost copy.** A journal directory restored from a backup (or cloned) continues
where the copy stopped, while the lost copy may have gone on placing orders: their client ids
carry this journal's prefix but an incarnation (or a sequence number) this copy's history did
not issue (:meth:`recovery.decide.Inputs.foreign`). Open ones show in ``fetch_open_orders``;
closed ones only in the histories, so once per writer incarnation (until a complete sweep is
remembered in the state, ``recovery``/``copy_sweep``) reconciliation fetches the balances first,
then ``fetch_orders(symbol, since)`` and ``fetch_my_trades(symbol, since)`` from the last record
before the first incarnation not yet swept (at most ``copy_sweep_max_ms`` back: Binance's 24 h
windows), for the state's symbols and the markets between assets held (at most
``copy_sweep_max_symbols``; see :func:`_sweep_symbols`), all inside the request budget. Another
copy's orders found there are adopted with their status, and their trades (attributed by
symbol and order id) journaled once.

Invariant that makes re-running safe: a decision is only taken from what the
exchange said, and is journaled before it counts; an operation that was
settled is no longer pending, a trade applied is deduplicated by its id, an
order already up to date produces no update. So a second run right after the
first writes nothing but its report (idempotent), and an interrupted run is
simply run again.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from typing import Any

import ccxt

from journal import Journal, JournalError, OperationStateError, settings_from
from journal.state.orders import OPEN_STATUSES, fills_missing, trade_key
from journal.state.store import StateStore

from .budget import Budget, retry_after_of
from .decide import Action, Decision, Inputs, Observations, adoptable, decide, symbols_of
from .flows import Call, Flow, blocking, coroutine, local
from .normalize import NOT_ON_EXCHANGE, archived_order, normalize_order, normalize_trade, to_decimal
from .venue import VenueProfile, profile_for, settle_window_ms

__all__ = [
    "DEFAULT_RECONCILE_SETTINGS",
    "AsyncReconciler",
    "ReconcileReport",
    "ReconcileSettings",
    "Reconciler",
]

log = logging.getLogger("recovery.reconcile")

#: Where a complete sweep for a lost copy's orders is remembered (a state section of recovery's own).
SWEEP_SECTION, SWEEP_KEY = "recovery", "copy_sweep"


@dataclasses.dataclass(frozen=True)
class ReconcileSettings:
    """Settings of reconciliation (checked when built)."""

    #: How long after an intent an absent order may still appear (None: the exchange's recvWindow + 1 s,
    #: :func:`recovery.venue.settle_window_ms`; the same window the order helpers use).
    settle_window_ms: int | None = None
    #: Requests one reconciliation may send at most (retries included).
    max_requests: int = 200
    #: The least time between two requests, seconds (on top of ccxt's own rate limiter).
    min_interval_s: float = 0.0
    #: Retries of a request the venue refused for its rate limit (429/418, -1003).
    rate_limit_retries: int = 3
    #: The first backoff after a rate-limit refusal, seconds (doubling, at most 8 s); a longer
    #: ``Retry-After`` (or 418 ban) the venue gives is honoured instead.
    rate_limit_backoff_s: float = 0.5
    #: The longest venue-given wait (``Retry-After``, a ban) reconciliation sits out itself, seconds; a
    #: longer one stops it -- nothing more is sent, the report is incomplete, "rate limited until ...",
    #: and :attr:`ReconcileReport.rate_limited_until_ms` says when to try again (the manager waits for it).
    rate_limit_max_wait_s: float = 10.0
    #: Page size of order and trade histories.
    history_limit: int = 500
    #: Pages per history at most; beyond, the history is incomplete (reported).
    max_pages: int = 50
    #: Histories start this long before the oldest time of interest, ms.
    history_margin_ms: int = 60_000
    #: Up to this many orders to find in a symbol: look each up by client id (else one history).
    lookup_threshold: int = 2
    #: Open orders that are not this journal's: ``report``, ``adopt`` or ``cancel``.
    external_policy: str = "report"
    #: An operation aborted as "not on exchange after settle window" is looked up again by every
    #: reconciliation for this long after its abort, ms (0: never): Binance serves lookups from a
    #: database that may lag the matching engine for longer than the settle window, and an order
    #: found later is corrected (status, fills) by the reconciliation that sees it.
    recheck_aborted_ms: int = 3_600_000
    #: After a writer incarnation this copy did not sweep for (a restart, a restored backup), order and
    #: trade histories are swept for orders another copy of this journal placed: from the last record
    #: before that incarnation, but at most this far back, ms (Binance's allOrders and myTrades windows
    #: are 24 h). 0: never sweep (only open orders of another copy are adopted).
    copy_sweep_max_ms: int = 86_400_000
    #: At most this many symbols are swept (each costs an order and a trade history, weight 20 + 20 a page
    #: on Binance): the state's own symbols first, then the markets between assets held; the rest is logged.
    copy_sweep_max_symbols: int = 20

    def __post_init__(self) -> None:
        if self.external_policy not in ("report", "adopt", "cancel"):
            raise ValueError(f"external_policy must be report, adopt or cancel, got {self.external_policy!r}")
        if self.recheck_aborted_ms < 0 or self.copy_sweep_max_ms < 0 or self.copy_sweep_max_symbols < 0:
            raise ValueError("recheck_aborted_ms, copy_sweep_max_ms and copy_sweep_max_symbols must be >= 0")
        if self.settle_window_ms is not None and self.settle_window_ms < 0:
            raise ValueError(f"settle_window_ms must be >= 0, got {self.settle_window_ms}")
        if self.rate_limit_max_wait_s < 0 or self.rate_limit_backoff_s < 0:
            raise ValueError("rate_limit_max_wait_s and rate_limit_backoff_s must be >= 0")
        if self.max_requests < 1 or self.history_limit < 1 or self.max_pages < 1:
            raise ValueError("max_requests, history_limit and max_pages must be >= 1")


DEFAULT_RECONCILE_SETTINGS: Mapping[str, Any] = {f.name: f.default for f in dataclasses.fields(ReconcileSettings)}


@dataclass
class ReconcileReport:
    """What one reconciliation did (also journaled as a ``reconcile_report`` event)."""

    resolved: int = 0
    aborted: int = 0
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    adopted: int = 0
    external: list[dict[str, Any]] = field(default_factory=list)
    order_updates: int = 0
    fills_applied: int = 0
    balance_corrections: int = 0
    requests: int = 0
    rate_limited: int = 0
    #: The venue refused requests for its rate limit until then (local wall clock, ms): nothing was sent
    #: after the refusal, and no reconciliation should be tried before (None: not rate limited).
    rate_limited_until_ms: int | None = None
    errors: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def complete(self) -> bool:
        """True when every query was answered: the state was compared with the exchange in full."""
        return not self.errors

    @property
    def clean(self) -> bool:
        """True when the reconciliation was complete and nothing is left unresolved."""
        return self.complete and not self.unresolved

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "complete": self.complete, "clean": self.clean}

    def __str__(self) -> str:
        text = (
            f"resolved {self.resolved}, aborted {self.aborted}, unresolved {len(self.unresolved)}, "
            f"adopted {self.adopted}, external {len(self.external)}, order updates {self.order_updates}, "
            f"fills {self.fills_applied}, balance corrections {self.balance_corrections}, "
            f"{self.requests} requests, {self.duration_ms:.0f} ms"
        )
        if self.errors:
            more = f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            text += f"; INCOMPLETE, {len(self.errors)} error(s): {self.errors[0]}{more}"
        return text


class ExchangeClock:
    """The exchange's clock, as estimated from its ``fetch_time`` answer (issue 12.4).

    The settle window is judged against the exchange's time, not the bot's: Binance executes a
    signed request only while its own clock is within ``recvWindow`` of the request's timestamp,
    so "absent once the exchange's clock has passed the intent's time plus the window" holds
    whatever the local wall clock did in between (a step back used to keep the bot in safe mode
    for as long as the step; a step forward could have aborted an order still able to execute).
    Without an answer the local clock stands in.
    """

    def __init__(self) -> None:
        self.offset_ms = 0
        self.known = False

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def measure(self, budget: Budget, errors: list[str]) -> Flow[None]:
        before = time.time_ns() // 1_000_000
        try:
            server = yield from budget.call(Call("fetch_time"))
        except Exception as exc:  # not an error of the reconciliation: the local clock stands in
            log.warning(
                "fetch_time failed (%s: %s): judging settle windows by the local clock", type(exc).__name__, exc
            )
            return
        after = time.time_ns() // 1_000_000
        if isinstance(server, int | float):
            self.offset_ms = int(server) - (before + after) // 2
            self.known = True


def _ask(budget: Budget, request: Call, errors: list[str], what: str) -> Flow[tuple[bool, Any]]:
    """``(True, answer)``, or ``(False, exception)`` with the error noted; every request goes through the budget."""
    try:
        return True, (yield from budget.call(request))
    except Exception as exc:  # every answer, good or bad (BudgetExhausted too), goes to the planner
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
        return False, exc


def _pages(
    budget: Budget,
    clock: ExchangeClock,
    method: str,
    symbol: str,
    since: int,
    cfg: ReconcileSettings,
    errors: list[str],
    norm: Any,
) -> Flow[tuple[list[dict[str, Any]], bool, int | None]]:
    """Every row of a ``since``-paginated history; ``(rows, complete, ms of the first answer)``.

    A history is complete only when a page brings nothing new: a short page
    is not proof of the end, since venues cap page sizes below what was asked.
    """
    limit = cfg.history_limit
    cursor = since
    rows: dict[str, dict[str, Any]] = {}
    first_ms: int | None = None
    for _ in range(cfg.max_pages):
        ok, result = yield from _ask(
            budget, Call(method, (symbol,), {"since": cursor, "limit": limit}), errors, f"{method} {symbol}"
        )
        if not ok:
            return list(rows.values()), False, first_ms
        first_ms = first_ms if first_ms is not None else clock.now_ms()
        page = [norm(r) for r in result or []]
        new = [r for r in page if str(r.get("id")) not in rows]
        if not new:
            return list(rows.values()), True, first_ms
        for r in new:
            rows[str(r.get("id"))] = r
        cursor = max(cursor, max(int(r.get("timestamp") or 0) for r in new))
    errors.append(f"{method} {symbol}: more than {cfg.max_pages} pages; history left incomplete")
    return list(rows.values()), False, first_ms


def _intent_ms(rec: Any) -> int:
    return int(rec.ts_ns // 1_000_000)


def _gather(
    inputs: Inputs,
    budget: Budget,
    clock: ExchangeClock,
    cfg: ReconcileSettings,
    errors: list[str],
    venue: VenueProfile,
    markets_of: Callable[[], Mapping[str, Any]] = dict,
) -> Flow[Observations]:
    """Plan and interpret the exchange queries (see the module docstring)."""
    obs = Observations()
    sweep_complete = True
    if inputs.pending:
        yield from clock.measure(budget, errors)
    symbols = symbols_of(inputs)
    #: trades are fetched from these times on (ms), besides the state's and the pending ops' own
    since_more: dict[str, list[int]] = {}
    ok, result = yield from _ask(budget, Call("fetch_open_orders"), errors, "fetch_open_orders")
    if ok:
        obs.open_orders_all = [normalize_order(o) for o in result or []]
        for order in obs.open_orders_all:
            if order.get("client_id") and order.get("symbol"):
                obs.view(order["symbol"]).orders[order["client_id"]] = order
        # an open order of ours the state does not know is adopted with its fills in this same pass:
        # fetch its symbol's trades from the order's time on
        for order in adoptable(inputs, obs):
            since_more.setdefault(order["symbol"], []).append(int(order.get("timestamp") or 0))
        symbols = sorted(set(symbols) | set(since_more))
        for symbol in symbols:
            obs.view(symbol).open_ok = True
    sweep: list[str] = []
    balances_asked = False
    if inputs.sweep_from_ms is not None and ok:
        # the balances first: the markets between the assets held are where a lost copy may have traded
        balances_asked = True
        ok_bal, result = yield from _ask(budget, Call("fetch_balance"), errors, "fetch_balance")
        if ok_bal:
            obs.balances = _balances(result or {}, inputs)
            markets = yield local(markets_of)
            sweep = _sweep_symbols(inputs, obs, markets, cfg)
            since_sweep = max(0, inputs.sweep_from_ms - cfg.history_margin_ms + min(0, clock.offset_ms))
            for symbol in sweep:
                since_more.setdefault(symbol, []).append(since_sweep)
            symbols = sorted(set(symbols) | set(sweep))
            for symbol in symbols:
                obs.view(symbol).open_ok = True
    for symbol in symbols:
        view = obs.view(symbol)
        wanted: dict[str, int] = {}  # client id -> since ms
        for rec in inputs.pending:
            data = rec.data or {}
            rec_symbol = data.get("symbol") or (inputs.orders.get(data.get("client_id") or "") or {}).get("symbol")
            if rec_symbol != symbol:
                continue
            cid = data.get("client_id") if rec.type == "cancel_order" else rec.client_id
            if cid and cid not in view.orders:
                if rec.type == "cancel_order":  # the target was placed before the cancel: since then
                    placed = (inputs.orders.get(cid) or {}).get("timestamp")
                    wanted[cid] = int(placed) if isinstance(placed, int) else 0
                else:
                    wanted[cid] = _intent_ms(rec)
        for known_cid, known in inputs.orders.items():
            if known.get("symbol") == symbol and known.get("status") == "open" and known_cid not in view.orders:
                wanted[known_cid] = int(known.get("timestamp") or 0)
        for recheck_cid, intent_ms in inputs.rechecks.items():  # aborted, maybe wrongly (a lagging database)
            if (inputs.orders.get(recheck_cid) or {}).get("symbol") == symbol and recheck_cid not in view.orders:
                wanted[recheck_cid] = intent_ms
        # orders the history may omit (past the venue's horizon) are looked up one by one
        singles = sorted(c for c, ms in wanted.items() if venue.history_may_omit(clock.now_ms() - ms))
        if wanted and len(wanted) <= cfg.lookup_threshold:
            singles = sorted(wanted)
        rest = {c: ms for c, ms in wanted.items() if c not in singles}
        if symbol in sweep:  # the whole order history since the gap (lookups still settle the wanted ones)
            rest[""] = min(since_more[symbol])
        if singles:
            for cid in singles:
                try:
                    result = yield from budget.call(
                        Call("fetch_order", (None, symbol), {"params": {"clientOrderId": cid}})
                    )
                    exc = None
                except Exception as e:
                    result, exc = None, e
                if exc is None and result:
                    view.orders[cid] = normalize_order(result, client_id=cid)
                    view.lookups[cid] = True
                    view.lookup_ms[cid] = clock.now_ms()
                elif exc is not None and venue.archived(exc):
                    # the order existed and ended canceled or expired with nothing filled (Binance -2026)
                    view.orders[cid] = archived_order(cid, symbol)
                    view.lookups[cid] = True
                    view.lookup_ms[cid] = clock.now_ms()
                elif isinstance(exc, ccxt.OrderNotFound):
                    view.lookups[cid] = True  # authoritative: the exchange does not know it
                    view.lookup_ms[cid] = clock.now_ms()
                elif exc is not None:
                    errors.append(f"fetch_order {symbol} {cid}: {type(exc).__name__}: {exc}")
        if rest:
            # intents carry local times; the exchange stamps orders with its own (behind ours when offset < 0)
            since = max(0, min(rest.values()) - cfg.history_margin_ms + min(0, clock.offset_ms))
            rows, complete, first_ms = yield from _pages(
                budget, clock, "fetch_orders", symbol, since, cfg, errors, normalize_order
            )
            # a history fetched for the sweep alone keeps only what it was fetched for: another copy's orders
            # (and the wanted ones); the others' would count as "explained" trades (decide._unexplained_trades)
            sweep_only = symbol in sweep and set(rest) == {""}
            for order in rows:
                row_cid = order.get("client_id")
                if row_cid and (not sweep_only or row_cid in wanted or inputs.foreign(row_cid)):
                    view.orders.setdefault(row_cid, order)
            if complete:
                view.history_from_ms = since
                view.answered_ms = first_ms
            if symbol in sweep:
                view.swept = {c for c in view.orders if inputs.foreign(c)}
                if not complete:
                    sweep_complete = False
        # trades since the oldest order we care about in this symbol
        stamps = [int(o.get("timestamp") or 0) for o in inputs.orders.values()
                  if o.get("symbol") == symbol and (o.get("status") in OPEN_STATUSES or fills_missing(o))]  # fmt: skip
        stamps += [_intent_ms(r) for r in inputs.pending if (r.data or {}).get("symbol") == symbol]
        stamps += since_more.get(symbol, [])
        stamps += [ms for c, ms in inputs.rechecks.items() if (inputs.orders.get(c) or {}).get("symbol") == symbol]
        stamps = [s for s in stamps if s > 0]
        if stamps:
            since = max(0, min(stamps) - cfg.history_margin_ms)
            trades, view.trades_ok, _ = yield from _pages(
                budget,
                clock,
                "fetch_my_trades",
                symbol,
                since,
                cfg,
                errors,
                lambda t, s=symbol: normalize_trade(t, symbol=s),
            )
            view.trades.extend(trades)
            if symbol in sweep and not view.trades_ok:
                sweep_complete = False
    if not balances_asked:
        ok, result = yield from _ask(budget, Call("fetch_balance"), errors, "fetch_balance")
        if ok:
            obs.balances = _balances(result or {}, inputs)
    if inputs.sweep_from_ms is not None and sweep_complete and obs.balances is not None and not errors:
        obs.sweep = {"from_ms": inputs.sweep_from_ms, "symbols": sweep}
    return obs


def _sweep_symbols(inputs: Inputs, obs: Observations, markets: Mapping[str, Any], cfg: ReconcileSettings) -> list[str]:
    """The symbols swept for a lost copy's orders, in order, at most ``copy_sweep_max_symbols``.

    First every symbol the state knows (its orders of any status, its positions, the pending
    operations'), then every spot market whose base and quote are both assets held, in the state's
    balances or the exchange's (a copy that traded there moved one of them, or both). A market
    traded down to nothing of both assets on either side is beyond what balances can show.
    """
    known = {str(o["symbol"]) for o in inputs.orders.values() if o.get("symbol")}
    known |= {s for s in symbols_of(inputs)}
    held = {a for a, b in (obs.balances or {}).items() if b.get("total")}
    held |= {a for a, b in inputs.balances.items() if b.get("total")}
    pairs = {
        str(symbol)
        for symbol, m in markets.items()
        if isinstance(m, Mapping) and m.get("spot", True) and m.get("active") is not False
        and m.get("base") in held and m.get("quote") in held
    }  # fmt: skip
    ranked = sorted(known & set(markets) if markets else known) + sorted(pairs - known)
    if len(ranked) > cfg.copy_sweep_max_symbols:
        log.warning("sweeping %d of %d symbols for orders another copy of this journal placed (copy_sweep_max_symbols): "
                    "not %s", cfg.copy_sweep_max_symbols, len(ranked), ranked[cfg.copy_sweep_max_symbols :])  # fmt: skip
    return ranked[: cfg.copy_sweep_max_symbols]


def _balances(raw: dict[str, Any], inputs: Inputs) -> dict[str, dict[str, Any]]:
    """ccxt's balance structure -> {asset: {free, used, total}}, for assets held or known."""
    out = {}
    total = raw.get("total") or {}
    for asset in sorted(set(total) | set(inputs.balances)):
        t = to_decimal(total.get(asset), name=f"{asset} total")
        if not t and asset not in inputs.balances:
            continue
        out[asset] = {
            "free": to_decimal((raw.get("free") or {}).get(asset), name=f"{asset} free"),
            "used": to_decimal((raw.get("used") or {}).get(asset), name=f"{asset} used"),
            "total": t,
        }
    return out


class ReconcileFlows:
    """One reconciliation run as a flow; :class:`Reconciler` and :class:`AsyncReconciler` bind it to a driver.

    Invariant that makes re-running safe (see the module docstring): every
    decision comes from what the exchange said and is journaled before it
    counts, so a second run right after the first writes nothing but its
    report, and an interrupted run is simply run again.
    """

    def __init__(
        self,
        journal: Journal,
        store: StateStore,
        exchange: Any,
        settings: ReconcileSettings | Mapping[str, Any] | None = None,
        *,
        io: Executor | None = None,
        venue: VenueProfile | None = None,
        fills_lock: threading.Lock | None = None,
        **kw: Any,
    ) -> None:
        #: The checked settings.
        self.cfg = settings_from(ReconcileSettings, settings, owner="reconcile", **kw)
        #: Held while a fill is checked against the state and journaled (shared with the order helpers and
        #: the live feed, whose journal writes may run in other threads): a trade is journaled once.
        self.fills_lock = fills_lock or threading.Lock()
        #: What the venue keeps findable (default: by the exchange's ccxt id).
        self.venue = venue or profile_for(exchange)
        self.journal = journal
        self.store = store
        self.exchange = exchange
        self._io = io

    def io_executor(self) -> Executor | None:
        return self._io

    def settle_window_ms(self) -> int:
        if self.cfg.settle_window_ms is not None:
            return int(self.cfg.settle_window_ms)
        return settle_window_ms(self.exchange)

    def _markets(self) -> Mapping[str, Any]:
        """The exchange's markets as ccxt loaded them (the open-orders query loads them first)."""
        markets = getattr(self.exchange, "markets", None)
        return markets if isinstance(markets, Mapping) else {}

    def _signing_offsets_ms(self, clock: ExchangeClock) -> tuple[int, ...]:
        """What the client may have added to an intent's local time when it signed the request (ms).

        ccxt's binance signs with ``milliseconds() - options["timeDifference"]`` when
        ``options["adjustForTimeDifference"]`` is on (the difference is measured in ``load_markets``):
        the dead bot's request then carried the intent's local time plus the exchange's lead, which
        this client's difference and the exchange clock measured now both estimate (a bot that
        journaled the difference with each intent would know it exactly). 0 stands for a request
        signed before the difference was known, or without adjusting.
        """
        out = {0}
        options = getattr(self.exchange, "options", None) or {}
        if options.get("adjustForTimeDifference"):
            difference = options.get("timeDifference")
            if isinstance(difference, int | float) and not isinstance(difference, bool):
                out.add(-int(difference))
            if clock.known:
                out.add(clock.offset_ms)
        return tuple(sorted(out))

    def _budget(self, clock: ExchangeClock) -> Budget:
        return Budget(
            self.cfg.max_requests,
            min_interval_s=self.cfg.min_interval_s,
            retries=self.cfg.rate_limit_retries,
            backoff_s=self.cfg.rate_limit_backoff_s,
            max_wait_s=self.cfg.rate_limit_max_wait_s,
            retry_after=retry_after_of(self.exchange, lambda: clock.offset_ms),
        )

    def _inputs(self) -> Inputs:
        view = self.store.view()
        return Inputs(
            journal_id=self.journal.journal_id,
            pending=self.journal.pending(),
            orders=view["orders"],
            trades=view["trades"],
            balances=view["balances"],
            rechecks=self._rechecks(view["orders"]),
            incarnations=self.journal.incarnations,
            sweep_from_ms=self._sweep_from_ms(view.get(SWEEP_SECTION, SWEEP_KEY)),
        )

    def _sweep_from_ms(self, done: Any) -> int | None:
        """Since when another copy of this journal may have placed orders this copy does not know (ms), or None.

        Every incarnation begins where this copy's history stopped; another copy (the one a backup was
        taken from, a clone) may have gone on from there. So the gap to sweep starts at the last record
        before the oldest incarnation that no complete sweep covered yet (``done``: the marker a
        complete sweep journals, naming its incarnation), capped at ``copy_sweep_max_ms``.
        """
        if not self.cfg.copy_sweep_max_ms:
            return None
        entries = self.journal.incarnations.entries()
        names = [str(name) for _, name in entries]
        swept = done.get("incarnation") if isinstance(done, Mapping) else None
        if swept == self.journal.incarnation:
            return None
        later = entries[names.index(swept) + 1 :] if swept in names else entries
        now_ms = time.time_ns() // 1_000_000
        floor = now_ms - self.cfg.copy_sweep_max_ms
        starts = []
        for first_seq in (int(str(first)) for first, _ in later):
            if first_seq <= 1:  # the journal's first writer: nothing came before it
                continue
            try:
                starts.append(max(floor, _intent_ms(self.journal.get(first_seq - 1))))
            except JournalError:
                starts.append(floor)  # compacted away: as far back as the venue's windows go
        return min(starts) if starts else None

    def _rechecks(self, orders: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
        """Orders aborted as not on the exchange less than ``recheck_aborted_ms`` ago: client id -> intent ms."""
        horizon = self.cfg.recheck_aborted_ms
        if not horizon:
            return {}
        now_ns = time.time_ns()
        out = {}
        for cid, order in orders.items():
            if order.get("status") != "rejected" or order.get("reason") != NOT_ON_EXCHANGE:
                continue
            try:  # the abort is the order's last record; the intent its op
                aborted = self.journal.get(int(order["last_seq"]))
                intent = self.journal.get(int(order["op"]))
            except (JournalError, KeyError, TypeError, ValueError):
                continue  # compacted away: long past any lag
            if now_ns - aborted.ts_ns <= horizon * 1_000_000:
                out[cid] = _intent_ms(intent)
        return out

    def run_flow(self) -> Flow[ReconcileReport]:
        """Settle pending operations from the exchange, then sync orders, fills and balances."""
        t0 = time.perf_counter()
        if self.exchange is None:
            raise ValueError("reconciliation needs an exchange")
        clock = ExchangeClock()
        budget = self._budget(clock)
        inputs = yield local(self._inputs)
        errors: list[str] = []
        obs = yield from _gather(inputs, budget, clock, self.cfg, errors, self.venue, self._markets)
        report, externals = yield local(self._finish, inputs, obs, errors, budget, t0, clock)
        for d in externals:  # external_policy="cancel"
            try:
                yield from budget.call(Call("cancel_order", (d.data.get("id"), d.symbol)))
            except Exception as exc:
                log.warning("could not cancel external order %s on %s: %s", d.data.get("id"), d.symbol, exc)
                continue
            yield local(self.journal.record, "external_canceled", {"id": d.data.get("id"), "symbol": d.symbol},
                        source="recovery")  # fmt: skip
        return report

    def _finish(
        self, inputs: Inputs, obs: Observations, errors: list[str], budget: Budget, t0: float, clock: ExchangeClock
    ) -> tuple[ReconcileReport, list[Decision]]:
        now_ns = clock.now_ms() * 1_000_000
        decisions = decide(inputs, obs, now_ns=now_ns, settle_window_ms=self.settle_window_ms(), venue=self.venue,
                           signing_offsets_ms=self._signing_offsets_ms(clock))  # fmt: skip
        report = ReconcileReport(requests=budget.requests, rate_limited=budget.rate_limited, errors=errors)
        if budget.blocked_until is not None:
            report.rate_limited_until_ms = int(budget.blocked_until * 1000)
        j = self.journal
        externals_to_cancel = []
        for d in decisions:
            if d.action in (Action.COMMIT, Action.ABORT):
                try:
                    if d.action is Action.COMMIT:
                        j.commit(d.op, d.data, source="recovery", wait=False)  # type: ignore[arg-type]
                        report.resolved += 1
                    else:
                        j.abort(d.op, d.reason or "not on exchange", source="recovery", wait=False)  # type: ignore[arg-type]
                        report.aborted += 1
                except OperationStateError:
                    # reconcile() at run time: the bot settled this operation itself meanwhile
                    log.info("op %s was settled by the bot during reconciliation; its outcome stands", d.op)
            elif d.action is Action.UNRESOLVED:
                report.unresolved.append({"op": d.op, "client_id": d.client_id, "symbol": d.symbol, "why": d.reason})
            elif d.action is Action.ORDER_UPDATE:
                j.record("order_update", d.data, op=d.op, source="recovery", wait=False)
                report.order_updates += 1
            elif d.action is Action.FILL:
                with self.fills_lock:
                    if self.store.state.get("trades", trade_key(d.data["symbol"], d.data["id"])) is not None:
                        continue  # journaled meanwhile (the live feed, while this reconciliation asked): once only
                    j.record("fill", d.data, source="recovery", wait=False)
                report.fills_applied += 1
            elif d.action is Action.ADOPT:
                j.record("order_update", dict(d.data, adopted=True), source="recovery", wait=False)
                report.adopted += 1
            elif d.action is Action.EXTERNAL:
                report.external.append({"client_id": d.client_id, "symbol": d.symbol, "id": d.data.get("id")})
                if self.cfg.external_policy == "adopt":
                    key = d.client_id or f"ext:{d.data.get('id')}"  # orders are keyed by client id
                    j.record("order_update", dict(d.data, client_id=key, external=True), source="recovery",
                             wait=False)  # fmt: skip
                elif self.cfg.external_policy == "cancel":
                    externals_to_cancel.append(d)
            elif d.action is Action.BALANCES:
                j.record("balances", {"balances": d.data, "reason": "reconciliation"}, source="recovery", wait=False)
                report.balance_corrections += len(d.data)
        if obs.sweep is not None:  # this incarnation needs no other sweep (see _sweep_from_ms)
            self.store.set(SWEEP_SECTION, SWEEP_KEY, dict(obs.sweep, incarnation=j.incarnation),
                           reason="swept the order histories for orders another copy placed", source="recovery")  # fmt: skip
        report.duration_ms = (time.perf_counter() - t0) * 1000
        changed = (report.resolved or report.aborted or report.adopted or report.order_updates or report.fills_applied
                   or report.balance_corrections or report.external or report.unresolved or report.errors)  # fmt: skip
        if changed:  # a run that found everything in order writes nothing (issue 12.8)
            j.record("reconcile_report", report.as_dict(), source="recovery", wait=False)
        j.flush()
        level = logging.WARNING if report.unresolved or report.errors else logging.INFO
        log.log(level, "reconciliation of %s: %s", j.path, report)
        for item in report.unresolved:
            log.warning("unresolved after reconciliation: %s", item)
        return report, externals_to_cancel


class Reconciler(ReconcileFlows):
    """Reconciliation with a sync ccxt exchange."""

    run = blocking(ReconcileFlows.run_flow)


class AsyncReconciler(ReconcileFlows):
    """Reconciliation with a ``ccxt.async_support`` exchange (journal writes run off the event loop)."""

    run = coroutine(ReconcileFlows.run_flow)
