"""Raw LMDB access for tests that damage a journal on purpose (never used by the library)."""

from __future__ import annotations

from typing import Any

import lmdb

from journal.log.codec import decode


def manifest(txn: lmdb.Transaction, snapshots_db: Any, seq: int) -> dict[str, Any]:
    """The manifest of snapshot ``seq`` as stored: an 8-byte checksum, then CBOR (journal/state/snapshot.py)."""
    raw = txn.get(seq.to_bytes(8, "big"), db=snapshots_db)
    assert raw is not None, f"no snapshot at seq {seq}"
    value = decode(bytes(raw)[8:])
    assert isinstance(value, dict)
    return value
