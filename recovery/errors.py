"""Every error the exchange side of tradejournal raises.

::

    RecoveryError                 base class
    ├── ManagerStateError         the manager was used out of order (not started, closed, offline)
    ├── SafeModeError             a new order was refused: operations are unresolved or the exchange unreachable
    ├── BudgetExhausted           reconciliation spent its request budget; the rest stays unresolved
    │   └── RateLimitedUntil      the venue rate-limits (429 Retry-After, 418 ban) for longer than recovery waits
    ├── OrderLookupError          the exchange did not answer a lookup: the order's state is unknown
    ├── OrderRefusedLocally       the order breaks the market's precision or limits: nothing journaled, nothing sent
    └── OperationError            about one journaled operation (op id, type, client id, symbol)
        ├── OrderInDoubtError     nobody can tell yet whether it happened; it stays pending
        └── OrderAbortedError     a lookup showed it did not happen; it is aborted

A ccxt exception that the exchange raised for a definite refusal (invalid
order, insufficient funds, ...) reaches the bot as itself, after the operation
is journaled as aborted; a :class:`journal.JournalError` means the intent
could not be made durable, so nothing was sent.

Each class carries the fixed part of its remedy in ``remedy``; each message
adds what happened and to what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "BudgetExhausted",
    "ManagerStateError",
    "OpRef",
    "OperationError",
    "OrderAbortedError",
    "OrderInDoubtError",
    "OrderLookupError",
    "OrderRefusedLocally",
    "RateLimitedUntil",
    "RecoveryError",
    "SafeModeError",
]


class RecoveryError(Exception):
    """Base class of every error the ``recovery`` package raises."""

    #: What to do about it (the fixed part; the message says what happened, where).
    remedy = ""


class ManagerStateError(RecoveryError):
    """The manager was used out of order: before ``start()``, after ``close()``, or offline."""

    remedy = "call start() first, and do not use the manager after close()"


class SafeModeError(RecoveryError):
    """New orders are refused while operations are unresolved or the exchange cannot be asked."""

    remedy = (
        "call reconcile() when the exchange answers (the manager retries by itself), settle unresolved "
        "operations with `journal resolve`, or pass allow_unsafe=True if you know it is safe"
    )


class BudgetExhausted(RecoveryError):
    """Reconciliation spent its request budget; what is left stays unresolved."""

    remedy = "raise max_requests, or call reconcile() again later"


class RateLimitedUntil(BudgetExhausted):
    """The venue refused requests for its rate limit for longer than recovery waits by itself."""

    remedy = "nothing is sent to the exchange until then; reconciliation is retried after it (safe mode meanwhile)"

    def __init__(self, until_s: float, cause: str) -> None:
        self.until_s = until_s
        when = datetime.fromtimestamp(until_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        super().__init__(f"rate limited until {when} ({cause}); {self.remedy}")


class OrderLookupError(RecoveryError):
    """The exchange did not answer a lookup; the order's state is unknown (not "absent")."""

    remedy = "ask again later"

    def __init__(self, client_id: str, symbol: str, attempts: int, cause: BaseException) -> None:
        super().__init__(
            f"could not look up client id {client_id} on {symbol} ({attempts} attempts, last: "
            f"{cause.__class__.__name__}); its state is unknown; {self.remedy}"
        )
        self.client_id, self.symbol = client_id, symbol


class OrderRefusedLocally(RecoveryError, ValueError):
    """The order cannot be sent as given: checked against the market before anything was journaled or sent.

    Amount and price must be finite, positive, representable at the market's
    precision and within its limits (``exchange.markets[symbol]``).
    """

    remedy = "fix the amount or price (see the market's precision and limits); nothing was journaled or sent"

    def __init__(self, symbol: str, problem: str) -> None:
        super().__init__(f"order on {symbol} refused before sending: {problem}; {self.remedy}")
        self.symbol, self.problem = symbol, problem


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


class OperationError(RecoveryError):
    """About one journaled operation: ``op_id``, ``type``, ``client_id``, ``symbol``, ``target``."""

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


class OrderInDoubtError(OperationError):
    """The exchange could not be asked whether an operation happened; it stays pending.

    ``op_id``, ``type``, ``client_id`` (the operation's), ``symbol`` and
    ``target`` (the order a cancel or edit acts on) name it. Never re-send it.
    """

    remedy = (
        "the journal keeps it pending; startup reconciliation or `journal resolve` will settle it (or call "
        "resolve(op) once the exchange answers). Do not send it again."
    )

    def __init__(self, ref: OpRef, cause: BaseException | None = None) -> None:
        after = f" after {cause.__class__.__name__}" if cause is not None else ""
        super().__init__(ref, f"is in doubt{after} and the exchange could not be asked; {self.remedy}")


class OrderAbortedError(OperationError):
    """An operation in doubt was looked up and found not to have happened; it is aborted.

    ``reason`` is the abort reason journaled; a new operation (with a new
    client id) may safely try again.
    """

    remedy = "it is safe to try again with a new operation"

    def __init__(self, ref: OpRef, reason: str, detail: str = "") -> None:
        super().__init__(ref, f"was aborted: {reason}{detail}; {self.remedy}")
        self.reason = reason
