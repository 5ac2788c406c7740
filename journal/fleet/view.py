"""The fleet view: one row per bot, from the archive's records and the shippers' status entries.

For each history in an archive (:mod:`journal.fleet.archive`) the view derives,
from the records alone:

- the last seq and its time, and the records held;
- the pending operations (the replica's pending index: O(pending));
- **safe mode and why**: the newest ``safe_mode`` event (``{"active": bool,
  "reasons": [str]}``, written by the manager when it enters or leaves safe
  mode) or, when newer, the newest ``reconcile_report`` (its ``unresolved``
  list: the operations the exchange could not settle; the manager refuses new
  orders until a later reconciliation settles them). Operations left pending
  at run time put a manager in safe mode without a record saying so; they show
  as ``in_doubt``: pending longer than ``in_doubt_after_s``;
- **open orders per symbol**: the records replayed through the built-in state
  reducers (:class:`journal.state.Reducers`), orders in flight or resting,
  counted per symbol with the amount left per side. A journal whose oldest
  records were compacted before shipping began cannot be replayed from its
  start: its orders are reported unknown (``state`` says why), never guessed.

The replay is incremental: the state reached is cached in the archive's
``views/`` directory with the seq and chain value it covers, and the next view
applies only the records after it (a cache that no longer matches the
history is rebuilt). Bot-specific reducers are not known here; their sections
are not needed for the fleet's questions.

From the shippers' status entries on the hub (:mod:`journal.fleet.wire`) it
adds what only a shipper knows: the host, the journal's own last seq and the
shipping lag (records not yet acknowledged, and how long the oldest has
waited), and how old that entry is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import CorruptionError, DecodeError, JournalError
from ..log import Journal
from ..log.codec import decode, encode
from ..log.record import Record
from ..state import Reducers, State
from ..state.orders import is_open
from .archive import VIEWS_DIR, Archive

__all__ = ["VIEW_FORMAT", "fleet_rows", "history_view", "symbol_rows"]

VIEW_FORMAT = 1
_SAFE_TYPES = ("reconcile_report", "safe_mode")


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


class _Replay:
    """The state and the safe-mode facts reached after some seq of one history."""

    def __init__(self) -> None:
        self.state = State()
        self.seq = 0
        self.chain = 0
        self.reconcile: dict[str, Any] | None = None
        self.safe_event: dict[str, Any] | None = None
        self.reducer_errors = 0

    def apply(self, reducers: Reducers, rec: Record) -> None:
        if rec.kind == "event" and rec.type in _SAFE_TYPES and isinstance(rec.data, Mapping):
            fact = {"seq": rec.seq, "ts_ns": rec.ts_ns, "data": dict(rec.data)}
            if rec.type == "reconcile_report":
                self.reconcile = fact
            else:
                self.safe_event = fact
        try:
            reducers.apply(self.state, rec)
        except Exception:  # as StateStore does: a reducer bug changes nothing, and is counted
            self.reducer_errors += 1
            self.state.seq = rec.seq
        self.seq, self.chain = rec.seq, rec.chain

    def dump(self) -> bytes:
        return encode({"format": VIEW_FORMAT, "seq": self.seq, "chain": self.chain,
                       "sections": self.state.as_dict(), "reconcile": self.reconcile,
                       "safe_event": self.safe_event, "reducer_errors": self.reducer_errors})  # fmt: skip

    @classmethod
    def load(cls, raw: bytes) -> _Replay | None:
        try:
            obj = decode(raw)
        except DecodeError:
            return None
        if not isinstance(obj, dict) or obj.get("format") != VIEW_FORMAT:
            return None
        out = cls()
        out.state = State(obj["sections"], obj["seq"])
        out.seq, out.chain = int(obj["seq"]), int(obj["chain"])
        out.reconcile, out.safe_event = obj.get("reconcile"), obj.get("safe_event")
        out.reducer_errors = int(obj.get("reducer_errors") or 0)
        return out


def _replay(j: Journal, cache_path: str | None) -> tuple[_Replay | None, str]:
    """The replay of history ``j`` up to its last record, from the cache when it still matches."""
    cached: _Replay | None = None
    if cache_path is not None:
        try:
            with open(cache_path, "rb") as f:
                cached = _Replay.load(f.read())
        except FileNotFoundError:
            cached = None
    if cached is not None and cached.seq > 0:
        try:
            if j.get(cached.seq).chain != cached.chain:
                cached = None  # another history under this name now: rebuild
        except (JournalError, CorruptionError):
            cached = None
    if cached is None:
        if j.base_seq > 0:
            return None, (
                f"records before seq {j.base_seq + 1} were compacted before shipping began: "
                "open orders and safe mode before that are unknown"
            )
        cached = _Replay()
    reducers = Reducers.default()
    start = cached.seq + 1
    for rec in j.records(start):
        cached.apply(reducers, rec)
    if cache_path is not None and cached.seq >= start:
        os.makedirs(os.path.dirname(cache_path), mode=0o700, exist_ok=True)
        tmp = f"{cache_path}.tmp.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(cached.dump())
        os.replace(tmp, cache_path)  # a cache: no fsync needed, a torn one is rebuilt
    return cached, "replayed from seq 1" if j.base_seq == 0 else f"replayed from seq {j.base_seq + 1}"


def _safe_mode(replay: _Replay | None) -> tuple[bool | None, list[str], int | None]:
    if replay is None:
        return None, [], None
    rec, ev = replay.reconcile, replay.safe_event
    if ev is not None and (rec is None or ev["seq"] > rec["seq"]):
        data = ev["data"]
        return bool(data.get("active")), [str(r) for r in data.get("reasons") or []], int(ev["seq"])
    if rec is not None:
        unresolved = rec["data"].get("unresolved") or []
        reasons = [
            f"op {u.get('op')} {u.get('symbol') or ''}: {u.get('why') or 'unresolved'}".replace("  ", " ")
            for u in unresolved
            if isinstance(u, Mapping)
        ]
        return bool(unresolved), reasons, int(rec["seq"])
    return None, [], None


def _open_orders(replay: _Replay | None) -> tuple[dict[str, dict[str, Any]] | None, int | None]:
    if replay is None:
        return None, None
    out: dict[str, dict[str, Any]] = {}
    total = 0
    for order in replay.state["orders"].values():
        if not isinstance(order, Mapping) or not is_open(order):
            continue
        symbol = str(order.get("symbol") or "?")
        row = out.setdefault(symbol, {"orders": 0, "buy": Decimal(0), "sell": Decimal(0)})
        row["orders"] += 1
        total += 1
        left = _dec(order.get("remaining"))
        if left is None:
            amount, filled = _dec(order.get("amount")), _dec(order.get("filled")) or Decimal(0)
            left = amount - filled if amount is not None else Decimal(0)
        side = "sell" if order.get("side") == "sell" else "buy"
        row[side] += left
    return dict(sorted(out.items())), total


def history_view(
    archive: Archive, name: str, *, now_ns: int | None = None, in_doubt_after_s: float = 60.0
) -> dict[str, Any]:
    """The view of one history in ``archive`` (from its records; no status entry)."""
    now = time.time_ns() if now_ns is None else now_ns
    path = os.path.join(archive.root, name)
    with Journal(path, readonly=True, verify_on_open="none") as j:
        source = j.meta.get("replica") or {}
        replay, how = _replay(j, os.path.join(archive.root, VIEWS_DIR, name + ".cbor"))
        pending = j.pending()
        last = j.get(j.last_seq) if j.first_seq is not None else None
        safe, reasons, safe_seq = _safe_mode(replay)
        orders, total = _open_orders(replay)
        in_doubt = [
            {"op": p.op, "type": p.type, "symbol": (p.data or {}).get("symbol") if isinstance(p.data, Mapping) else None,
             "client_id": p.client_id, "age_s": round((now - p.ts_ns) / 1e9, 1)}
            for p in pending if (now - p.ts_ns) / 1e9 >= in_doubt_after_s
        ]  # fmt: skip
        return {
            "journal_id": j.journal_id,
            "history": name,
            "fork_of": source.get("fork_of"),
            "fork_seq": source.get("fork_seq"),
            "first_seq": j.first_seq,
            "last_seq": j.last_seq if last is not None else None,
            "last_ts_ns": last.ts_ns if last is not None else None,
            "last_age_s": round((now - last.ts_ns) / 1e9, 1) if last is not None else None,
            "incarnation": j.incarnations.current,
            "pending": len(pending),
            "pending_ops": [p.op for p in pending],
            "in_doubt": in_doubt,
            "safe_mode": safe,
            "safe_mode_reasons": reasons,
            "safe_mode_seq": safe_seq,
            "open_orders": total,
            "open_orders_by_symbol": orders,
            "state": how,
            "reducer_errors": replay.reducer_errors if replay is not None else None,
        }


def _match(
    statuses: Iterable[dict[str, Any]], view: dict[str, Any], forks: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The newest status entry of this journal whose incarnation belongs to this history (else, for the
    history first seen, any entry of this journal no fork claims)."""
    mine = [s for s in statuses if s.get("journal_id") == view["journal_id"]]
    claimed = []
    for s in mine:
        owner = next((f for f in forks if f["incarnations"] and s.get("incarnation") in f["incarnations"]), None)
        if owner is not None and owner["history"] == view["history"]:
            claimed.append(s)
        elif owner is None and view["fork_of"] is None:
            claimed.append(s)
    return max(claimed, key=lambda s: s.get("updated_ns") or 0) if claimed else None


