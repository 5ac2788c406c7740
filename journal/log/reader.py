"""Reading a journal's log: records, pending operations, timelines, and raw scans for tools.

Every read runs in short LMDB read transactions (a chunk of records at a
time), so a slow consumer never pins the writer's old pages nor blocks a map
resize. A read-only reader may run beside the writer, in another process; what
it reads is always a consistent prefix of the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

from ..errors import CorruptionError, JournalError, UnknownOperationError
from .clientid import Incarnations
from .record import INTENT, KIND_CODES, RawChunk, RawRecord, Record, chain_of, decode_record, key_seq, kind_of, seq_key
from .storage import Storage
from .writer import LogPoint

__all__ = ["Reader"]


class Reader:
    """Read access to one journal's log (owned by a :class:`~journal.Journal`)."""

    def __init__(self, storage: Storage, path: str, journal_id: str, incarnations: Incarnations, *, live: bool) -> None:
        #: The LMDB environment read from.
        self._storage = storage
        #: The journal's path, for messages.
        self._path = path
        #: The journal id (client ids, messages).
        self.journal_id = journal_id
        #: Which incarnation wrote which seqs; a read-only reader refreshes it as the writer reopens.
        self.incarnations = incarnations
        #: True when the history above is authoritative (this process is the writer).
        self._live = live
        #: The newest seq the history was known to cover (read-only readers).
        self._history_upto = -1
        #: seq -> client id under the history above.
        self._client_id = incarnations.client_ids(journal_id)

    # -- client ids ----------------------------------------------------------

    def client_id(self, op_id: int) -> str:
        """The client order id of operation ``op_id``."""
        if op_id > self._history_upto and not self._live:
            self._refresh_history()
        return self._client_id(op_id)

    def client_ids(self) -> Callable[[int], str]:
        """The fastest ``op id -> client id`` function (a writer's history is final; a reader's may grow)."""
        if self._live:
            return self._client_id
        if self._history_upto < 0:
            self._refresh_history()
        fast, upto = self._client_id, self._history_upto

        def client_id(op_id: int) -> str:
            return fast(op_id) if op_id <= upto else self.client_id(op_id)

        return client_id

    def set_history(self, incarnations: Incarnations) -> None:
        """Adopt ``incarnations`` (the writer, after drawing its own)."""
        self.incarnations = incarnations
        self._client_id = incarnations.client_ids(self.journal_id)

    def _refresh_history(self) -> None:
        with self._storage.read() as txn:
            entries = self._storage.get_meta(txn, "incarnations") or []
            cur = txn.cursor(db=self._storage.dbs["log"])
            upto = key_seq(cur.key()) if cur.last() else 0
        self.set_history(Incarnations(entries))
        self._history_upto = upto

    # -- positions -----------------------------------------------------------

    def first_seq(self) -> int | None:
        with self._storage.read() as txn:
            cur = txn.cursor(db=self._storage.dbs["log"])
            return key_seq(cur.key()) if cur.first() else None

    def last_on_disk(self) -> tuple[int, int] | None:
        """``(seq, chain)`` of the newest record on disk, or None when the log is empty."""
        with self._storage.read() as txn:
            cur = txn.cursor(db=self._storage.dbs["log"])
            if not cur.last():
                return None
            seq = key_seq(cur.key())
            return seq, chain_of(cur.value(), seq)

    def extent(self) -> tuple[int | None, tuple[int, int] | None, int]:
        """``(first seq, (last seq, its chain), record count)`` from one read transaction."""
        with self._storage.read() as txn:
            db = self._storage.dbs["log"]
            cur = txn.cursor(db=db)
            first = key_seq(cur.key()) if cur.first() else None
            last = None
            if cur.last():
                seq = key_seq(cur.key())
                last = (seq, chain_of(cur.value(), seq))
            return first, last, int(txn.stat(db)["entries"])

    def count(self) -> int:
        with self._storage.read() as txn:
            return int(txn.stat(self._storage.dbs["log"])["entries"])

    def point(self, base: tuple[int, int]) -> LogPoint:
        """The newest record on disk and the pending operations then, from one read transaction."""
        st = self._storage
        with st.read() as txn:
            cur = txn.cursor(db=st.dbs["log"])
            if cur.last():
                seq = key_seq(cur.key())
                chain = chain_of(cur.value(), seq)
            else:
                seq, chain = base
            pdb = st.dbs.get("pending")
            pending = tuple(key_seq(k) for k in txn.cursor(db=pdb).iternext(values=False)) if pdb is not None else ()
        return LogPoint(seq, chain, pending)

    # -- records -------------------------------------------------------------

    def get(self, seq: int) -> Record:
        with self._storage.read() as txn:
            value = txn.get(seq_key(seq), db=self._storage.dbs["log"])
            if value is None:
                raise UnknownOperationError(f"{self._path}: no record at seq {seq} (compacted, or never written)")
            return decode_record(seq_key(seq), value, self.client_id)

    def scan_raw(self, start: int = 0, stop: int | None = None, *, chunk: int = 4096) -> Iterator[RawChunk]:
        """The stored records with ``start <= seq <= stop``, ``chunk`` per read transaction.

        Each :class:`RawChunk` is what one read transaction saw (its ``txnid``
        says which); checksums are not checked (see
        :func:`journal.log.record.check`). The first chunk is yielded even when
        empty, so a follower learns which transaction it read. Raises
        :class:`JournalError` if records vanish between two chunks (compacted
        while being read).
        """
        pos = start
        first_chunk = True
        while True:
            out = RawChunk()
            done = True
            with self._storage.read() as txn:
                out.txnid = txn.id()
                cur = txn.cursor(db=self._storage.dbs["log"])
                if cur.set_range(seq_key(pos)):
                    if not first_chunk and key_seq(cur.key()) != pos:
                        raise JournalError(
                            f"{self._path}: records from seq {pos} were compacted while being read; read again"
                        )
                    items = list(islice(cur, chunk))  # buffers=False: bytes copies
                    if items:
                        last = key_seq(items[-1][0])
                        if stop is not None and last > stop:
                            items = [kv for kv in items if key_seq(kv[0]) <= stop]
                        else:
                            done = len(items) < chunk
                        out.extend(map(RawRecord._make, items))
                        pos = last + 1
            if out or first_chunk:
                yield out
            first_chunk = False
            if done:
                return

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
        if start is not None and stop is not None and start > stop:
            raise ValueError(f"start ({start}) is after stop ({stop})")
        kind_codes = None
        if kinds is not None:
            bad = [k for k in kinds if k not in KIND_CODES]
            if bad:
                raise ValueError(f"unknown kind(s) {bad}; known: {sorted(KIND_CODES)}")
            kind_codes = frozenset(KIND_CODES[k] for k in kinds)
        type_set = frozenset(types) if types is not None else None
        if op is not None:
            for rec in self.timeline(op):
                if (start is None or rec.seq >= start) and (stop is None or rec.seq <= stop):
                    if _matches(rec, kind_codes, type_set, source):
                        yield rec
            return
        for raws in self.scan_raw(start or 0, stop, chunk=chunk):
            out = []
            for raw in raws:
                if kind_codes is None or kind_of(raw.value, raw.seq) in kind_codes:
                    rec = decode_record(raw.key, raw.value, self.client_id)
                    if _matches(rec, None, type_set, source):
                        out.append(rec)
            yield from out

    def pending(self) -> list[Record]:
        st = self._storage
        out = []
        with st.read() as txn:
            pdb = st.dbs.get("pending")
            if pdb is None:
                return []
            for key in txn.cursor(db=pdb).iternext(values=False):
                value = txn.get(key, db=st.dbs["log"])
                seq = key_seq(key)
                if value is None:
                    raise CorruptionError(
                        f"{self._path}: pending index names seq {seq} but the log has no such record; "
                        "run `journal verify`",
                        seq,
                    )
                out.append(decode_record(key, value, self.client_id))
        return out

    def pending_on_disk(self) -> list[int]:
        st = self._storage
        with st.read() as txn:
            pdb = st.dbs.get("pending")
            return [key_seq(k) for k in txn.cursor(db=pdb).iternext(values=False)] if pdb is not None else []

    def timeline_raw(self, op_id: int) -> list[RawRecord]:
        """The stored records of one operation (its intent first), from one read transaction."""
        st = self._storage
        out = []
        prefix = seq_key(op_id)
        with st.read() as txn:
            intent = txn.get(prefix, db=st.dbs["log"])
            if intent is not None and kind_of(intent, op_id) == INTENT:
                out.append(RawRecord(prefix, bytes(intent)))
            ops = st.dbs.get("ops")
            if ops is not None:
                cur = txn.cursor(db=ops)
                if cur.set_range(prefix):
                    for key in cur.iternext(values=False):
                        if key[:8] != prefix:
                            break
                        value = txn.get(key[8:], db=st.dbs["log"])
                        if value is not None:
                            out.append(RawRecord(bytes(key[8:]), bytes(value)))
        return out

    def get_raw(self, seqs: Sequence[int]) -> RawChunk:
        st = self._storage
        out = RawChunk()
        with st.read() as txn:
            out.txnid = txn.id()
            for seq in seqs:
                key = seq_key(seq)
                value = txn.get(key, db=st.dbs["log"])
                if value is not None:
                    out.append(RawRecord(key, bytes(value)))
        return out

    def timeline(self, op_id: int, shown_as: Any = None) -> list[Record]:
        out = [decode_record(r.key, r.value, self.client_id) for r in self.timeline_raw(op_id)]
        if not out:
            shown = op_id if shown_as is None else shown_as
            raise UnknownOperationError(f"{self._path}: no operation {shown} in this journal (or it was compacted)")
        return out


def _matches(rec: Record, kinds: frozenset[int] | None, types: frozenset[str] | None, source: str | None) -> bool:
    if kinds is not None and KIND_CODES[rec.kind] not in kinds:
        return False
    if types is not None and rec.type not in types:
        return False
    return source is None or rec.source == source
