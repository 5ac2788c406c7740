"""Pure reconciliation: journal + exchange observations -> decisions.

No I/O and no clock here (``now_ns`` is an argument), so every case is a fast
table-driven unit test, and the same inputs always give the same decisions in
the same order -- re-running reconciliation on the same journal and the same
exchange answers writes the same records.

Inputs
    :class:`Inputs`: the journal's pending intents, the state's orders, trades
    and balances.
Observations
    :class:`Observations`: what the exchange said, per symbol, and whether the
    answer is *authoritative* for a time range (an order absent from an
    authoritative answer does not exist; absent from a failed or partial query
    means nothing -- a network error is never read as "not found").
Decisions
    :class:`Decision`: commit or abort a pending operation, journal an order
    update or a fill, adopt an order of ours the state does not know, report an
    external order, correct balances -- or leave an operation unresolved.

The settle window: an order absent from the exchange is only *absent* once the
venue's settle window has passed since the timestamp its request was signed
with (Binance executes a signed request up to ``recvWindow`` after its
timestamp); before that it is unresolved.

Residual risk: Binance answers lookups from a database that may lag the
matching engine. An order hidden for *longer* than the settle window is
aborted as not on the exchange -- no client can rule such a lag out -- so
every reconciliation looks such an order up again for a while
(:attr:`Inputs.rechecks`) and corrects it (status, fills) once the exchange
shows it; until then the bot is out of safe mode on a wrong verdict.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from journal import Record, parse_client_id
from journal.log.clientid import Incarnations
from journal.state.orders import OPEN_STATUSES, fills_missing, trade_key

from .normalize import CANCEL_NOT_APPLIED, FORGOTTEN_UNFILLED, NOT_ON_EXCHANGE, TARGET_NOT_ON_EXCHANGE
from .venue import CLOCK_SKEW_MS, VenueProfile

__all__ = [
    "Action",
    "Decision",
    "Inputs",
    "Observations",
    "SymbolView",
    "adoptable",
    "decide",
    "symbols_of",
    "unknown_ours",
]


class Action(enum.StrEnum):
    COMMIT = "commit"  #: settle a pending op with the exchange's order
    ABORT = "abort"  #: settle a pending op: it did not happen
    UNRESOLVED = "unresolved"  #: stays pending (reported; safe mode)
    ORDER_UPDATE = "order_update"  #: a known order changed while we were away
    FILL = "fill"  #: a trade the state has not applied
    ADOPT = "adopt"  #: an order carrying our prefix the state does not know
    EXTERNAL = "external"  #: someone else's order (reported, or handled by policy)
    BALANCES = "balances"  #: balances differ from the state


@dataclass(frozen=True)
class Decision:
    action: Action
    op: int | None = None
    client_id: str | None = None
    symbol: str | None = None
    data: Any = None
    reason: str | None = None


@dataclass
class SymbolView:
    """What the exchange said about one symbol.

    ``orders`` maps client id -> normalised order for every order seen (open
    orders and order history). ``history_from_ms`` is the start of the time
    range the order history covers authoritatively (None: no history fetched,
    or the fetch failed). ``trades`` are normalised trades; ``trades_ok`` says
    whether the trade history was fetched completely.
    """

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    open_ok: bool = False
    history_from_ms: int | None = None
    trades: list[dict[str, Any]] = field(default_factory=list)
    trades_ok: bool = False
    lookups: dict[str, bool] = field(default_factory=dict)  # client id -> looked up authoritatively
    #: when the exchange gave the answers above (ms): the settle window is judged against the moment
    #: the exchange was asked, not the moment reconciliation decides (slow or rate-limited gathering
    #: must not turn "not there yet" into "not there")
    answered_ms: int | None = None
    lookup_ms: dict[str, int] = field(default_factory=dict)
    #: client ids of orders the order history showed that another copy of this journal placed (issued by
    #: an incarnation, or at a sequence number, this copy's history does not know): adopted with their status
    swept: set[str] = field(default_factory=set)


@dataclass
class Observations:
    symbols: dict[str, SymbolView] = field(default_factory=dict)
    open_orders_all: list[dict[str, Any]] | None = None  # every open order (None: not fetched)
    balances: dict[str, dict[str, Decimal]] | None = None  # None: not fetched
    #: the sweep for a lost copy's orders (symbols swept, when from) if it was done completely, else None
    sweep: dict[str, Any] | None = None

    def view(self, symbol: str) -> SymbolView:
        return self.symbols.setdefault(symbol, SymbolView())


@dataclass
class Inputs:
    journal_id: str
    pending: list[Record]
    orders: Mapping[str, Mapping[str, Any]]
    trades: Mapping[str, Any]
    balances: Mapping[str, Mapping[str, Any]]
    #: Orders an earlier verdict aborted as not on the exchange, still looked up again (client id ->
    #: intent ms): a lagging database can hide an accepted order for longer than the settle window
    #: (see :data:`~recovery.reconcile.ReconcileSettings.recheck_aborted_ms`).
    rechecks: Mapping[str, int] = field(default_factory=dict)
    #: Which writer incarnation issued which sequence numbers in *this* copy's history (None: unknown):
    #: an id of ours at a seq this history wrote under another incarnation was sent by another copy.
    incarnations: Incarnations | None = None
    #: Another copy of this journal may have placed orders from this time on (ms; None: no such gap):
    #: the order histories are swept for them (see :mod:`recovery.reconcile`, "Orders of a lost copy").
    sweep_from_ms: int | None = None

    def foreign(self, client_id: str | None) -> bool:
        """Whether ``client_id`` is this journal's (by prefix) but was issued by another copy of it."""
        parsed = parse_client_id(client_id or "", self.journal_id)
        if parsed is None or self.incarnations is None:
            return False
        return self.incarnations.at(parsed.seq) != parsed.incarnation


