"""The archive: settled orders and old trades, kept out of memory and found by key on demand.

A bot that has placed 100,000 orders and holds 1,000 open should restart as
fast as one that only ever placed the 1,000 (issue 14). So a snapshot holds
the *working set* -- open and in-flight orders, positions, balances,
strategies, and the recent history -- and moves the rest to the ``archive``
table of the journal's environment, in the same transaction as the snapshot:

- an order whose status is settled (``closed``, ``canceled``, ``expired``,
  ``rejected``) and that no record has touched for ``archive_after_records``
  records;
- a trade applied more than ``archive_after_records`` records ago.

The rule is a function of the state at the snapshot's sequence number only, so
a replay that saves at the same point archives exactly the same keys and
writes byte-identical chunks. Nothing is lost from view: ``state.get``,
``state["orders"][client_id]`` and ``client_id in state["orders"]`` read
through to the archive, so reducers and reconciliation find an archived order
or trade by key (a fill replayed for an archived order is still applied only
once); iterating a section gives the working set.

On disk (the ``archive`` table), every archived value is a *version*::

    b"v" section NUL len(key):2 key seq:8  ->  xxh3_64(entry key || body):8 body
    b"s" seq:8 section NUL len(key):2 key  ->  b""        (what the save at seq wrote)

``seq`` is the snapshot that archived it and ``body`` the CBOR value (CBOR
``null``: a *tombstone*, the key left the archive). A state loaded from the
snapshot at ``S`` sees, for each key, its newest version at or before ``S``
(:class:`Archive`), so falling back to an older snapshot, or rebuilding the
state at an older point, never sees what later snapshots archived. A key that
a record changes again comes back into the working set (it is *shadowed*: its
archived version no longer counts); the next snapshot archives it again or
writes a tombstone. Versions that no kept snapshot can see any more are
deleted with the snapshots (:func:`drop_superseded`).

Each snapshot's manifest carries ``"archive"``: how many keys each section has
in the archive (``counts``), the signed sum of archived trade amounts per
symbol (``trade_sums``, so the position invariant still holds), and the
versions its writes superseded (``superseded``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import xxhash

from ..errors import CorruptionError, DecodeError
from ..log import Tables
from ..log.codec import decode, encode

if TYPE_CHECKING:
    from ..log import Journal

__all__ = [
    "ARCHIVED_SECTIONS",
    "Archive",
    "ArchiveInfo",
    "drop_superseded",
    "entry_prefix",
    "signed_amount",
    "write_archive",
]

#: The sections whose old entries move to the archive.
ARCHIVED_SECTIONS = ("orders", "trades")

_ENTRY = b"v"
_BY_SEQ = b"s"
_SEQ = struct.Struct(">Q")
_TOMBSTONE_BODY = b"\xf6"  # CBOR null
#: LMDB's longest key; a state key too long for an archive entry stays in the working set.
_MAX_KEY = 511


class _Tombstone:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<tombstone>"


#: What a version holds when its key left the archive.
TOMBSTONE: Any = _Tombstone()


def entry_prefix(section: str, key: str) -> bytes | None:
    """The part of an archive entry's key before its seq; None if the key is too long to archive."""
    kb = key.encode("utf-8", "surrogatepass")
    prefix = _ENTRY + section.encode() + b"\0" + len(kb).to_bytes(2, "big") + kb
    return prefix if len(prefix) + 8 <= _MAX_KEY else None


def _index_key(seq: int, prefix: bytes) -> bytes:
    return _BY_SEQ + _SEQ.pack(seq) + prefix[1:]


def _parse_prefix(rest: bytes) -> tuple[str, str]:
    """(section, key) of an entry prefix without its first byte."""
    nul = rest.index(b"\0")
    n = int.from_bytes(rest[nul + 1 : nul + 3], "big")
    return rest[:nul].decode(), rest[nul + 3 : nul + 3 + n].decode("utf-8", "surrogatepass")