def fleet_rows(
    archive: Archive,
    statuses: Mapping[str, dict[str, Any]] | None = None,
    *,
    now_ns: int | None = None,
    in_doubt_after_s: float = 60.0,
) -> list[dict[str, Any]]:
    """One row per history in the archive, joined with its shipper's status entry when there is one."""
    now = time.time_ns() if now_ns is None else now_ns
    archive.release()
    views = [history_view(archive, name, now_ns=now, in_doubt_after_s=in_doubt_after_s) for name in archive.names()]
    entries = list((statuses or {}).values())
    # which incarnations each history holds, so a shipper's entry joins the history it ships
    owners = []
    for v in views:
        with Journal(os.path.join(archive.root, v["history"]), readonly=True, verify_on_open="none") as j:
            names = {str(e[1]) for e in j.incarnations.entries()}
        owners.append({"history": v["history"], "incarnations": names})
    rows = []
    for v in views:
        s = _match(entries, v, owners)
        v.update(
            {
                "host": s.get("host") if s else None,
                "path": s.get("path") if s else None,
                "ship_state": s.get("state") if s else None,
                "journal_last_seq": s.get("last_seq") if s else None,
                "acked_seq": s.get("acked_seq") if s else None,
                "lag_records": s.get("lag_records") if s else None,
                "lag_s": s.get("lag_s") if s else None,
                "status_age_s": round((now - int(s["updated_ns"])) / 1e9, 1) if s and s.get("updated_ns") else None,
                "ship_error": s.get("error") if s else None,
            }
        )
        rows.append(v)
    seen_jids = {v["journal_id"] for v in views}
    for s in entries:  # a shipper whose records are not archived yet (or not at all)
        if s.get("journal_id") not in seen_jids:
            rows.append({"journal_id": s.get("journal_id"), "history": None, "host": s.get("host"),
                         "path": s.get("path"), "ship_state": s.get("state"), "journal_last_seq": s.get("last_seq"),
                         "acked_seq": s.get("acked_seq"), "lag_records": s.get("lag_records"),
                         "lag_s": s.get("lag_s"), "ship_error": s.get("error"),
                         "state": "no records archived yet"})  # fmt: skip
    return rows


def symbol_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open orders per symbol across the fleet: orders, amount left per side, and which bots."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        for symbol, o in (row.get("open_orders_by_symbol") or {}).items():
            agg = out.setdefault(symbol, {"symbol": symbol, "orders": 0, "buy": Decimal(0), "sell": Decimal(0),
                                          "bots": []})  # fmt: skip
            agg["orders"] += o["orders"]
            agg["buy"] += o["buy"]
            agg["sell"] += o["sell"]
            agg["bots"].append(row["history"])
    return [out[k] for k in sorted(out)]
