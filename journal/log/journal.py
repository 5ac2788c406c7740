"""The write-ahead journal: durable intents, outcome markers, events, reads.

See the package docstring for the lifecycle. This module holds :class:`Journal`
(the object a bot opens) and :class:`Operation` (the handle of one two-phase
operation).

Thread rules: any number of threads may call any method of one
:class:`Journal` at once. Writes are group-committed: a thread that needs a
durable write either becomes the *leader* and writes everything queued so far
in one LMDB transaction, or finds that a leader already wrote its records.
Read methods use short read transactions (a chunk of records at a time), so a
slow consumer never pins old pages nor blocks a map resize.

Process rules: one writer per journal directory (see :mod:`journal.storage`);
read-only opens from other processes are fine; never use a journal across
``fork()`` (:class:`ForkError`).
"""

from __future__ import annotations

import enum
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb

from ..errors import (
    CodecError,
    CorruptionError,
    JournalError,
    NotAJournalError,
    OperationStateError,
    ReadOnlyError,
    UnknownOperationError,
)
from . import crashpoints
from .clientid import make_client_id, new_journal_id, parse_client_id
from .codec import decode, encode, warm_up
from .compaction import delete_through
from .record import (
    ABORT,
    COMMIT,
    EVENT,
    HEADER,
    INTENT,
    KIND_CODES,
    KIND_NAMES,
    Record,
    body,
    frame,
    genesis_chain,
    seq_key,
    unframe,
)
from .stats import WriteStats
from .storage import FORMAT_VERSION, Storage
from .verify import VerifyReport, verify_range

__all__ = ["DEFAULT_SETTINGS", "Durability", "Journal", "Operation", "VerifyReport"]

log = logging.getLogger("journal.wal")

_SEQ = struct.Struct(">Q")
_MISSING = object()
T = TypeVar("T")


class Durability(enum.StrEnum):
    """How much a crash may lose. Pick with ``Journal(path, durability=...)``.

    ``FULL``
        Every record (intent, commit, abort, event) is synced to disk before
        the call returns. A process crash or a power loss loses nothing that a
        call acknowledged. Costs a synced transaction per record (shared by
        concurrent threads through group commit).

    ``INTENT`` (the default)
        Intents and events are synced before the call returns, so an order is
        never sent without a durable intent. Commit and abort markers ride on
        the next synced transaction: the next intent's, or a flush after at most
        ``flush_interval_ms``. A process crash or power loss may lose the
        markers of that last window; those operations come back *pending* and
        startup reconciliation resolves them from the exchange, which is
        correct, just slower. One synced transaction per operation.
        ``Journal.flush()`` or ``commit(..., wait=True)`` makes a marker durable
        at once.

    ``PROCESS``
        Nothing is synced on the write path (LMDB ``sync=False``); the file is
        synced every ``flush_interval_ms`` in the background. A process crash
        (``kill -9``) loses nothing acknowledged, since the page cache
        survives. A power loss or kernel crash may lose recent records *and may
        corrupt the environment*: use it for paper trading and backtests only.
    """

    FULL = "full"
    INTENT = "intent"
    PROCESS = "process"


#: Settings accepted by :class:`Journal` as keyword arguments.
DEFAULT_SETTINGS: dict[str, Any] = {
    "durability": Durability.INTENT,
    "readonly": False,
    "map_size": 4 << 20,
    "max_map_size": 1 << 40,
    "flush_interval_ms": 5.0,
    "verify_on_open": "tail",
    "checkpoint_interval": 16384,
}

_VERIFY_MODES = ("tail", "full", "none")


class _Entry:
    __slots__ = ("kind", "body", "op", "type", "data", "source", "key", "value")

    def __init__(self, kind: int, body_bytes: bytes, op: int | None, type_: str, data: Any, source: str) -> None:
        self.kind = kind
        self.body = body_bytes
        self.op = op
        self.type = type_
        self.data = data
        self.source = source
        self.key = b""
        self.value = b""


class _Request:
    __slots__ = ("entries", "done", "seqs", "error", "crash_point", "event", "waiting")

    def __init__(self, entries: list[_Entry], crash_point: str | None) -> None:
        self.entries = entries
        self.event: threading.Event | None = None
        self.waiting = False
        self.done = False
        self.seqs: list[int] = []
        self.error: BaseException | None = None
        self.crash_point = crash_point


