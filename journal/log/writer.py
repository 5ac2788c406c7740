"""The write path of a journal: numbering, the queue, group commit and the flusher.

A :class:`Writer` belongs to one writable :class:`~journal.Journal`. Records
are *numbered* when they are queued (:meth:`Writer.submit`): under the queue
lock each gets its sequence number, its chain value and its time, and the
journal's observers (the in-memory state) see it, in exactly log order. A
thread that needs its records durable then either becomes the *leader* and
writes everything queued in one LMDB transaction (group commit), or finds that
a leader already wrote them. A marker that need not wait (a commit in INTENT
mode) rides on the next transaction; the background flusher writes it after at
most ``flush_interval_ms`` if no transaction comes.

Locks (the order in which they nest: write lock, then queue lock):

- ``_qlock`` -- numbering and the queue; held for microseconds;
- ``_write_lock`` -- one LMDB write transaction at a time (the leader's);
  never held during a PROCESS-mode background sync, so a write from an event
  loop never waits for an fsync it did not ask for.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import lmdb

from ..errors import CorruptionError, JournalError
from . import crashpoints
from .codec import decode
from .record import EVENT, INTENT, KIND_NAMES, Record, frame, key_seq
from .settings import Durability
from .stats import WriteStats
from .storage import Storage

__all__ = ["Entry", "LogPoint", "Writer"]

log = logging.getLogger("journal.writer")

_SEQ = struct.Struct(">Q")

T = TypeVar("T")
_MISSING = object()
#: A backward step of the wall clock smaller than this is absorbed (records keep
#: the previous time): NTP slews and VM clock jitter. A larger step is recorded
#: truthfully and noted in ``meta["clock_steps"]`` so time searches stay exact.
CLOCK_JITTER_NS = 5_000_000


@dataclass(frozen=True, slots=True)
class LogPoint:
    """One consistent point of a journal: the last record, its chain value, the pending ops then.

    Given to :meth:`journal.Journal.capture` callbacks. For a writer, ``seq`` is
    the last record *numbered* (what the in-memory state has applied); for a
    read-only journal, the last record on disk, read in the same read
    transaction as ``pending``.
    """

    seq: int
    chain: int
    pending: tuple[int, ...]


class Entry:
    __slots__ = ("kind", "body", "op", "type", "source", "key", "value", "chain")

    def __init__(self, kind: int, body_bytes: bytes, op: int | None, type_: str, source: str) -> None:
        self.kind = kind
        self.body = body_bytes
        self.op = op
        self.type = type_
        self.source = source
        self.key = b""
        self.value = b""
        self.chain = 0


class _Request:
    __slots__ = ("entries", "done", "seqs", "error", "crash_point", "event", "waiting")

    def __init__(self, entries: list[Entry], crash_point: str | None) -> None:
        self.entries = entries
        self.event: threading.Event | None = None
        self.waiting = False
        self.done = False
        self.seqs: list[int] = []
        self.error: BaseException | None = None
        self.crash_point = crash_point


class Writer:
    """The write path of one journal (see the module docstring). Thread-safe."""

    def __init__(
        self,
        storage: Storage,
        *,
        path: str,
        durability: Durability,
        flush_interval_ms: float,
        checkpoint_interval: int,
        next_seq: int,
        chain: int,
        pending: Sequence[int],
        last_ts: int,
        client_id_of: Callable[[int], str],
    ) -> None:
        #: The LMDB environment written to.
        self._storage = storage
        #: The journal's path, for messages.
        self._path = path
        #: What a crash may lose; PROCESS mode never syncs on the write path.
        self._durability = durability
        #: INTENT: a marker's longest wait for a transaction to ride on; PROCESS: the sync period.
        self._flush_s = flush_interval_ms / 1000.0
        #: A checkpoint (seq, chain) goes into meta every this many records.
        self._checkpoint_interval = checkpoint_interval
        #: The sequence number the next record gets.
        self._next_seq = next_seq
        #: The chain value of the last numbered record.
        self._chain = chain
        #: Op ids of operations without an outcome (numbered, maybe not yet durable).
        self._pending: dict[int, None] = dict.fromkeys(sorted(pending))
        #: The time of the last numbered record (ns).
        self._last_ts = last_ts
        #: The client id of an operation (journal id + incarnation + op id).
        self._client_id_of = client_id_of
        #: Counters and latencies, shown by ``Journal.stats()``.
        self.stats = WriteStats()
        #: Held by the thread writing an LMDB transaction.
        self._write_lock = threading.Lock()
        #: Guards numbering and the queue.
        self._qlock = threading.Lock()
        #: Numbered requests not yet written, in sequence order.
        self._queue: list[_Request] = []
        #: A thread's reusable wake-up event (group commit followers).
        self._tls = threading.local()
        #: Wakes the flusher.
        self._kick = threading.Event()
        #: Tells the flusher to stop.
        self._stop = threading.Event()
        #: The background flusher, started on the first no-wait record.
        self._flusher: threading.Thread | None = None
        #: True while the flusher sleeps until kicked (else it polls marker ages itself).
        self._flusher_idle = True
        #: When the oldest unwritten no-wait record was queued (monotonic s), or None.
        self._marker_since: float | None = None
        #: The first failed write: the journal refuses further writes until reopened.
        self._broken: JournalError | None = None
        #: Called with every record as it is numbered, in log order.
        self._observers: list[Callable[[Record], None]] = []
        #: Backward clock steps met while numbering, not yet written: [first seq, step ns].
        self._clock_steps: list[list[int]] = []

    # -- numbering -----------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def pending_ids(self) -> list[int]:
        with self._qlock:
            return sorted(self._pending)

    def is_pending(self, op_id: int) -> bool:
        return op_id in self._pending

    def add_observer(self, observer: Callable[[Record], None]) -> None:
        self._observers.append(observer)

    def capture(self, fn: Callable[[LogPoint], T], *, durable: bool = False) -> T:
        """Run ``fn(point)`` with numbering paused; ``durable``: once every numbered record is on disk."""
        while True:
            if durable:
                self.flush()
            with self._qlock:
                if not durable or not self._queue:
                    return fn(LogPoint(self._next_seq - 1, self._chain, tuple(sorted(self._pending))))

    def check_writable(self) -> None:
        self._storage.check_usable()
        if self._broken is not None:
            raise JournalError(
                f"{self._path}: journal refuses writes after a failed write ({self._broken}); "
                "close and reopen it (everything acknowledged before the failure is on disk)"
            ) from self._broken

    def _stamp(self, now: int) -> int:
        """The time of records numbered at wall-clock ``now``, which is before the last record's."""
        last = self._last_ts
        if now >= last:
            self._last_ts = now
            return now
        if last - now <= CLOCK_JITTER_NS:
            return last  # jitter: keep the records' times in order
        # A real step back: record the truth, and note where, so time searches stay exact.
        self._clock_steps.append([self._next_seq, last - now])
        log.warning(
            "%s: the wall clock stepped back by %.3f s before seq %d; record times keep the true clock",
            self._path,
            (last - now) / 1e9,
            self._next_seq,
        )
        self._last_ts = now
        return now

    def submit(
        self, entries: list[Entry], *, wait: bool, crash_point: str | None, settles: int | None = None
    ) -> _Request:
        """Queue records: sequence numbers, chain and state are assigned here, in order.

        Numbering at enqueue time (under ``_qlock``) fixes the order in which
        records are applied to observers (the in-memory state) to be exactly
        the log order, so replaying the log reproduces the live state.
        ``settles`` names the operation an outcome settles: it must be pending
        (else ``LookupError`` is raised and nothing is queued).
        """
        # The hot path of every operation: kept to plain attribute reads and one lock.
        if self._broken is not None:
            self.check_writable()
        self._storage.check_usable()
        req = _Request(entries, crash_point)
        seqs = req.seqs
        with self._qlock:
            if settles is not None and self._pending.pop(settles, _MISSING) is _MISSING:
                raise LookupError(settles)
            seq, chain = self._next_seq, self._chain
            ts = time.time_ns()
            if ts >= self._last_ts:
                self._last_ts = ts
            else:
                ts = self._stamp(ts)
            for e in entries:
                e.key, e.value, chain = frame(seq, chain, ts, e.kind, e.body)
                e.chain = chain
                seqs.append(seq)
                if e.kind == INTENT:
                    self._pending[seq] = None
                seq += 1
            self._next_seq, self._chain = seq, chain
            self._queue.append(req)
            if not wait and self._marker_since is None:
                self._marker_since = time.monotonic()
            if self._observers:
                self._notify(req, ts)
        if not wait or self._durability is Durability.PROCESS:
            # PROCESS mode: the flusher syncs the file a moment after writes.
            if self._flusher is None:
                self._start_flusher()
            if self._flusher_idle or self._durability is Durability.PROCESS:
                self._kick.set()
            if not wait:
                return req
        t0 = time.perf_counter_ns()
        if not self._lead(req):  # the common case: nobody is writing, no event needed
            self._wait_durable(req)
        if req.error is not None:
            raise req.error
        self.stats.waited(time.perf_counter_ns() - t0)
        return req

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
                client_id=self._client_id_of(op) if op is not None else None,
                source=e.source,
            )
            for observer in self._observers:
                try:
                    observer(rec)
                except Exception:  # the record is queued: an observer bug must not fail the caller
                    log.exception("observer failed on seq %d (%s %s)", seq, rec.kind, rec.type)

    # -- group commit --------------------------------------------------------

    def _wait_durable(self, req: _Request) -> None:
        """Group commit: wait until ``req`` is written, becoming the leader if none is.

        The leader writes everything queued in one transaction; while its sync
        runs, other threads queue more records. A thread whose records a leader
        wrote is woken through its own event (no thundering herd); when the
        leader is done it hands the lead to the first thread still waiting.
        (The caller has just tried to lead, and found a leader.)
        """
        event = getattr(self._tls, "event", None)
        if event is None:
            event = self._tls.event = threading.Event()
        event.clear()
        req.event = event
        req.waiting = True
        while not req.done:
            if self._lead(req):
                return
            event.wait(0.05)  # the timeout is a safety net, not the wake-up path
            event.clear()

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

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the write lock (no transaction of the journal's may run meanwhile).

        On release, the lead passes to the first thread waiting for a write.
        """
        self._write_lock.acquire()
        try:
            yield
        finally:
            self._write_lock.release()
            self._hand_off()

    def flush(self) -> None:
        """Make every record numbered so far durable."""
        self._storage.check_usable()
        # Always take the write lock: the flusher may hold a batch it took from
        # the queue and be writing it right now; returning before that write
        # is done would show a settled operation as pending.
        with self.exclusive():
            self._drain()
        if self._durability is Durability.PROCESS:
            self._storage.env.sync(True)

    def write_after_drain(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Write everything queued, then run ``fn`` in its own write transaction.

        Every record numbered before the call is durable no later than what
        ``fn`` writes (a snapshot never covers a record that is not on disk).
        """
        self._storage.check_usable()
        with self.exclusive():
            self._drain()
            if self._broken is not None:
                raise JournalError(f"{self._path}: journal refuses writes after a failed write") from self._broken
            return self._storage.write(fn)

    def _drain(self) -> None:
        """Write everything queued in one transaction. Holds ``_write_lock``."""
        with self._qlock:
            batch, self._queue = self._queue, []
            self._marker_since = None
            steps, self._clock_steps = self._clock_steps, []
        if not batch:
            return
        if self._broken is not None:
            for req in batch:
                req.error, req.done = JournalError(f"{self._path}: journal refuses writes after a failed write"), True
                if req.event is not None:
                    req.event.set()
            return
        st = self._storage
        entries = batch[0].entries if len(batch) == 1 else [e for req in batch for e in req.entries]
        first_seq = batch[0].seqs[0]
        last = entries[-1]
        last_seq = batch[-1].seqs[-1]
        interval = self._checkpoint_interval
        crossed = (last_seq // interval) > ((first_seq - 1) // interval)
        dbs = st.dbs
        log_db, pending_db, ops_db = dbs["log"], dbs["pending"], dbs["ops"]
        half = -1
        for r in batch:
            if r.crash_point == "batch_durable":
                half = len(entries) // 2

        def write(txn: lmdb.Transaction) -> None:
            put, delete = txn.put, txn.delete
            for i, e in enumerate(entries):
                if i == half:
                    crashpoints.reached("batch_partial")
                key = e.key
                if not put(key, e.value, db=log_db, append=True):
                    seq = key_seq(key)
                    raise CorruptionError(
                        f"{self._path}: seq {seq} is not after the last record; another writer touched the log", seq
                    )
                kind = e.kind
                if kind == INTENT:  # its own timeline entry is implied: the intent sits at seq == op
                    put(key, b"", db=pending_db)
                elif e.op is not None:
                    opkey = _SEQ.pack(e.op)
                    if kind != EVENT:
                        delete(opkey, db=pending_db)
                    put(opkey + key, b"", db=ops_db)
            if crossed:
                st.put_meta(txn, "checkpoint", [last_seq, last.chain])
            if steps:
                st.put_meta(txn, "clock_steps", [*(st.get_meta(txn, "clock_steps") or []), *steps])

        t0 = time.perf_counter_ns()
        try:
            st.write(write)
        except BaseException as exc:
            err = (
                exc
                if isinstance(exc, JournalError)
                else JournalError(f"{self._path}: write of seq {first_seq}..{last_seq} failed: {exc}")
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
        kinds: dict[str, int] = {}
        nbytes = 0
        for e in entries:
            name = KIND_NAMES[e.kind]
            kinds[name] = kinds.get(name, 0) + 1
            nbytes += len(e.value)
        points = []
        for req in batch:
            req.done = True
            if req.event is not None:
                req.event.set()
            if req.crash_point is not None and req.crash_point not in points:
                points.append(req.crash_point)
        self.stats.wrote(kinds, nbytes, txn_ns)
        if log.isEnabledFor(logging.DEBUG):
            for e in entries:
                seq = key_seq(e.key)
                log.debug(
                    "wrote seq=%d kind=%s op=%s (%d records in txn, %.0f us)",
                    seq,
                    KIND_NAMES[e.kind],
                    seq if e.kind == INTENT else e.op,
                    len(entries),
                    txn_ns / 1000,
                )
        for point in sorted(points) if len(points) > 1 else points:
            crashpoints.reached(point)

    # -- the flusher ---------------------------------------------------------

    def _start_flusher(self) -> None:
        if self._flusher is not None:
            return
        with self._qlock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_loop, name=f"journal-flush:{self._path}", daemon=True)
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
            if self._marker_since is None or self._durability is Durability.PROCESS:
                self._kick.wait()
            self._flusher_idle = False
            if self._stop.is_set():
                return
            self._kick.clear()
            try:
                if self._durability is Durability.PROCESS:
                    if self._stop.wait(self._flush_s):
                        return
                    with self.exclusive():
                        if self._stop.is_set():
                            return
                        self._drain()
                    # The sync runs outside the write lock: the next write (from an event
                    # loop, say) never waits for an fsync it did not ask for (LMDB's
                    # mdb_env_sync may run beside a write transaction).
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
                    with self.exclusive():
                        if not self._stop.is_set():
                            self._drain()
            except Exception:  # never let the flusher die; the next write retries
                log.exception("background flush of %s failed", self._path)

    def close(self, *, write_queued: bool) -> None:
        """Stop the flusher; with ``write_queued``, write (and sync) what is queued first."""
        try:
            if write_queued:
                with self.exclusive():
                    self._drain()
                if self._durability is Durability.PROCESS:
                    self._storage.env.sync(True)
        finally:
            self._stop.set()
            self._kick.set()
            if self._flusher is not None and self._flusher is not threading.current_thread():
                self._flusher.join(timeout=5)

    @contextmanager
    def closing(self) -> Iterator[None]:
        """Hold the write lock while the storage closes (no transaction may run meanwhile)."""
        with self._write_lock:
            yield

    def status(self) -> dict[str, Any]:
        return {"queued": len(self._queue), "broken": str(self._broken) if self._broken else None}
