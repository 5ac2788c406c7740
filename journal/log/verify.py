"""Verification of the log: every record's checksum, the hash chain, no gap.

:func:`verify_range` walks the log from a known chain value (the chain base,
or a checkpoint) and stops at the first damage, naming its sequence number in a
:class:`VerifyReport`. :meth:`journal.Journal.verify` runs it over the whole
log; opening a journal runs it from the last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CorruptionError
from .record import chain_of, check, key_seq, seq_key
from .storage import Storage

__all__ = ["VerifyReport", "verify_range"]


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`Journal.verify` found. ``ok`` is False at the first damage."""

    ok: bool
    records_checked: int
    first_seq: int | None
    last_seq: int | None
    first_bad_seq: int | None = None
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.records_checked} records, seq {self.first_seq}..{self.last_seq}"
        return f"damaged at seq {self.first_bad_seq}: {self.problem}"


def verify_range(st: Storage, after_seq: int, chain: int | None, *, check_anchor: bool) -> VerifyReport:
    """Check the records after ``after_seq`` against their checksums and the chain from ``chain``.

    ``check_anchor`` also checks the record at ``after_seq`` itself carries ``chain`` (a checkpoint).
    Reads 4,096 records per short read transaction. Never raises for damage.
    """
    expected = after_seq + 1
    checked = 0
    first: int | None = None
    last: int | None = None
    if check_anchor:
        with st.read() as txn:
            value = txn.get(seq_key(after_seq), db=st.dbs["log"])
        if value is None:
            return VerifyReport(False, 0, None, None, after_seq, "checkpoint record missing")
        try:
            if chain_of(value, after_seq) != chain:
                return VerifyReport(False, 0, None, None, after_seq, "checkpoint record altered (chain value differs)")
            check(seq_key(after_seq), value, None)
        except CorruptionError as exc:
            return VerifyReport(False, 0, None, None, after_seq, str(exc))
    pos = expected
    while True:
        n = 0
        with st.read() as txn:
            cur = txn.cursor(db=st.dbs["log"])
            if not cur.set_range(seq_key(pos)):
                break
            for key, value in cur:
                try:
                    seq = key_seq(key)
                except CorruptionError as exc:
                    return VerifyReport(False, checked, first, last, expected, str(exc))
                if seq != expected:
                    return VerifyReport(
                        False,
                        checked,
                        first,
                        last,
                        expected,
                        f"record missing: expected seq {expected}, found {seq}",
                    )
                try:
                    _, chain = check(key, value, chain)
                except CorruptionError as exc:
                    return VerifyReport(False, checked, first, last, seq, str(exc))
                first = seq if first is None else first
                last = seq
                checked += 1
                expected += 1
                n += 1
                if n >= 4096:
                    break
            else:
                break
        pos = expected
    return VerifyReport(True, checked, first, last)