class Operation:
    """The handle of one two-phase operation, returned by :meth:`Journal.begin`.

    ``op_id`` is the intent's sequence number; ``client_id`` is the id to send
    to the exchange (``params={"clientOrderId": op.client_id}``). ``status``
    is ``"pending"``, ``"committed"`` or ``"aborted"``.
    """

    __slots__ = ("journal", "op_id", "client_id", "type", "data", "status")

    def __init__(self, journal: Journal, op_id: int, client_id: str, type_: str, data: Any) -> None:
        self.journal = journal
        self.op_id = op_id
        self.client_id = client_id
        self.type = type_
        self.data = data
        self.status = "pending"

    @property
    def seq(self) -> int:
        """The intent's sequence number (equal to ``op_id``)."""
        return self.op_id

    def commit(self, result: Any = None, *, wait: bool | None = None) -> None:
        """Record that the operation succeeded, with ``result`` (e.g. the exchange's order)."""
        self.journal.commit(self, result, wait=wait)

    def abort(self, reason: str, *, error: BaseException | None = None, wait: bool | None = None) -> None:
        """Record that the operation definitely did not happen, and why."""
        self.journal.abort(self, reason, error=error, wait=wait)

    def __repr__(self) -> str:
        return f"<Operation {self.op_id} {self.type} {self.client_id} {self.status}>"