def _target_symbol(rec: Record, orders: Mapping[str, Mapping[str, Any]]) -> str | None:
    data = rec.data or {}
    if data.get("symbol"):
        return str(data["symbol"])
    target = orders.get(data.get("client_id") or "")
    return target.get("symbol") if target else None


def symbols_of(inputs: Inputs) -> list[str]:
    """Symbols reconciliation must look at: pending ops', open orders', those of orders whose
    reported fill the applied trades do not explain yet (issue 12.3), and of aborted orders still
    looked up again (:attr:`Inputs.rechecks`), sorted."""
    out = {s for s in (_target_symbol(r, inputs.orders) for r in inputs.pending) if s}
    out |= {o["symbol"] for o in inputs.orders.values()
            if (o.get("status") in OPEN_STATUSES or fills_missing(o)) and o.get("symbol")}  # fmt: skip
    out |= {str(inputs.orders[c]["symbol"]) for c in inputs.rechecks if (inputs.orders.get(c) or {}).get("symbol")}
    return sorted(out)


def unknown_ours(inputs: Inputs, client_id: str | None) -> bool:
    """Whether ``client_id`` carries this journal's prefix (any copy's) and the state and pending ops lack it."""
    if not client_id or client_id in inputs.orders or parse_client_id(client_id, inputs.journal_id) is None:
        return False
    return not any(r.client_id == client_id for r in inputs.pending)


def adoptable(inputs: Inputs, obs: Observations) -> list[dict[str, Any]]:
    """Orders of ours the state does not know, each once, in a deterministic order: open ones, and
    (see :attr:`SymbolView.swept`) closed ones another copy of this journal placed."""
    found: dict[str, dict[str, Any]] = {}
    for order in obs.open_orders_all or ():
        if unknown_ours(inputs, order.get("client_id")) and order.get("symbol"):
            found.setdefault(order["client_id"], order)
    for symbol in sorted(obs.symbols):
        view = obs.symbols[symbol]
        for cid in sorted(view.swept):
            swept = view.orders.get(cid)
            if swept is not None and cid not in found and unknown_ours(inputs, cid) and inputs.foreign(cid):
                found[cid] = dict(swept, symbol=swept.get("symbol") or symbol)
    return sorted(found.values(), key=lambda o: (o.get("symbol") or "", str(o.get("id")), o["client_id"]))


def _found(view: SymbolView, client_id: str | None) -> dict[str, Any] | None:
    return view.orders.get(client_id) if client_id else None


def _authoritative_absent(view: SymbolView, client_id: str | None, since_ms: int | None) -> bool:
    """True when the exchange would have shown ``client_id`` and did not.

    ``since_ms`` is when the order would have been placed (None: unknown, so
    only a lookup by client id is authoritative).
    """
    if client_id and view.lookups.get(client_id):
        return True
    return view.history_from_ms is not None and since_ms is not None and view.history_from_ms <= since_ms


def _settled(
    view: SymbolView,
    client_id: str | None,
    intent_ms: int,
    now_ms: int,
    window_ms: int,
    signing_offsets_ms: Sequence[int] = (0,),
) -> bool:
    """Had the settle window passed when the exchange gave its answer about ``client_id``?

    Times are the exchange's (reconciliation measures its clock). The window counts from the
    timestamp the request was signed with: the intent's local time plus whichever of
    ``signing_offsets_ms`` the client added (ccxt's ``adjustForTimeDifference`` signs with local
    time minus ``options["timeDifference"]``), so it must have passed for every one of them --
    never abort an operation whose request could still execute. A request signed more than
    :data:`~recovery.venue.CLOCK_SKEW_MS` ahead of the exchange's clock was refused on arrival
    (Binance -1021), so an intent stamped that far in the future (the bot's clock was ahead, then
    stepped back) is settled at once instead of keeping the bot in safe mode for the whole step.
    """
    asked = view.lookup_ms.get(client_id or "") or view.answered_ms or now_ms
    return all(
        signed <= asked - window_ms or signed > asked + CLOCK_SKEW_MS
        for signed in (intent_ms + offset for offset in (signing_offsets_ms or (0,)))
    )


