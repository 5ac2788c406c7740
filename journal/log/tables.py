"""The named tables the layers above the log keep in the journal's environment.

The state layer stores its snapshots (``snapshots``, ``chunks``), the settled
part of the state it keeps out of memory (``archive``) and its own meta data
(``schema_history``) in the same LMDB environment as the log, so a snapshot
and the records it covers are consistent and copied together. It
reaches them only through :class:`Tables`, handed out by
:meth:`journal.Journal.read_tables` (a read transaction) and
:meth:`journal.Journal.write_tables` (a write transaction that runs after
every queued record is written). A table may be absent in a journal opened
read-only that never had one: :meth:`Tables.has` says so, and reading it gives
nothing.

The log's own databases and meta keys are not reachable through it: a layer
above can never damage the log's framing, chain or indexes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lmdb

from ..errors import JournalError
from .storage import Storage

__all__ = ["LOG_META_KEYS", "STATE_TABLES", "Tables"]

#: Tables the state layer owns.
STATE_TABLES = frozenset({"snapshots", "chunks", "archive"})
#: Meta keys the log owns (the state layer may use any other key).
LOG_META_KEYS = frozenset(
    {"format_version", "journal_id", "created_ns", "lmdb_engine", "chain_base", "checkpoint", "incarnations",
     "clock_steps"}
)  # fmt: skip


class Tables:
    """Access to the state layer's tables inside one LMDB transaction. Not thread-safe."""

    __slots__ = ("_txn", "_storage", "_write")

    def __init__(self, txn: lmdb.Transaction, storage: Storage, *, write: bool) -> None:
        self._txn = txn
        self._storage = storage
        self._write = write

    def _db(self, table: str) -> Any:
        if table not in STATE_TABLES:
            raise JournalError(f"table {table!r} is not a state table (known: {sorted(STATE_TABLES)})")
        return self._storage.dbs.get(table)

    def _writable(self, table: str) -> Any:
        if not self._write:
            raise JournalError(f"{self._storage.path}: table {table!r} written in a read transaction")
        db = self._db(table)
        if db is None:
            raise JournalError(f"{self._storage.path}: table {table!r} is missing (journal opened read-only?)")
        return db

    def has(self, table: str) -> bool:
        return self._db(table) is not None

    def get(self, table: str, key: bytes) -> bytes | None:
        db = self._db(table)
        if db is None:
            return None
        value = self._txn.get(key, db=db)
        return None if value is None else bytes(value)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._writable(table))

    def delete(self, table: str, key: bytes) -> bool:
        return bool(self._txn.delete(key, db=self._writable(table)))

    def keys(self, table: str) -> Iterator[bytes]:
        db = self._db(table)
        if db is None:
            return iter(())
        return (bytes(k) for k in self._txn.cursor(db=db).iternext(values=False))

    def items(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        db = self._db(table)
        if db is None:
            return iter(())
        return ((bytes(k), bytes(v)) for k, v in self._txn.cursor(db=db))

    def floor(self, table: str, key: bytes) -> tuple[bytes, bytes] | None:
        """The entry with the greatest key ``<= key``, or None (one cursor seek)."""
        db = self._db(table)
        if db is None:
            return None
        cur = self._txn.cursor(db=db)
        if cur.set_range(key):
            if cur.key() == key:
                return bytes(cur.key()), bytes(cur.value())
            if not cur.prev():
                return None
        elif not cur.last():
            return None
        return bytes(cur.key()), bytes(cur.value())

    def range(self, table: str, start: bytes, stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries with ``start <= key < stop`` (``stop`` None: to the end), in key order."""
        db = self._db(table)
        if db is None:
            return
        cur = self._txn.cursor(db=db)
        if not cur.set_range(start):
            return
        for k, v in cur:
            key = bytes(k)
            if stop is not None and key >= stop:
                return
            yield key, bytes(v)

    def count(self, table: str) -> int:
        db = self._db(table)
        return 0 if db is None else int(self._txn.stat(db)["entries"])

    def delete_unreferenced(self, table: str, referenced: set[bytes]) -> int:
        """Delete every key of ``table`` not in ``referenced``; returns how many went."""
        cur = self._txn.cursor(db=self._writable(table))
        removed = 0
        if cur.first():
            while True:
                key = cur.key()
                if not key:
                    break
                if bytes(key) not in referenced:
                    cur.delete()
                    removed += 1
                elif not cur.next():
                    break
        return removed

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self._storage.get_meta(self._txn, key, default)

    def put_meta(self, key: str, value: Any) -> None:
        if key in LOG_META_KEYS:
            raise JournalError(f"meta key {key!r} belongs to the log; the state layer may not write it")
        if not self._write:
            raise JournalError(f"{self._storage.path}: meta {key!r} written in a read transaction")
        self._storage.put_meta(self._txn, key, value)
