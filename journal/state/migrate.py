"""State schema versions and the migrations that upgrade old snapshots and records.

The *state schema* is the shape of the data in the state and in record bodies
(which fields an order has, what a ``place_order`` intent carries). It is
versioned separately from the on-disk format (:data:`journal.FORMAT_VERSION`):

- every snapshot stores the schema version it was written with;
- the journal's ``meta`` keeps ``schema_history``, a list of
  ``[first_seq, version]``: records from ``first_seq`` on were written with
  ``version``. A writer of a newer version appends an entry (and a
  ``schema_upgrade`` event) when it opens an older journal.

On load, a snapshot of version ``v`` goes through the snapshot migrations
``v -> v+1 -> ... -> SCHEMA_VERSION``, and each replayed record through the
record migrations from the version it was written with. A snapshot or record of
a version newer than this code is refused (:class:`SchemaVersionError`).

Version history:

1. The first public shape: orders carried ``qty``, ``executed`` and
   ``exchange_id``; ``place_order`` intents carried ``qty``; positions carried
   ``qty``.
2. Orders and intents use ccxt's names: ``amount``, ``filled``, ``id``;
   positions ``amount``.
3. (current) The working set: snapshots move settled orders and old trades
   to the archive (:mod:`journal.state.archive`); ``orders`` and ``trades``
   hold the rest, and lookups by key read through. Values keep their shapes,
   so the migration from 2 changes nothing; the version tells an older
   tradejournal that its ``orders`` would miss the archived ones (it refuses
   the journal instead of showing a partial state).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import JournalError
from ..log.record import Record

__all__ = ["SCHEMA_VERSION", "Migrations", "SchemaVersionError"]

SCHEMA_VERSION = 3

SectionsMigration = Callable[[dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]
RecordMigration = Callable[[Record], Record]


class SchemaVersionError(JournalError):
    """A snapshot or record was written by a newer state schema than this code knows."""


class Migrations:
    """Registered upgrades from each schema version to the next."""

    def __init__(self, current: int = SCHEMA_VERSION) -> None:
        self.current = current
        self._sections: dict[int, SectionsMigration] = {}
        self._records: dict[int, RecordMigration] = {}

    @classmethod
    def default(cls) -> Migrations:
        m = cls()
        m._sections[1] = _sections_1_to_2
        m._records[1] = _record_1_to_2
        m._sections[2] = _unchanged
        m._records[2] = _unchanged
        return m

    def snapshot(self, from_version: int) -> Callable[[SectionsMigration], SectionsMigration]:
        """Decorator: ``fn(sections) -> sections`` upgrades a snapshot from ``from_version``."""

        def deco(fn: SectionsMigration) -> SectionsMigration:
            self._sections[from_version] = fn
            return fn

        return deco

    def record(self, from_version: int) -> Callable[[RecordMigration], RecordMigration]:
        """Decorator: ``fn(record) -> record`` upgrades a record from ``from_version``."""

        def deco(fn: RecordMigration) -> RecordMigration:
            self._records[from_version] = fn
            return fn

        return deco

    def check(self, version: int, what: str) -> None:
        """Raise :class:`SchemaVersionError` unless data of ``version`` can be migrated to the current one."""
        if version > self.current:
            raise SchemaVersionError(
                f"{what} was written by state schema version {version}; this code reads up to version "
                f"{self.current}: upgrade tradejournal (or the bot's schema) before opening it"
            )
        for v in range(version, self.current):
            if v not in self._sections and v not in self._records:
                raise SchemaVersionError(f"{what} has schema version {version} and no migration from {v} to {v + 1}")

    def upgrade_sections(self, sections: dict[str, dict[str, Any]], version: int, what: str) -> dict:
        self.check(version, what)
        for v in range(version, self.current):
            fn = self._sections.get(v)
            if fn is not None:
                sections = fn(sections)
        return sections

    def upgrade_record(self, record: Record, version: int) -> Record:
        if version == self.current:
            return record
        self.check(version, f"record at seq {record.seq}")
        for v in range(version, self.current):
            fn = self._records.get(v)
            if fn is not None:
                record = fn(record)
        return record


def _unchanged(value: Any) -> Any:
    return value


_RENAMES_1 = {"qty": "amount", "executed": "filled", "exchange_id": "id"}


def _renamed(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {_RENAMES_1.get(k, k): v for k, v in value.items()}


def _sections_1_to_2(sections: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = dict(sections)
    for name in ("orders", "positions"):
        if name in out:
            out[name] = {k: _renamed(v) for k, v in out[name].items()}
    return out


def _record_1_to_2(record: Record) -> Record:
    if record.type in ("place_order", "edit_order", "order_update") and isinstance(record.data, dict):
        return replace(record, data=_renamed(record.data))
    return record
