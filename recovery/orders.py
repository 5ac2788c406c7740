"""Order helpers that journal around ccxt: an order is never lost, never sent twice.

:class:`OrderJournal` (sync ccxt) and :class:`AsyncOrderJournal`
(``ccxt.async_support``) wrap an exchange and a :class:`journal.Journal`. Both
are bindings of one set of flows (:class:`OrderFlows`, see
:mod:`recovery.flows`): only the driver differs. Every order-changing call goes
the same way:

1. **Intent.** The intent record (data as in ``docs/records.md``) is made
   durable; its ``op.client_id`` is the client order id sent to the exchange
   in ccxt's unified ``clientOrderId`` parameter. A client id is never sent
   twice: a retry is a new operation with a new id.
2. **Call.** One ccxt call, with ``maxRetriesOnFailure=0`` passed *per call*:
   ccxt never re-sends it, whatever the exchange's options say (a bot may
   keep ccxt's retries for its reads).
3. **Outcome.** The answer, normalised (:mod:`recovery.normalize`), is the
   commit. A definite refusal (:mod:`recovery.classify`) is an abort, and the
   ccxt exception is re-raised. Anything else leaves the operation *in doubt*.
4. **Lookup.** An operation in doubt is looked up at once by client id
   (``fetch_order``, through ccxt's rate limiter, ``lookup_retries`` more
   times with exponential backoff on network errors). What the exchange shows
   is committed (``"resolved_by": "lookup"``); what it authoritatively lacks
   is aborted once the *settle window* (:func:`recovery.venue.settle_window_ms`)
   has passed, after one wait and a second look; the bot then gets
   :class:`OrderAbortedError`. If the exchange cannot be asked, the operation
   stays pending for startup reconciliation and the helper raises
   :class:`OrderInDoubtError`; ``resolve()`` tries again later.

The settle window is measured on the monotonic clock from the moment the ccxt
call failed, which bounds the request's signed timestamp from above (ccxt's
throttle may delay a request well after its intent was written); a wall-clock
step does not move it.

The async helper runs every journal write in a worker thread (a
:class:`~recovery.flows.Local` step), so an intent's fsync never blocks the
event loop, and still waits for it before the request leaves. Two async
specifics: aiohttp silently re-sends a GET or DELETE once when a connection
drops unanswered, so a cancel whose answer was lost can come back as
``OrderNotFound`` although it succeeded -- the cancel flow looks the order up
on ``OrderNotFound`` and commits the cancel it finds; and a task cancelled
while its ccxt call runs leaves the operation pending and re-raises
``CancelledError`` at once (no lookup runs in a cancelled task).

Threads: one ``OrderJournal`` may be shared by threads if its ccxt exchange
may be (the journal is thread-safe). One ``AsyncOrderJournal`` serves the
tasks of one event loop (the ccxt client is bound to it).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from decimal import Decimal
from typing import Any

import ccxt

from journal import Durability, Journal, settings_from
from journal.log import crashpoints

from .classify import Action, Outcome, classify
from .errors import OpRef, OrderAbortedError, OrderInDoubtError, OrderLookupError, OrderRefusedLocally
from .flows import Call, Flow, Local, Sleep, blocking, coroutine, local
from .normalize import (
    Verdict,
    archived_order,
    cancel_verdict,
    create_verdict,
    edit_intent,
    normalize_order,
    normalize_trade,
    place_intent,
    refusal_reason,
    scrub,
    scrubbed_error,
    target_of,
    wire_number,
)
from .venue import VenueProfile, profile_for, settle_window_ms

__all__ = [
    "AsyncOrderJournal",
    "OpRef",
    "Order",
    "OrderAbortedError",
    "OrderFlows",
    "OrderInDoubtError",
    "OrderJournal",
    "OrderLookupError",
    "OrderSettings",
    "Params",
    "Target",
    "record_new_fills",
]

#: Crash point: the exchange acknowledged an operation, its commit marker is not written yet.
ORDER_ACKNOWLEDGED = crashpoints.register("order_acknowledged")

log = logging.getLogger("recovery.orders")
#: A normalised order (``docs/records.md``), as the helpers return it.
Order = dict[str, Any]
#: The order a cancel or edit acts on: its client id, or the order dict (normalised or ccxt).
Target = str | Mapping[str, Any]
#: Extra ccxt parameters of a new order.
Params = Mapping[str, Any] | None

#: Per-call ccxt parameter: never re-send an order-changing request.
_NO_RETRY = {"maxRetriesOnFailure": 0}
_ACTIONS = {"place_order": Action.CREATE, "cancel_order": Action.CANCEL, "edit_order": Action.EDIT}
_CREDENTIALS = ("apiKey", "secret", "password", "uid", "privateKey", "walletAddress", "token")


@dataclasses.dataclass(frozen=True)
class OrderSettings:
    """Settings of the order helpers (checked when built)."""

    #: How long after a failed call an order may still appear (None: from the exchange's recvWindow).
    settle_window_ms: int | None = None
    #: Lookups of an operation in doubt, after the first.
    lookup_retries: int = 3
    #: Backoff between lookups: ``backoff_s * 2**n``.
    backoff_s: float = 0.2

    def __post_init__(self) -> None:
        if self.settle_window_ms is not None and self.settle_window_ms < 0:
            raise ValueError(f"settle_window_ms must be >= 0, got {self.settle_window_ms}")
        if self.lookup_retries < 0:
            raise ValueError(f"lookup_retries must be >= 0, got {self.lookup_retries}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")


def record_new_fills(
    journal: Journal,
    trades: list[dict[str, Any]],
    *,
    known: Callable[[str, Any], bool] | None,
    lock: threading.Lock,
    op_id: int | None = None,
) -> int:
    """Journal the (normalised) trades not journaled yet; returns how many were written.

    Each is checked (``known(symbol, trade_id)``) and written under ``lock``, shared by everything that
    journals fills (a cancel's lookup, reconciliation, the live feed), so a fill journaled meanwhile is not
    written twice. ``op_id``: the operation they belong to (default: the one their ``client_id`` names).
    """
    written = 0
    with lock:
        for data in trades:
            if known is not None and known(data["symbol"], data["id"]):
                continue
            journal.record("fill", data, op=op_id if op_id is not None else journal.op_id_of(data["client_id"]))
            written += 1
    return written


class OrderFlows:
    """The order operations as flows, shared by :class:`OrderJournal` and :class:`AsyncOrderJournal`.

    Each ``*_flow`` method is a generator of :mod:`recovery.flows` steps; the
    two classes bind them to a driver. A caller composing its own flow (the
    state manager does) may ``yield from`` them.
    """

    def __init__(
        self,
        journal: Journal,
        exchange: Any,
        settings: OrderSettings | Mapping[str, Any] | None = None,
        *,
        io: Executor | None = None,
        venue: VenueProfile | None = None,
        trade_known: Callable[[str, Any], bool] | None = None,
        fills_lock: threading.Lock | None = None,
        **kw: Any,
    ) -> None:
        #: The checked settings.
        self.settings = settings_from(OrderSettings, settings, owner="order helper", **kw)
        #: The journal every operation is written to.
        self.journal = journal
        #: The ccxt exchange the requests go to.
        self.exchange = exchange
        #: Where the async driver runs journal writes (None: the event loop's default executor).
        self._io = io
        #: What the venue keeps findable.
        self.venue = venue or profile_for(exchange)
        #: ``trade_known(symbol, trade_id)``: is that trade journaled already (the live feed's, say)?
        self.trade_known = trade_known
        #: Held while a fill is checked and journaled (shared with reconciliation and the live feed).
        self.fills_lock = fills_lock or threading.Lock()
        #: op id -> when its call failed (monotonic ns), while it stays in doubt.
        self._failed_mono: dict[int, int] = {}

    def io_executor(self) -> Executor | None:
        return self._io

    def settle_window_ms(self, params: Mapping[str, Any] | None = None) -> int:
        """The settle window for a request with ``params`` (the setting, or the exchange's recvWindow + 1 s)."""
        if self.settings.settle_window_ms is not None:
            return int(self.settings.settle_window_ms)
        return settle_window_ms(self.exchange, params)

    # -- operations ----------------------------------------------------------
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
    ) -> Flow[Order]:
        """Place a ``limit`` or ``market`` order; ``params`` go to ccxt (never a client id: the journal's is used).

        ``tag`` is the bot's own link to the order (a grid level, a strategy leg): journaled with the
        intent and kept on ``state["orders"][client_id]["tag"]``, so no crash separates them. Amount and
        price are checked against the market first (:class:`OrderRefusedLocally`: nothing journaled).
        """
        data = place_intent(symbol, type, side, amount, price, params, tag)
        yield Call("load_markets")  # before the intent: the request is signed right after it
        self._check_market(symbol, type, data["amount"], data["price"])
        op = yield local(self.journal.begin, "place_order", data)
        call_params = {**data["params"], "clientOrderId": op.client_id, **_NO_RETRY}
        try:
            answer = yield Call(
                "create_order",
                (symbol, type, side, wire_number(data["amount"]), wire_number(data["price"]), call_params),
            )
        except Exception as exc:
            return (yield from self._failed(op.op_id, "place_order", op.client_id, data, exc))
        return (yield from self._commit(op.op_id, normalize_order(answer, client_id=op.client_id)))

    def cancel_order_flow(self, client_id_or_order: Target, symbol: str) -> Flow[Order]:
        """Cancel an order (by client id, or an order dict); returns it as the exchange reports it.

        An order that is already closed or canceled is returned as it is (the
        cancel is moot, and committed so).
        """
        client_id, order_id = target_of(client_id_or_order)
        data = {"client_id": client_id, "id": order_id, "symbol": symbol}
        yield Call("load_markets")
        op = yield local(self.journal.begin, "cancel_order", data)
        # by exchange id when known (exact), else by client id (ours are never reused)
        call_params = {**_NO_RETRY, **({} if order_id else {"clientOrderId": client_id})}
        try:
            answer = yield Call("cancel_order", (order_id, symbol, call_params))
        except Exception as exc:
            return (yield from self._failed(op.op_id, "cancel_order", op.client_id, data, exc))
        return (yield from self._commit(op.op_id, normalize_order(answer, client_id=client_id)))

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
    ) -> Flow[Order]:
        """Replace an order (Binance cancel-replace); returns the NEW order, whose client id is the edit op's.

        The new order keeps the replaced one's ``tag`` unless ``tag`` is given.
        """
        data = edit_intent(client_id_or_order, symbol, type, side, amount, price, tag)
        yield Call("load_markets")
        self._check_market(symbol, type, data["amount"], data["price"])
        op = yield local(self.journal.begin, "edit_order", data)
        call_params = {"clientOrderId": op.client_id, **_NO_RETRY}
        if data["id"] is None:
            call_params["cancelOrigClientOrderId"] = data["client_id"]
        args = (data["id"], symbol, type, side, wire_number(data["amount"]), wire_number(data["price"]), call_params)
        try:
            answer = yield Call("edit_order", args)
        except Exception as exc:
            return (yield from self._failed(op.op_id, "edit_order", op.client_id, data, exc))
        return (yield from self._commit(op.op_id, normalize_order(answer, client_id=op.client_id)))

    def lookup_flow(self, client_id: str, symbol: str) -> Flow[Order | None]:
        """The normalised order with ``client_id``; None only if the exchange says it has none.

        Raises :class:`OrderLookupError` when the exchange does not answer.
        """
        attempts = self.settings.lookup_retries + 1
        for attempt in range(attempts):
            if attempt:
                yield Sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            try:
                order = yield Call("fetch_order", (None, symbol, {"clientOrderId": client_id}))
            except ccxt.OrderNotFound:
                return None
            except ccxt.NetworkError as exc:  # includes rate limits: back off, ask again
                last: BaseException = exc
                continue
            except Exception as exc:
                if self.venue.archived(exc):  # it existed, and ended canceled or expired with nothing filled
                    return archived_order(client_id, symbol)
                raise OrderLookupError(client_id, symbol, attempt + 1, exc) from exc
            return normalize_order(order, client_id=client_id)
        raise OrderLookupError(client_id, symbol, attempts, last) from last

    def resolve_flow(self, op: int | str) -> Flow[Order]:
        """Settle a pending operation of this helper (op id or client id) from the exchange now.

        Returns the committed result (at once if it already was committed);
        raises :class:`OrderAbortedError` or :class:`OrderInDoubtError` like
        the order methods.
        """
        records = yield local(self.journal.timeline, op)
        intent = records[0]
        if intent.type not in _ACTIONS or intent.client_id is None or intent.op is None:
            raise ValueError(f"op {op} is a {intent.type!r} operation; resolve() settles orders placed by this helper")
        for rec in records:
            if rec.kind == "commit":
                return dict(rec.data)
            if rec.kind == "abort":
                ref = OpRef(
                    intent.op, intent.type, intent.client_id, intent.data["symbol"], intent.data.get("client_id")
                )
                raise OrderAbortedError(ref, rec.data.get("reason", "?"))
        failed = self._failed_mono.get(intent.op)
        if failed is None:
            # after a restart the failure time is gone: the call lasted at most the exchange's timeout
            remaining_ns = intent.ts_ns + int(self.exchange.timeout) * 1_000_000 - time.time_ns()
            failed = time.monotonic_ns() + remaining_ns
        return (yield from self._settle(intent.op, intent.type, intent.client_id, intent.data, None, failed))

    def record_order_update_flow(self, order: Mapping[str, Any], client_id: str | None = None) -> Flow[int]:
        """Journal a status or fill change seen later (polling, websocket) as an ``order_update`` event."""
        data = normalize_order(order, client_id=client_id)
        if not data["client_id"]:
            raise ValueError("the order has no client id; pass client_id= (orders are keyed by it)")
        op = self.journal.op_id_of(data["client_id"])
        return (yield local(self.journal.record, "order_update", data, op=op))

    def record_fill_flow(self, trade: Mapping[str, Any], client_id: str | None = None) -> Flow[int]:
        """Journal a fill seen later as a ``fill`` event (``client_id`` names the order if the trade does not)."""
        data = normalize_trade(trade, client_id=client_id)
        if not data["client_id"]:
            raise ValueError("the trade has no client id; pass client_id= (fills are applied to that order)")
        return (yield local(self.journal.record, "fill", data, op=self.journal.op_id_of(data["client_id"])))

    def _check_market(self, symbol: str, type: str, amount: Any, price: Any) -> None:
        """Refuse, before anything is journaled, an order the market's precision or limits forbid.

        ccxt applies the same checks while building the request: an exception it raised there would leave
        the operation in doubt although nothing left the process (issue 12.5).
        """
        try:
            market = self.exchange.market(symbol)
        except Exception as exc:
            raise OrderRefusedLocally(symbol, f"unknown market ({type_name(exc)}: {exc})") from exc
        try:
            wire_amount = Decimal(self.exchange.amount_to_precision(symbol, wire_number(amount)))
            wire_price = Decimal(self.exchange.price_to_precision(symbol, wire_number(price))) if price else None
        except Exception as exc:
            raise OrderRefusedLocally(
                symbol,
                f"amount {amount} or price {price} does not fit the market's precision ({type_name(exc)}: {exc})",
            ) from exc
        if wire_amount <= 0:
            raise OrderRefusedLocally(symbol, f"amount {amount} rounds to {wire_amount} at the market's precision")
        limits = market.get("limits") or {}
        problems = _outside(limits.get("amount"), wire_amount, "amount")
        if wire_price is not None:
            problems += _outside(limits.get("price"), wire_price, "price")
            problems += _outside(limits.get("cost"), wire_amount * wire_price, "cost (amount x price)")
        if problems:
            raise OrderRefusedLocally(symbol, "; ".join(problems))

    # -- outcomes ------------------------------------------------------------
    def _commit(self, op_id: int, result: dict[str, Any]) -> Flow[Order]:
        # the exchange has acknowledged the operation; the journal does not know yet
        crashpoints.reached(ORDER_ACKNOWLEDGED)
        # in INTENT durability the marker rides on the next synced transaction: no disk wait, no thread hop
        yield Local(self.journal.commit, (op_id, result), blocking=self.journal.durability is not Durability.INTENT)
        self._failed_mono.pop(op_id, None)
        yield from self._fetch_missing_trades(op_id, result)
        return result

    def _fetch_missing_trades(self, op_id: int, order: Mapping[str, Any]) -> Flow[None]:
        """When an answer reports more filled than the trades it carries, journal the order's trades.

        A cancel's answer (and a lookup) carries ``executedQty`` but no fills; without its
        trades the positions would never see that fill (issue 12.3). Fills are deduplicated
        by trade id when applied, so journaling one twice changes nothing. A failure here is
        logged, never raised: the operation itself succeeded, and reconciliation fetches
        the trades of any order whose fill its trades do not explain.
        """
        filled = order.get("filled") or 0
        carried = sum((t.get("amount") or 0 for t in order.get("trades") or ()), 0)
        if not filled or filled <= carried or not order.get("id") or not order.get("symbol"):
            return
        try:
            raw = yield Call("fetch_my_trades", (order["symbol"], None, None, {"orderId": order["id"]}))
        except Exception as exc:
            log.warning("op %d: trades of order %s could not be fetched (%s: %s); reconciliation will",
                        op_id, order["id"], type(exc).__name__, exc)  # fmt: skip
            return
        fresh = []
        for trade in raw or ():
            data = normalize_trade(trade, client_id=order.get("client_id"), symbol=order["symbol"],
                                   side=order.get("side"), order_id=order["id"])  # fmt: skip
            if data["order_id"] == order["id"] and data["id"] is not None:
                fresh.append(data)
        if fresh:
            yield local(record_new_fills, self.journal, fresh, known=self.trade_known, lock=self.fills_lock,
                        op_id=op_id)  # fmt: skip

    def _abort(self, op_id: int, reason: str, cause: BaseException | None) -> Flow[None]:
        error = scrubbed_error(cause, self._secrets()) if cause is not None else None
        yield local(self.journal.abort, op_id, reason, error=error)
        self._failed_mono.pop(op_id, None)

    def _secrets(self) -> list[str | None]:
        return [getattr(self.exchange, name, None) for name in _CREDENTIALS]

    def _failed(self, op_id: int, type: str, client_id: str, data: Mapping[str, Any], exc: Exception) -> Flow[Order]:
        outcome = classify(exc, _ACTIONS[type])
        if outcome is Outcome.DEFINITE:
            yield from self._abort(op_id, refusal_reason(exc), exc)
            raise exc
        reported = scrub(f"{exc.__class__.__name__}: {exc}", self._secrets())
        log.warning("%s op %d (client id %s) in doubt after %s: looking it up", type, op_id, client_id, reported)
        answered = outcome is Outcome.NOT_FOUND  # the exchange answered this very request
        return (yield from self._settle(op_id, type, client_id, data, exc, time.monotonic_ns(), answered))

    def _settle(
        self,
        op_id: int,
        type: str,
        client_id: str,
        data: Mapping[str, Any],
        cause: BaseException | None,
        failed_mono_ns: int,
        answered: bool = False,
    ) -> Flow[Order]:
        """Settle an operation in doubt from lookups, or raise OrderInDoubtError (it stays pending)."""
        symbol = data["symbol"]
        ref = OpRef(op_id, type, client_id, symbol, data.get("client_id"))
        deadline = failed_mono_ns + self.settle_window_ms(data.get("params")) * 1_000_000
        verdict: Callable[..., tuple[Verdict, str | None]] = create_verdict
        looked_up = client_id
        if type == "cancel_order":
            looked_up = data["client_id"]
            verdict = cancel_verdict
        try:
            found = yield from self._look(looked_up, symbol, lambda f: verdict(f, settled=answered)[0], deadline)
        except OrderLookupError as exc:
            self._failed_mono[op_id] = failed_mono_ns
            raise OrderInDoubtError(ref, cause) from exc
        detail = ""
        if type == "edit_order":
            detail = yield from self._observe_target(op_id, data["client_id"], symbol)
        decision, reason = verdict(found, settled=True)
        if decision is Verdict.COMMIT:
            assert found is not None
            return (yield from self._commit(op_id, {**found, "resolved_by": "lookup"}))
        assert reason is not None
        yield from self._abort(op_id, reason, cause)
        raise OrderAbortedError(ref, reason, detail) from cause

    def _look(
        self, client_id: str, symbol: str, verdict: Callable[[dict[str, Any] | None], Verdict], deadline_mono: int
    ) -> Flow[Order | None]:
        """Look up; if that is not conclusive yet, wait out the settle window and look once more."""
        found = yield from self.lookup_flow(client_id, symbol)
        wait_s = (deadline_mono - time.monotonic_ns()) / 1e9
        if verdict(found) is Verdict.WAIT and wait_s > 0:
            yield Sleep(wait_s)
            found = yield from self.lookup_flow(client_id, symbol)
        return found

    def _observe_target(self, op_id: int, client_id: str, symbol: str) -> Flow[str]:
        """Journal what the exchange shows of an edit's target (a cancel-replace may cancel it alone)."""
        try:
            target = yield from self.lookup_flow(client_id, symbol)
        except OrderLookupError as exc:
            log.warning("edit op %d: the replaced order %s could not be looked up: %s", op_id, client_id, exc)
            return "; the state of the order it replaces is unknown"
        if target is None:
            return "; the order it replaces is not on the exchange"
        yield local(self.journal.record, "order_update", target, op=op_id)
        return f"; the order it replaces is {target['status']}"


