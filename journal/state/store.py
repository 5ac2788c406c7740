"""The state kept beside a journal: loaded from a snapshot, updated as records commit.

:class:`StateStore` attaches to an open :class:`~journal.Journal`:

1. **Load** -- the newest snapshot whose checksums hold (an older one, with a
   longer replay and a WARNING, if the newest is damaged), migrated to the
   current schema, then the records after it replayed through the reducers.
   With no snapshot at all, a full replay from the first record -- if the log
   still starts at seq 1; otherwise a clear error, never a silently empty
   state. Invariants are checked (:mod:`journal.validate`) and violations
   logged.
2. **Follow** -- from then on every record the journal numbers is applied to
   the in-memory state at once, in log order, so reading ``store.state`` never
   touches disk and shows an intent as an order in flight.
3. **Save** -- :meth:`save` writes an incremental snapshot (only the keys
   changed since the last one), after every record it covers is durable. In
   the same transaction, settled orders and trades older than
   ``archive_after_records`` records move from memory to the archive
   (:mod:`journal.state.archive`), so what a restart loads is the working set,
   not every order ever placed; they are still found by key
   (:meth:`order`, ``state.get``, ``state["orders"][client_id]``).
4. **Compact** -- :meth:`compact` deletes records already covered by the
   second-newest snapshot (so one fallback snapshot can still be replayed),
   never a pending intent and never records younger than the retention window.

Thread rules: the store applies records inside the journal's numbering lock;
:meth:`view` gives another thread a consistent copy. ``save`` and ``compact``
may run on a background thread (see :mod:`journal.autosave`).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from itertools import chain
from typing import Any

from ..errors import ReadOnlyError
from ..log import Journal, LogPoint, Tables, crashpoints, settings_from
from ..log.record import Record
from . import snapshot as snap
from .archive import ARCHIVED_SECTIONS, Archive, ArchiveInfo, entry_prefix, write_archive
from .migrate import SCHEMA_VERSION, Migrations
from .orders import SETTLED_STATUSES
from .rebuild import Rebuilder
from .reducers import Reducers
from .snapshot import Progress
from .state import State, check_value
from .validate import Violation, validate

__all__ = ["DEFAULT_STORE_SETTINGS", "StateStore", "StoreSettings"]

log = logging.getLogger("journal.store")

Dirty = dict[str, dict[str, bool]]
Shadowed = dict[str, dict[str, None]]


@dataclasses.dataclass
class _Grab:
    """What a save takes of the state at one point of the log (see StateStore.save)."""

    seq: int
    chain: int
    #: Per section, what the snapshot needs: everything (BASE), the changed keys (DELTA), nothing (SAME).
    sections: dict[str, dict[str, Any]]
    sizes: dict[str, int]
    modes: dict[str, str]
    #: The keys changed since the last snapshot, with those archived now as deleted.
    dirty: Dirty
    #: The keys changed, as taken (put back if the save fails).
    taken: Dirty
    shadowed: Shadowed
    moves: dict[str, dict[str, Any]]
    candidates: dict[str, dict[str, None]] | None


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """Settings of a :class:`StateStore` (checked when built)."""

    #: Snapshots kept (at least 2: one to load, one to fall back on).
    keep_snapshots: int = 3
    #: Besides those, the first snapshot of every stretch of this many records is kept, so that
    #: the state at an old point (state_at, ``journal state --at``) starts from a snapshot near
    #: it; compaction drops the ones it passes (None: keep only the newest).
    snapshot_every_records: int | None = 20_000
    #: Keys per base chunk of a section.
    chunk_items: int = snap.CHUNK_ITEMS
    #: Records younger than this are never compacted (forensics), seconds.
    retention_s: float = 24 * 3600.0
    #: Records deleted per compaction transaction.
    compact_batch: int = 10_000
    #: A settled order, or a trade, that no record has touched for this many records moves to
    #: the archive at the next snapshot (None: keep everything in memory).
    archive_after_records: int | None = 1000

    def __post_init__(self) -> None:
        if int(self.keep_snapshots) < 2:
            raise ValueError("keep_snapshots must be >= 2 (one to load, one to fall back on)")
        if int(self.chunk_items) < 1 or int(self.compact_batch) < 1 or float(self.retention_s) < 0:
            raise ValueError("chunk_items and compact_batch must be >= 1, retention_s >= 0")
        if self.snapshot_every_records is not None and int(self.snapshot_every_records) < 1:
            raise ValueError("snapshot_every_records must be >= 1 record, or None (keep only the newest snapshots)")
        if self.archive_after_records is not None and int(self.archive_after_records) < 0:
            raise ValueError("archive_after_records must be >= 0 records, or None (never archive)")


DEFAULT_STORE_SETTINGS: Mapping[str, Any] = {f.name: f.default for f in dataclasses.fields(StoreSettings)}


class StateStore:
    """The current state of a journal, in memory, with snapshots and compaction."""

    def __init__(
        self,
        journal: Journal,
        *,
        reducers: Reducers | None = None,
        migrations: Migrations | None = None,
        settings: StoreSettings | Mapping[str, Any] | None = None,
        progress: Progress | None = None,
        **kw: Any,
    ) -> None:
        """``progress(done, total)`` is called as the load replays records (for tools that show it)."""
        #: The checked settings.
        self.settings = settings_from(StoreSettings, settings, **kw)
        self.journal = journal
        self.reducers = reducers or Reducers.default()
        self.migrations = migrations or Migrations.default()
        #: One save at a time.
        self._save_lock = threading.Lock()
        #: The manifest of the last snapshot written or loaded (incremental saves build on it).
        self._last_manifest: dict[str, Any] | None = None
        #: The seq the last snapshot covers.
        self._last_save_seq = 0
        #: When the last snapshot was written (wall clock, ns).
        self.last_save_ns: int | None = None
        #: Records numbered while the load replays (applied right after it), or None.
        self._loading: list[Record] | None = None
        #: The snapshot the state was loaded from (None: a full replay).
        self.loaded_from: int | None = None
        #: The pending operations at the point the state was loaded (read-only journals).
        self._loaded_pending: tuple[int, ...] = ()
        #: What the archive holds as of the last snapshot written or loaded.
        self._archive_info = ArchiveInfo()
        #: Per archived section, keys that may leave the working set at a later snapshot
        #: (settled orders and trades not old enough yet); None until the first save after
        #: the load, which looks at the whole working set once.
        self._candidates: dict[str, dict[str, None]] | None = None
        #: The live state.
        self.state = State()
        #: Builds states from snapshots and records (the load, state_at).
        self._rebuild = Rebuilder(
            journal, reducers=self.reducers, migrations=self.migrations, history=self._init_schema(), progress=progress
        )
        self._load()
        self._rebuild.progress = None  # only the load reports progress

    # -- load ----------------------------------------------------------------

    @property
    def reducer_errors(self) -> int:
        """Reducer exceptions so far (each logged; the record changed nothing)."""
        return self._rebuild.errors

    def _load(self) -> None:
        j = self.journal
        t0 = time.perf_counter()

        def attach(point: LogPoint) -> LogPoint:
            if not j.readonly:
                self._loading = []
                j.add_observer(self._observe)
            return point

        point = j.capture(attach, durable=True)
        upto = point.seq
        self._loaded_pending = point.pending
        state, manifest = self._rebuild.restore(upto)
        self.loaded_from = self._rebuild.loaded_from
        self.state = state
        # a migrated snapshot's chunks hold the old shapes (an older manifest, the old layout): the next save is full
        current = (
            manifest is not None and manifest["schema"] == SCHEMA_VERSION and manifest["v"] == snap.MANIFEST_VERSION
        )
        self._last_manifest = manifest if current else None
        self._last_save_seq = manifest["seq"] if manifest else 0
        self._archive_info = state.archive.info if state.archive is not None else ArchiveInfo()

        def catch_up(point: LogPoint) -> None:  # records numbered while we replayed: apply them now, in order
            buffered, self._loading = self._loading or [], None
            for rec in buffered:
                if rec.seq > self.state.seq:
                    self._apply(rec)

        j.capture(catch_up)
        self.state.check_values = self.reducers.custom
        violations = self.validate(consistent_copy=not self.journal.readonly)
        for v in violations:
            log.warning("state invariant violated after load of %s: %s", j.path, v)
        log.info(
            "loaded state of %s at seq %d from %s in %.1f ms",
            j.path,
            self.state.seq,
            f"snapshot {self.loaded_from}" if self.loaded_from is not None else "a full replay",
            (time.perf_counter() - t0) * 1000,
        )

    def _init_schema(self) -> list[list[int]]:
        j = self.journal
        with j.read_tables() as tables:
            history = tables.get_meta("schema_history")
        if history is None:
            history = [[1, SCHEMA_VERSION]]
            if not j.readonly:
                j.write_tables(lambda t: t.put_meta("schema_history", history))
        elif history[-1][1] < SCHEMA_VERSION and not j.readonly:
            old = history[-1][1]
            self.migrations.check(old, f"journal {j.path}")
            j.record("schema_upgrade", {"from": old, "to": SCHEMA_VERSION})
            history = [*history, [j.last_seq + 1, SCHEMA_VERSION]]
            j.write_tables(lambda t: t.put_meta("schema_history", history))
            log.warning("journal %s upgraded from state schema %d to %d", j.path, old, SCHEMA_VERSION)
        elif history[-1][1] > SCHEMA_VERSION:
            self.migrations.check(history[-1][1], f"journal {j.path}")
        return list(history)

    # -- follow --------------------------------------------------------------

    def _observe(self, rec: Record) -> None:
        if self._loading is not None:
            self._loading.append(rec)
            return
        self._apply(rec)

    def _apply(self, rec: Record) -> None:
        self._rebuild.apply(self.state, rec)

    # -- reading -------------------------------------------------------------

    def view(self) -> State:
        """A consistent copy of the state, safe to read from any thread."""
        return self.journal.capture(lambda point: self.state.copy())

    def order(self, client_id: str) -> dict[str, Any] | None:
        """The order ``client_id`` names, from the working set or the archive (None: unknown)."""
        order = self.state.get("orders", client_id)
        return order if isinstance(order, dict) else None

    def archived(self, section: str, key: str) -> Any:
        """``section[key]`` as the archive holds it (None when it is not archived)."""
        return self.state.archived(section, key)

    def validate(self, *, consistent_copy: bool = True) -> list[Violation]:
        """Check the state's invariants (see :mod:`journal.validate`).

        ``consistent_copy=False`` checks the live state without copying it: only
        when no other thread writes (as during load).
        """
        if self.journal.readonly:
            # The state and the pending set compared must come from the same point of the
            # log: the state was loaded at one read transaction's view, and so was this set
            # (reading the pending index again could see a newer point and report a false alarm).
            return validate(self.state, self._loaded_pending)
        if not consistent_copy:
            return validate(self.state, self.journal.pending_ids())
        state, pending = self.journal.capture(lambda point: (self.state.copy(), point.pending))
        return validate(state, pending)

    @property
    def records_since_save(self) -> int:
        return max(0, self.state.seq - self._last_save_seq)

    # -- snapshots -----------------------------------------------------------

    def save(self, *, full: bool = False) -> snap.SnapshotInfo | None:
        """Write a snapshot of the current state; None when nothing changed.

        Costs what changed since the last snapshot (``full=True`` rewrites
        every section). Safe to call from any thread while the bot writes.
        """
        j = self.journal
        if j.readonly:
            raise ReadOnlyError(f"{j.path}: journal opened read-only; snapshots need the writer")
        with self._save_lock:
            t0 = time.perf_counter()

            def grab(point: LogPoint) -> _Grab:
                # Numbering is paused here: take only what the snapshot needs (a large
                # section with a few changed keys costs those keys, not a copy of it).
                st = self.state
                dirty = st.take_dirty()
                taken = {k: dict(v) for k, v in dirty.items()}
                shadowed = st.take_shadowed()
                live = st.raw_sections()
                moves, candidates = self._select(live, dirty, point.seq)
                for name, items in moves.items():
                    changed = dirty.setdefault(name, {})
                    for key in items:
                        changed[key] = False
                sizes = {name: len(items) - len(moves.get(name, ())) for name, items in live.items()}
                modes = snap.plan(self._last_manifest, sizes, dirty, full=full)
                sections: dict[str, dict[str, Any]] = {}
                for name, items in live.items():
                    gone = moves.get(name, {})
                    if modes[name] == snap.SAME:
                        sections[name] = {}
                    elif modes[name] == snap.DELTA:
                        sections[name] = {k: items[k] for k in dirty[name] if k in items and k not in gone}
                    else:
                        sections[name] = dict(items)
                        for key in gone:
                            del sections[name][key]
                return _Grab(point.seq, point.chain, sections, sizes, modes, dirty, taken, shadowed, moves, candidates)

            g = j.capture(grab)
            seq, dirty, shadowed, moves = g.seq, g.dirty, g.shadowed, g.moves
            if (seq <= self._last_save_seq and not full and self._last_manifest is not None and not g.taken
                    and not shadowed and not moves):  # fmt: skip
                return None
            try:
                manifest, chunks = snap.build(
                    self._last_manifest,
                    g.sections,
                    dirty,
                    seq=seq,
                    chain=g.chain,
                    schema=SCHEMA_VERSION,
                    created_ns=time.time_ns(),
                    full=full,
                    chunk_items=int(self.settings.chunk_items),
                    modes=g.modes,
                    sizes=g.sizes,
                )
                keep, every = int(self.settings.keep_snapshots), self.settings.snapshot_every_records
                bound, before = self._last_save_seq, self._archive_info

                def write(tables: Tables) -> tuple[int, int, ArchiveInfo]:
                    info, superseded = write_archive(
                        tables, seq=seq, bound=bound, info=before, moves=moves, shadowed=shadowed
                    )
                    manifest["archive"] = info.as_manifest(superseded)
                    written = snap.write(tables, manifest, chunks)
                    crashpoints.reached("snapshot_chunks")
                    snap.delete_old(tables, keep, every=every, before=j.base_seq)
                    return (*written, info)

                new_chunks, new_bytes, info = j.write_tables(write)
            except BaseException:
                self.state.restore_dirty(g.taken)
                self.state.restore_shadowed(shadowed)
                raise
            crashpoints.reached("snapshot_durable")
            archive = Archive(j, seq, info)

            def settle(point: LogPoint) -> None:
                st = self.state
                for name, items in moves.items():
                    for key, value in items.items():
                        if not st.forget(name, key, value):
                            st.shadow(name, key)  # changed since the grab: its archived version is stale
                st.archive = archive

            j.capture(settle)
            self._candidates = g.candidates
            self._archive_info = info
            self._last_manifest = manifest
            self._last_save_seq = seq
            self.last_save_ns = time.time_ns()
            result = snap.info(manifest, new_chunks=new_chunks, new_bytes=new_bytes)
            log.info(
                "snapshot of %s at seq %d: %d new chunks, %d bytes, %d archived, %.1f ms",
                j.path,
                seq,
                new_chunks,
                new_bytes,
                sum(map(len, moves.values())),
                (time.perf_counter() - t0) * 1000,
            )
            return result

    def _select(
        self, sections: Mapping[str, Mapping[str, Any]], dirty: Dirty, seq: int
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, None]] | None]:
        """What the snapshot at ``seq`` archives, and the candidates left for later snapshots.

        The rule depends on the state at ``seq`` only (so a replay archives the
        same keys): a settled order whose ``last_seq``, or a trade whose
        ``seq``, is at least ``archive_after_records`` records old. Only keys
        that changed since the last snapshot or were candidates then are
        looked at (the whole working set once after a load).
        """
        after = self.settings.archive_after_records
        if after is None:
            return {}, None
        limit = seq - int(after)
        moves: dict[str, dict[str, Any]] = {}
        candidates: dict[str, dict[str, None]] = {}
        for name in ARCHIVED_SECTIONS:
            items = sections.get(name, {})
            if self._candidates is None:
                keys: Mapping[str, Any] = items
            else:
                keys = dict.fromkeys(chain(self._candidates.get(name, ()), dirty.get(name, ())))
            field = "last_seq" if name == "orders" else "seq"
            moved: dict[str, Any] = {}
            later: dict[str, None] = {}
            for key in keys:
                value = items.get(key)
                if not isinstance(value, dict) or (name == "orders" and value.get("status") not in SETTLED_STATUSES):
                    continue
                at = value.get(field)
                if type(at) is not int:
                    continue
                if at <= limit and entry_prefix(name, key) is not None:
                    moved[key] = value
                else:
                    later[key] = None
            if moved:
                moves[name] = moved
            candidates[name] = later
        return moves, candidates

    def snapshots(self) -> list[snap.SnapshotInfo]:
        """Every stored snapshot, oldest first, with ``ok``/``problem`` after checking it whole."""
        with self.journal.read_tables() as tables:
            return snap.check_all(tables)

    def snapshot_state(self, seq: int) -> State:
        """The state stored in snapshot ``seq`` (migrated), without replay."""
        return self._rebuilder().snapshot_state(seq)[0]

    def state_at(self, seq: int, *, progress: Progress | None = None) -> State:
        """The state right after record ``seq``: the nearest snapshot at or before it plus replay."""
        if seq > self.journal.last_seq:
            raise ValueError(f"seq {seq} is after the last record ({self.journal.last_seq})")
        return self._rebuilder(progress).restore(seq)[0]

    def _rebuilder(self, progress: Progress | None = None) -> Rebuilder:
        """A rebuilder of its own (the store's counts the live reducers' errors)."""
        return Rebuilder(
            self.journal,
            reducers=self.reducers,
            migrations=self.migrations,
            history=self._rebuild.history,
            progress=progress,
        )

    # -- writing -------------------------------------------------------------

    def set(self, section: str, key: str, value: Any, *, reason: str = "", source: str = "bot") -> int:
        """Journal a direct change ``section[key] = value`` (None deletes); returns its seq.

        The value is checked before anything is written: a value that cannot be
        stored raises :class:`~journal.CodecError` naming the section and key,
        and leaves the state and the journal unchanged.
        """
        if not isinstance(section, str) or not section or not isinstance(key, str) or not key:
            raise ValueError("section and key must be non-empty str")
        check_value(section, key, value)
        data = {"section": section, "key": key, "value": value, "reason": reason}
        return self.journal.record("state_set", data, source=source)

    # -- compaction ----------------------------------------------------------

    def compact(self, *, retention_s: float | None = None) -> int:
        """Delete records no longer needed; returns how many were deleted.

        Kept: everything after the second-newest snapshot (so the newest can
        fail and the previous still be replayed), every pending operation's
        intent and what follows it, and every record younger than
        ``retention_s`` (default: the ``retention_s`` setting), for forensics.
        Older snapshots that the records left no longer reach are deleted.
        """
        j = self.journal
        retention = float(self.settings.retention_s if retention_s is None else retention_s)
        with j.read_tables() as tables:
            seqs = snap.list_snapshots(tables)
        if len(seqs) < 2:
            return 0
        boundary = seqs[-2]
        pending = j.pending_ids()
        if pending:
            boundary = min(boundary, pending[0] - 1)
        cutoff_ns = time.time_ns() - int(retention * 1e9)
        base = j.base_seq
        boundary = min(boundary, self._first_at_or_after(cutoff_ns, base + 1, boundary) - 1)
        if boundary <= base:
            return 0
        deleted = j.compact_log(boundary, batch=int(self.settings.compact_batch))
        keep, every, first = int(self.settings.keep_snapshots), self.settings.snapshot_every_records, j.base_seq
        j.write_tables(lambda t: snap.delete_old(t, keep, every=every, before=first))  # those it passed
        return deleted

    def _first_at_or_after(self, ts_ns: int, lo: int, hi: int) -> int:
        """The first seq in [lo, hi] written at or after ``ts_ns`` (hi + 1 if none).

        Record times only go backwards where the wall clock stepped back (the
        writer notes each step: :meth:`journal.Journal.clock_steps`), so each
        stretch between steps is searched by bisection: compaction never scans
        the log, and a step never makes it delete a younger record.
        """
        j = self.journal
        cuts = [s for s, _ in j.clock_steps() if lo < s <= hi]
        bounds = [lo, *cuts, hi + 1]
        for a, b in zip(bounds, bounds[1:], strict=False):
            first = bisect.bisect_left(range(a, b), ts_ns, key=lambda seq: j.get(seq).ts_ns) + a
            if first < b:
                return first
        return hi + 1

    def status(self) -> Mapping[str, Any]:
        return {
            "seq": self.state.seq,
            "records_since_save": self.records_since_save,
            "last_save_ns": self.last_save_ns,
            "last_save_seq": self._last_save_seq,
            "loaded_from_snapshot": self.loaded_from,
            "reducer_errors": self.reducer_errors,
            "archived": dict(self._archive_info.counts),
        }