def _value(entry_key: bytes, raw: bytes) -> Any:
    if len(raw) < 9 or xxhash.xxh3_64_intdigest(entry_key + raw[8:]) != _SEQ.unpack_from(raw)[0]:
        section, key = _parse_prefix(entry_key[1:-8])
        seq = _SEQ.unpack(entry_key[-8:])[0]
        raise CorruptionError(
            f"archive entry {section}[{key!r}] written by the snapshot at seq {seq}: checksum mismatch "
            "(the stored bytes were altered); restore a backup",
            seq,
        )
    body = raw[8:]
    if body == _TOMBSTONE_BODY:
        return TOMBSTONE
    try:
        return decode(body, check=False)
    except DecodeError as exc:
        seq = _SEQ.unpack(entry_key[-8:])[0]
        raise CorruptionError(f"archive entry at seq {seq} does not decode: {exc}", seq) from exc


def _newest(tables: Tables, prefix: bytes, bound: int) -> tuple[bytes, Any] | None:
    """(entry key, value or TOMBSTONE) of the newest version of ``prefix`` at or before ``bound``."""
    found = tables.floor("archive", prefix + _SEQ.pack(bound))
    if found is None:
        return None
    key, raw = found
    if len(key) != len(prefix) + 8 or not key.startswith(prefix):
        return None
    return key, _value(key, raw)


def signed_amount(trade: Any) -> tuple[str, Decimal] | None:
    """``(symbol, +amount for a buy / -amount for a sell)`` of a trade value, as the position invariant counts it."""
    if not isinstance(trade, dict) or not isinstance(trade.get("amount"), Decimal):
        return None
    amount: Decimal = trade["amount"]
    return str(trade.get("symbol", "")), amount if trade.get("side") == "buy" else -amount


@dataclass(frozen=True)
class ArchiveInfo:
    """What the archive holds as of one snapshot (``manifest["archive"]``)."""

    #: Keys per section in the archive (not counting tombstones).
    counts: dict[str, int] = field(default_factory=dict)
    #: Signed sum of the archived trades' amounts, per symbol.
    trade_sums: dict[str, Decimal] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any] | None) -> ArchiveInfo:
        raw = (manifest or {}).get("archive") or {}
        return cls(dict(raw.get("counts") or {}), dict(raw.get("trade_sums") or {}))

    def as_manifest(self, superseded: list[bytes]) -> dict[str, Any]:
        return {
            "counts": {k: v for k, v in sorted(self.counts.items()) if v},
            "trade_sums": dict(sorted(self.trade_sums.items())),
            "superseded": superseded,
        }


class Archive:
    """The archive as the state loaded from the snapshot at ``bound`` sees it. Thread-safe.

    Each key's newest version at or before ``bound`` (a tombstone reads as
    absent). Reads open a short read transaction of the journal each (about
    10 us for one order).
    """

    __slots__ = ("journal", "bound", "info")

    def __init__(self, journal: Journal, bound: int, info: ArchiveInfo) -> None:
        #: The journal whose ``archive`` table is read.
        self.journal = journal
        #: The snapshot seq this view is as of: versions written later are invisible.
        self.bound = bound
        #: Counts and trade sums as of ``bound``.
        self.info = info

    def get(self, section: str, key: str) -> Any:
        """The archived value of ``section[key]``, or None."""
        prefix = entry_prefix(section, key)
        if prefix is None:
            return None
        with self.journal.read_tables() as tables:
            found = _newest(tables, prefix, self.bound)
        if found is None or found[1] is TOMBSTONE:
            return None
        return found[1]

    def items(self, section: str) -> Iterator[tuple[str, Any]]:
        """Every archived ``(key, value)`` of ``section``, in key order (one read transaction)."""
        start = _ENTRY + section.encode() + b"\0"
        stop = _ENTRY + section.encode() + b"\1"
        with self.journal.read_tables() as tables:
            current: bytes | None = None
            newest: tuple[bytes, bytes] | None = None
            for key, raw in tables.range("archive", start, stop):
                prefix, seq = key[:-8], _SEQ.unpack(key[-8:])[0]
                if prefix != current:
                    if newest is not None:
                        yield from self._live(*newest)
                    current, newest = prefix, None
                if seq <= self.bound:
                    newest = (key, raw)
            if newest is not None:
                yield from self._live(*newest)

    @staticmethod
    def _live(key: bytes, raw: bytes) -> Iterator[tuple[str, Any]]:
        value = _value(key, raw)
        if value is not TOMBSTONE:
            yield _parse_prefix(key[1:-8])[1], value

    def changed(self, after: int, upto: int) -> list[tuple[str, str]]:
        """``(section, key)`` of every version written by the snapshots in ``(after, upto]``."""
        out = []
        with self.journal.read_tables() as tables:
            for key, _ in tables.range("archive", _BY_SEQ + _SEQ.pack(after + 1), _BY_SEQ + _SEQ.pack(upto + 1)):
                out.append(_parse_prefix(key[9:]))
        return out

    def at(self, bound: int, info: ArchiveInfo) -> Archive:
        """The same archive as of another snapshot."""
        return Archive(self.journal, bound, info)

    def __repr__(self) -> str:
        return f"<Archive of {self.journal.path} at snapshot {self.bound} {self.info.counts}>"


