"""The state layer: the bot's state, its reducers, snapshots, migrations and autosave.

It sits on the log layer (:mod:`journal.log`) and uses it only through public names.
"""

from __future__ import annotations

from .archive import Archive
from .autosave import AutoSaver, AutoSaveSettings
from .diff import diff_states
from .inspect import check_state, snapshot_state, snapshots, state_at
from .migrate import SCHEMA_VERSION, Migrations, SchemaVersionError
from .reducers import Reducers
from .snapshot import SnapshotInfo
from .state import SectionView, State
from .store import StateStore, StoreSettings
from .validate import Violation

__all__ = [
    "SCHEMA_VERSION",
    "Archive",
    "AutoSaveSettings",
    "AutoSaver",
    "Migrations",
    "Reducers",
    "SchemaVersionError",
    "SectionView",
    "SnapshotInfo",
    "State",
    "StateStore",
    "StoreSettings",
    "Violation",
    "check_state",
    "diff_states",
    "snapshot_state",
    "snapshots",
    "state_at",
]
