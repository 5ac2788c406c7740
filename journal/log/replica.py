"""A replica: a journal directory built from records framed elsewhere (the fleet archive writes one per bot).

Shipped records (:mod:`journal.fleet`) arrive as the exact bytes their journal
stored. A :class:`Replica` appends them to a journal directory of the same
format a writer keeps -- the ``log``, its ``pending`` and ``ops`` indexes
updated in the same transaction, and the log's meta data (format version,
journal id, chain base, incarnations, checkpoints, clock steps) -- so every
reading tool works on it unchanged: ``journal dump``, ``show``, ``pending``,
``verify``, ``Journal(path, readonly=True)``, a read-only ``StateStore``.

**Nothing unchecked is written.** :meth:`Replica.stage` checks a record
before accepting it: its sequence number follows the last one, its checksum
holds, its chain value is the hash of its bytes seeded with the previous
record's chain value, its kind is known and its body decodes. A record that
fails is refused with :class:`ReplicaError` (or
:class:`~journal.errors.CorruptionError` for damage) and nothing of it is kept.
:meth:`Replica.commit` writes everything staged in one synced LMDB
transaction: after a crash the replica holds a prefix of what was staged,
never part of a record.

**Where the chain starts.** A replica of a journal shipped from its first
record starts from the journal's genesis chain, like the journal itself; one
whose source had compacted its oldest records before shipping began starts
from that record's predecessor (``base_seq``, ``base_chain``), which the
first shipped record names. ``journal verify`` checks the chain from there.

**Incarnations.** Each record comes with the incarnation that wrote it; the
replica keeps the same ``incarnations`` history its source keeps, so client
ids shown by the tools are the ones the bot sent.

One process writes a replica at a time (it takes the journal's writer lock).
A replica is never opened by a :class:`~journal.Journal` writer: that would
add records of its own to a copy (``meta["replica"]`` marks the directory).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import lmdb

from ..errors import CorruptionError, JournalError, NotAJournalError
from .clientid import Incarnations
from .codec import warm_up
from .record import EVENT, INTENT, RawRecord, check, decode_body, genesis_chain, key_seq, kind_of, seq_key, ts_of
from .storage import FORMAT_VERSION, Storage
from .verify import verify_range
from .writer import CLOCK_JITTER_NS

__all__ = ["REPLICA_META_KEY", "Replica", "ReplicaError"]

#: The meta key that marks a directory as a replica, with where its records came from.
REPLICA_META_KEY = "replica"
_CHECKPOINT_INTERVAL = 16384


class ReplicaError(JournalError):
    """A record does not continue the replica (another sequence number or another predecessor)."""


@dataclass(slots=True)
class _Staged:
    key: bytes
    value: bytes
    kind: int
    op: int | None


class Replica:
    """A journal directory written from pre-framed records (see the module docstring). Not thread-safe."""

    def __init__(self, path: str | os.PathLike[str], *, map_size: int = 4 << 20, max_map_size: int = 1 << 40) -> None:
        """Open the existing replica at ``path`` for appending (see :meth:`create` for a new one)."""
        self.path = os.fspath(path)
        if not os.path.exists(os.path.join(self.path, "data.mdb")):
            raise NotAJournalError(f"{self.path}: no replica here (no data.mdb); create one with Replica.create")
        self._storage = Storage(self.path, readonly=False, map_size=map_size, max_map_size=max_map_size)
        try:
            self._load()
        except BaseException:
            self._storage.close()
            raise

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        journal_id: str,
        *,
        base_seq: int = 0,
        base_chain: int | None = None,
        source: str = "",
        info: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> Replica:
        """A new, empty replica of journal ``journal_id`` whose first record will follow ``base_seq``.

        ``base_chain`` is the chain value of record ``base_seq`` (default: the
        journal's genesis chain, for ``base_seq`` 0). ``source`` and ``info``
        (plain data) are kept in ``meta["replica"]``: where the records came from.
        """
        target = os.fspath(path)
        if os.path.exists(os.path.join(target, "data.mdb")):
            raise JournalError(f"{target}: already holds a journal; open it with Replica(path)")
        if base_chain is None:
            if base_seq != 0:
                raise ValueError("a replica starting after seq 0 needs the chain value of its base record")
            base_chain = genesis_chain(journal_id)
        os.makedirs(target, mode=0o700, exist_ok=True)
        st = Storage(target, readonly=False, map_size=int(kw.get("map_size", 4 << 20)),
                     max_map_size=int(kw.get("max_map_size", 1 << 40)))  # fmt: skip

        def init(txn: lmdb.Transaction) -> None:
            st.put_meta(txn, "format_version", FORMAT_VERSION)
            st.put_meta(txn, "journal_id", journal_id)
            st.put_meta(txn, "created_ns", time.time_ns())
            st.put_meta(txn, "lmdb_engine", ".".join(map(str, st.env.lib_version())))
            st.put_meta(txn, "chain_base", [base_seq, base_chain])
            st.put_meta(txn, REPLICA_META_KEY, {**(info or {}), "source": source, "created_ns": time.time_ns()})

        try:
            st.write(init)
        finally:
            st.close()
        return cls(target, **kw)

    def _load(self) -> None:
        warm_up()
        st = self._storage
        with st.read() as txn:
            meta = st.check_format(txn)
            cur = txn.cursor(db=st.dbs["log"])
            last = None
            if cur.last():
                seq = key_seq(cur.key())
                last = (seq, check(cur.key(), cur.value(), None)[1], ts_of(cur.value(), seq))
        if REPLICA_META_KEY not in meta:
            raise NotAJournalError(f"{self.path}: a journal, not a replica; replicas are built by the fleet archive")
        #: The journal id of the source.
        self.journal_id: str = meta["journal_id"]
        base_seq, base_chain = meta["chain_base"]
        #: The seq (and chain value) the first record follows.
        self.base_seq, self.base_chain = int(base_seq), int(base_chain)
        #: Which incarnation wrote which seqs (records staged included).
        self.incarnations = Incarnations(meta.get("incarnations") or [])
        #: Where the records came from (``meta["replica"]``).
        self.source: dict[str, Any] = dict(meta[REPLICA_META_KEY])
        cp_seq, cp_chain = meta.get("checkpoint", [self.base_seq, self.base_chain])
        if last is not None:
            # Never append onto a damaged tail: verify from the last checkpoint, as a journal does on open.
            report = verify_range(st, int(cp_seq), int(cp_chain), check_anchor=int(cp_seq) > self.base_seq)
            if not report.ok:
                raise CorruptionError(
                    f"{self.path}: replica damaged at seq {report.first_bad_seq}: {report.problem}; "
                    "move it aside and archive that journal again",
                    report.first_bad_seq,
                )
        #: The newest record (seq, chain, ts_ns), staged ones included.
        self._last = last or (self.base_seq, self.base_chain, 0)
        self._meta_incarnations = self.incarnations.entries()
        self._clock_steps: list[list[int]] = []
        self._staged: list[_Staged] = []
        self._staged_values: dict[int, bytes] = {}
        self._committed_last = self._last
        self._closed = False

    # -- positions -----------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The newest seq (staged records included); the base when empty."""
        return self._last[0]

    @property
    def last_chain(self) -> int:
        return self._last[1]

    @property
    def staged(self) -> int:
        """Records staged and not yet committed."""
        return len(self._staged)

    def value(self, seq: int) -> bytes | None:
        """The stored bytes of record ``seq`` (staged or committed), None if the replica has none."""
        staged = self._staged_values.get(seq)
        if staged is not None:
            return staged
        if seq <= self.base_seq or seq > self._committed_last[0]:
            return None
        with self._storage.read() as txn:
            raw = txn.get(seq_key(seq), db=self._storage.dbs["log"])
        return None if raw is None else bytes(raw)

    def raw_records(self, start: int, stop: int, *, chunk: int = 4096) -> Iterator[RawRecord]:
        """The committed records ``start..stop``, in order (to copy a shared prefix into another replica)."""
        pos = start
        while pos <= stop:
            with self._storage.read() as txn:
                cur = txn.cursor(db=self._storage.dbs["log"])
                if not cur.set_range(seq_key(pos)):
                    return
                out: list[RawRecord] = []
                for key, value in cur:
                    seq = key_seq(key)
                    if seq > stop or len(out) >= chunk:
                        break
                    out.append(RawRecord(bytes(key), bytes(value)))
            if not out:
                return
            yield from out
            pos = out[-1].seq + 1

    # -- appending -----------------------------------------------------------

    def stage(self, seq: int, incarnation: str, value: bytes) -> int:
        """Check record ``seq`` and stage it after the last one; returns its chain value.

        Raises :class:`ReplicaError` when it does not follow (another seq, or its
        chain was computed from another predecessor) and
        :class:`~journal.errors.CorruptionError` when its bytes are damaged;
        nothing is staged then.
        """
        self._check_open()
        last_seq, last_chain, last_ts = self._last
        if seq != last_seq + 1:
            raise ReplicaError(f"{self.path}: record {seq} does not follow the last record {last_seq}")
        key = seq_key(seq)
        check(key, value, None)  # damage first: a damaged record is never "another history"
        try:
            _, chain = check(key, value, last_chain)
        except CorruptionError:
            raise ReplicaError(
                f"{self.path}: record {seq} follows another record {last_seq} than this replica's "
                "(its chain was computed from another predecessor: a fork)"
            ) from None
        body = decode_body(value, seq)
        kind = kind_of(value, seq)
        op = body.get("op") if kind != INTENT else None
        if incarnation != self.incarnations.at(seq):
            self.incarnations = self.incarnations.starting(seq, incarnation)
        ts = ts_of(value, seq)
        if last_ts and last_ts - ts > CLOCK_JITTER_NS:
            self._clock_steps.append([seq, last_ts - ts])  # as the writer notes it: time searches stay exact
        self._staged.append(_Staged(key, bytes(value), kind, op))
        self._staged_values[seq] = self._staged[-1].value
        self._last = (seq, chain, ts)
        return chain

    def discard(self) -> None:
        """Drop everything staged since the last commit."""
        self._staged.clear()
        self._staged_values.clear()
        self._clock_steps.clear()
        self._last = self._committed_last
        self.incarnations = Incarnations(self._meta_incarnations)

    def commit(self) -> int:
        """Write everything staged in one synced transaction; returns how many records."""
        self._check_open()
        if not self._staged:
            return 0
        st = self._storage
        staged = self._staged
        first = key_seq(staged[0].key)
        last_seq, last_chain, _ = self._last
        crossed = (last_seq // _CHECKPOINT_INTERVAL) > ((first - 1) // _CHECKPOINT_INTERVAL)
        incarnations = self.incarnations.entries()
        steps = list(self._clock_steps)
        log_db, pending_db, ops_db = st.dbs["log"], st.dbs["pending"], st.dbs["ops"]

        def write(txn: lmdb.Transaction) -> None:
            for s in staged:
                if not txn.put(s.key, s.value, db=log_db, append=True):
                    raise CorruptionError(
                        f"{self.path}: seq {key_seq(s.key)} is not after the last record; "
                        "another process wrote to this replica",
                        key_seq(s.key),
                    )
                if s.kind == INTENT:
                    txn.put(s.key, b"", db=pending_db)
                elif s.op is not None:
                    opkey = s.op.to_bytes(8, "big")
                    if s.kind != EVENT:
                        txn.delete(opkey, db=pending_db)
                    txn.put(opkey + s.key, b"", db=ops_db)
            if incarnations != self._meta_incarnations:
                st.put_meta(txn, "incarnations", incarnations)
            if crossed:
                st.put_meta(txn, "checkpoint", [last_seq, last_chain])
            if steps:
                st.put_meta(txn, "clock_steps", [*(st.get_meta(txn, "clock_steps") or []), *steps])

        st.write(write)
        n = len(staged)
        self._meta_incarnations = incarnations
        self._committed_last = self._last
        self._staged = []
        self._staged_values = {}
        self._clock_steps = []
        return n

    # -- lifecycle -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"{self.path}: replica is closed")

    def close(self) -> None:
        """Close without writing what is staged (call :meth:`commit` first). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._storage.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Replica {self.path} id={self.journal_id} seq {self.base_seq + 1}..{self.last_seq}>"
