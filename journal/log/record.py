"""How one log record is framed, checksummed and chained: the only place the byte layout lives.

A record is stored in the ``log`` database under its sequence number (8-byte
big-endian, so LMDB keeps them in order). The stored value is::

    offset  size  field
    0       8     checksum   xxh3_64(key || value[8:])  -- the exact stored bytes
    8       8     chain      xxh3_64(key || value[16:], seed=previous chain)
    16      8     ts_ns      integer nanoseconds since the Unix epoch (UTC)
    24      1     kind       1 intent, 2 commit, 3 abort, 4 event
    25      1     reserved   0
    26      ...   body       CBOR map: "t" type, "d" data, "op" op id (outcomes
                             and events tied to an operation), "src" source
                             (absent means "bot"); unknown keys are preserved

The checksum proves the bytes are the bytes written; the chain proves no
record was deleted, reordered or spliced in: record ``n``'s chain is seeded
with record ``n-1``'s, so changing the past changes every later chain value.
The first record's seed is derived from the journal id; after compaction the
seed is the chain value of the last deleted record, kept in ``meta``.

Every other module (the writer, the readers, verification, compaction, the
tools) reads a stored record through the accessors here -- :func:`key_seq`,
:func:`kind_of`, :func:`ts_of`, :func:`chain_of`, :func:`body_of` -- which
check the length first, so a damaged record shorter than its header is a
:class:`~journal.errors.CorruptionError` naming its sequence number, never a
``struct.error`` or an ``IndexError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import xxhash

from ..errors import CorruptionError, DecodeError
from .codec import decode

__all__ = [
    "ABORT",
    "COMMIT",
    "EVENT",
    "HEADER_SIZE",
    "INTENT",
    "KIND_CODES",
    "KIND_NAMES",
    "KNOWN_BODY_KEYS",
    "RawChunk",
    "RawRecord",
    "Record",
    "body",
    "body_of",
    "chain_of",
    "check",
    "checked_header",
    "checksum_ok",
    "decode_body",
    "decode_record",
    "frame",
    "genesis_chain",
    "header",
    "key_seq",
    "kind_of",
    "seq_key",
    "ts_of",
]

INTENT = 1
COMMIT = 2
ABORT = 3
EVENT = 4
KIND_NAMES = {INTENT: "intent", COMMIT: "commit", ABORT: "abort", EVENT: "event"}
KIND_CODES = {name: code for code, name in KIND_NAMES.items()}
#: Body keys this version writes; others (a newer version's) are preserved in ``Record.extra``.
KNOWN_BODY_KEYS = frozenset({"t", "d", "op", "src"})

_HEADER = struct.Struct(">QQQBB")
HEADER_SIZE = _HEADER.size  # 26
_CHAIN_AT = 8
_TS_AT = 16
_KIND_AT = 24
_SEQ = struct.Struct(">Q")
_U64 = struct.Struct(">Q")
_QQ = struct.Struct(">QQ")
_TS_KIND = struct.Struct(">QBB")
_xxh3 = xxhash.xxh3_64_intdigest

Bytes = bytes | memoryview


class RawRecord(NamedTuple):
    """A record as stored: its key and value bytes (checksum not yet checked); ``seq`` from the key.

    A plain ``(key, value)`` pair, so a scan builds millions straight from LMDB's cursor.
    """

    key: bytes
    value: bytes

    @property
    def seq(self) -> int:
        return key_seq(self.key)


class RawChunk(list[RawRecord]):
    """The records one read transaction saw; ``txnid`` is that transaction's LMDB id."""

    txnid: int = -1


def seq_key(seq: int) -> bytes:
    """The LMDB key of sequence number ``seq``."""
    return _SEQ.pack(seq)


def key_seq(key: Bytes) -> int:
    """The sequence number a log key names; CorruptionError for a key that is not 8 bytes."""
    if len(key) != 8:
        raise CorruptionError(f"log key of {len(key)} bytes (keys are 8-byte sequence numbers): the log is damaged")
    return int.from_bytes(key, "big")


def _short(value: Bytes, seq: int, need: int) -> None:
    if len(value) < need:
        raise CorruptionError(
            f"record at seq {seq}: {len(value)} bytes, shorter than the {HEADER_SIZE}-byte record header", seq
        )


