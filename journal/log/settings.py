"""Typed settings, checked when the object is built.

Every configurable object of the library takes its settings as a frozen
dataclass (``JournalSettings``, ``StoreSettings``, ...) or, for convenience, as
keyword arguments or a mapping converted by :func:`settings_from`, which
refuses an unknown key at once -- naming it and the known ones -- instead of
letting a typo surface later as a ``TypeError`` from deep inside.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_SETTINGS",
    "RETENTION_FLOOR_MODES",
    "VERIFY_MODES",
    "Durability",
    "JournalSettings",
    "settings_from",
]

S = TypeVar("S")


def settings_from(
    cls: type[S], value: S | Mapping[str, Any] | None = None, /, *, owner: str | None = None, **overrides: Any
) -> S:
    """A ``cls`` instance from an instance, a mapping, or keyword arguments.

    Raises ``ValueError`` naming every unknown key and the known ones (``owner``
    names the object being built in that message; default: the class name
    without ``Settings``), and the dataclass's own ``__post_init__`` checks run
    at once.
    """
    if isinstance(value, cls):
        return dataclasses.replace(value, **overrides) if overrides else value  # type: ignore[type-var]
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"{cls.__name__}: expected a {cls.__name__} or a mapping, got {type(value).__name__}")
    given = {**(value or {}), **overrides}
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(given) - set(known))
    if unknown:
        who = owner or cls.__name__.removesuffix("Settings")
        raise ValueError(f"unknown {who} setting(s) {unknown}; known: {sorted(known)}")
    return cls(**given)


class Durability(enum.StrEnum):
    """How much a crash may lose. Pick with ``Journal(path, durability=...)``.

    ``FULL``
        Every record (intent, commit, abort, event) is synced to disk before
        the call returns. A process crash or a power loss loses nothing that a
        call acknowledged. Costs a synced transaction per record (shared by
        concurrent threads through group commit).

    ``INTENT`` (the default)
        Intents and events are synced before the call returns, so an order is
        never sent without a durable intent. Commit and abort markers ride on
        the next synced transaction: the next intent's, or a flush after at most
        ``flush_interval_ms``. A process crash or power loss may lose the
        markers of that last window; those operations come back *pending* and
        startup reconciliation resolves them from the exchange, which is
        correct, just slower. One synced transaction per operation.
        ``Journal.flush()`` or ``commit(..., wait=True)`` makes a marker durable
        at once.

    ``PROCESS``
        Nothing is synced on the write path (LMDB ``sync=False``); the file is
        synced every ``flush_interval_ms`` in the background. A process crash
        (``kill -9``) loses nothing acknowledged, since the page cache
        survives. A power loss or kernel crash may lose recent records *and may
        corrupt the environment*: use it for paper trading and backtests only.
    """

    FULL = "full"
    INTENT = "intent"
    PROCESS = "process"


VERIFY_MODES = ("tail", "full", "none")
#: What compaction does past the retention floor (see :mod:`journal.log.cursors`).
RETENTION_FLOOR_MODES = ("clamp", "refuse")


@dataclasses.dataclass(frozen=True)
class JournalSettings:
    """Settings of a :class:`~journal.Journal` (each checked when built)."""

    #: What a crash may lose (see :class:`Durability`).
    durability: Durability | str = Durability.INTENT
    #: Open for reading beside a running writer (no lock, no writes).
    readonly: bool = False
    #: Initial LMDB map size in bytes; the writer doubles it when full.
    map_size: int = 4 << 20
    #: The map never grows past this (raise it, or compact, when reached).
    max_map_size: int = 1 << 40
    #: INTENT: how long a commit marker may wait for a transaction to ride on;
    #: PROCESS: how often the file is synced.
    flush_interval_ms: float = 5.0
    #: On open: ``"tail"`` checks the records since the last checkpoint, ``"full"``
    #: every record, ``"none"`` nothing (tools that report damage themselves).
    verify_on_open: str = "tail"
    #: A checkpoint (seq, chain) is stored every this many records.
    checkpoint_interval: int = 16384
    #: Compaction asked to delete records a shipping destination has not acknowledged
    #: (past the lowest cursor under ``<journal>/ship/``, :mod:`journal.log.cursors`):
    #: ``"clamp"`` deletes only up to that floor, ``"refuse"`` raises and deletes nothing.
    retention_floor: str = "clamp"

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "durability", Durability(self.durability))
        except ValueError:
            raise ValueError(
                f"durability must be one of {[d.value for d in Durability]}, got {self.durability!r}"
            ) from None
        if self.verify_on_open not in VERIFY_MODES:
            raise ValueError(f"verify_on_open must be one of {VERIFY_MODES}, got {self.verify_on_open!r}")
        if not (0 < float(self.flush_interval_ms) <= 60_000):
            raise ValueError(f"flush_interval_ms must be in (0, 60000], got {self.flush_interval_ms!r}")
        if int(self.map_size) < 64 * 1024 or int(self.max_map_size) < int(self.map_size):
            raise ValueError("map_size must be >= 64 KiB and max_map_size >= map_size")
        if int(self.checkpoint_interval) < 1:
            raise ValueError("checkpoint_interval must be >= 1")
        if self.retention_floor not in RETENTION_FLOOR_MODES:
            raise ValueError(f"retention_floor must be one of {RETENTION_FLOOR_MODES}, got {self.retention_floor!r}")


#: The defaults, by name (``Journal(path, **settings)`` accepts these keys).
DEFAULT_SETTINGS: Mapping[str, Any] = {f.name: f.default for f in dataclasses.fields(JournalSettings)}
