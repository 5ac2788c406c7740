"""Rebuilding a state at a sequence number: the nearest usable snapshot at or before it, plus replay.

Used by :class:`~journal.state.store.StateStore` to load, and by the tools
(:mod:`journal.state.inspect`) to show the state at any point without loading
the current one first. The cost is one snapshot load plus the records after
it, never the whole history (unless no snapshot at or before the point is
left, when the replay starts at the first record).

A damaged snapshot is skipped for the one before it, loudly; records are
migrated from the schema version they were written with
(``meta["schema_history"]``) and applied by the reducers. A reducer that
raises changes nothing and is counted (:attr:`Rebuilder.errors`): replay
repeats exactly what live did.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import CorruptionError, DecodeError
from ..log import Journal
from ..log.record import Record
from . import snapshot as snap
from .archive import Archive, ArchiveInfo
from .migrate import SCHEMA_VERSION, Migrations
from .reducers import Reducers
from .snapshot import Progress, gc_paused
from .state import State

__all__ = ["REPLAY_PROGRESS_EVERY", "Rebuilder"]

log = logging.getLogger("journal.store")

#: Replay calls ``progress(done, total)`` every this many records.
REPLAY_PROGRESS_EVERY = 4096


class Rebuilder:
    """Builds states of one journal from its snapshots and records. Not thread-safe."""

    def __init__(
        self,
        journal: Journal,
        *,
        reducers: Reducers,
        migrations: Migrations,
        history: list[list[int]] | None = None,
        progress: Progress | None = None,
    ) -> None:
        #: The journal read.
        self.journal = journal
        #: The reducers applied (``reducers.custom``: values are checked as live checked them).
        self.reducers = reducers
        #: Upgrades for snapshots and records of older schema versions.
        self.migrations = migrations
        #: ``[first seq, schema version]`` pairs (``meta["schema_history"]``); read from the journal if None.
        self.history = history if history is not None else self.read_history(journal)
        #: Called with ``(records replayed, records to replay)`` as a replay advances.
        self.progress = progress
        #: Reducer exceptions met (each logged; the record changed nothing).
        self.errors = 0
        #: The snapshot the last :meth:`restore` started from (None: the first record).
        self.loaded_from: int | None = None

    @staticmethod
    def read_history(journal: Journal) -> list[list[int]]:
        with journal.read_tables() as tables:
            history = tables.get_meta("schema_history")
        return history if history is not None else [[1, SCHEMA_VERSION]]

    def schema_of(self, seq: int) -> int:
        """The state schema version record ``seq`` was written with."""
        version = self.history[0][1] if self.history else SCHEMA_VERSION
        for first, v in self.history:
            if seq >= first:
                version = v
        return version

    def apply(self, state: State, rec: Record) -> None:
        """Apply one record (migrated to the current schema first)."""
        version = self.schema_of(rec.seq)
        if version != SCHEMA_VERSION:
            rec = self.migrations.upgrade_record(rec, version)
        try:
            self.reducers.apply(state, rec)
        except Exception:  # a reducer bug must not take the bot down; replay repeats it identically
            self.errors += 1
            state.seq = rec.seq
            log.exception("reducer for %s %s failed at seq %d; state not changed by it", rec.kind, rec.type, rec.seq)

    def replay(self, state: State, start: int, stop: int) -> None:
        """Apply the records ``start..stop`` to ``state``."""
        if start > stop:
            return
        total, done = stop - start + 1, 0
        progress = self.progress
        with gc_paused():
            for rec in self.journal.records(start, stop):
                self.apply(state, rec)
                done += 1
                if progress is not None and done % REPLAY_PROGRESS_EVERY == 0:
                    progress(done, total)
        if progress is not None:
            progress(total, total)

    def archive_at(self, manifest: Mapping[str, Any]) -> Archive | None:
        """The archive as the snapshot ``manifest`` describes it (None: the journal has no archive table)."""
        with self.journal.read_tables() as tables:
            if not tables.has("archive"):
                return None
        return Archive(self.journal, manifest["seq"], ArchiveInfo.from_manifest(manifest))

    def snapshot_state(self, seq: int) -> tuple[State, dict[str, Any]]:
        """The state snapshot ``seq`` stored (migrated), without replay; and its manifest."""
        with self.journal.read_tables() as tables:
            manifest = snap.read_manifest(tables, seq)
            sections = snap.read_sections(tables, manifest)
        sections = self.migrations.upgrade_sections(sections, manifest["schema"], f"snapshot at seq {seq}")
        state = State(sections, seq, archive=self.archive_at(manifest), adopt=True)
        state.check_values = self.reducers.custom  # replay checks values exactly as live did
        return state, manifest

    def restore(self, upto: int) -> tuple[State, dict[str, Any] | None]:
        """The state right after record ``upto``: the newest usable snapshot at or before it, plus replay."""
        j = self.journal
        with j.read_tables() as tables:
            seqs = [s for s in snap.list_snapshots(tables) if s <= upto]
        for seq in reversed(seqs):
            try:
                state, manifest = self.snapshot_state(seq)
                first = j.base_seq + 1
                if seq + 1 < first:
                    raise CorruptionError(f"records after snapshot {seq} were compacted (log starts at {first})", seq)
                self.replay(state, seq + 1, upto)
                self.loaded_from = seq
                return state, manifest
            except (CorruptionError, DecodeError) as exc:
                log.warning("snapshot at seq %d of %s is unusable (%s); falling back to an older one", seq, j.path, exc)
        base = j.base_seq
        if base > 0:
            raise CorruptionError(
                f"{j.path}: no usable snapshot and the log starts at seq {base + 1} (older records were "
                "compacted): the state cannot be rebuilt; restore a backup (journal backup / emergency copies)",
                base + 1,
            )
        state = State()
        state.check_values = self.reducers.custom
        self.replay(state, 1, upto)
        self.loaded_from = None
        return state, None