def chain_of(value: Bytes, seq: int = -1) -> int:
    """The chain value stored in a record."""
    _short(value, seq, _TS_AT)
    return int(_U64.unpack_from(value, _CHAIN_AT)[0])


def ts_of(value: Bytes, seq: int = -1) -> int:
    """The record's time, integer nanoseconds since the epoch."""
    _short(value, seq, _KIND_AT)
    return int(_U64.unpack_from(value, _TS_AT)[0])


def kind_of(value: Bytes, seq: int = -1) -> int:
    """The record's kind code (see :data:`KIND_NAMES`; not checked to be known)."""
    _short(value, seq, HEADER_SIZE)
    return value[_KIND_AT]


def body_of(value: Bytes, seq: int = -1) -> Bytes:
    """The record's CBOR body bytes (a slice of ``value``, of its type)."""
    if len(value) < HEADER_SIZE:
        _short(value, seq, HEADER_SIZE)
    return value[HEADER_SIZE:]


def header(value: Bytes, seq: int = -1) -> tuple[int, int, int, int, int]:
    """``(checksum, chain, ts_ns, kind code, reserved)`` of a stored record, in one unpack (for scans)."""
    try:
        return _HEADER.unpack_from(value)
    except struct.error:
        _short(value, seq, HEADER_SIZE)
        raise


def checksum_ok(key: bytes, value: Bytes, checksum: int) -> bool:
    """Whether ``checksum`` (from :func:`header`) matches the stored bytes."""
    return _xxh3(key + value[8:]) == checksum


def checked_header(key: bytes, value: bytes) -> tuple[int, int]:
    """``(ts_ns, kind code)`` of a stored record whose checksum holds; CorruptionError otherwise.

    One call per record for scans over millions (the dump tool); the kind is
    not checked to be known.
    """
    try:
        checksum, _chain, ts, kind, _ = _HEADER.unpack_from(value)
    except struct.error:
        raise CorruptionError(
            f"record at seq {int.from_bytes(key, 'big')}: {len(value)} bytes, shorter than the "
            f"{HEADER_SIZE}-byte record header",
            int.from_bytes(key, "big"),
        ) from None
    if _xxh3(key + value[8:]) != checksum:
        seq = int.from_bytes(key, "big")
        raise CorruptionError(f"record at seq {seq}: checksum mismatch (the stored bytes were altered)", seq)
    return ts, kind


def genesis_chain(journal_id: str) -> int:
    """The chain seed of a journal's first record."""
    return _xxh3(b"tradejournal-genesis:" + journal_id.encode())


def frame(seq: int, prev_chain: int, ts_ns: int, kind: int, body: bytes) -> tuple[bytes, bytes, int]:
    """Return ``(key, value, chain)`` for a record with an encoded ``body``."""
    key = _SEQ.pack(seq)
    tail = _TS_KIND.pack(ts_ns, kind, 0) + body
    chain = _xxh3(key + tail, seed=prev_chain)
    rest = _SEQ.pack(chain) + tail
    return key, _SEQ.pack(_xxh3(key + rest)) + rest, chain


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded journal record.

    ``op`` is the operation's id: the sequence number of its intent (for an
    intent, its own ``seq``). ``client_id`` is the order id sent to the
    exchange, derived from the journal id, the writer incarnation and ``op``.
    ``extra`` holds body keys this version does not know (written by a newer
    version), preserved.
    """

    seq: int
    kind: str
    type: str
    ts_ns: int
    data: Any
    op: int | None = None
    client_id: str | None = None
    source: str = "bot"
    chain: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A plain dict of the record's fields (for JSON output and logging)."""
        out: dict[str, Any] = {
            "seq": self.seq,
            "ts_ns": self.ts_ns,
            "kind": self.kind,
            "type": self.type,
            "op": self.op,
            "client_id": self.client_id,
            "source": self.source,
            "data": self.data,
        }
        if self.extra:
            out["extra"] = self.extra
        return out