def type_name(exc: BaseException) -> str:
    return type(exc).__name__


def _outside(limit: Any, value: Decimal, what: str) -> list[str]:
    if not isinstance(limit, Mapping):
        return []
    out = []
    low, high = limit.get("min"), limit.get("max")
    if low is not None and value < Decimal(str(low)):
        out.append(f"{what} {value} is below the market's minimum {low}")
    if high is not None and float(high) > 0 and value > Decimal(str(high)):
        out.append(f"{what} {value} is above the market's maximum {high}")
    return out


class OrderJournal(OrderFlows):
    """Place, cancel and edit orders on a sync ccxt exchange, journaled (see the module docstring).

    ``settings`` (an :class:`OrderSettings`, or its fields as keywords):
    ``settle_window_ms`` (default: ``recvWindow`` + 1000) is how long after a
    failed call an order may still appear; ``lookup_retries`` and ``backoff_s``
    bound the lookups of an operation in doubt. The helper owns neither the
    journal nor the exchange: close them yourself.

    Every order method returns the normalised order the exchange reports, or
    raises: the ccxt exception for a definite refusal (the operation is
    aborted), :class:`OrderAbortedError` when a lookup shows it did not
    happen, :class:`OrderInDoubtError` when nobody can tell yet (pending).
    """

    place_order = blocking(OrderFlows.place_order_flow)
    cancel_order = blocking(OrderFlows.cancel_order_flow)
    edit_order = blocking(OrderFlows.edit_order_flow)
    lookup = blocking(OrderFlows.lookup_flow)
    resolve = blocking(OrderFlows.resolve_flow)
    record_order_update = blocking(OrderFlows.record_order_update_flow)
    record_fill = blocking(OrderFlows.record_fill_flow)


class AsyncOrderJournal(OrderFlows):
    """:class:`OrderJournal` for an async ccxt exchange: the same methods, as coroutines.

    Same settings, results and exceptions as the sync class; journal writes run
    in ``io`` (a thread pool; default: the event loop's executor), never on the
    event loop itself.
    """

    place_order = coroutine(OrderFlows.place_order_flow)
    cancel_order = coroutine(OrderFlows.cancel_order_flow)
    edit_order = coroutine(OrderFlows.edit_order_flow)
    lookup = coroutine(OrderFlows.lookup_flow)
    resolve = coroutine(OrderFlows.resolve_flow)
    record_order_update = coroutine(OrderFlows.record_order_update_flow)
    record_fill = coroutine(OrderFlows.record_fill_flow)