def _order_changed(known: Mapping[str, Any], seen: Mapping[str, Any]) -> bool:
    if seen.get("status") != known.get("status"):
        return True
    seen_filled, known_filled = seen.get("filled"), known.get("filled")
    return seen_filled is not None and (known_filled is None or seen_filled > known_filled)


def _unexplained_trades(view: SymbolView, inputs: Inputs, since_ms: int) -> bool:
    """Whether the symbol's trade history since ``since_ms`` is incomplete or holds a trade of an unknown order."""
    if not view.trades_ok:
        return True
    known = {o.get("id") for o in inputs.orders.values() if o.get("id")} | {
        o.get("id") for o in view.orders.values() if o.get("id")
    }
    return any(
        int(t.get("timestamp") or 0) >= since_ms and t.get("order_id") not in known and not t.get("client_id")
        for t in view.trades
    )


def decide(
    inputs: Inputs,
    obs: Observations,
    *,
    now_ns: int,
    settle_window_ms: int,
    venue: VenueProfile | None = None,
    signing_offsets_ms: Sequence[int] = (0,),
) -> list[Decision]:
    """Every decision reconciliation takes, in a deterministic order.

    ``signing_offsets_ms``: what the client may have added to an intent's local time when it signed
    the request (see :func:`_settled`; reconciliation passes ccxt's time difference and the exchange
    clock's offset when the client adjusts for it).

    ``venue`` says how long the exchange keeps orders findable (:class:`~recovery.venue.VenueProfile`):
    past that horizon "not found" is no proof that an order was never placed, so such an intent is
    settled only when the symbol's trade history shows no trade it could have made (nothing was
    filled), and otherwise stays unresolved with the horizon named.
    """
    venue = venue or VenueProfile(name="unknown")
    out: list[Decision] = []
    now_ms = now_ns // 1_000_000
    pending_targets: set[str] = set()
    # 1. pending operations, oldest first
    for rec in inputs.pending:
        symbol = _target_symbol(rec, inputs.orders)
        view = obs.symbols.get(symbol or "", SymbolView())
        intent_ms = rec.ts_ns // 1_000_000
        data = rec.data or {}
        if rec.type in ("place_order", "edit_order"):
            settled = _settled(view, rec.client_id, intent_ms, now_ms, settle_window_ms, signing_offsets_ms)
            found = _found(view, rec.client_id)
            if found is not None:
                out.append(Decision(Action.COMMIT, rec.op, rec.client_id, symbol, found))
            elif (
                settled and _authoritative_absent(view, rec.client_id, intent_ms) and venue.forgets(now_ms - intent_ms)
            ):
                if _unexplained_trades(view, inputs, intent_ms):
                    why = (
                        f"not found, but past the venue's lookup horizon ({venue.horizon_text()}) and the trade "
                        "history does not rule out a fill: settle it by hand (`journal resolve`)"
                    )
                    out.append(Decision(Action.UNRESOLVED, rec.op, rec.client_id, symbol, reason=why))
                else:
                    out.append(Decision(Action.ABORT, rec.op, rec.client_id, symbol, reason=FORGOTTEN_UNFILLED))
            elif settled and _authoritative_absent(view, rec.client_id, intent_ms):
                out.append(Decision(Action.ABORT, rec.op, rec.client_id, symbol, reason=NOT_ON_EXCHANGE))
            else:
                asked = _authoritative_absent(view, rec.client_id, intent_ms)
                why = "inside the settle window" if asked else "the exchange could not be asked"
                out.append(Decision(Action.UNRESOLVED, rec.op, rec.client_id, symbol, reason=why))
            if rec.type == "edit_order" and data.get("client_id"):
                pending_targets.add(str(data["client_id"]))
        elif rec.type == "cancel_order":
            target = data.get("client_id")
            pending_targets.add(str(target))
            settled = _settled(view, target, intent_ms, now_ms, settle_window_ms, signing_offsets_ms)
            found = _found(view, target)
            known = inputs.orders.get(target or "") or {}
            placed_ms = known.get("timestamp") if isinstance(known.get("timestamp"), int) else None
            if found is not None and found.get("status") not in OPEN_STATUSES:
                out.append(Decision(Action.COMMIT, rec.op, target, symbol, found))
            elif found is not None and settled and view.open_ok:
                out.append(Decision(Action.ABORT, rec.op, target, symbol, reason=CANCEL_NOT_APPLIED))
            elif found is None and settled and _authoritative_absent(view, target, placed_ms):
                out.append(Decision(Action.ABORT, rec.op, target, symbol, reason=TARGET_NOT_ON_EXCHANGE))
            else:
                asked = view.open_ok or _authoritative_absent(view, target, placed_ms)
                why = (
                    "cancel outcome unknown: inside the settle window"
                    if asked
                    else ("cancel outcome unknown: the exchange could not be asked")
                )
                out.append(Decision(Action.UNRESOLVED, rec.op, target, symbol, reason=why))
        else:  # an operation type recovery does not know: only a person can settle it
            out.append(Decision(Action.UNRESOLVED, rec.op, rec.client_id, symbol, reason=f"unknown type {rec.type}"))
    settling = {d.client_id for d in out if d.action is Action.COMMIT}
    # 2. orders the state knows: changes that happened while we were away
    for client_id in sorted(inputs.orders):
        known = inputs.orders[client_id]
        # "rejected" too: an operation aborted on a wrong verdict must come back if the exchange has it
        if known.get("status") not in ("open", "rejected") or client_id in settling:
            continue
        known_view = obs.symbols.get(known.get("symbol") or "")
        if known_view is None:
            continue
        seen = known_view.orders.get(client_id)
        if seen is not None and _order_changed(known, seen):
            out.append(Decision(Action.ORDER_UPDATE, known.get("op"), client_id, known.get("symbol"), seen))
    # 3. orders the state does not know: ours (by prefix) adopted, the rest external. Before the fills,
    #    so that an adopted order's trades are applied to it in this same pass (a second pass then
    #    finds nothing: idempotent).
    ours = set(inputs.orders) | {r.client_id for r in inputs.pending if r.client_id}
    adopted: set[str] = set()
    for order in adoptable(inputs, obs):
        out.append(Decision(Action.ADOPT, None, order["client_id"], order.get("symbol"), order))
        adopted.add(order["client_id"])
    if obs.open_orders_all is not None:
        for order in sorted(obs.open_orders_all, key=lambda o: (o.get("symbol") or "", str(o.get("id")))):
            open_cid = order.get("client_id")
            key = open_cid or f"ext:{order.get('id')}"  # an order placed without a client id
            if key in ours or key in pending_targets or key in adopted:
                continue
            if not (open_cid and parse_client_id(open_cid, inputs.journal_id) is not None):
                out.append(Decision(Action.EXTERNAL, None, open_cid, order.get("symbol"), order))
    ours |= adopted
    # 4. trades not applied yet (deduplicated by symbol and trade id, no cap)
    # exchange order ids are unique per symbol only (Binance numbers them per symbol): key by both
    by_order_id = {(o.get("symbol"), o.get("id")): cid for cid, o in inputs.orders.items() if o.get("id")}
    for view_symbol, view in obs.symbols.items():  # orders found for pending operations carry their id only there
        for cid, o in view.orders.items():
            if o.get("id") and cid in ours:
                by_order_id.setdefault((view_symbol, o["id"]), cid)
    for symbol in sorted(obs.symbols):
        seen_ids: set[str] = set()
        for trade in sorted(obs.symbols[symbol].trades, key=lambda t: (t.get("timestamp") or 0, str(t.get("id")))):
            tid = str(trade.get("id"))
            if trade_key(symbol, tid) in inputs.trades or tid in seen_ids:
                continue
            seen_ids.add(tid)
            trade_cid = trade.get("client_id") or by_order_id.get((symbol, trade.get("order_id")))
            if trade_cid is None or trade_cid not in ours:
                continue
            out.append(Decision(Action.FILL, None, trade_cid, symbol, dict(trade, client_id=trade_cid)))
    # 5. balances
    if obs.balances is not None:
        changed: dict[str, Any] = {}
        for asset in sorted(set(obs.balances) | set(inputs.balances)):
            seen_bal = obs.balances.get(asset)
            known_bal = inputs.balances.get(asset)
            if seen_bal is None:
                if known_bal is not None:
                    changed[asset] = None
            elif known_bal is None or any(known_bal.get(k) != seen_bal.get(k) for k in ("free", "used", "total")):
                changed[asset] = seen_bal
        if changed:
            out.append(Decision(Action.BALANCES, data=changed))
    return out


def count(decisions: Iterable[Decision], action: Action) -> int:
    return sum(1 for d in decisions if d.action is action)
