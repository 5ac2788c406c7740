"""What the tools need of the state layer, each at the cost of what it shows.

The ``journal`` command lists snapshots, shows the state at a point, diffs two
points and checks a journal; on a journal of millions of records none of this
may cost a load of the current state, or a replay of the whole history:

- :func:`snapshots` lists every snapshot with its checks -- the manifest's
  checksum and every chunk's digest -- reading the chunks but decoding none;
- :func:`state_at` rebuilds the state right after a sequence number from the
  nearest usable snapshot at or before it, plus the records after it (its cost
  depends on that distance, not on the history's length);
- :func:`snapshot_state` is a snapshot as stored, without replay;
- :func:`check_state` loads the current state (snapshot plus replay) and
  checks its invariants.

Each takes ``progress(done, total)``, called as the work advances (chunks
checked, records replayed), so a tool can show a progress line; none of them
prints. The journal may be read-only (a running bot holds the writer).
"""

from __future__ import annotations

from ..log import Journal
from .migrate import Migrations
from .rebuild import Rebuilder
from .reducers import Reducers
from .snapshot import Progress, SnapshotInfo, check_all
from .state import State
from .store import StateStore
from .validate import Violation

__all__ = ["check_state", "snapshot_state", "snapshots", "state_at"]


def snapshots(journal: Journal, *, decode: bool = False, progress: Progress | None = None) -> list[SnapshotInfo]:
    """Every stored snapshot, oldest first, checked (``ok``, ``problem``), without loading any state.

    The manifest checksum and every chunk's xxh3-128 digest are checked; chunks
    are not decoded unless ``decode=True``. ``progress`` counts chunks.
    """
    with journal.read_tables() as tables:
        return check_all(tables, decode_chunks=decode, progress=progress)


def state_at(
    journal: Journal,
    seq: int,
    *,
    reducers: Reducers | None = None,
    migrations: Migrations | None = None,
    progress: Progress | None = None,
) -> State:
    """The state right after record ``seq``: the nearest usable snapshot at or before it, plus replay.

    Raises ``ValueError`` for a ``seq`` after the last record, and
    :class:`~journal.errors.CorruptionError` when no snapshot at or before
    ``seq`` is usable and the records before it were compacted. ``progress``
    counts records replayed. The state reads archived keys through to the
    archive as that snapshot saw it.
    """
    if seq < 0:
        raise ValueError(f"sequence number {seq} is negative")
    if seq > journal.last_seq:
        raise ValueError(f"seq {seq} is after the last record ({journal.last_seq})")
    rebuild = Rebuilder(
        journal,
        reducers=reducers or Reducers.default(),
        migrations=migrations or Migrations.default(),
        progress=progress,
    )
    return rebuild.restore(seq)[0]


def snapshot_state(journal: Journal, seq: int, *, migrations: Migrations | None = None) -> State:
    """The state exactly as snapshot ``seq`` stored it (migrated to the current schema), without replay."""
    rebuild = Rebuilder(journal, reducers=Reducers.default(), migrations=migrations or Migrations.default())
    return rebuild.snapshot_state(seq)[0]


def check_state(
    journal: Journal, *, reducers: Reducers | None = None, progress: Progress | None = None
) -> tuple[State, list[Violation]]:
    """Load the current state (newest usable snapshot plus replay) and check its invariants."""
    store = StateStore(journal, reducers=reducers, progress=progress)
    return store.state, store.validate(consistent_copy=False)
