"""``journal compact --shrink``: a smaller file, by swapping in a compact copy while no one has the journal open.

Why a file does not shrink by itself: LMDB never gives pages back to the file
system. Compaction frees the pages of the records it deletes, and LMDB reuses
them for the records that follow, so the file stops growing for a while -- but
it keeps its size, and may even grow while compacting (the snapshots it
writes, and the copy-on-write pages of the deletions, need pages before the
freed ones can be reused).

The swap, and why each step is safe:

1. Take the writer lock (``writer.lock``, the same ``flock`` a bot takes):
   from here no bot can open the journal. Other processes that have it open
   for reading (``journal dump --follow``) are found through ``/proc`` and the
   shrink is refused while any does: they would go on reading the old file.
2. Make a compact copy with LMDB's own copy (:meth:`journal.Journal.backup`)
   into a directory beside the journal (the same file system, so the swap is
   a rename), and verify it: every checksum and the hash chain, the same last
   sequence number and journal id.
3. Keep the old file: hard-link it into ``PATH.before-shrink-<UTC time>/``
   (a journal directory of its own, openable with every ``journal`` command).
4. ``rename()`` the copy's ``data.mdb`` over the journal's: atomic, so at any
   instant the journal directory holds either the whole old file or the whole
   new one. The directory is synced.
5. Release the lock. The next opener finds the compact file; it is a copy of
   the same journal (same id, records, snapshots), and a writer opening it
   draws a new incarnation as after any restore, so no client id is reused.

Only the log layer knows the byte layout; this module knows LMDB's two file
names (``data.mdb``, ``lock.mdb``) and the lock file's, as ``journal stats``
and the lock messages do.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from dataclasses import dataclass

from ..log.storage import LOCK_FILE
from .base import EXIT_LOCKED, CliError, locked_message, open_reader, processes_with_open

__all__ = ["ShrinkResult", "shrink"]

DATA = "data.mdb"
LMDB_LOCK = "lock.mdb"


@dataclass
class ShrinkResult:
    """What :func:`shrink` did."""

    file_bytes_before: int
    file_bytes: int
    backup: str
    copy_ms: float


def _take_lock(path: str) -> int:
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        try:
            holder = int(os.pread(fd, 64, 0).decode().split()[0])
        except (OSError, ValueError, IndexError):
            holder = None
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise CliError(locked_message(path, holder, "shrinking it"), EXIT_LOCKED) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def shrink(path: str, *, now_ns: int | None = None) -> ShrinkResult:
    """Swap a verified compact copy in for the journal's file, keeping the old one; see the module docstring."""
    path = os.path.normpath(path)
    parent = os.path.dirname(os.path.abspath(path))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime((now_ns or time.time_ns()) // 1_000_000_000))
    backup = f"{path}.before-shrink-{stamp}"
    tmp = f"{path}.shrink-{os.getpid()}"
    lock_fd = _take_lock(path)
    try:
        others = [(pid, cmd) for pid, cmd in processes_with_open(path, (DATA, LMDB_LOCK)) if pid != os.getpid()]
        if others:
            who = ", ".join(f"pid {pid} ({cmd})" for pid, cmd in others)
            raise CliError(
                f"{path}: open in {who}; stop it first (a reader would go on reading the old file), "
                "then run the shrink again"
            )
        if os.path.exists(backup) or os.path.exists(tmp):
            raise CliError(
                f"{backup if os.path.exists(backup) else tmp}: exists; move it away and run the shrink again"
            )
        before = os.path.getsize(os.path.join(path, DATA))
        with open_reader(path) as journal:
            need = int(journal.stats()["used_bytes"])
            free = shutil.disk_usage(parent).free
            if free < need:
                raise CliError(
                    f"{parent}: {free:,} bytes free, the compact copy may need up to {need:,}; free some space "
                    f"(or 'journal backup {path} /other/disk/DIR' makes a compact copy elsewhere)"
                )
            last_seq, journal_id = journal.last_seq, journal.journal_id
            t0 = time.perf_counter()
            journal.backup(tmp, compact=True)
            copy_ms = round((time.perf_counter() - t0) * 1000, 3)
        try:
            with open_reader(tmp) as copy:
                report = copy.verify()
                if not report.ok or copy.last_seq != last_seq or copy.journal_id != journal_id:
                    raise CliError(
                        f"{tmp}: the compact copy does not verify ({report}; last seq {copy.last_seq} vs "
                        f"{last_seq}): nothing was changed; run 'journal verify {path}'"
                    )
            os.mkdir(backup, 0o700)
            try:
                os.link(os.path.join(path, DATA), os.path.join(backup, DATA))
            except OSError as exc:
                os.rmdir(backup)
                raise CliError(
                    f"{backup}: cannot keep the old file ({exc.strerror}); nothing was changed; "
                    f"'journal backup {path} DIR' then this command keeps a copy by hand"
                ) from None
            os.rename(os.path.join(tmp, DATA), os.path.join(path, DATA))
            _fsync_dir(path)
            _fsync_dir(parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        after = os.path.getsize(os.path.join(path, DATA))
        return ShrinkResult(before, after, backup, copy_ms)
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
