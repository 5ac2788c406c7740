"""The write-ahead journal a bot opens: durable intents, outcome markers, events, reads.

See the package docstring for the lifecycle. This module holds :class:`Journal`
(opening, the write calls, the lifecycle, and the small public surface the
state layer and the tools use) and :class:`Operation` (the handle of one
two-phase operation). The write path itself (numbering, group commit, the
flusher) is :mod:`journal.log.writer`; reading is :mod:`journal.log.reader`.

Thread rules: any number of threads may call any method of one
:class:`Journal` at once. Writes are group-committed (see
:mod:`journal.log.writer`). Read methods use short read transactions.

Process rules: one writer per journal directory (see :mod:`journal.log.storage`);
read-only opens from other processes are fine; never use a journal across
``fork()`` (:class:`~journal.errors.ForkError`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
from .clientid import CLIENT_ID_PREFIX, Incarnations, new_incarnation, new_journal_id, parse_client_id
from .codec import encode, warm_up
from .compaction import delete_through
from .cursors import cursor_path, read_cursors, retention_floor
from .reader import Reader
from .record import ABORT, COMMIT, EVENT, INTENT, RawChunk, RawRecord, Record, body, genesis_chain, ts_of
from .settings import DEFAULT_SETTINGS, Durability, JournalSettings, settings_from
from .storage import FORMAT_VERSION, Storage
from .tables import Tables
from .verify import VerifyReport, verify_range
from .writer import Entry, LogPoint, Writer

__all__ = ["DEFAULT_SETTINGS", "Durability", "Journal", "LogPoint", "Operation", "VerifyReport"]

log = logging.getLogger("journal.wal")

T = TypeVar("T")


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
    for reading beside a running writer. Settings are a
    :class:`~journal.log.settings.JournalSettings` (``settings=``) or its
    fields as keyword arguments; an unknown one is a ``ValueError`` at once.
    ``close()`` is idempotent and the journal is a context manager.

    Every writer open draws a fresh *incarnation* (see :mod:`journal.log.clientid`),
    recorded durably before anything is written, so no copy of a journal ever
    issues a client id another copy may have sent.

    On open, the records written since the last checkpoint (at most
    ``checkpoint_interval`` of them) are verified against their checksums and
    the hash chain, and the record count is checked against the sequence range
    (a deleted record anywhere is caught); ``verify_on_open="full"`` checks
    everything, ``"none"`` nothing (the dump tool, which reports damage itself).
    """

    def __init__(
        self, path: str | os.PathLike[str], settings: JournalSettings | Mapping[str, Any] | None = None, **kw: Any
    ) -> None:
        cfg = settings_from(JournalSettings, settings, owner="Journal", **kw)
        #: The checked settings.
        self.settings = cfg
        #: The journal directory.
        self.path = os.fspath(path)
        #: What a crash may lose (see :class:`Durability`).
        self.durability = Durability(cfg.durability)
        #: Opened for reading only (no lock, no writes).
        self.readonly = bool(cfg.readonly)
        self._closed = False
        warm_up()
        self._storage = Storage(
            self.path,
            readonly=self.readonly,
            map_size=int(cfg.map_size),
            max_map_size=int(cfg.max_map_size),
            sync=self.durability is not Durability.PROCESS,
        )
        try:
            self._open(cfg.verify_on_open)
        except BaseException:
            self._storage.close()
            raise
        log.info(
            "opened journal %s (id %s%s, %s, seq %s..%s, %d pending)",
            self.path,
            self.journal_id,
            f", incarnation {self.incarnation}" if self.incarnation else "",
            "read-only" if self.readonly else self.durability.value,
            self.first_seq,
            self.last_seq,
            len(self.pending_ids()),
        )

    # -- opening -------------------------------------------------------------

    def _open(self, verify_mode: str) -> None:
        st = self._storage
        if not self.readonly:
            self._initialise_if_new()
        with st.read() as txn:
            meta = st.check_format(txn)
        #: The meta data read at open (format, journal id, creation time, engine, ...).
        self.meta: dict[str, Any] = meta
        #: This journal's id: the part of every client id that names it.
        self.journal_id: str = meta["journal_id"]
        base_seq, base_chain = meta["chain_base"]
        #: Sequence number and chain value just before the first record still in the log.
        self._base = (int(base_seq), int(base_chain))
        history = Incarnations(meta.get("incarnations") or [])
        reader = Reader(st, self.path, self.journal_id, history, live=not self.readonly)
        first, last, entries = reader.extent()  # one read transaction: a writer may be appending
        last_seq, chain = last if last is not None else self._base
        if verify_mode != "none" and first is not None and entries != last_seq - first + 1:
            raise CorruptionError(
                f"{self.path}: log holds {entries} records for seq {first}..{last_seq}: "
                "records are missing; run `journal verify` to find the first gap",
                self._find_gap(reader),
            )
        if verify_mode != "none" and entries:
            if verify_mode == "full":
                report = verify_range(st, self._base[0], self._base[1], check_anchor=False)
            else:
                cp_seq, cp_chain = meta.get("checkpoint", list(self._base))
                if cp_seq < self._base[0]:
                    cp_seq, cp_chain = self._base
                report = verify_range(st, cp_seq, cp_chain, check_anchor=cp_seq > self._base[0])
            if not report.ok:
                raise CorruptionError(
                    f"{self.path}: damaged at seq {report.first_bad_seq}: {report.problem}; "
                    "run `journal verify` and restore from a backup or repair by hand",
                    report.first_bad_seq,
                )
        self._writer: Writer | None = None
        if not self.readonly:
            # A fresh incarnation for everything this writer numbers, durable before the first write.
            incarnation = new_incarnation()
            history = history.starting(last_seq + 1, incarnation)
            entries_meta = history.entries()
            st.write(lambda txn: st.put_meta(txn, "incarnations", entries_meta))
            reader.set_history(history)
            with st.read() as txn:
                on_disk = [int.from_bytes(k, "big") for k in txn.cursor(db=st.dbs["pending"]).iternext(values=False)]
            last_ts = ts_of(self._last_value(), last_seq) if last is not None else 0
            self._writer = Writer(
                st,
                path=self.path,
                durability=self.durability,
                flush_interval_ms=float(self.settings.flush_interval_ms),
                checkpoint_interval=int(self.settings.checkpoint_interval),
                next_seq=last_seq + 1,
                chain=chain,
                pending=on_disk,
                last_ts=last_ts,
                client_id_of=reader.client_id,
            )
        #: Reads of the log.
        self._reader = reader

    def _initialise_if_new(self) -> None:
        st = self._storage
        with st.read() as txn:
            empty_meta = txn.stat(st.dbs["meta"])["entries"] == 0
            empty_log = txn.stat(st.dbs["log"])["entries"] == 0
            version = st.get_meta(txn, "format_version")
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
        elif version == 1:
            # Format 1 -> 2: client ids gain the writer's incarnation. Old records keep their
            # old ids (an empty history means "format 1" for every seq so far).
            st.write(lambda txn: st.put_meta(txn, "format_version", FORMAT_VERSION))
            log.warning("journal %s upgraded from format 1 to %d (client ids now carry an incarnation)",
                        self.path, FORMAT_VERSION)  # fmt: skip

    def _last_value(self) -> bytes:
        with self._storage.read() as txn:
            cur = txn.cursor(db=self._storage.dbs["log"])
            cur.last()
            return bytes(cur.value())

    @staticmethod
    def _find_gap(reader: Reader) -> int | None:
        expected = None
        for raws in reader.scan_raw(0):
            for raw in raws:
                if expected is not None and raw.seq != expected:
                    return expected
                expected = raw.seq + 1
        return None

    # -- properties ----------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The newest sequence number written (the base when the log is empty)."""
        if self._writer is not None:
            return self._writer.last_seq
        last = self._reader.last_on_disk()
        return last[0] if last is not None else self.base_seq

    @property
    def first_seq(self) -> int | None:
        """The oldest sequence number still in the log (None when empty)."""
        return self._reader.first_seq()

    @property
    def base_seq(self) -> int:
        """The sequence number just before the first record still in the log (0 until compacted)."""
        if self.readonly:
            with self._storage.read() as txn:
                base = self._storage.get_meta(txn, "chain_base")
            if base is not None:
                self._base = (int(base[0]), int(base[1]))
        return self._base[0]

    @property
    def chain_base(self) -> tuple[int, int]:
        """``(seq, chain value)`` the first record still in the log follows (``(0, genesis)`` until compacted).

        For tools that copy records elsewhere: the first record's chain is
        verified against this value.
        """
        self.base_seq  # noqa: B018 (a reader re-reads the base from meta)
        return self._base

    @property
    def incarnation(self) -> str:
        """This writer's incarnation (the newest one for a read-only journal)."""
        return self._reader.incarnations.current

    @property
    def incarnations(self) -> Incarnations:
        """Which incarnation wrote which sequence numbers."""
        return self._reader.incarnations

    @property
    def closed(self) -> bool:
        return self._closed

    def client_id(self, op_id: int) -> str:
        """The client order id of operation ``op_id`` in this journal."""
        return self._reader.client_id(op_id)

    def client_ids(self) -> Callable[[int], str]:
        """A fast ``op id -> client id`` function, for tools that format millions (same answers as :meth:`client_id`)."""
        return self._reader.client_ids()

    def op_id_of(self, client_id: str) -> int | None:
        """The op id ``client_id`` names if this journal's own history sent it, else None.

        An id with this journal's prefix but another incarnation at that seq was
        sent by another copy of this journal (a backup restored over a lost disk,
        a cloned template): it names no operation of this history.
        """
        parsed = parse_client_id(client_id, self.journal_id)
        if parsed is None or self.client_id(parsed.seq) != client_id:
            return None
        return parsed.seq

    def resolve_op(self, op: int | str) -> int:
        """An op id from an op id, its decimal text, or a client id of this journal.

        Raises :class:`UnknownOperationError` (saying why) for a client id this
        history did not send.
        """
        if isinstance(op, int) and not isinstance(op, bool):
            return op
        if isinstance(op, str):
            if op.isdigit():
                return int(op)
            op_id = self.op_id_of(op)
            if op_id is not None:
                return op_id
            parsed = parse_client_id(op, self.journal_id)
            if parsed is not None:
                raise UnknownOperationError(
                    f"{self.path}: {op!r} carries this journal's prefix but incarnation "
                    f"{parsed.incarnation or '(format 1)'!r}, while this history wrote seq {parsed.seq} as "
                    f"{self.incarnations.at(parsed.seq) or '(format 1)'!r}: it was sent by another copy of this "
                    "journal (a restored backup, a clone); reconciliation adopts such orders by their prefix"
                )
            raise UnknownOperationError(
                f"{self.path}: {op!r} is neither an op id nor a client id of this journal "
                f"(its client ids start with '{CLIENT_ID_PREFIX}{self.journal_id}')"
            )
        raise TypeError(f"op must be an int op id or a client id str, got {type(op).__name__}")

    # -- writing -------------------------------------------------------------

    def _need_writer(self) -> Writer:
        if self._writer is None:
            raise ReadOnlyError(f"{self.path}: journal opened read-only; open it without readonly=True to write")
        return self._writer

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
        writer = self._need_writer()
        pairs = list(items)
        if not pairs:
            return []
        entries = [Entry(INTENT, self._encode_body(t, d, None, "bot"), None, t, "bot") for t, d in pairs]
        point = "batch_durable" if len(entries) > 1 else "intent_durable"
        req = writer.submit(entries, wait=True, crash_point=point)
        return [
            Operation(self, seq, self.client_id(seq), type_, data)
            for (type_, data), seq in zip(pairs, req.seqs, strict=True)
        ]

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
        writer = self._need_writer()
        entries = [Entry(EVENT, self._encode_body(type, data, op, source), op, type, source)]
        req = writer.submit(entries, wait=wait, crash_point="event_durable")
        return req.seqs[0]

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
        if self._writer is not None:
            self._writer.flush()

    def _encode_body(self, type_: str, data: Any, op: int | None, source: str) -> bytes:
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
        writer = self._need_writer()
        if isinstance(op, Operation):
            if op.journal is not self:
                raise OperationStateError(
                    f"operation {op.op_id} belongs to the journal at {op.journal.path}, "
                    f"not to this one at {self.path}; settle it through its own journal"
                )
            op_id = op.op_id
            type_ = op.type
        elif isinstance(op, int) and not isinstance(op, bool):
            op_id = op
            type_ = self._reader.get(op_id).type if writer.is_pending(op_id) else "unknown"
        else:
            raise TypeError(f"op must be an Operation or an int op id, got {type(op).__name__}")
        entry = Entry(kind, self._encode_body(type_, data, op_id, source), op_id, type_, source)
        if wait is None:
            wait = self.durability is not Durability.INTENT
        try:
            writer.submit([entry], wait=wait, crash_point="outcome_durable", settles=op_id)
        except LookupError:
            raise self._not_pending(op_id) from None
        if isinstance(op, Operation):
            op.status = "committed" if kind == COMMIT else "aborted"

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

    # -- the surface the state layer uses ------------------------------------

    def add_observer(self, observer: Callable[[Record], None]) -> None:
        """Call ``observer(record)`` for every record written from now on, in log order.

        Called while records are being numbered, before they are durable, with
        the journal's queue lock held: it must be quick and must not write to
        the journal. A record that later fails to be written makes the journal
        refuse further writes, so an observer never sees a record that is then
        renumbered. A read-only journal writes nothing, so its observers are
        never called.
        """
        if self._writer is not None:
            self._writer.add_observer(observer)

    def capture(self, fn: Callable[[LogPoint], T], *, durable: bool = False) -> T:
        """Run ``fn(point)`` at one consistent point of the log, and return what it returns.

        For a writer, numbering is paused while ``fn`` runs, so what ``fn``
        reads of state kept by an observer is exactly the state at
        ``point.seq``; with ``durable=True`` it runs only once every numbered
        record is on disk. For a read-only journal, ``point`` (last record,
        chain, pending operations) comes from a single read transaction.
        """
        if self._writer is not None:
            return self._writer.capture(fn, durable=durable)
        self._storage.check_usable()
        return fn(self._reader.point((self.base_seq, self._base[1])))

    @contextmanager
    def read_tables(self) -> Iterator[Tables]:
        """A read transaction on the state layer's tables (see :mod:`journal.log.tables`)."""
        with self._storage.read() as txn:
            yield Tables(txn, self._storage, write=False)

    def write_tables(self, fn: Callable[[Tables], T]) -> T:
        """Write every queued record, then run ``fn(tables)`` in its own write transaction.

        Whatever ``fn`` writes is durable no earlier than every record numbered
        before the call (a snapshot never covers a record that is not on disk).
        ``fn`` may run more than once (after a map resize): it must only write
        through ``tables``.
        """
        writer = self._need_writer()
        return writer.write_after_drain(lambda txn: fn(Tables(txn, self._storage, write=True)))

    def clock_steps(self) -> list[tuple[int, int]]:
        """``(first seq, ns)`` of each backward step of the wall clock the writer met (record times dip there)."""
        with self._storage.read() as txn:
            steps = self._storage.get_meta(txn, "clock_steps") or []
        return [(int(s), int(n)) for s, n in steps]

    def compact_log(self, through_seq: int, *, batch: int = 10_000) -> int:
        """Delete the records with ``seq <= through_seq``; returns how many were deleted.

        Refuses to delete a pending operation's intent, and never deletes a
        record a shipping destination has not acknowledged (the retention floor,
        :mod:`journal.log.cursors`): it stops there, or raises when the
        ``retention_floor`` setting is ``"refuse"``. The chain restarts at
        ``through_seq``: its chain value becomes the new base in ``meta``, in the
        same transaction as each batch of deletions, so a crash midway leaves a
        journal that verifies. Usually called through
        :meth:`journal.state.StateStore.compact`, which picks a safe point.
        """
        self._storage.check_usable()
        if self._writer is None:
            raise ReadOnlyError(f"{self.path}: journal opened read-only; compaction needs the writer")
        writer = self._writer
        writer.flush()  # only what is on disk can be compacted
        pending = writer.pending_ids()
        if pending and pending[0] <= through_seq:
            raise JournalError(
                f"{self.path}: cannot compact through seq {through_seq}: operation {pending[0]} is still pending"
            )
        through_seq = min(through_seq, self.last_seq)
        floor = retention_floor(self.path)  # the lowest shipping cursor: never delete what was not acknowledged
        if floor is not None and floor.seq < through_seq:
            if self.settings.retention_floor == "refuse":
                raise JournalError(
                    f"{self.path}: cannot compact through seq {through_seq}: destination {floor.name!r} "
                    f"({floor.target or 'no target named'}) has acknowledged only up to seq {floor.seq}; "
                    f"wait until shipping catches up, or delete {cursor_path(self.path, floor.name)} to forget it"
                )
            log.info("compaction of %s stops at seq %d (not %d): %r has acknowledged only that far",
                     self.path, floor.seq, through_seq, floor.name)  # fmt: skip
            through_seq = floor.seq
        st = self._storage
        deleted = 0
        while self._base[0] < through_seq:
            start = self._base[0] + 1
            end = min(self._base[0] + batch, through_seq)
            with writer.exclusive():
                n, chain = st.write(lambda txn: delete_through(st, txn, start, end))  # noqa: B023 (runs now)
            self._base = (end, chain)
            deleted += n
            crashpoints.reached("compaction_batch")
        log.info("compacted %s through seq %d (%d records deleted)", self.path, through_seq, deleted)
        return deleted

    # -- reading -------------------------------------------------------------

    def get(self, seq: int) -> Record:
        """The record at ``seq`` (checksum verified); UnknownOperationError if absent."""
        return self._reader.get(seq)

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
        self.flush()
        return self._reader.records(start, stop, kinds=kinds, types=types, op=op, source=source, chunk=chunk)

    def scan_raw(self, start: int = 0, stop: int | None = None, *, chunk: int = 4096) -> Iterator[RawChunk]:
        """The stored bytes of the records ``start..stop``, a :class:`RawChunk` per read transaction (for tools).

        Checksums are not checked here: check each with
        :func:`journal.log.record.check` (a damaged record must be reported,
        never skipped). The first chunk may be empty; it still names the LMDB
        transaction read (``txnid``), which a follower compares with
        :meth:`last_txnid`.
        """
        self._storage.check_usable()
        return self._reader.scan_raw(start, stop, chunk=chunk)

    def pending(self) -> list[Record]:
        """The intents of operations without an outcome, oldest first. O(pending)."""
        self.flush()
        return self._reader.pending()

    def pending_ids(self) -> list[int]:
        """Op ids of pending operations: as this writer knows them (no disk access), or on disk."""
        if self._writer is not None:
            return self._writer.pending_ids()
        return self._reader.pending_on_disk()

    def timeline(self, op: int | str) -> list[Record]:
        """Every record of one operation (by op id or client id), in order."""
        op_id = self.resolve_op(op)
        self.flush()
        return self._reader.timeline(op_id, shown_as=op)

    def timeline_raw(self, op: int | str) -> list[RawRecord]:
        """The stored bytes of one operation's records (for tools), from one read transaction."""
        op_id = self.resolve_op(op)
        self.flush()
        return self._reader.timeline_raw(op_id)

    def get_raw(self, seqs: Sequence[int]) -> RawChunk:
        """The stored bytes of the records ``seqs`` that exist (for tools), from one read transaction."""
        return self._reader.get_raw(seqs)

    def verify(self) -> VerifyReport:
        """Check every record's checksum and the whole hash chain.

        Returns a :class:`VerifyReport`; ``first_bad_seq`` names the first damaged
        sequence number. Never raises for damage.
        """
        self.flush()
        base = self.base_seq
        return verify_range(self._storage, base, self._base[1], check_anchor=False)

    def last_txnid(self) -> int:
        """The id of the newest committed LMDB transaction (moves whenever anything is written)."""
        return self._storage.last_txnid()

    def stats(self) -> dict[str, Any]:
        """Counters and latency percentiles (append as seen by callers, sync per transaction), and sizes.

        ``shipping`` lists each shipping destination's lag (:mod:`journal.log.cursors`):
        ``lag_records`` behind the last record and ``lag_s``, how long the oldest
        record not yet acknowledged there has waited.
        """
        out: dict[str, Any] = self._writer.stats.snapshot() if self._writer is not None else {}
        info = self._storage.env.info()
        env_stat = self._storage.env.stat()
        out.update(
            {
                "path": self.path,
                "journal_id": self.journal_id,
                "incarnation": self.incarnation,
                "durability": self.durability.value if not self.readonly else "read-only",
                "records": self._reader.count(),
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "pending": len(self.pending_ids()),
                "map_size": info["map_size"],
                "used_bytes": (info["last_pgno"] + 1) * env_stat["psize"],
                "last_txnid": info["last_txnid"],
                "page_size": env_stat["psize"],
                "tree_depth": env_stat["depth"],
                "file_bytes": _file_size(os.path.join(self.path, "data.mdb")),
                "shipping": self._shipping_lag(),
            }
        )
        return out

    def _shipping_lag(self) -> list[dict[str, Any]] | str:
        """Each shipping destination's lag behind this journal: records, and the oldest unshipped record's age."""
        try:
            cursors = read_cursors(self.path)
        except JournalError as exc:
            return str(exc)
        if not cursors:
            return []
        last = self.last_seq
        now = time.time_ns()
        oldest = {raw.seq: ts_of(raw.value, raw.seq) for raw in self.get_raw(sorted({c.seq + 1 for c in cursors}))}
        out = []
        for c in cursors:
            behind = max(0, last - c.seq)
            ts = oldest.get(c.seq + 1)
            out.append(
                {
                    "name": c.name,
                    "target": c.target,
                    "acked_seq": c.seq,
                    "lag_records": behind,
                    "lag_s": round(max(0, now - ts) / 1e9, 3) if behind and ts is not None else 0.0,
                    "cursor_age_s": round(max(0, now - c.updated_ns) / 1e9, 3) if c.updated_ns else None,
                }
            )
        return out

    def backup(self, dest: str | os.PathLike[str], *, compact: bool = True) -> str:
        """A consistent copy of the journal into the new directory ``dest`` (safe while writing).

        The copy is a journal of its own: opening it for writing draws a new
        incarnation, so it never re-sends a client id this one sent.
        """
        self.flush()
        target = os.fspath(dest)
        self._storage.copy(target, compact=compact)
        return target

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Flush buffered markers, stop the flusher and release the journal. Idempotent."""
        if self._closed:
            return
        try:
            if self._writer is not None:
                try:
                    self._storage.check_usable()
                    usable = True
                except JournalError:
                    usable = False  # a forked child: never touch the parent's environment
                self._writer.close(write_queued=usable)
        finally:
            self._closed = True
            if self._writer is not None:
                with self._writer.closing():
                    self._storage.close()
            else:
                self._storage.close()
            log.info("closed journal %s", self.path)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.readonly else self.durability.value)
        return f"<Journal {self.path} id={self.journal_id} {state}>"


def type_name(exc: BaseException) -> str:
    return type(exc).__name__


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