def write_archive(
    tables: Tables,
    *,
    seq: int,
    bound: int,
    info: ArchiveInfo,
    moves: Mapping[str, Mapping[str, Any]],
    shadowed: Mapping[str, Mapping[str, None]],
) -> tuple[ArchiveInfo, list[bytes]]:
    """Write what the snapshot at ``seq`` archives; return the new info and the versions superseded.

    ``moves``: per section, the keys leaving the working set, with their
    values. ``shadowed``: keys changed again since the archive at ``bound``
    held them; each gets a tombstone unless it is archived again here. Runs
    inside the snapshot's write transaction (it may run twice after a map
    resize: it only reads and writes through ``tables``).
    """
    counts = dict(info.counts)
    sums = dict(info.trade_sums)
    superseded: list[bytes] = []

    def forget(section: str, old: Any) -> None:
        counts[section] = counts.get(section, 0) - 1
        signed = signed_amount(old) if section == "trades" else None
        if signed is not None:
            sums[signed[0]] = sums.get(signed[0], Decimal(0)) - signed[1]

    def put(prefix: bytes, body: bytes) -> None:
        entry = prefix + _SEQ.pack(seq)
        tables.put("archive", entry, _SEQ.pack(xxhash.xxh3_64_intdigest(entry + body)) + body)
        tables.put("archive", _index_key(seq, prefix), b"")

    for section in sorted(set(moves) | set(shadowed)):
        items = moves.get(section, {})
        for key in sorted(set(items) | set(shadowed.get(section, {}))):
            prefix = entry_prefix(section, key)
            if prefix is None:
                continue
            old = _newest(tables, prefix, bound)
            if old is not None:
                superseded.append(old[0])
                if old[1] is not TOMBSTONE:
                    forget(section, old[1])
            if key in items:
                value = items[key]
                counts[section] = counts.get(section, 0) + 1
                signed = signed_amount(value) if section == "trades" else None
                if signed is not None:
                    sums[signed[0]] = sums.get(signed[0], Decimal(0)) + signed[1]
                put(prefix, encode(value, check=False))
            elif old is not None and old[1] is not TOMBSTONE:
                put(prefix, _TOMBSTONE_BODY)
    return ArchiveInfo(counts, sums), superseded


def drop_superseded(tables: Tables, entries: list[bytes]) -> int:
    """Delete archive versions no kept snapshot can see (with their index entries); returns how many."""
    dropped = 0
    for entry in entries:
        if type(entry) is not bytes or len(entry) < 10 or not entry.startswith(_ENTRY):
            continue
        if tables.delete("archive", entry):
            dropped += 1
        tables.delete("archive", _index_key(_SEQ.unpack(entry[-8:])[0], entry[:-8]))
    return dropped
