"""Named crash-injection points.

Each point sits right after a durable step. A point does nothing unless it is
armed, either by a test calling :func:`arm` or by the environment variable
``TRADEJOURNAL_CRASH_AT`` (a comma-separated list of ``name`` or
``name:N``, meaning "at the N-th time this point is reached", 1-based).
When an armed point is reached the process kills itself with ``SIGKILL``: no
``finally`` blocks, no atexit handlers, no buffered writes -- exactly what a
power cut of the process looks like. Crash tests run the bot in a subprocess,
arm one point, and check what survives.

Points in the journal:

- ``intent_durable``: an intent's transaction is synced, the caller not yet told.
- ``outcome_durable``: a commit or abort marker is synced.
- ``event_durable``: a single committed event is synced.
- ``batch_partial``: inside a batch write, after half the intents are put
  (the transaction is not committed, so none of the batch survives).
- ``batch_durable``: a batch's transaction is synced.
- ``compaction_batch``: one batch of compacted records is deleted (and the
  chain base moved) durably.
- ``snapshot_chunks``: a snapshot's chunks are written, its manifest not yet.
- ``snapshot_durable``: a snapshot (manifest and chunks) is durable.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["ENV_VAR", "KNOWN_POINTS", "arm", "disarm", "reached"]

ENV_VAR = "TRADEJOURNAL_CRASH_AT"

KNOWN_POINTS: set[str] = {
    "intent_durable",
    "outcome_durable",
    "event_durable",
    "batch_partial",
    "batch_durable",
    "compaction_batch",
    "snapshot_chunks",
    "snapshot_durable",
}

_lock = threading.Lock()
_armed: dict[str, int] = {}
_counts: dict[str, int] = {}
_loaded_env = False


def register(name: str) -> str:
    """Declare a crash point defined by another module; returns ``name``."""
    KNOWN_POINTS.add(name)
    return name


def _load_env() -> None:
    global _loaded_env
    _loaded_env = True
    spec = os.environ.get(ENV_VAR, "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, nth = item.partition(":")
        _armed[name] = int(nth) if nth else 1


def arm(name: str, nth: int = 1) -> None:
    """Arm ``name`` to kill the process the ``nth`` time it is reached."""
    if nth < 1:
        raise ValueError(f"nth must be >= 1, got {nth}")
    with _lock:
        _armed[name] = nth
        _counts[name] = 0


def disarm(name: str | None = None) -> None:
    """Disarm one point, or all of them."""
    with _lock:
        if name is None:
            _armed.clear()
            _counts.clear()
        else:
            _armed.pop(name, None)
            _counts.pop(name, None)


def reached(name: str) -> None:
    """Mark that ``name`` was reached; kill the process if it is armed for now."""
    if not _loaded_env:
        with _lock:
            if not _loaded_env:
                _load_env()
    if not _armed:
        return
    with _lock:
        nth = _armed.get(name)
        if nth is None:
            return
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] < nth:
            return
    os.kill(os.getpid(), signal.SIGKILL)
