"""How one log record is framed, checksummed and chained.

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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import xxhash

from ..errors import CorruptionError, DecodeError
from .clientid import make_client_id
from .codec import decode

__all__ = [
    "ABORT",
    "COMMIT",
    "EVENT",
    "HEADER",
    "INTENT",
    "KIND_NAMES",
    "KIND_CODES",
    "Record",
    "body",
    "check",
    "frame",
    "genesis_chain",
    "seq_key",
    "unframe",
]

INTENT = 1
COMMIT = 2
ABORT = 3
EVENT = 4
KIND_NAMES = {INTENT: "intent", COMMIT: "commit", ABORT: "abort", EVENT: "event"}
KIND_CODES = {name: code for code, name in KIND_NAMES.items()}

HEADER = struct.Struct(">QQQBB")
_SEQ = struct.Struct(">Q")
_xxh3 = xxhash.xxh3_64_intdigest


def seq_key(seq: int) -> bytes:
    """The LMDB key of sequence number ``seq``."""
    return _SEQ.pack(seq)


def genesis_chain(journal_id: str) -> int:
    """The chain seed of a journal's first record."""
    return _xxh3(b"tradejournal-genesis:" + journal_id.encode())


def frame(seq: int, prev_chain: int, ts_ns: int, kind: int, body: bytes) -> tuple[bytes, bytes, int]:
    """Return ``(key, value, chain)`` for a record with an encoded ``body``."""
    key = _SEQ.pack(seq)
    tail = _SEQ.pack(ts_ns) + bytes((kind, 0)) + body
    chain = _xxh3(key + tail, seed=prev_chain)
    rest = _SEQ.pack(chain) + tail
    checksum = _xxh3(key + rest)
    return key, _SEQ.pack(checksum) + rest, chain


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded journal record.

    ``op`` is the operation's id: the sequence number of its intent (for an
    intent, its own ``seq``). ``client_id`` is the order id sent to the
    exchange, derived from the journal id and ``op``. ``extra`` holds body keys
    this version does not know (written by a newer version), preserved.
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


def check(key: bytes | memoryview, value: bytes | memoryview, prev_chain: int | None) -> tuple[int, int]:
    """Check one stored record; return ``(seq, chain)`` or raise CorruptionError.

    ``prev_chain`` is the previous record's chain value, or ``None`` to check
    the checksum only.
    """
    key = bytes(key)
    seq = _SEQ.unpack(key)[0] if len(key) == 8 else -1
    if len(key) != 8 or len(value) < HEADER.size:
        raise CorruptionError(f"record at seq {seq}: malformed key or value ({len(value)} bytes)", seq)
    checksum, chain = struct.unpack_from(">QQ", value)
    view = memoryview(value)
    if _xxh3(key + bytes(view[8:])) != checksum:
        raise CorruptionError(f"record at seq {seq}: checksum mismatch (the stored bytes were altered)", seq)
    if prev_chain is not None and _xxh3(key + bytes(view[16:]), seed=prev_chain) != chain:
        raise CorruptionError(
            f"record at seq {seq}: hash chain broken (a record before it was deleted, reordered or altered)", seq
        )
    return seq, chain


def unframe(key: bytes | memoryview, value: bytes | memoryview, journal_id: str) -> Record:
    """Decode a stored record (checksum verified; chain not checked here)."""
    seq, chain = check(key, value, None)
    _, _, ts_ns, kind_code, _ = HEADER.unpack_from(value)
    kind = KIND_NAMES.get(kind_code)
    if kind is None:
        raise CorruptionError(
            f"record at seq {seq}: unknown record kind {kind_code} (written by a newer tradejournal?)", seq
        )
    try:
        body = decode(memoryview(value)[HEADER.size :])
    except DecodeError as exc:
        raise CorruptionError(f"record at seq {seq}: body does not decode: {exc}", seq) from exc
    if not isinstance(body, dict) or not isinstance(body.get("t"), str):
        raise CorruptionError(f"record at seq {seq}: body is not a record map", seq)
    op = seq if kind_code == INTENT else body.get("op")
    if op is not None and not isinstance(op, int):
        raise CorruptionError(f"record at seq {seq}: op id is not an integer", seq)
    extra = {k: v for k, v in body.items() if k not in _KNOWN_KEYS}
    return Record(
        seq=seq,
        kind=kind,
        type=body["t"],
        ts_ns=ts_ns,
        data=body.get("d"),
        op=op,
        client_id=make_client_id(journal_id, op) if op is not None else None,
        source=body.get("src", "bot"),
        chain=chain,
        extra=extra,
    )


_KNOWN_KEYS = frozenset({"t", "d", "op", "src"})


def body(type_: str, data: Any, op: int | None = None, source: str = "bot") -> dict[str, Any]:
    """The body map of a record, before encoding."""
    out: dict[str, Any] = {"t": type_, "d": data}
    if op is not None:
        out["op"] = op
    if source != "bot":
        out["src"] = source
    return out
