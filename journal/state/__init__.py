"""The state layer: the bot's state, its reducers, snapshots, migrations and autosave.

It sits on the log layer (:mod:`journal.log`) and uses it only through public names.
"""

from __future__ import annotations

from .autosave import AutoSaver, AutoSaveSettings
from .diff import diff_states
from .migrate import SCHEMA_VERSION, Migrations, SchemaVersionError
from .reducers import Reducers
from .state import State
from .store import StateStore, StoreSettings
from .validate import Violation

__all__ = [
    "SCHEMA_VERSION",
    "AutoSaveSettings",
    "AutoSaver",
    "Migrations",
    "Reducers",
    "SchemaVersionError",
    "State",
    "StateStore",
    "StoreSettings",
    "Violation",
    "diff_states",
]
