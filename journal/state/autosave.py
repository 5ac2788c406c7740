"""The autosave service: periodic snapshots, graceful shutdown, emergency backups.

:class:`AutoSaver` runs one daemon thread beside a :class:`~journal.store.StateStore`:

- a snapshot every ``interval_s`` (30 s by default) when anything changed, and
  as soon as the records since the last snapshot pass ``tail_records``;
- compaction after a snapshot, every ``compact_every`` snapshots;
- on a failure (a failed save, a failed validation, any unexpected exception
  in the saver) it logs, counts, writes an **emergency backup** -- LMDB's
  consistent compact copy of the environment plus a readable JSON dump of the
  state (the working set, and the archived orders and trades apart) and the reason -- into ``backups_dir`` (keeping the newest
  ``keep_backups``), and retries with exponential backoff. Nothing it does ever
  raises into the bot: :meth:`status` reports what happened.

:meth:`AutoSaver.close` stops the thread and writes a final snapshot.
:func:`install_signal_handlers` makes SIGTERM/SIGINT do a graceful shutdown,
then lets the process end the way it would have without them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import FrameType
from typing import Any

from ..log import settings_from
from ..log.storage import fsync_dir, makedirs_durable, write_durable_file
from .archive import ARCHIVED_SECTIONS
from .store import StateStore

__all__ = ["DEFAULT_AUTOSAVE_SETTINGS", "AutoSaveSettings", "AutoSaver", "emergency_backup", "install_signal_handlers"]

log = logging.getLogger("journal.autosave")


@dataclasses.dataclass(frozen=True)
class AutoSaveSettings:
    """Settings of an :class:`AutoSaver` (checked when built)."""

    #: A snapshot at least this often when anything changed, seconds.
    interval_s: float = 30.0
    #: ... and as soon as this many records arrived since the last one.
    tail_records: int = 10_000
    #: Check the state's invariants after each save (a violation counts as a failure).
    validate: bool = True
    #: Compact after every this many snapshots (0: never).
    compact_every: int = 10
    #: Where emergency backups go (None: ``<journal>.backups`` beside the journal directory).
    backups_dir: str | None = None
    #: Emergency backups kept.
    keep_backups: int = 5
    #: The longest wait between retries after failures, seconds.
    max_backoff_s: float = 300.0

    def __post_init__(self) -> None:
        if float(self.interval_s) <= 0 or int(self.tail_records) < 1:
            raise ValueError("interval_s must be > 0 and tail_records >= 1")
        if int(self.compact_every) < 0 or int(self.keep_backups) < 0 or float(self.max_backoff_s) <= 0:
            raise ValueError("compact_every and keep_backups must be >= 0, max_backoff_s > 0")


DEFAULT_AUTOSAVE_SETTINGS: Mapping[str, Any] = {f.name: f.default for f in dataclasses.fields(AutoSaveSettings)}


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def emergency_backup(store: StateStore, backups_dir: str, reason: str, keep: int = 5) -> str:
    """Write a consistent compact copy of the journal and a JSON dump of the state.

    Returns the backup directory (``<backups_dir>/<UTC time>-<seq>``), private
    to the owner. Keeps the newest ``keep`` backups.
    """
    makedirs_durable(backups_dir)
    os.chmod(backups_dir, 0o700)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    view = store.view()
    dest = os.path.join(backups_dir, f"{stamp}-seq{view.seq}")
    n = 0
    while os.path.exists(dest):
        n += 1
        dest = os.path.join(backups_dir, f"{stamp}-seq{view.seq}-{n}")
    makedirs_durable(dest)
    # every file, then its directory, then the directory's parent: a power cut keeps a backup whole or not at all
    store.journal.backup(os.path.join(dest, "journal"), compact=True)
    archived = {name: dict(view.archived_items(name)) for name in ARCHIVED_SECTIONS}
    state = json.dumps({"seq": view.seq, "state": view.as_dict(), "archived": {k: v for k, v in archived.items() if v}},
                       default=_json_default, indent=1, sort_keys=True)  # fmt: skip
    write_durable_file(os.path.join(dest, "state.json"), state.encode())
    write_durable_file(
        os.path.join(dest, "REASON.txt"), f"{reason}\njournal: {store.journal.path}\nseq: {view.seq}\n".encode()
    )
    fsync_dir(dest)
    backups = sorted(d for d in os.listdir(backups_dir) if os.path.isdir(os.path.join(backups_dir, d)))
    for old in backups[:-keep] if keep > 0 else backups:
        shutil.rmtree(os.path.join(backups_dir, old), ignore_errors=True)
    fsync_dir(backups_dir)
    log.error("emergency backup of %s written to %s: %s", store.journal.path, dest, reason)
    return dest


class AutoSaver:
    """Background snapshots for a :class:`StateStore`; never raises into the bot."""

    def __init__(
        self, store: StateStore, settings: AutoSaveSettings | Mapping[str, Any] | None = None, **kw: Any
    ) -> None:
        cfg = settings_from(AutoSaveSettings, settings, **kw)
        self.settings = cfg
        self.store = store
        self.backups_dir = cfg.backups_dir or store.journal.path.rstrip("/") + ".backups"
        self.saves = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.last_backup: str | None = None
        self.backups = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"autosave:{store.journal.path}", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Ask for a check now (the bot calls it after a burst of records)."""
        self._wake.set()

    def save_now(self) -> bool:
        """A snapshot now, from the caller's thread (before a critical operation).

        Returns False (after logging and an emergency backup) when it failed;
        never raises.
        """
        return self._attempt("explicit save")

    def _attempt(self, why: str) -> bool:
        try:
            if self.store.save() is not None:
                self.saves += 1
            if self.settings.validate:
                violations = self.store.validate()
                if violations:
                    raise RuntimeError(f"state validation failed: {violations[0]} (+{len(violations) - 1} more)")
            if self.settings.compact_every and self.saves and self.saves % int(self.settings.compact_every) == 0:
                self.store.compact()
            self.consecutive_failures = 0
            return True
        except Exception as exc:
            self.failures += 1
            self.consecutive_failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception(
                "autosave (%s) of %s failed (%d in a row)", why, self.store.journal.path, self.consecutive_failures
            )
            self._backup(f"{why} failed: {self.last_error}")
            return False

    def _backup(self, reason: str) -> None:
        try:
            self.last_backup = emergency_backup(self.store, self.backups_dir, reason, int(self.settings.keep_backups))
            self.backups += 1
        except Exception:
            log.exception("emergency backup of %s failed too", self.store.journal.path)

    def _due(self, last_save: float) -> bool:
        store = self.store
        if store.records_since_save >= int(self.settings.tail_records):
            return True
        return store.records_since_save > 0 and time.monotonic() - last_save >= float(self.settings.interval_s)

    def _run(self) -> None:
        last = time.monotonic()
        interval = float(self.settings.interval_s)
        while not self._stop.is_set():
            backoff = min(float(self.settings.max_backoff_s), interval * (2 ** min(self.consecutive_failures, 10)))
            wait = backoff if self.consecutive_failures else min(interval, 1.0)
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._due(last) or self.consecutive_failures:
                    if self._attempt("periodic save"):
                        last = time.monotonic()
            except BaseException:  # the thread must survive anything
                log.exception("autosave thread of %s hit an unexpected error", self.store.journal.path)

    def status(self) -> dict[str, Any]:
        return {
            "saves": self.saves,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_backup": self.last_backup,
            "backups": self.backups,
            **self.store.status(),
        }

    def close(self, *, final_save: bool = True) -> bool:
        """Stop the thread; write a final snapshot. Idempotent; never raises."""
        if self._closed:
            return True
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        return self._attempt("final save") if final_save else True


def install_signal_handlers(
    shutdown: Callable[[], Any], signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """On each of ``signals``: run ``shutdown()`` once, then behave as without us.

    The previous handler runs afterwards (for SIGINT that raises
    KeyboardInterrupt; for the default SIGTERM action the signal is re-sent with
    the default disposition, so the process ends with the usual status).
    Call from the main thread.
    """
    previous: dict[int, Any] = {}
    done = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if not done.is_set():
            done.set()
            try:
                shutdown()
            except Exception:
                log.exception("graceful shutdown on signal %d failed", signum)
        prev = previous.get(signum)
        if callable(prev):
            prev(signum, frame)
        elif prev == signal.SIG_IGN:
            return
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for sig in signals:
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)
