"""One shipped record as a NATS JetStream message, and the fleet's names on the hub.

A record travels as exactly the bytes the journal stored, so a consumer checks
its checksum and chain with :func:`journal.log.record.check` as the journal
itself does::

    subject   <prefix>.<journal id>.records          (prefix "tj" by default)
    headers   Nats-Msg-Id     <journal id>.<incarnation, or "v1">.<seq>
              Tj-Journal      the journal id
              Tj-Incarnation  the writer incarnation that wrote seq ("" for a format-1 record)
              Tj-Seq          the sequence number (the record's LMDB key), decimal
              Tj-Prev-Chain   the chain value the record follows, 16 hex digits
              Tj-Base         "1" when the record was the first one left in the journal as it was
                              shipped (after a compaction, or seq 1): a history may begin here
    body      the stored value: checksum, chain, ts_ns, kind, CBOR body (journal.log.record)

``Nats-Msg-Id`` is JetStream's deduplication id: a record re-sent within the
stream's duplicate window is acknowledged as a duplicate and not stored again.
It names the incarnation as well as the seq because a restored backup of a
journal writes *other* records at the same seqs, and those must not be taken
for duplicates. ``Tj-Prev-Chain`` lets the archive place every record: it
follows exactly the record whose chain value it names, so a fork (two copies of
one journal, diverging at some seq) is seen at the record where it happens.

Each shipper also keeps a status entry (JSON) in a key-value bucket on the hub
(``tj-status``), under ``<journal id>.<host>.<path hash>``: where the bot runs,
how far its journal is, how far the hub has acknowledged, the lag. The fleet
view reads it; only the shipper knows how much has not been shipped yet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_STATUS_BUCKET",
    "DEFAULT_STREAM",
    "Shipped",
    "headers_of",
    "msg_id",
    "parse_message",
    "records_subject",
    "status_key",
    "stream_subjects",
]

DEFAULT_STREAM = "TJ"
DEFAULT_PREFIX = "tj"
DEFAULT_STATUS_BUCKET = "tj-status"

H_MSG_ID = "Nats-Msg-Id"
H_JOURNAL = "Tj-Journal"
H_INCARNATION = "Tj-Incarnation"
H_SEQ = "Tj-Seq"
H_PREV_CHAIN = "Tj-Prev-Chain"
H_BASE = "Tj-Base"

_JID_RE = re.compile(r"^[A-Za-z0-9]{8}$")
_INC_RE = re.compile(r"^([A-Za-z0-9]{6})?$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY_RE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Shipped:
    """One record as it travels: who wrote it, where it sits in its history, and its stored bytes."""

    journal_id: str
    #: The writer incarnation that wrote ``seq`` ("" for a format-1 record).
    incarnation: str
    seq: int
    #: The chain value of the record before (or of the chain base).
    prev_chain: int
    #: The stored value, byte for byte.
    value: bytes
    #: The first record left in the journal when it was shipped: a history may start here.
    base: bool = False


def records_subject(prefix: str, journal_id: str) -> str:
    """The subject a journal's records are published on."""
    return f"{prefix}.{journal_id}.records"


def stream_subjects(prefix: str) -> list[str]:
    """The subjects the records stream covers: every journal's."""
    if not _TOKEN_RE.match(prefix):
        raise ValueError(f"subject prefix must be one token of [A-Za-z0-9_-], got {prefix!r}")
    return [f"{prefix}.*.records"]


def msg_id(journal_id: str, incarnation: str, seq: int) -> str:
    """The deduplication id of record ``seq`` written by ``incarnation`` of ``journal_id``."""
    return f"{journal_id}.{incarnation or 'v1'}.{seq}"


def headers_of(rec: Shipped) -> dict[str, str]:
    """The message headers of a shipped record."""
    out = {
        H_MSG_ID: msg_id(rec.journal_id, rec.incarnation, rec.seq),
        H_JOURNAL: rec.journal_id,
        H_INCARNATION: rec.incarnation,
        H_SEQ: str(rec.seq),
        H_PREV_CHAIN: f"{rec.prev_chain:016x}",
    }
    if rec.base:
        out[H_BASE] = "1"
    return out


def parse_message(headers: Mapping[str, str] | None, data: bytes) -> Shipped:
    """The record a message carries; ValueError saying what is malformed."""
    if not headers:
        raise ValueError("message without headers (not a shipped journal record)")
    jid = headers.get(H_JOURNAL, "")
    inc = headers.get(H_INCARNATION, "")
    if not _JID_RE.match(jid):
        raise ValueError(f"{H_JOURNAL} {jid!r} is not a journal id")
    if not _INC_RE.match(inc):
        raise ValueError(f"{H_INCARNATION} {inc!r} is not an incarnation")
    try:
        seq = int(headers.get(H_SEQ, ""))
        prev = int(headers.get(H_PREV_CHAIN, ""), 16)
    except ValueError:
        raise ValueError(f"{H_SEQ} or {H_PREV_CHAIN} malformed: {dict(headers)}") from None
    if seq < 1 or not 0 <= prev < 1 << 64:
        raise ValueError(f"{H_SEQ} {seq} or {H_PREV_CHAIN} out of range")
    if headers.get(H_MSG_ID) != msg_id(jid, inc, seq):
        raise ValueError(f"{H_MSG_ID} {headers.get(H_MSG_ID)!r} does not name {jid} {inc or 'v1'} {seq}")
    return Shipped(jid, inc, seq, prev, bytes(data), headers.get(H_BASE) == "1")


def status_key(journal_id: str, host: str, path_hash: str) -> str:
    """The key of a shipper's status entry: the journal, and where it is (host, path)."""
    return f"{journal_id}.{_KEY_RE.sub('-', host)[:64] or 'host'}.{path_hash}"
