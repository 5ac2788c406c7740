"""Consumer cursors: how far a copy of the log elsewhere reaches, and the retention floor they set.

A process that copies the log somewhere else -- the fleet shipper
(:mod:`journal.fleet.shipper`) streaming records to a NATS JetStream hub --
keeps a *cursor* beside the journal: the last sequence number its destination
acknowledged, with that record's chain value and time. It lives in a small
JSON file, one per destination::

    <journal>/ship/<name>.cursor
    {"format": 1, "name": "TJ", "seq": 1234, "chain": "9f3c...", "ts_ns": ..., "target": "nats://hub:4222",
     "updated_ns": ..., ...}   # a consumer may add keys of its own; they are kept

It is written atomically -- a temporary file, fsync, rename over the old one,
fsync of the directory -- so after a crash of either side it holds either the
old position or the new one, never a torn mix. The position only ever names a
record the destination acknowledged, so resuming from ``seq + 1`` re-sends at
most what was in flight (the destination deduplicates those).

**The retention floor.** :meth:`journal.Journal.compact_log` reads every
cursor and never deletes a record after the lowest one: records the
destination has not acknowledged stay in the journal, however long the link is
down (the journal is the buffer; ``JournalSettings.retention_floor`` says
whether a compaction asked to go further stops at the floor or refuses). A
cursor file that cannot be read stops compaction: the floor is unknown.

To forget a destination for good (a hub retired), delete its cursor file;
compaction then no longer waits for it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import JournalError
from .storage import write_durable_file

__all__ = [
    "CURSOR_FORMAT",
    "CURSOR_SUFFIX",
    "SHIP_DIR",
    "Cursor",
    "cursor_path",
    "read_cursor",
    "read_cursors",
    "retention_floor",
    "write_cursor",
]

#: The directory inside a journal that holds the cursor files.
SHIP_DIR = "ship"
CURSOR_SUFFIX = ".cursor"
CURSOR_FORMAT = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_FIELDS = ("format", "name", "seq", "chain", "ts_ns", "target", "updated_ns")


@dataclass(frozen=True)
class Cursor:
    """One destination's position: ``seq`` and everything before it were acknowledged there."""

    #: The destination's name (the file is ``<name>.cursor``), e.g. the JetStream stream.
    name: str
    #: The last sequence number the destination acknowledged (0: nothing yet).
    seq: int
    #: The chain value of record ``seq`` (the chain base's when nothing was shipped yet).
    chain: int
    #: The time of record ``seq``, ns (0 when unknown).
    ts_ns: int = 0
    #: Where the records go, for people (a URL).
    target: str = ""
    #: When the cursor was written, ns.
    updated_ns: int = 0
    #: Keys the consumer keeps of its own.
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "format": CURSOR_FORMAT,
            "name": self.name,
            "seq": self.seq,
            "chain": f"{self.chain:016x}",
            "ts_ns": self.ts_ns,
            "target": self.target,
            "updated_ns": self.updated_ns,
        }


def cursor_path(journal_path: str | os.PathLike[str], name: str) -> str:
    """The file of cursor ``name`` in the journal at ``journal_path``."""
    if not _NAME_RE.match(name):
        raise ValueError(f"cursor name must be 1-100 characters of [A-Za-z0-9_.-], got {name!r}")
    return os.path.join(os.fspath(journal_path), SHIP_DIR, name + CURSOR_SUFFIX)


def write_cursor(journal_path: str | os.PathLike[str], cursor: Cursor) -> str:
    """Write ``cursor`` atomically (tmp + fsync + rename + directory fsync); returns its path."""
    path = cursor_path(journal_path, cursor.name)
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    write_durable_file(path, json.dumps(cursor.as_json(), sort_keys=True).encode() + b"\n")
    return path


def _parse(path: str, raw: bytes) -> Cursor:
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("format") != CURSOR_FORMAT:
            raise ValueError(f"format {obj.get('format') if isinstance(obj, dict) else None!r}, expected 1")
        seq = obj["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"seq {seq!r} is not a non-negative integer")
        return Cursor(
            name=str(obj["name"]),
            seq=seq,
            chain=int(str(obj["chain"]), 16),
            ts_ns=int(obj.get("ts_ns") or 0),
            target=str(obj.get("target") or ""),
            updated_ns=int(obj.get("updated_ns") or 0),
            extra={k: v for k, v in obj.items() if k not in _FIELDS},
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise JournalError(
            f"{path}: unreadable shipping cursor ({exc}); compaction cannot know what was shipped: "
            "fix or delete the file (deleting it forgets that destination)"
        ) from None


def read_cursor(journal_path: str | os.PathLike[str], name: str) -> Cursor | None:
    """Cursor ``name``, or None if the journal has none by that name."""
    path = cursor_path(journal_path, name)
    try:
        with open(path, "rb") as f:
            return _parse(path, f.read())
    except FileNotFoundError:
        return None


def read_cursors(journal_path: str | os.PathLike[str]) -> list[Cursor]:
    """Every cursor of the journal, by name; JournalError naming a file that cannot be read."""
    folder = os.path.join(os.fspath(journal_path), SHIP_DIR)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    out = []
    for entry in names:
        if not entry.endswith(CURSOR_SUFFIX):
            continue  # a consumer's temporary file mid-write, or something else
        path = os.path.join(folder, entry)
        try:
            with open(path, "rb") as f:
                out.append(_parse(path, f.read()))
        except FileNotFoundError:
            continue  # deleted meanwhile: that destination was forgotten
    return out


def retention_floor(journal_path: str | os.PathLike[str]) -> Cursor | None:
    """The cursor with the lowest position (records after it must stay), or None without cursors."""
    cursors = read_cursors(journal_path)
    return min(cursors, key=lambda c: c.seq) if cursors else None
