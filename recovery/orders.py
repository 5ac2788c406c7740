"""Order helpers that journal around ccxt: an order is never lost, never sent twice.

:class:`OrderJournal` wraps a ccxt exchange and a :class:`journal.Journal`;
:class:`recovery.aio_orders.AsyncOrderJournal` is its twin for
``ccxt.async_support``. Every order-changing call goes the same way:

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
   is aborted once the *settle window* has passed (before that the request
   may still be in flight: Binance executes a signed request up to
   ``recvWindow`` ms after its timestamp), after one wait and a second look;
   the bot then gets :class:`OrderAbortedError`. If the exchange cannot be
   asked, the operation stays pending for startup reconciliation and the
   helper raises :class:`OrderInDoubtError`; :meth:`OrderJournal.resolve`
   tries again later.

The settle window is measured from the moment the ccxt call failed, which
bounds the request's signed timestamp from above (ccxt's throttle may delay
a request well after its intent was written). Its default is the exchange's
``options["recvWindow"]`` (ccxt sends 10000 ms to Binance) plus 1000 ms,
Binance's bound on a timestamp ahead of its clock, so a local clock ahead by
up to a second is covered.

The call logic lives once, in generator *flows* that yield :class:`Call` and
:class:`Sleep` steps; the sync class runs them with plain calls, the async
class with ``await``. Journal writes are made directly from the flows: they
block for well under a millisecond (one synced LMDB transaction per intent),
which is acceptable inside an event loop.

Threads: one ``OrderJournal`` may be shared by threads if its ccxt exchange
may be (the journal is thread-safe).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import ccxt

from journal import Journal
from journal.log import crashpoints
from recovery.classify import Action, Outcome, classify
from recovery.errors import RecoveryError
from recovery.normalize import (
    Verdict,
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

__all__ = [
    "CLOCK_SKEW_MS",
    "Call",
    "FlowRunner",
    "OrderAbortedError",
    "OrderFlows",
    "OrderInDoubtError",
    "OrderJournal",
    "OpRef",
    "Order",
    "OrderLookupError",
    "Params",
    "Sleep",
    "Target",
]

#: Crash point: the exchange acknowledged an operation, its commit marker is not written yet.
ORDER_ACKNOWLEDGED = crashpoints.register("order_acknowledged")

log = logging.getLogger("recovery.orders")
T = TypeVar("T")
#: A normalised order (``docs/records.md``), as the helpers return it.
Order = dict[str, Any]
#: The order a cancel or edit acts on: its client id, or the order dict (normalised or ccxt).
Target = str | Mapping[str, Any]
#: Extra ccxt parameters of a new order.
Params = Mapping[str, Any] | None

#: Added to ``recvWindow`` for the default settle window: Binance refuses timestamps >1 s ahead of its clock.
CLOCK_SKEW_MS = 1000
#: Per-call ccxt parameter: never re-send an order-changing request.
_NO_RETRY = {"maxRetriesOnFailure": 0}
_ACTIONS = {"place_order": Action.CREATE, "cancel_order": Action.CANCEL, "edit_order": Action.EDIT}
_CREDENTIALS = ("apiKey", "secret", "password", "uid", "privateKey", "walletAddress", "token")


# ------------------------------------------------------------------ errors
@dataclass(frozen=True)
class OpRef:
    """Names one operation in errors: op id, type, its client id, symbol, and the order a cancel or edit targets."""

    op_id: int
    type: str
    client_id: str
    symbol: str
    target: str | None = None

    def __str__(self) -> str:
        on = f"; order {self.target}" if self.target and self.target != self.client_id else ""
        return f"{self.type} op {self.op_id} (client id {self.client_id}, {self.symbol}{on})"


class _OperationError(RecoveryError):
    def __init__(self, ref: OpRef, text: str) -> None:
        super().__init__(f"{ref} {text}")
        self.ref = ref
        self.op_id, self.type, self.client_id, self.symbol, self.target = (
            ref.op_id,
            ref.type,
            ref.client_id,
            ref.symbol,
            ref.target,
        )


class OrderInDoubtError(_OperationError):
    """The exchange could not be asked whether an operation happened; it stays pending.

    ``op_id``, ``type``, ``client_id`` (the operation's), ``symbol`` and
    ``target`` (the order a cancel or edit acts on) name it. Never re-send it:
    startup reconciliation, ``journal resolve`` or :meth:`OrderJournal.resolve`
    settles it from the exchange.
    """

    def __init__(self, ref: OpRef, cause: BaseException | None = None) -> None:
        after = f" after {cause.__class__.__name__}" if cause is not None else ""
        super().__init__(
            ref,
            f"is in doubt{after} and the exchange could not be asked; the journal keeps it pending; startup "
            f"reconciliation or `journal resolve` will settle it (or call resolve({ref.op_id}) once the "
            "exchange answers). Do not send it again.",
        )


class OrderAbortedError(_OperationError):
    """An operation in doubt was looked up and found not to have happened; it is aborted.

    ``reason`` is the abort reason journaled; a new operation (with a new
    client id) may safely try again.
    """

    def __init__(self, ref: OpRef, reason: str, detail: str = "") -> None:
        super().__init__(ref, f"was aborted: {reason}{detail}; it is safe to try again with a new operation")
        self.reason = reason


class OrderLookupError(RecoveryError):
    """The exchange did not answer a lookup; the order's state is unknown (not "absent")."""

    def __init__(self, client_id: str, symbol: str, attempts: int, cause: BaseException) -> None:
        super().__init__(
            f"could not look up client id {client_id} on {symbol} ({attempts} attempts, last: "
            f"{cause.__class__.__name__}); its state is unknown; ask again later"
        )
        self.client_id, self.symbol = client_id, symbol


# ------------------------------------------------------------------ flows
@dataclass(frozen=True)
class Call:
    """A flow's request: ``exchange.<method>(*args)``; the driver sends back the result or throws the exception."""

    method: str
    args: tuple[Any, ...] = ()

    def run(self, exchange: Any) -> Any:
        return getattr(exchange, self.method)(*self.args)


@dataclass(frozen=True)
class Sleep:
    """A flow's request to wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float

    def run(self, exchange: Any) -> None:
        time.sleep(self.seconds)


Step = Call | Sleep
Flow = Generator[Step, Any, T]


@dataclass
class FlowRunner(Generic[T]):
    """Steps a flow: ``step`` is its next request, None once ``result`` is set.

    A driver performs ``step`` and hands back its value (:meth:`send`) or its
    exception (:meth:`throw`); a ``BaseException`` that is not an
    ``Exception`` (``KeyboardInterrupt``, task cancellation) is not handed
    back: the driver closes the flow and the operation stays pending.
    """

    flow: Flow[T]
    step: Step | None = field(init=False)
    result: T = field(init=False)

    def __post_init__(self) -> None:
        self._advance(self.flow.send, None)

    def send(self, value: Any) -> None:
        self._advance(self.flow.send, value)

    def throw(self, exc: Exception) -> None:
        self._advance(self.flow.throw, exc)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Hand back what ``fn(*args)`` returns or raises."""
        try:
            value = fn(*args)
        except Exception as exc:
            self.throw(exc)
        else:
            self.send(value)

    def __enter__(self) -> FlowRunner[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flow.close()

    def _advance(self, resume: Callable[[Any], Step], arg: Any) -> None:
        try:
            self.step = resume(arg)
        except StopIteration as stop:
            self.step, self.result = None, stop.value


class OrderFlows:
    """The order operations as flows (generators of :class:`Call`/:class:`Sleep`), shared by both helpers.

    Subclasses add a driver that performs the steps; see :class:`OrderJournal`.
    """

    def __init__(
        self,
        journal: Journal,
        exchange: Any,
        *,
        settle_window_ms: int | None = None,
        lookup_retries: int = 3,
        backoff_s: float = 0.2,
    ) -> None:
        if settle_window_ms is None:
            settle_window_ms = int(exchange.options.get("recvWindow", 10_000)) + CLOCK_SKEW_MS
        if settle_window_ms < 0:
            raise ValueError(f"settle_window_ms must be >= 0, got {settle_window_ms}")
        if lookup_retries < 0:
            raise ValueError(f"lookup_retries must be >= 0, got {lookup_retries}")
        if backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {backoff_s}")
        self.journal = journal
        self.exchange = exchange
        self.settle_window_ms = settle_window_ms
        self.lookup_retries = lookup_retries
        self.backoff_s = backoff_s
        self._failed_ns: dict[int, int] = {}  # op id -> when its call failed, while it stays in doubt

    # -- operations ----------------------------------------------------------
    def _place(
        self, symbol: str, type: str, side: str, amount: Any, price: Any, params: Mapping[str, Any] | None
    ) -> Flow[dict[str, Any]]:
        data = place_intent(symbol, type, side, amount, price, params)
        yield Call("load_markets")  # before the intent: the request is signed right after it
        op = self.journal.begin("place_order", data)
        call_params = {**data["params"], "clientOrderId": op.client_id, **_NO_RETRY}
        try:
            answer = yield Call(
                "create_order",
                (symbol, type, side, wire_number(data["amount"]), wire_number(data["price"]), call_params),
            )
        except Exception as exc:
            return (yield from self._failed(op.op_id, "place_order", op.client_id, data, exc))
        return self._commit(op.op_id, normalize_order(answer, client_id=op.client_id))

    def _cancel(self, target: str | Mapping[str, Any], symbol: str) -> Flow[dict[str, Any]]:
        client_id, order_id = target_of(target)
        data = {"client_id": client_id, "id": order_id, "symbol": symbol}
        yield Call("load_markets")
        op = self.journal.begin("cancel_order", data)
        # by exchange id when known (exact), else by client id (ours are never reused)
        call_params = {**_NO_RETRY, **({} if order_id else {"clientOrderId": client_id})}
        try:
            answer = yield Call("cancel_order", (order_id, symbol, call_params))
        except Exception as exc:
            return (yield from self._failed(op.op_id, "cancel_order", op.client_id, data, exc))
        return self._commit(op.op_id, normalize_order(answer, client_id=client_id))

    def _edit(
        self, target: str | Mapping[str, Any], symbol: str, type: str, side: str, amount: Any, price: Any
    ) -> Flow[dict[str, Any]]:
        data = edit_intent(target, symbol, type, side, amount, price)
        yield Call("load_markets")
        op = self.journal.begin("edit_order", data)
        call_params = {"clientOrderId": op.client_id, **_NO_RETRY}
        if data["id"] is None:
            call_params["cancelOrigClientOrderId"] = data["client_id"]
        args = (data["id"], symbol, type, side, wire_number(data["amount"]), wire_number(data["price"]), call_params)
        try:
            answer = yield Call("edit_order", args)
        except Exception as exc:
            return (yield from self._failed(op.op_id, "edit_order", op.client_id, data, exc))
        return self._commit(op.op_id, normalize_order(answer, client_id=op.client_id))

    def _lookup(self, client_id: str, symbol: str) -> Flow[dict[str, Any] | None]:
        """The order with ``client_id``, None if the exchange says it has none; OrderLookupError if unknown."""
        attempts = self.lookup_retries + 1
        for attempt in range(attempts):
            if attempt:
                yield Sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                order = yield Call("fetch_order", (None, symbol, {"clientOrderId": client_id}))
            except ccxt.OrderNotFound:
                return None
            except ccxt.NetworkError as exc:  # includes rate limits: back off, ask again
                last: BaseException = exc
                continue
            except Exception as exc:
                raise OrderLookupError(client_id, symbol, attempt + 1, exc) from exc
            return normalize_order(order, client_id=client_id)
        raise OrderLookupError(client_id, symbol, attempts, last) from last

    def _resolve(self, op: int | str) -> Flow[dict[str, Any]]:
        records = self.journal.timeline(op)
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
        # after a restart the failure time is gone: the call lasted at most the exchange's timeout
        failed_ns = self._failed_ns.get(intent.op, intent.ts_ns + int(self.exchange.timeout) * 1_000_000)
        return (yield from self._settle(intent.op, intent.type, intent.client_id, intent.data, None, failed_ns))

    # -- outcomes ------------------------------------------------------------
    def _commit(self, op_id: int, result: dict[str, Any]) -> dict[str, Any]:
        # the exchange has acknowledged the operation; the journal does not know yet
        crashpoints.reached(ORDER_ACKNOWLEDGED)
        self.journal.commit(op_id, result)
        self._failed_ns.pop(op_id, None)
        return result

    def _abort(self, op_id: int, reason: str, cause: BaseException | None) -> None:
        error = scrubbed_error(cause, self._secrets()) if cause is not None else None
        self.journal.abort(op_id, reason, error=error)
        self._failed_ns.pop(op_id, None)

    def _secrets(self) -> list[str | None]:
        return [getattr(self.exchange, name, None) for name in _CREDENTIALS]

    def _failed(
        self, op_id: int, type: str, client_id: str, data: Mapping[str, Any], exc: Exception
    ) -> Flow[dict[str, Any]]:
        outcome = classify(exc, _ACTIONS[type])
        if outcome is Outcome.DEFINITE:
            self._abort(op_id, refusal_reason(exc), exc)
            raise exc
        reported = scrub(f"{exc.__class__.__name__}: {exc}", self._secrets())
        log.warning("%s op %d (client id %s) in doubt after %s: looking it up", type, op_id, client_id, reported)
        failed_ns = time.time_ns()
        answered = outcome is Outcome.NOT_FOUND  # the exchange answered this very request
        return (yield from self._settle(op_id, type, client_id, data, exc, failed_ns, answered))

    def _settle(
        self,
        op_id: int,
        type: str,
        client_id: str,
        data: Mapping[str, Any],
        cause: BaseException | None,
        failed_ns: int,
        answered: bool = False,
    ) -> Flow[dict[str, Any]]:
        """Settle an operation in doubt from lookups, or raise OrderInDoubtError (it stays pending)."""
        symbol = data["symbol"]
        ref = OpRef(op_id, type, client_id, symbol, data.get("client_id"))
        deadline_ns = failed_ns + self.settle_window_ms * 1_000_000
        verdict: Callable[..., tuple[Verdict, str | None]] = create_verdict
        looked_up = client_id
        if type == "cancel_order":
            looked_up = data["client_id"]
            verdict = cancel_verdict
        try:
            found = yield from self._look(looked_up, symbol, lambda f: verdict(f, settled=answered)[0], deadline_ns)
        except OrderLookupError as exc:
            self._failed_ns[op_id] = failed_ns
            raise OrderInDoubtError(ref, cause) from exc
        detail = ""
        if type == "edit_order":
            detail = yield from self._observe_target(op_id, data["client_id"], symbol)
        decision, reason = verdict(found, settled=True)
        if decision is Verdict.COMMIT:
            assert found is not None
            return self._commit(op_id, {**found, "resolved_by": "lookup"})
        assert reason is not None
        self._abort(op_id, reason, cause)
        raise OrderAbortedError(ref, reason, detail) from cause

    def _look(
        self, client_id: str, symbol: str, verdict: Callable[[dict[str, Any] | None], Verdict], deadline_ns: int
    ) -> Flow[dict[str, Any] | None]:
        """Look up; if that is not conclusive yet, wait out the settle window and look once more."""
        found = yield from self._lookup(client_id, symbol)
        wait_s = (deadline_ns - time.time_ns()) / 1e9
        if verdict(found) is Verdict.WAIT and wait_s > 0:
            yield Sleep(wait_s)
            found = yield from self._lookup(client_id, symbol)
        return found

    def _observe_target(self, op_id: int, client_id: str, symbol: str) -> Flow[str]:
        """Journal what the exchange shows of an edit's target (a cancel-replace may cancel it alone)."""
        try:
            target = yield from self._lookup(client_id, symbol)
        except OrderLookupError as exc:
            log.warning("edit op %d: the replaced order %s could not be looked up: %s", op_id, client_id, exc)
            return "; the state of the order it replaces is unknown"
        if target is None:
            return "; the order it replaces is not on the exchange"
        self.journal.record("order_update", target, op=op_id)
        return f"; the order it replaces is {target['status']}"

    # -- events ----------------------------------------------------------------
    def _record_order_update(self, order: Mapping[str, Any], client_id: str | None) -> int:
        data = normalize_order(order, client_id=client_id)
        if not data["client_id"]:
            raise ValueError("the order has no client id; pass client_id= (orders are keyed by it)")
        return self.journal.record("order_update", data, op=self.journal.op_id_of(data["client_id"]))

    def _record_fill(self, trade: Mapping[str, Any], client_id: str | None) -> int:
        data = normalize_trade(trade, client_id=client_id)
        if not data["client_id"]:
            raise ValueError("the trade has no client id; pass client_id= (fills are applied to that order)")
        return self.journal.record("fill", data, op=self.journal.op_id_of(data["client_id"]))


class OrderJournal(OrderFlows):
    """Place, cancel and edit orders on a sync ccxt exchange, journaled (see the module docstring).

    ``settle_window_ms`` (default: ``recvWindow`` + 1000) is how long after a
    failed call an order may still appear; ``lookup_retries`` and ``backoff_s``
    bound the lookups of an operation in doubt (``backoff_s * 2**n`` between
    tries). The helper owns neither the journal nor the exchange: close them
    yourself.

    Every order method returns the normalised order the exchange reports, or
    raises: the ccxt exception for a definite refusal (the operation is
    aborted), :class:`OrderAbortedError` when a lookup shows it did not
    happen, :class:`OrderInDoubtError` when nobody can tell yet (pending).
    """

    def _drive(self, flow: Flow[T]) -> T:
        with FlowRunner(flow) as runner:
            while (step := runner.step) is not None:
                runner.call(step.run, self.exchange)
        return runner.result

    def place_order(
        self, symbol: str, type: str, side: str, amount: Any, price: Any = None, params: Params = None
    ) -> Order:
        """Place a ``limit`` or ``market`` order; ``params`` go to ccxt (never a client id: the journal's is used)."""
        return self._drive(self._place(symbol, type, side, amount, price, params))

    def cancel_order(self, client_id_or_order: Target, symbol: str) -> Order:
        """Cancel an order (by client id, or an order dict); returns it as the exchange reports it.

        An order that is already closed or canceled is returned as it is (the
        cancel is moot, and committed so).
        """
        return self._drive(self._cancel(client_id_or_order, symbol))

    def edit_order(
        self, client_id_or_order: Target, symbol: str, type: str, side: str, amount: Any, price: Any = None
    ) -> Order:
        """Replace an order (Binance cancel-replace); returns the NEW order, whose client id is the edit op's."""
        return self._drive(self._edit(client_id_or_order, symbol, type, side, amount, price))

    def lookup(self, client_id: str, symbol: str) -> Order | None:
        """The normalised order with ``client_id``; None only if the exchange says it has none.

        Raises :class:`OrderLookupError` when the exchange does not answer.
        """
        return self._drive(self._lookup(client_id, symbol))

    def resolve(self, op: int | str) -> Order:
        """Settle a pending operation of this helper (op id or client id) from the exchange now.

        Returns the committed result (at once if it already was committed);
        raises :class:`OrderAbortedError` or :class:`OrderInDoubtError` like
        the order methods.
        """
        return self._drive(self._resolve(op))

    def record_order_update(self, order: Mapping[str, Any], client_id: str | None = None) -> int:
        """Journal a status or fill change seen later (polling, websocket) as an ``order_update`` event."""
        return self._record_order_update(order, client_id)

    def record_fill(self, trade: Mapping[str, Any], client_id: str | None = None) -> int:
        """Journal a fill seen later as a ``fill`` event (``client_id`` names the order if the trade does not)."""
        return self._record_fill(trade, client_id)