def check(key: Bytes, value: Bytes, prev_chain: int | None) -> tuple[int, int]:
    """Check one stored record; return ``(seq, chain)`` or raise CorruptionError.

    ``prev_chain`` is the previous record's chain value, or ``None`` to check
    the checksum only. The kind is checked to be one this version knows.
    """
    # One call per record of every verification (millions): the happy path makes one
    # copy of the record's bytes and no other allocation; anything wrong takes _damage.
    if type(key) is not bytes:
        key = bytes(key)
    if type(value) is not bytes:
        value = bytes(value)
    if len(key) != 8 or len(value) < HEADER_SIZE:
        raise _damage(key, value, prev_chain)
    checksum, chain = _QQ.unpack_from(value)
    if _xxh3(key + value[8:]) != checksum:
        raise _damage(key, value, prev_chain)
    if prev_chain is not None and _xxh3(key + value[16:], seed=prev_chain) != chain:
        raise _damage(key, value, prev_chain)
    if value[_KIND_AT] not in KIND_NAMES:
        raise _damage(key, value, prev_chain)
    return int.from_bytes(key, "big"), chain


def _damage(key: bytes, value: bytes, prev_chain: int | None) -> CorruptionError:
    """The error :func:`check` raises for a record that fails it (its first failing check)."""
    seq = key_seq(key)  # raises for a key that is not 8 bytes
    try:
        _short(value, seq, HEADER_SIZE)
    except CorruptionError as exc:
        return exc
    checksum, chain = _QQ.unpack_from(value)
    if _xxh3(key + value[8:]) != checksum:
        return CorruptionError(f"record at seq {seq}: checksum mismatch (the stored bytes were altered)", seq)
    if prev_chain is not None and _xxh3(key + value[16:], seed=prev_chain) != chain:
        return CorruptionError(
            f"record at seq {seq}: hash chain broken (a record before it was deleted, reordered or altered)", seq
        )
    return CorruptionError(
        f"record at seq {seq}: unknown record kind {value[_KIND_AT]} (written by a newer tradejournal?)", seq
    )


def decode_body(value: Bytes, seq: int, decoder: Callable[[memoryview], object] | None = None) -> dict[str, Any]:
    """The body map of a stored record (checksum assumed checked); CorruptionError if it is not one."""
    try:
        body = (decoder or decode)(memoryview(body_of(value, seq)))
    except DecodeError as exc:
        raise CorruptionError(f"record at seq {seq}: body does not decode: {exc}", seq) from exc
    if not isinstance(body, dict) or not isinstance(body.get("t"), str):
        raise CorruptionError(f"record at seq {seq}: body is not a record map", seq)
    op = body.get("op")
    if op is not None and (not isinstance(op, int) or isinstance(op, bool)):
        raise CorruptionError(f"record at seq {seq}: op id is not an integer", seq)
    return body


def _decode_checked(data: memoryview) -> object:
    return decode(data, check=False)


def decode_record(key: Bytes, value: Bytes, client_id_of: Callable[[int], str]) -> Record:
    """Decode a stored record (checksum verified; chain not checked here).

    ``client_id_of(op)`` gives the client id of an operation (the journal's
    :meth:`~journal.Journal.client_id`).
    """
    seq, chain = check(key, value, None)
    kind_code = value[_KIND_AT]
    # The checksum held: these are the bytes encode() wrote after its validating walk, so the
    # decode skips its own final walk (as snapshot chunks do after their digest); the decoder
    # still refuses every tag, length and depth the journal never writes.
    body = decode_body(value, seq, _decode_checked)
    op = seq if kind_code == INTENT else body.get("op")
    extra = {k: v for k, v in body.items() if k not in KNOWN_BODY_KEYS}
    return Record(
        seq=seq,
        kind=KIND_NAMES[kind_code],
        type=body["t"],
        ts_ns=ts_of(value, seq),
        data=body.get("d"),
        op=op,
        client_id=client_id_of(op) if op is not None else None,
        source=body.get("src", "bot"),
        chain=chain,
        extra=extra,
    )


def body(type_: str, data: Any, op: int | None = None, source: str = "bot") -> dict[str, Any]:
    """The body map of a record, before encoding."""
    out: dict[str, Any] = {"t": type_, "d": data}
    if op is not None:
        out["op"] = op
    if source != "bot":
        out["src"] = source
    return out
