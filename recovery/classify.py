"""What a ccxt exception says about an order operation: refused, in doubt, or "not found".

The journal knows no exchange; this module is the ccxt-aware classifier it is
handed (``journal.operation(..., classify=is_definite_refusal)``) and that the
order helpers (:mod:`recovery.orders`) use. One table, :data:`RULES`, first
match wins; whatever matches no row is **in doubt** (never guess):

============================== ======================= ====================================================
ccxt exception                 create / cancel / edit  why
============================== ======================= ====================================================
InvalidNonce                   DEFINITE                Binance -1021: the *timestamp* was refused (outside
                                                       ``recvWindow`` or >1 s ahead) before anything was
                                                       executed. ccxt files it under NetworkError, but the
                                                       exchange answered, and a request refused for its
                                                       timestamp can never execute later.
NetworkError (RequestTimeout,  IN_DOUBT                the request may have been executed: timeouts,
ExchangeNotAvailable,                                  dropped connections, 5xx, 503 -1007 "execution
DDoSProtection,                                        status unknown", 418/429 and -1003/-1015 rate limits
RateLimitExceeded, ...)                                (Binance says these were not executed, but a lookup
                                                       costs little and settles it for sure)
OrderNotFound                  IN_DOUBT / NOT_FOUND /  on a cancel (-2011) the order is gone or unknown:
                               NOT_FOUND               look it up (filled? canceled? unknown?); a create
                                                       never expects it, so it is in doubt there
DuplicateOrderId; InvalidOrder IN_DOUBT                the client id is in use: the order may be ours
whose message says "Duplicate                          (Binance -2010 "Duplicate order sent.")
order"
InvalidOrder                   DEFINITE                filters, post-only would take, bad order: refused
InsufficientFunds              DEFINITE                refused (-2010 insufficient balance)
BadSymbol, BadRequest          DEFINITE                refused (-1121, -1013 NOTIONAL, -1100, -1102, ...)
PermissionDenied,              DEFINITE                refused (-1022, -2014, -2015 before any success)
AuthenticationError
OperationRejected              DEFINITE                the venue refused the operation (trading not
                                                       allowed, market closed, ...)
ArgumentsRequired,             DEFINITE                ccxt refused before sending anything
NotSupported
anything else (BadResponse,    IN_DOUBT                unrecognised: Binance -2021/-2022 (cancel-replace
OperationFailed, ExchangeError,                        partly failed) are BadResponse, -1000 "unknown
non-ccxt exceptions)                                   error" is OperationFailed; a parsing error after
                                                       the answer arrived is a non-ccxt exception
============================== ======================= ====================================================

An operation whose outcome is IN_DOUBT stays pending in the journal until a
lookup (or startup reconciliation) settles it; DEFINITE aborts it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import ccxt

__all__ = ["RULES", "Action", "Outcome", "Rule", "classify", "is_definite_refusal"]


class Action(enum.StrEnum):
    """The order operation an exception came from."""

    CREATE = "create"
    CANCEL = "cancel"
    EDIT = "edit"


class Outcome(enum.Enum):
    """What an exception means for the operation."""

    DEFINITE = "definite"  #: the exchange refused: nothing was executed; abort
    IN_DOUBT = "in_doubt"  #: it may have been executed: keep it pending and look it up
    NOT_FOUND = "not_found"  #: the order the operation targets is unknown or gone: look it up


@dataclass(frozen=True)
class Rule:
    """One row: exceptions of ``error`` (and, if given, whose message holds ``message``)."""

    error: type[BaseException]
    outcome: Outcome | Mapping[Action, Outcome]
    why: str
    message: str | None = None

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, self.error) and (self.message is None or self.message in str(exc))

    def outcome_for(self, action: Action) -> Outcome:
        return self.outcome if isinstance(self.outcome, Outcome) else self.outcome[action]


_D, _U = Outcome.DEFINITE, Outcome.IN_DOUBT

#: The classification table (first match wins; no match: IN_DOUBT). See the module docstring.
RULES: tuple[Rule, ...] = (
    Rule(ccxt.InvalidNonce, _D, "timestamp refused before execution (-1021); can never execute later"),
    Rule(ccxt.NetworkError, _U, "no answer, or an answer that does not say whether it was executed"),
    Rule(
        ccxt.OrderNotFound,
        {Action.CREATE: _U, Action.CANCEL: Outcome.NOT_FOUND, Action.EDIT: Outcome.NOT_FOUND},
        "the targeted order is gone or unknown: look it up",
    ),
    Rule(ccxt.DuplicateOrderId, _U, "the client id is in use: the order may be ours"),
    Rule(ccxt.InvalidOrder, _U, "Binance -2010 'Duplicate order sent.': the order may be ours", "Duplicate order"),
    Rule(ccxt.InvalidOrder, _D, "the order was refused"),
    Rule(ccxt.InsufficientFunds, _D, "refused for the balance"),
    Rule(ccxt.BadSymbol, _D, "refused: no such market"),
    Rule(ccxt.BadRequest, _D, "refused: malformed or filtered request"),
    Rule(ccxt.PermissionDenied, _D, "refused: the key may not do this"),
    Rule(ccxt.AuthenticationError, _D, "refused: key or signature"),
    Rule(ccxt.OperationRejected, _D, "the venue refused the operation"),
    Rule(ccxt.ArgumentsRequired, _D, "ccxt refused before sending"),
    Rule(ccxt.NotSupported, _D, "ccxt refused before sending"),
)


def classify(exc: BaseException, action: Action | str = Action.CREATE) -> Outcome:
    """The :class:`Outcome` of ``exc`` raised by a ``create``, ``cancel`` or ``edit`` (see :data:`RULES`)."""
    act = Action(action)
    for rule in RULES:
        if rule.matches(exc):
            return rule.outcome_for(act)
    return Outcome.IN_DOUBT


def is_definite_refusal(exc: BaseException) -> bool:
    """True when ``exc`` from an order *create* is a definite refusal: the journal's ``classify=`` hook."""
    return classify(exc, Action.CREATE) is Outcome.DEFINITE