class Journal:
    """An embedded write-ahead journal in an LMDB environment directory.

    ``Journal(path)`` opens (creating if missing) the journal for writing,
    taking the single-writer lock; ``Journal(path, readonly=True)`` opens it
    for reading beside a running writer. Settings are keyword arguments, see
    :data:`DEFAULT_SETTINGS` and :class:`Durability`. ``close()`` is idempotent
    and the journal is a context manager.

    On open, the records written since the last checkpoint (at most
    ``checkpoint_interval`` of them) are verified against their checksums and
    the hash chain, and the record count is checked against the sequence range
    (a deleted record anywhere is caught); ``verify_on_open="full"`` checks
    everything, ``"none"`` nothing (the dump tool, which reports damage itself).
    """

    def __init__(self, path: str | os.PathLike[str], **settings: Any) -> None:
        unknown = set(settings) - set(DEFAULT_SETTINGS)
        if unknown:
            raise ValueError(f"unknown Journal setting(s) {sorted(unknown)}; known: {sorted(DEFAULT_SETTINGS)}")
        cfg = {**DEFAULT_SETTINGS, **settings}
        try:
            self.durability = Durability(cfg["durability"])
        except ValueError:
            raise ValueError(
                f"durability must be one of {[d.value for d in Durability]}, got {cfg['durability']!r}"
            ) from None
        if cfg["verify_on_open"] not in _VERIFY_MODES:
            raise ValueError(f"verify_on_open must be one of {_VERIFY_MODES}, got {cfg['verify_on_open']!r}")
        if not (0 < float(cfg["flush_interval_ms"]) <= 60_000):
            raise ValueError(f"flush_interval_ms must be in (0, 60000], got {cfg['flush_interval_ms']!r}")
        if int(cfg["map_size"]) < 64 * 1024 or int(cfg["max_map_size"]) < int(cfg["map_size"]):
            raise ValueError("map_size must be >= 64 KiB and max_map_size >= map_size")
        if int(cfg["checkpoint_interval"]) < 1:
            raise ValueError("checkpoint_interval must be >= 1")
        self.settings = cfg
        self.path = os.fspath(path)
        self.readonly = bool(cfg["readonly"])
        self._flush_s = float(cfg["flush_interval_ms"]) / 1000.0
        self._checkpoint_interval = int(cfg["checkpoint_interval"])
        self._closed = False
        self.stats_data = WriteStats()
        self._write_lock = threading.Lock()
        self._tls = threading.local()
        self._qlock = threading.Lock()
        self._queue: list[_Request] = []
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._last_ts = 0
        self._broken: JournalError | None = None
        self._marker_since: float | None = None  # when the oldest unwritten no-wait record was queued
        self._flusher_idle = True  # the flusher sleeps until kicked (else it polls marker ages itself)
        self._observers: list[Callable[[Record], None]] = []
        self._write_hooks: list[Callable[[lmdb.Transaction], None]] = []
        warm_up()
        self._storage = Storage(
            self.path,
            readonly=self.readonly,
            map_size=int(cfg["map_size"]),
            max_map_size=int(cfg["max_map_size"]),
            sync=self.durability is not Durability.PROCESS,
        )
        try:
            self._init_state(cfg["verify_on_open"])
        except BaseException:
            self._storage.close()
            raise
        log.info(
            "opened journal %s (id %s, %s, seq %s..%s, %d pending)",
            self.path,
            self.journal_id,
            "read-only" if self.readonly else self.durability.value,
            self.first_seq,
            self.last_seq,
            len(self._pending),
        )

    # -- opening -------------------------------------------------------------

    def _init_state(self, verify_mode: str) -> None:
        st = self._storage
        if not self.readonly:
            with st.read() as txn:
                empty_meta = txn.stat(st.dbs["meta"])["entries"] == 0
                empty_log = txn.stat(st.dbs["log"])["entries"] == 0
            if empty_meta:
                if not empty_log:
                    raise NotAJournalError(f"{self.path}: records without meta data: not a tradejournal journal")
                jid = new_journal_id()

                def init(txn: lmdb.Transaction) -> None:
                    st.put_meta(txn, "format_version", FORMAT_VERSION)
                    st.put_meta(txn, "journal_id", jid)
                    st.put_meta(txn, "created_ns", time.time_ns())
                    st.put_meta(txn, "lmdb_engine", ".".join(map(str, st.env.lib_version())))
                    st.put_meta(txn, "chain_base", [0, genesis_chain(jid)])

                st.write(init)
        with st.read() as txn:
            meta = st.check_format(txn)
            self.meta: dict[str, Any] = meta
            self.journal_id: str = meta["journal_id"]
            base_seq, base_chain = meta["chain_base"]
            self._base_seq: int = base_seq
            self._base_chain: int = base_chain
            cur = txn.cursor(db=st.dbs["log"])
            if cur.last():
                last_seq = _SEQ.unpack(cur.key())[0]
                self._chain = struct.unpack_from(">Q", cur.value(), 8)[0]
            else:
                last_seq, self._chain = base_seq, base_chain
            self._next_seq = last_seq + 1
            self._pending: dict[int, None] = {}
            pdb = st.dbs.get("pending")
            if pdb is not None:
                for key in txn.cursor(db=pdb).iternext(values=False):
                    self._pending[_SEQ.unpack(key)[0]] = None
            entries = txn.stat(st.dbs["log"])["entries"]
            first = self._first_seq_in(txn)
        if verify_mode != "none" and first is not None and entries != last_seq - first + 1:
            raise CorruptionError(
                f"{self.path}: log holds {entries} records for seq {first}..{last_seq}: "
                "records are missing; run `journal verify` to find the first gap",
                self._find_gap(),
            )
        if verify_mode != "none" and entries:
            if verify_mode == "full":
                report = self.verify()
            else:
                cp_seq, cp_chain = meta.get("checkpoint", [base_seq, base_chain])
                if cp_seq < base_seq:
                    cp_seq, cp_chain = base_seq, base_chain
                report = self._verify_range(cp_seq, cp_chain, check_anchor=cp_seq > base_seq)
            if not report.ok:
                raise CorruptionError(
                    f"{self.path}: damaged at seq {report.first_bad_seq}: {report.problem}; "
                    "run `journal verify` and restore from a backup or repair by hand",
                    report.first_bad_seq,
                )

    def _first_seq_in(self, txn: lmdb.Transaction) -> int | None:
        cur = txn.cursor(db=self._storage.dbs["log"])
        return _SEQ.unpack(cur.key())[0] if cur.first() else None

    def _find_gap(self) -> int | None:
        expected = None
        for seq in self._iter_keys():
            if expected is not None and seq != expected:
                return expected
            expected = seq + 1
        return None

    def _iter_keys(self) -> Iterator[int]:
        with self._storage.read() as txn:
            for key in txn.cursor(db=self._storage.dbs["log"]).iternext(values=False):
                yield _SEQ.unpack(key)[0]

    # -- properties ----------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The newest sequence number written (the base when the log is empty)."""
        if self.readonly:
            with self._storage.read() as txn:
                cur = txn.cursor(db=self._storage.dbs["log"])
                return _SEQ.unpack(cur.key())[0] if cur.last() else self._base_seq
        return self._next_seq - 1

    @property
    def first_seq(self) -> int | None:
        """The oldest sequence number still in the log (None when empty)."""
        with self._storage.read() as txn:
            return self._first_seq_in(txn)

    @property
    def closed(self) -> bool:
        return self._closed

    def client_id(self, op_id: int) -> str:
        """The client order id of operation ``op_id`` in this journal."""
        return make_client_id(self.journal_id, op_id)

    def op_id_of(self, client_id: str) -> int | None:
        """The op id encoded in ``client_id`` if this journal made it, else None."""
        parsed = parse_client_id(client_id, self.journal_id)
        return None if parsed is None else parsed[1]

    # -- writing -------------------------------------------------------------

    def begin(self, type: str, data: Any = None) -> Operation:
        """Make an intent durable and return its :class:`Operation` handle.

        Returns only once the intent is synced (in ``FULL`` and ``INTENT``
        modes): from then on the caller may send the order with
        ``op.client_id``. Raises :class:`CodecError` (nothing written) when
        ``data`` holds a value the journal cannot store.
        """
        return self.begin_many([(type, data)])[0]

    def begin_many(self, items: Iterable[tuple[str, Any]]) -> list[Operation]:
        """Make several intents durable in one synced transaction (a grid of orders).

        Either all of them are written or none is.
        """
        pairs = list(items)
        if not pairs:
            return []
        entries = [_Entry(INTENT, self._encode_body(t, d, None, "bot"), None, t, d, "bot") for t, d in pairs]
        point = "batch_durable" if len(entries) > 1 else "intent_durable"
        req = self._submit(entries, wait=True, crash_point=point)
        ops = []
        for (type_, data), seq in zip(pairs, req.seqs, strict=True):
            ops.append(Operation(self, seq, make_client_id(self.journal_id, seq), type_, data))
        return ops

    def commit(self, op: Operation | int, result: Any = None, *, source: str = "bot", wait: bool | None = None) -> None:
        """Write the commit marker of ``op`` (a handle or an op id) with ``result``.

        ``wait=None`` follows the durability mode; ``wait=True`` returns only
        when the marker is durable.
        """
        self._settle(op, COMMIT, result, source, wait)

    def abort(
        self,
        op: Operation | int,
        reason: str,
        *,
        error: BaseException | None = None,
        source: str = "bot",
        wait: bool | None = None,
    ) -> None:
        """Write the abort marker of ``op``: it definitely did not happen, because ``reason``."""
        if not isinstance(reason, str) or not reason:
            raise ValueError("abort() needs a non-empty reason string")
        data: dict[str, Any] = {"reason": reason}
        if error is not None:
            data["error"] = {"type": type(error).__name__, "message": str(error)[:2000]}
        self._settle(op, ABORT, data, source, wait)

    def record(
        self, type: str, data: Any = None, *, op: int | None = None, source: str = "bot", wait: bool = True
    ) -> int:
        """Write a single committed event (a fill seen on a websocket, a parameter change).

        ``op`` ties the event to an operation's timeline. Returns its sequence number.
        """
        entries = [_Entry(EVENT, self._encode_body(type, data, op, source), op, type, data, source)]
        req = self._submit(entries, wait=wait, crash_point="event_durable")
        return req.seqs[0] if req.seqs else -1

    @contextmanager
    def operation(
        self, type: str, data: Any = None, *, classify: Callable[[BaseException], bool] | None = None
    ) -> Iterator[Operation]:
        """The context-manager form of :meth:`begin`.

        An exception leaves the operation pending (its outcome is unknown),
        unless ``classify(exc)`` returns True -- a definite refusal -- in which
        case it is aborted with the exception recorded. Either way the
        exception propagates. Leaving the block without ``commit()`` or
        ``abort()`` leaves the operation pending, with a warning.
        """
        op = self.begin(type, data)
        try:
            yield op
        except BaseException as exc:
            if op.status == "pending" and classify is not None and isinstance(exc, Exception) and classify(exc):
                self.abort(op, f"refused: {type_name(exc)}", error=exc)
            raise
        if op.status == "pending":
            log.warning(
                "operation %d (%s, client id %s) left its with-block without commit() or abort(): "
                "it stays pending and will be reconciled",
                op.op_id,
                op.type,
                op.client_id,
            )

    def flush(self) -> None:
        """Make every marker written so far durable."""
        self._storage.check_usable()
        if self.readonly:
            return
        # Always take the write lock: the flusher may hold a batch it took from
        # the queue and be writing it right now; returning before that write
        # is done would show a settled operation as pending.
        self._locked_drain()
        if self.durability is Durability.PROCESS:
            self._storage.env.sync(True)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the write lock (no transaction of the journal's may run meanwhile).

        On release, the lead passes to the first thread waiting for a write.
        """
        self._write_lock.acquire()
        try:
            yield
        finally:
            self._write_lock.release()
            self._hand_off()

    def _locked_drain(self) -> None:
        with self._exclusive():
            self._drain()

    # -- write internals -----------------------------------------------------

    def _encode_body(self, type_: str, data: Any, op: int | None, source: str) -> bytes:
        if self.readonly:
            raise ReadOnlyError(f"{self.path}: journal opened read-only; open it without readonly=True to write")
        if not isinstance(type_, str) or not type_:
            raise ValueError(f"record type must be a non-empty str, got {type_!r}")
        if source not in ("bot", "recovery", "manual"):
            raise ValueError(f"source must be 'bot', 'recovery' or 'manual', got {source!r}")
        try:
            return encode(body(type_, data, op, source))
        except CodecError as exc:
            path = exc.path.replace("$.d", "data", 1) if exc.path.startswith("$.d") else exc.path
            msg = str(exc).replace(exc.path, path) if exc.path else str(exc)
            raise CodecError(f"{type_}: {msg}; nothing was written", path) from None

    def _settle(self, op: Operation | int, kind: int, data: Any, source: str, wait: bool | None) -> None:
        if isinstance(op, Operation):
            if op.journal is not self:
                raise OperationStateError(
                    f"operation {op.op_id} belongs to the journal at {op.journal.path}, "
                    f"not to this one at {self.path}; settle it through its own journal"
                )
            op_id = op.op_id
        elif isinstance(op, int) and not isinstance(op, bool):
            op_id = op
        else:
            raise TypeError(f"op must be an Operation or an int op id, got {type(op).__name__}")
        type_ = self._type_of(op, op_id)
        entry = _Entry(kind, self._encode_body(type_, data, op_id, source), op_id, type_, data, source)
        if wait is None:
            wait = self.durability is not Durability.INTENT
        self._submit([entry], wait=wait, crash_point="outcome_durable", settles=op_id)
        if isinstance(op, Operation):
            op.status = "committed" if kind == COMMIT else "aborted"

    def _type_of(self, op: Operation | int, op_id: int) -> str:
        if isinstance(op, Operation):
            return op.type
        rec = self.get(op_id) if op_id in self._pending else None
        return rec.type if rec is not None else "unknown"

    def _not_pending(self, op_id: int) -> JournalError:
        try:
            records = self.timeline(op_id)
        except UnknownOperationError as exc:
            return exc
        outcome = next((r for r in reversed(records) if r.kind in ("commit", "abort")), None)
        if outcome is None:
            return OperationStateError(f"operation {op_id} is being settled by another thread")
        done = "committed" if outcome.kind == "commit" else "aborted"
        return OperationStateError(
            f"operation {op_id} ({records[0].type}, client id {records[0].client_id}) was already {done} "
            f"at seq {outcome.seq}; an operation is settled exactly once"
        )

    def _submit(
        self, entries: list[_Entry], *, wait: bool, crash_point: str | None, settles: int | None = None
    ) -> _Request:
        """Queue records: sequence numbers, chain and state are assigned here, in order.

        Numbering at enqueue time (under ``_qlock``) fixes the order in which
        records are applied to observers (the in-memory state) to be exactly
        the log order, so replaying the log reproduces the live state.
        """
        self._storage.check_usable()
        if self._broken is not None:
            raise JournalError(
                f"{self.path}: journal refuses writes after a failed write ({self._broken}); "
                "close and reopen it (everything acknowledged before the failure is on disk)"
            ) from self._broken
        req = _Request(entries, crash_point)
        with self._qlock:
            settled = settles is None or self._pending.pop(settles, _MISSING) is not _MISSING
            if settled:
                seq, chain = self._next_seq, self._chain
                ts = self._last_ts = max(time.time_ns(), self._last_ts)
                for e in entries:
                    e.key, e.value, chain = frame(seq, chain, ts, e.kind, e.body)
                    req.seqs.append(seq)
                    if e.kind == INTENT:
                        self._pending[seq] = None
                    seq += 1
                self._next_seq, self._chain = seq, chain
                self._queue.append(req)
                if not wait and self._marker_since is None:
                    self._marker_since = time.monotonic()
                if self._observers:
                    self._notify(req, ts)
        if not settled:
            assert settles is not None
            raise self._not_pending(settles)
        if not wait or self.durability is Durability.PROCESS:
            # PROCESS mode: the flusher syncs the file a moment after writes.
            self._start_flusher()
            if self._flusher_idle or self.durability is Durability.PROCESS:
                self._kick.set()
        if not wait:
            return req
        t0 = time.perf_counter_ns()
        self._wait_durable(req)
        if req.error is not None:
            raise req.error
        self.stats_data.waited(time.perf_counter_ns() - t0)
        return req

    def _wait_durable(self, req: _Request) -> None:
        """Group commit: wait until ``req`` is written, becoming the leader if none is.

        The leader writes everything queued in one transaction; while its sync
        runs, other threads queue more records. A thread whose records a leader
        wrote is woken through its own event (no thundering herd); when the
        leader is done it hands the lead to the first thread still waiting.
        """
        if self._lead(req):  # the common case: nobody is writing, no event needed
            return
        event = getattr(self._tls, "event", None)
        if event is None:
            event = self._tls.event = threading.Event()
        event.clear()
        req.event = event
        req.waiting = True
        while not req.done:
            if self._lead(req):
                return
            req.event.wait(0.05)  # the timeout is a safety net, not the wake-up path
            req.event.clear()

    def _lead(self, req: _Request) -> bool:
        """If no one is writing, write everything queued until ``req`` is done; False if someone is."""
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            while not req.done:
                self._drain()
        finally:
            self._write_lock.release()
        self._hand_off()
        return True

    def _hand_off(self) -> None:
        if not self._queue:
            return
        with self._qlock:
            nxt = next((r for r in self._queue if r.waiting), None)
        if nxt is not None and nxt.event is not None:
            nxt.event.set()

    def _notify(self, req: _Request, ts: int) -> None:
        for e, seq in zip(req.entries, req.seqs, strict=True):
            op = seq if e.kind == INTENT else e.op
            # Observers get the data decoded from the stored bytes, exactly what a replay
            # will see -- never the caller's own objects, which it may mutate afterwards.
            body = decode(e.body, check=False)
            rec = Record(
                seq=seq,
                kind=KIND_NAMES[e.kind],
                type=e.type,
                ts_ns=ts,
                data=body.get("d") if isinstance(body, dict) else None,
                op=op,
                client_id=make_client_id(self.journal_id, op) if op is not None else None,
                source=e.source,
            )
            for observer in self._observers:
                try:
                    observer(rec)
                except Exception:  # the record is queued: an observer bug must not fail the caller
                    log.exception("observer failed on seq %d (%s %s)", seq, rec.kind, rec.type)

    def add_observer(self, observer: Callable[[Record], None]) -> None:
        """Call ``observer(record)`` for every record written from now on, in log order.

        Called while records are being numbered, before they are durable, with
        the journal's queue lock held: it must be quick and must not write to
        the journal. A record that later fails to be written makes the journal
        refuse further writes, so an observer never sees a record that is then
        renumbered.
        """
        self._observers.append(observer)

    def _drain(self) -> None:
        """Write everything queued in one transaction. Holds ``_write_lock``."""
        with self._qlock:
            batch, self._queue = self._queue, []
            self._marker_since = None
        if not batch:
            return
        if self._broken is not None:
            for req in batch:
                req.error, req.done = JournalError(f"{self.path}: journal refuses writes after a failed write"), True
                if req.event is not None:
                    req.event.set()
            return
        st = self._storage
        entries = [e for req in batch for e in req.entries]
        first_seq = batch[0].seqs[0]
        last_seq = batch[-1].seqs[-1]
        crossed = (last_seq // self._checkpoint_interval) > ((first_seq - 1) // self._checkpoint_interval)
        last_chain = struct.unpack_from(">Q", entries[-1].value, 8)[0]
        log_db, pending_db, ops_db = st.dbs["log"], st.dbs["pending"], st.dbs["ops"]
        half = len(entries) // 2 if any(r.crash_point == "batch_durable" for r in batch) else -1

        def write(txn: lmdb.Transaction) -> None:
            for i, e in enumerate(entries):
                if i == half:
                    crashpoints.reached("batch_partial")
                key = e.key
                if not txn.put(key, e.value, db=log_db, append=True):
                    raise CorruptionError(
                        f"{self.path}: seq {_SEQ.unpack(key)[0]} is not after the last record; "
                        "another writer touched the log",
                        _SEQ.unpack(key)[0],
                    )
                if e.kind == INTENT:  # its own timeline entry is implied: the intent sits at seq == op
                    txn.put(key, b"", db=pending_db)
                elif e.op is not None:
                    opkey = _SEQ.pack(e.op)
                    if e.kind != EVENT:
                        txn.delete(opkey, db=pending_db)
                    txn.put(opkey + key, b"", db=ops_db)
            if crossed:
                st.put_meta(txn, "checkpoint", [last_seq, last_chain])
            for hook in self._write_hooks:
                hook(txn)

        t0 = time.perf_counter_ns()
        try:
            st.write(write)
        except BaseException as exc:
            err = (
                exc
                if isinstance(exc, JournalError)
                else JournalError(f"{self.path}: write of seq {first_seq}..{last_seq} failed: {exc}")
            )
            if err is not exc:
                err.__cause__ = exc
            self._broken = err
            log.error("journal write of seq %d..%d failed, nothing of it was written: %s", first_seq, last_seq, err)
            for req in batch:
                req.error = err
                req.done = True
                if req.event is not None:
                    req.event.set()
            return
        txn_ns = time.perf_counter_ns() - t0
        for req in batch:
            req.done = True
            if req.event is not None:
                req.event.set()
        kinds = {"intent": 0, "commit": 0, "abort": 0, "event": 0}
        nbytes = 0
        for e in entries:
            kinds[KIND_NAMES[e.kind]] += 1
            nbytes += len(e.value)
        self.stats_data.wrote({k: v for k, v in kinds.items() if v}, nbytes, txn_ns)
        if log.isEnabledFor(logging.DEBUG):
            for e in entries:
                seq = _SEQ.unpack(e.key)[0]
                log.debug(
                    "wrote seq=%d kind=%s op=%s (%d records in txn, %.0f us)",
                    seq,
                    KIND_NAMES[e.kind],
                    seq if e.kind == INTENT else e.op,
                    len(entries),
                    txn_ns / 1000,
                )
        points = {r.crash_point for r in batch if r.crash_point}
        for point in sorted(points):
            crashpoints.reached(point)

    def _start_flusher(self) -> None:
        if self._flusher is not None:
            return
        with self._qlock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_loop, name=f"journal-flush:{self.path}", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        """Write markers that waited ``flush_interval_ms`` without a transaction to ride on.

        A marker is flushed by age, not by a periodic tick: in a bot that keeps
        placing orders every marker rides on the next intent's transaction and
        this thread never writes (a tick would cost an extra fsync now and then,
        and the next intent would wait for it).
        """
        while not self._stop.is_set():
            self._flusher_idle = True
            if self._marker_since is None or self.durability is Durability.PROCESS:
                self._kick.wait()
            self._flusher_idle = False
            if self._stop.is_set():
                return
            self._kick.clear()
            try:
                if self.durability is Durability.PROCESS:
                    if self._stop.wait(self._flush_s):
                        return
                    with self._exclusive():
                        if not self._closed:
                            self._drain()
                            self._storage.env.sync(True)
                    continue
                # Busy: poll the oldest marker's age without being woken per commit (a wake-up
                # per operation costs more than the write); idle for a second: sleep until kicked.
                quiet_since = time.monotonic()
                while time.monotonic() - quiet_since < 1.0:
                    since = self._marker_since
                    if since is None:
                        if self._stop.wait(self._flush_s):
                            return
                        continue
                    quiet_since = time.monotonic()
                    remaining = since + self._flush_s - quiet_since
                    if remaining > 0:
                        if self._stop.wait(remaining):
                            return
                        continue
                    with self._exclusive():
                        if not self._closed:
                            self._drain()
            except Exception:  # never let the flusher die; the next write retries
                log.exception("background flush of %s failed", self.path)

    # -- hooks for the state layer (journal.store) ----------------------------

    def _capture(self, fn: Callable[[int, int], T]) -> T:
        """Run ``fn(last_seq, chain_at_last_seq)`` with numbering paused (queue lock held).

        Nothing is numbered or applied to observers while ``fn`` runs, so what it
        reads of the in-memory state is exactly the state at ``last_seq``.
        """
        with self._qlock:
            return fn(self._next_seq - 1, self._chain)

    def _capture_quiet(self, fn: Callable[[int, int], T]) -> T:
        """Like :meth:`_capture`, but only once every numbered record is on disk."""
        while True:
            self.flush()
            with self._qlock:
                if not self._queue:
                    return fn(self._next_seq - 1, self._chain)

    def _write_after_drain(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Write everything queued, then run ``fn`` in its own transaction.

        Used by snapshots: every record a snapshot covers is durable no later
        than the snapshot itself.
        """
        self._storage.check_usable()
        with self._exclusive():
            self._drain()
            if self._broken is not None:
                raise JournalError(f"{self.path}: journal refuses writes after a failed write") from self._broken
            return self._storage.write(fn)

    def compact_log(self, through_seq: int, *, batch: int = 10_000) -> int:
        """Delete the records with ``seq <= through_seq``; returns how many were deleted.

        Refuses to delete a pending operation's intent. The chain restarts at
        ``through_seq``: its chain value becomes the new base in ``meta``, in the
        same transaction as each batch of deletions, so a crash midway leaves a
        journal that verifies. Usually called through
        :meth:`journal.store.StateStore.compact`, which picks a safe point.
        """
        self._storage.check_usable()
        if self.readonly:
            raise ReadOnlyError(f"{self.path}: journal opened read-only; compaction needs the writer")
        self.flush()  # only what is on disk can be compacted
        pending = self.pending_ids()
        if pending and pending[0] <= through_seq:
            raise JournalError(
                f"{self.path}: cannot compact through seq {through_seq}: operation {pending[0]} is still pending"
            )
        through_seq = min(through_seq, self.last_seq)
        st = self._storage
        deleted = 0
        while self._base_seq < through_seq:
            end = min(self._base_seq + batch, through_seq)

            start = self._base_seq + 1
            with self._exclusive():
                n, chain = st.write(lambda txn: delete_through(st, txn, start, end))  # noqa: B023 (runs now)
            self._base_seq, self._base_chain = end, chain
            deleted += n
            crashpoints.reached("compaction_batch")
        log.info("compacted %s through seq %d (%d records deleted)", self.path, through_seq, deleted)
        return deleted

    # -- reading -------------------------------------------------------------

    def get(self, seq: int) -> Record:
        """The record at ``seq`` (checksum verified); UnknownOperationError if absent."""
        with self._storage.read() as txn:
            value = txn.get(seq_key(seq), db=self._storage.dbs["log"])
            if value is None:
                raise UnknownOperationError(f"{self.path}: no record at seq {seq} (compacted, or never written)")
            return unframe(seq_key(seq), value, self.journal_id)

    def records(
        self,
        start: int | None = None,
        stop: int | None = None,
        *,
        kinds: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        op: int | None = None,
        source: str | None = None,
        chunk: int = 1024,
    ) -> Iterator[Record]:
        """Records with ``start <= seq <= stop`` matching every filter given, in order.

        Reads ``chunk`` records per short read transaction, so iterating a huge
        journal uses bounded memory and never pins the writer's old pages.
        """
        if start is not None and stop is not None and start > stop:
            raise ValueError(f"start ({start}) is after stop ({stop})")
        kind_codes = None
        if kinds is not None:
            bad = [k for k in kinds if k not in KIND_CODES]
            if bad:
                raise ValueError(f"unknown kind(s) {bad}; known: {sorted(KIND_CODES)}")
            kind_codes = frozenset(KIND_CODES[k] for k in kinds)
        type_set = frozenset(types) if types is not None else None
        self.flush()
        if op is not None:
            for rec in self.timeline(op):
                if (start is None or rec.seq >= start) and (stop is None or rec.seq <= stop):
                    if _matches(rec, kind_codes, type_set, source):
                        yield rec
            return
        pos = start if start is not None else 0
        first_chunk = True
        while True:
            out: list[Record] = []
            done = True
            with self._storage.read() as txn:
                cur = txn.cursor(db=self._storage.dbs["log"])
                if cur.set_range(seq_key(pos)):
                    n = 0
                    if not first_chunk and _SEQ.unpack(cur.key())[0] != pos:
                        # the next record vanished between two chunks: compacted while we read
                        raise JournalError(
                            f"{self.path}: records from seq {pos} were compacted while being read; read again"
                        )
                    for key, value in cur:
                        seq = _SEQ.unpack(key)[0]
                        if stop is not None and seq > stop:
                            break
                        pos = seq + 1
                        n += 1
                        if kind_codes is None or value[24] in kind_codes:
                            rec = unframe(key, value, self.journal_id)
                            if _matches(rec, None, type_set, source):
                                out.append(rec)
                        if n >= chunk:
                            done = False
                            break
            yield from out
            first_chunk = False
            if done:
                return

    def pending(self) -> list[Record]:
        """The intents of operations without an outcome, oldest first. O(pending)."""
        self.flush()
        st = self._storage
        out = []
        with st.read() as txn:
            pdb = st.dbs.get("pending")
            if pdb is None:
                return []
            for key in txn.cursor(db=pdb).iternext(values=False):
                value = txn.get(key, db=st.dbs["log"])
                if value is None:
                    raise CorruptionError(
                        f"{self.path}: pending index names seq {_SEQ.unpack(key)[0]} but the log has no such "
                        "record; run `journal verify`",
                        _SEQ.unpack(key)[0],
                    )
                out.append(unframe(key, value, self.journal_id))
        return out

    def pending_ids(self) -> list[int]:
        """Op ids of pending operations, as this writer knows them (no disk access)."""
        with self._qlock:
            return sorted(self._pending)

    def timeline(self, op: int | str) -> list[Record]:
        """Every record of one operation (by op id or client id), in order."""
        op_id = self._resolve_op(op)
        self.flush()
        st = self._storage
        out = []
        prefix = _SEQ.pack(op_id)
        with st.read() as txn:
            intent = txn.get(prefix, db=st.dbs["log"])
            if intent is not None and len(intent) > HEADER.size and intent[24] == INTENT:
                out.append(unframe(prefix, intent, self.journal_id))
            cur = txn.cursor(db=st.dbs["ops"])
            if cur.set_range(prefix):
                for key in cur.iternext(values=False):
                    if key[:8] != prefix:
                        break
                    value = txn.get(key[8:], db=st.dbs["log"])
                    if value is not None:
                        out.append(unframe(key[8:], value, self.journal_id))
        if not out:
            raise UnknownOperationError(f"{self.path}: no operation {op} in this journal (or it was compacted)")
        return out

    def _resolve_op(self, op: int | str) -> int:
        if isinstance(op, int) and not isinstance(op, bool):
            return op
        if isinstance(op, str):
            if op.isdigit():
                return int(op)
            op_id = self.op_id_of(op)
            if op_id is None:
                raise UnknownOperationError(
                    f"{self.path}: {op!r} is neither an op id nor a client id of this journal "
                    f"(its client ids start with 'tj{self.journal_id}')"
                )
            return op_id
        raise TypeError(f"op must be an int op id or a client id str, got {type(op).__name__}")

    def verify(self) -> VerifyReport:
        """Check every record's checksum and the whole hash chain.

        Returns a :class:`VerifyReport`; ``first_bad_seq`` names the first damaged
        sequence number. Never raises for damage.
        """
        self.flush()
        return self._verify_range(self._base_seq, self._base_chain, check_anchor=False)

    def _verify_range(self, after_seq: int, chain: int | None, *, check_anchor: bool) -> VerifyReport:
        return verify_range(self._storage, after_seq, chain, check_anchor=check_anchor)

    def stats(self) -> dict[str, Any]:
        """Counters and latency percentiles (append as seen by callers, sync per transaction)."""
        out = self.stats_data.snapshot()
        with self._storage.read() as txn:
            entries = txn.stat(self._storage.dbs["log"])["entries"]
        info = self._storage.env.info()
        out.update(
            {
                "path": self.path,
                "journal_id": self.journal_id,
                "durability": self.durability.value,
                "records": entries,
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "pending": len(self._pending) if not self.readonly else len(self.pending()),
                "map_size": info["map_size"],
                "file_bytes": _file_size(os.path.join(self.path, "data.mdb")),
            }
        )
        return out

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Flush buffered markers, stop the flusher and release the journal. Idempotent."""
        if self._closed:
            return
        try:
            if not self.readonly and not self._storage._forked and os.getpid() == self._storage._pid:
                self._locked_drain()
                if self.durability is Durability.PROCESS:
                    self._storage.env.sync(True)
        finally:
            self._closed = True
            self._stop.set()
            self._kick.set()
            if self._flusher is not None and self._flusher is not threading.current_thread():
                self._flusher.join(timeout=5)
            with self._write_lock:
                self._storage.close()
            log.info("closed journal %s", self.path)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.readonly else self.durability.value)
        return f"<Journal {self.path} id={self.journal_id} {state}>"


def _matches(rec: Record, kinds: frozenset[int] | None, types: frozenset[str] | None, source: str | None) -> bool:
    if kinds is not None and KIND_CODES[rec.kind] not in kinds:
        return False
    if types is not None and rec.type not in types:
        return False
    return source is None or rec.source == source


def type_name(exc: BaseException) -> str:
    return type(exc).__name__


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
