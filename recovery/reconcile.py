"""Startup reconciliation: settle every pending operation from the exchange, then sync.

:class:`Reconciler` (sync ccxt) and :class:`AsyncReconciler` (``ccxt.async_support``)
share everything but the line that sends a request:

1. **Inputs** -- the journal's pending intents and the state's orders, trades,
   balances.
2. **Gather** -- :func:`_gather` is a generator that yields the queries to send
   and receives their answers, so one piece of code plans the requests for
   both clients: one ``fetch_open_orders()`` for every symbol; per symbol,
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

Invariant that makes re-running safe: a decision is only taken from what the
exchange said, and is journaled before it counts; an operation that was
settled is no longer pending, a trade applied is deduplicated by its id, an
order already up to date produces no update. So a second run right after the
first writes nothing but its report (idempotent), and an interrupted run is
simply run again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from typing import Any

import ccxt

from journal import Journal, OperationStateError
from journal.state.orders import OPEN_STATUSES
from journal.state.store import StateStore

from .budget import Budget
from .decide import Action, Decision, Inputs, Observations, decide, symbols_of
from .normalize import normalize_order, normalize_trade, to_decimal

__all__ = ["DEFAULT_RECONCILE_SETTINGS", "AsyncReconciler", "ReconcileReport", "Reconciler"]

log = logging.getLogger("recovery.reconcile")

DEFAULT_RECONCILE_SETTINGS: dict[str, Any] = {
    # Binance executes a signed request up to recvWindow (ccxt sends 10000 ms) after its timestamp,
    # and accepts timestamps up to 1000 ms ahead of its clock
    "settle_window_ms": 11_000,
    "max_requests": 200,
    "min_interval_s": 0.0,
    "history_limit": 500,
    "max_pages": 50,
    "history_margin_ms": 60_000,
    "lookup_threshold": 2,  # up to this many orders to find in a symbol: look each up by client id
    "external_policy": "report",  # report | adopt | cancel
}


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
    errors: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def clean(self) -> bool:
        """True when nothing is left unresolved."""
        return not self.unresolved

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"resolved {self.resolved}, aborted {self.aborted}, unresolved {len(self.unresolved)}, "
            f"adopted {self.adopted}, external {len(self.external)}, order updates {self.order_updates}, "
            f"fills {self.fills_applied}, balance corrections {self.balance_corrections}, "
            f"{self.requests} requests, {self.duration_ms:.0f} ms"
        )


@dataclass(frozen=True)
class _Query:
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


_Answer = tuple[Any, BaseException | None]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _pages(
    method: str, symbol: str, since: int, cfg: dict[str, Any], errors: list[str], norm: Any
) -> Generator[_Query, _Answer, tuple[list[dict[str, Any]], bool, int | None]]:
    """Every row of a ``since``-paginated history; ``(rows, complete, ms of the first answer)``.

    A history is complete only when a page brings nothing new: a short page
    is not proof of the end, since venues cap page sizes below what was asked.
    """
    limit = int(cfg["history_limit"])
    cursor = since
    rows: dict[str, dict[str, Any]] = {}
    first_ms: int | None = None
    for _ in range(int(cfg["max_pages"])):
        result, exc = yield _Query(method, (symbol,), {"since": cursor, "limit": limit})
        if exc is not None:
            errors.append(f"{method} {symbol}: {type(exc).__name__}: {exc}")
            return list(rows.values()), False, first_ms
        first_ms = first_ms if first_ms is not None else _now_ms()
        page = [norm(r) for r in result or []]
        new = [r for r in page if str(r.get("id")) not in rows]
        if not new:
            return list(rows.values()), True, first_ms
        for r in new:
            rows[str(r.get("id"))] = r
        cursor = max(cursor, max(int(r.get("timestamp") or 0) for r in new))
    errors.append(f"{method} {symbol}: more than {cfg['max_pages']} pages; history left incomplete")
    return list(rows.values()), False, first_ms


def _intent_ms(rec: Any) -> int:
    return int(rec.ts_ns // 1_000_000)


def _gather(inputs: Inputs, cfg: dict[str, Any], errors: list[str]) -> Generator[_Query, _Answer, Observations]:
    """Plan and interpret the exchange queries (see the module docstring)."""
    obs = Observations()
    symbols = symbols_of(inputs)
    result, exc = yield _Query("fetch_open_orders")
    if exc is None:
        obs.open_orders_all = [normalize_order(o) for o in result or []]
        for order in obs.open_orders_all:
            if order.get("client_id") and order.get("symbol"):
                obs.view(order["symbol"]).orders[order["client_id"]] = order
        for symbol in symbols:
            obs.view(symbol).open_ok = True
    else:
        errors.append(f"fetch_open_orders: {type(exc).__name__}: {exc}")
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
        if wanted and len(wanted) <= int(cfg["lookup_threshold"]):
            for cid in sorted(wanted):
                result, exc = yield _Query("fetch_order", (None, symbol), {"params": {"clientOrderId": cid}})
                if exc is None and result:
                    view.orders[cid] = normalize_order(result, client_id=cid)
                    view.lookups[cid] = True
                    view.lookup_ms[cid] = _now_ms()
                elif isinstance(exc, ccxt.OrderNotFound):
                    view.lookups[cid] = True  # authoritative: the exchange does not know it
                    view.lookup_ms[cid] = _now_ms()
                elif exc is not None:
                    errors.append(f"fetch_order {symbol} {cid}: {type(exc).__name__}: {exc}")
        elif wanted:
            since = max(0, min(wanted.values()) - int(cfg["history_margin_ms"]))
            rows, complete, first_ms = yield from _pages("fetch_orders", symbol, since, cfg, errors, normalize_order)
            for order in rows:
                if order.get("client_id"):
                    view.orders.setdefault(order["client_id"], order)
            if complete:
                view.history_from_ms = since
                view.answered_ms = first_ms
        # trades since the oldest order we care about in this symbol
        stamps = [int(o.get("timestamp") or 0) for o in inputs.orders.values()
                  if o.get("symbol") == symbol and o.get("status") in OPEN_STATUSES]  # fmt: skip
        stamps += [_intent_ms(r) for r in inputs.pending if (r.data or {}).get("symbol") == symbol]
        stamps = [s for s in stamps if s > 0]
        if stamps:
            since = max(0, min(stamps) - int(cfg["history_margin_ms"]))
            trades, view.trades_ok, _ = yield from _pages(
                "fetch_my_trades", symbol, since, cfg, errors, lambda t, s=symbol: normalize_trade(t, symbol=s)
            )
            view.trades.extend(trades)
    result, exc = yield _Query("fetch_balance")
    if exc is None:
        obs.balances = _balances(result or {}, inputs)
    else:
        errors.append(f"fetch_balance: {type(exc).__name__}: {exc}")
    return obs


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


class _Base:
    def __init__(self, journal: Journal, store: StateStore, exchange: Any, **settings: Any) -> None:
        unknown = set(settings) - set(DEFAULT_RECONCILE_SETTINGS)
        if unknown:
            raise ValueError(
                f"unknown reconcile setting(s) {sorted(unknown)}; known: {sorted(DEFAULT_RECONCILE_SETTINGS)}"
            )
        self.cfg = {**DEFAULT_RECONCILE_SETTINGS, **settings}
        if self.cfg["external_policy"] not in ("report", "adopt", "cancel"):
            raise ValueError(f"external_policy must be report, adopt or cancel, got {self.cfg['external_policy']!r}")
        self.journal = journal
        self.store = store
        self.exchange = exchange

    def _budget(self) -> Budget:
        return Budget(int(self.cfg["max_requests"]), min_interval_s=float(self.cfg["min_interval_s"]))

    def _inputs(self) -> Inputs:
        view = self.store.view()
        return Inputs(
            journal_id=self.journal.journal_id,
            pending=self.journal.pending(),
            orders=view["orders"],
            trades=view["trades"],
            balances=view["balances"],
        )

    def _plan(self, budget: Budget) -> Generator[_Query, _Answer, ReconcileReport]:
        """The whole run as a generator of queries; ``run()`` only sends them (sync or async)."""
        t0 = time.perf_counter()
        inputs = self._inputs()
        errors: list[str] = []
        obs = yield from _gather(inputs, self.cfg, errors)
        report, externals = self._finish(inputs, obs, errors, budget, t0)
        for d in externals:  # external_policy="cancel"
            _, exc = yield _Query("cancel_order", (d.data.get("id"), d.symbol))
            if exc is None:
                self.journal.record("external_canceled", {"id": d.data.get("id"), "symbol": d.symbol},
                                    source="recovery")  # fmt: skip
            else:
                log.warning("could not cancel external order %s on %s: %s", d.data.get("id"), d.symbol, exc)
        return report

    def _finish(
        self, inputs: Inputs, obs: Observations, errors: list[str], budget: Budget, t0: float
    ) -> tuple[ReconcileReport, list[Decision]]:
        decisions = decide(inputs, obs, now_ns=time.time_ns(), settle_window_ms=int(self.cfg["settle_window_ms"]))
        report = ReconcileReport(requests=budget.requests, rate_limited=budget.rate_limited, errors=errors)
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
                j.record("fill", d.data, source="recovery", wait=False)
                report.fills_applied += 1
            elif d.action is Action.ADOPT:
                j.record("order_update", dict(d.data, adopted=True), source="recovery", wait=False)
                report.adopted += 1
            elif d.action is Action.EXTERNAL:
                report.external.append({"client_id": d.client_id, "symbol": d.symbol, "id": d.data.get("id")})
                if self.cfg["external_policy"] == "adopt":
                    key = d.client_id or f"ext:{d.data.get('id')}"  # orders are keyed by client id
                    j.record("order_update", dict(d.data, client_id=key, external=True), source="recovery",
                             wait=False)  # fmt: skip
                elif self.cfg["external_policy"] == "cancel":
                    externals_to_cancel.append(d)
            elif d.action is Action.BALANCES:
                j.record("balances", {"balances": d.data, "reason": "reconciliation"}, source="recovery", wait=False)
                report.balance_corrections += len(d.data)
        report.duration_ms = (time.perf_counter() - t0) * 1000
        j.record("reconcile_report", report.as_dict(), source="recovery", wait=False)
        j.flush()
        level = logging.WARNING if report.unresolved or report.errors else logging.INFO
        log.log(level, "reconciliation of %s: %s", j.path, report)
        for item in report.unresolved:
            log.warning("unresolved after reconciliation: %s", item)
        return report, externals_to_cancel


class Reconciler(_Base):
    """Reconciliation with a sync ccxt exchange (``exchange=None``: offline, nothing resolved)."""

    def run(self) -> ReconcileReport:
        budget = self._budget()
        plan = self._plan(budget)
        try:
            query = next(plan)
            while True:
                query = plan.send(self._ask(budget, query))
        except StopIteration as done:
            return done.value

    def _ask(self, budget: Budget, query: _Query) -> _Answer:
        if self.exchange is None:
            return None, ccxt.NetworkError("offline: no exchange given")
        try:
            return budget.call(getattr(self.exchange, query.method), *query.args, **query.kwargs), None
        except Exception as exc:  # every answer, good or bad (BudgetExhausted too), goes to the planner
            return None, exc


class AsyncReconciler(_Base):
    """Reconciliation with a ``ccxt.async_support`` exchange (journal writes stay blocking: < 1 ms)."""

    async def run(self) -> ReconcileReport:
        budget = self._budget()
        plan = self._plan(budget)
        try:
            query = next(plan)
            while True:
                query = plan.send(await self._ask(budget, query))
        except StopIteration as done:
            return done.value

    async def _ask(self, budget: Budget, query: _Query) -> _Answer:
        if self.exchange is None:
            return None, ccxt.NetworkError("offline: no exchange given")
        try:
            return await budget.acall(getattr(self.exchange, query.method), *query.args, **query.kwargs), None
        except Exception as exc:
            return None, exc
