"""Deleting the oldest records of the log, with the hash chain restarted where they end.

:func:`delete_through` is the storage half of :meth:`journal.Journal.compact_log`
(which picks the batches, holds the write lock and keeps the journal's own
chain base in step): in one write transaction it deletes the records
``start..end`` and their entries in the ``ops`` index, and moves the chain
base (and the checkpoint, if older) to ``end``. Because all of it is one LMDB
transaction, a crash between batches leaves a journal that verifies.
"""

from __future__ import annotations

import lmdb

from ..errors import CorruptionError
from .record import chain_of, key_seq, seq_key
from .storage import Storage

__all__ = ["delete_through"]


def delete_through(st: Storage, txn: lmdb.Transaction, start: int, end: int) -> tuple[int, int]:
    """Delete records ``start..end``; return ``(records deleted, chain value of record end)``."""
    value = txn.get(seq_key(end), db=st.dbs["log"])
    if value is None:
        raise CorruptionError(f"{st.path}: record {end} missing during compaction", end)
    end_chain = chain_of(value, end)
    cur = txn.cursor(db=st.dbs["log"])
    n = 0
    if cur.set_range(seq_key(start)):
        while True:
            key = cur.key()
            if not key or key_seq(key) > end:
                break
            cur.delete()
            n += 1
    ops = txn.cursor(db=st.dbs["ops"])
    if ops.first():  # keys: op id + seq; an old op's later records (seq > end) stay
        while True:
            key = ops.key()
            if len(key) != 16 or key_seq(key[:8]) > end:
                break
            if key_seq(key[8:]) <= end:
                ops.delete()
            elif not ops.next():
                break
    st.put_meta(txn, "chain_base", [end, end_chain])
    cp = st.get_meta(txn, "checkpoint")
    if cp is not None and cp[0] < end:
        st.put_meta(txn, "checkpoint", [end, end_chain])
    return n, end_chain
