"""The LMDB environment under a journal: opening, locking, growing, meta data.

Thread and process rules:

- One writer process per journal directory. The writer takes an exclusive
  ``flock`` on ``writer.lock`` beside the LMDB files and writes its pid there;
  a second writer -- another process, or a second :class:`Storage` on the same
  path in this process -- fails fast with :class:`JournalLockedError` naming
  the holder. The lock dies with its process, so a stale lock file left by a
  killed writer is taken over safely.
- Readers (the dump tool, ``Journal(path, readonly=True)``) take no lock and
  may run in other processes while the writer writes.
- The map starts small and grows: the writer catches ``MapFullError``, aborts,
  doubles the map and retries; readers that then see ``MapResizedError``
  adopt the new size and retry.
- An environment must never be used across ``fork()``: a child that touches a
  storage opened by its parent gets :class:`ForkError`.
- ``writemap`` is never used: it hides writes from inotify, which
  ``journal dump --follow`` relies on.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb

from ..errors import (
    CorruptionError,
    ForkError,
    FormatVersionError,
    JournalClosedError,
    JournalError,
    JournalLockedError,
    NotAJournalError,
    ReadOnlyError,
)
from .codec import decode, encode

__all__ = ["DATABASES", "FORMAT_VERSION", "LMDB_ENGINE", "LOCK_FILE", "Storage"]

#: On-disk format version written into ``meta``. Version 2 added writer
#: incarnations to client ids; a version-1 journal is read as is and upgraded
#: when a writer opens it. A newer version is refused (upgrade tradejournal).
FORMAT_VERSION = 2
#: Older format versions this code reads (and upgrades on a writer open).
READABLE_FORMATS = (1, 2)
#: LMDB engine passed explicitly: py-lmdb 3 bundles 0.9 and 1.0, whose files
#: are mutually unreadable; 0.9 is what every LMDB tool reads.
LMDB_ENGINE = 0
LOCK_FILE = "writer.lock"
DATABASES = (b"meta", b"log", b"pending", b"ops", b"snapshots", b"chunks", b"archive")

T = TypeVar("T")

_open_paths: dict[str, int] = {}  # realpath -> id(storage), writers in this process
_open_lock = threading.Lock()
_all_storages: weakref.WeakSet[Storage] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for storage in list(_all_storages):
        storage._forked = True
    _open_paths.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Storage:
    """An LMDB environment directory holding one journal.

    Not used directly by bots: :class:`journal.Journal` owns one. Write
    transactions may not span threads; the journal serialises them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        map_size: int,
        max_map_size: int,
        sync: bool = True,
        metasync: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self.max_map_size = max_map_size
        self._forked = False
        self._closed = True
        self._pid = os.getpid()
        self._lock_fd: int | None = None
        self._readers = 0
        self._readers_cv = threading.Condition()
        real = os.path.realpath(self.path)
        self._real = real
        if readonly:
            if not os.path.isdir(self.path):
                raise NotAJournalError(f"{self.path}: no such journal directory (check the path)")
            if not os.path.exists(os.path.join(self.path, "data.mdb")):
                raise NotAJournalError(f"{self.path}: not a journal (no data.mdb inside)")
        else:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            self._take_lock(real)
        try:
            self.env = self._open_env(map_size, sync=sync, metasync=metasync)
        except BaseException:
            self._release_lock()
            raise
        self.dbs: dict[str, Any] = {}
        try:
            self._open_dbs()
        except BaseException:
            self.env.close()
            self._release_lock()
            raise
        self._closed = False
        _all_storages.add(self)

    # -- opening -------------------------------------------------------------

    def _open_env(self, map_size: int, *, sync: bool, metasync: bool) -> lmdb.Environment:
        try:
            env = lmdb.open(
                self.path,
                map_size=map_size,
                subdir=True,
                readonly=self.readonly,
                create=not self.readonly,
                sync=sync,
                metasync=metasync,
                writemap=False,
                max_dbs=len(DATABASES) + 2,
                max_readers=126,
                mode=0o600,
                lib_version=LMDB_ENGINE,
            )
        except lmdb.Error as exc:
            raise NotAJournalError(
                f"{self.path}: cannot open as an LMDB environment ({exc}); "
                "is it a tradejournal directory written with the LMDB 0.9 engine?"
            ) from exc
        if not self.readonly:
            for name in ("data.mdb", "lock.mdb"):
                try:
                    os.chmod(os.path.join(self.path, name), 0o600)
                except OSError:
                    pass
            try:
                os.chmod(self.path, 0o700)
            except OSError:
                pass
        return env

    def _open_dbs(self) -> None:
        if self.readonly:
            # py-lmdb keeps a handle opened in a read transaction only when it
            # opens the transaction itself (an explicit txn= handle is dropped).
            for name in DATABASES:
                try:
                    self.dbs[name.decode()] = self.env.open_db(name, create=False)
                except lmdb.NotFoundError:
                    if name in (b"meta", b"log"):
                        raise NotAJournalError(
                            f"{self.path}: LMDB environment without a '{name.decode()}' database: "
                            "not a tradejournal journal"
                        ) from None
                    self.dbs[name.decode()] = None
        else:
            with self.env.begin(write=True) as txn:
                for name in DATABASES:
                    self.dbs[name.decode()] = self.env.open_db(name, txn=txn, create=True)

    def _take_lock(self, real: str) -> None:
        with _open_lock:
            if real in _open_paths:
                raise JournalLockedError(
                    f"{self.path}: already open for writing in this process (pid {os.getpid()}); "
                    "share that Journal object instead of opening the path twice",
                    os.getpid(),
                )
            lock_path = os.path.join(self.path, LOCK_FILE)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    who = f"pid {holder}" if holder else "another process"
                    raise JournalLockedError(
                        f"{self.path}: journal is held by {who}; stop that process first, "
                        "or open the journal read-only for inspection",
                        holder,
                    ) from None
                raise
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._lock_fd = fd
            _open_paths[real] = id(self)

    def _release_lock(self) -> None:
        if self._lock_fd is None:
            return
        with _open_lock:
            if _open_paths.get(self._real) == id(self):
                del _open_paths[self._real]
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- guards --------------------------------------------------------------

    def check_usable(self) -> None:
        """Raise if this storage is closed or was inherited across fork()."""
        # os.register_at_fork marks every open storage in a child: no getpid() syscall per call
        if self._forked:
            raise ForkError(
                f"{self.path}: journal opened in pid {self._pid} used in forked child pid {os.getpid()}; "
                "open the journal again in the child (never carry an open LMDB environment across fork)"
            )
        if self._closed:
            raise JournalClosedError(f"{self.path}: journal is closed")

    # -- transactions --------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A short read transaction; retried transparently after a map resize."""
        self.check_usable()
        with self._readers_cv:
            self._readers += 1
        try:
            try:
                txn = self.env.begin(buffers=False)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)
                txn = self.env.begin(buffers=False)
            try:
                yield txn
            except (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.PanicError, lmdb.BadTxnError,
                    lmdb.InvalidError, lmdb.IncompatibleError) as exc:  # fmt: skip
                # LMDB's own structure (B-tree pages) is damaged: report, never guess
                raise CorruptionError(
                    f"{self.path}: the LMDB file is damaged ({type(exc).__name__}: {exc}); "
                    "restore a backup (`journal backup`, emergency copies) and run `journal verify` on it"
                ) from exc
            finally:
                txn.abort()
        finally:
            with self._readers_cv:
                self._readers -= 1
                if self._readers == 0:
                    self._readers_cv.notify_all()

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one write transaction and commit it, growing the map if full.

        ``fn`` may run more than once (after a grow), so it must only write
        through ``txn``. The caller serialises writers.
        """
        self.check_usable()
        if self.readonly:
            raise ReadOnlyError(f"{self.path}: journal opened read-only; open it without readonly=True to write")
        while True:
            txn = self.env.begin(write=True)
            try:
                result = fn(txn)
                txn.commit()
                return result
            except lmdb.MapFullError as exc:
                txn.abort()
                self._grow(exc)
            except BaseException:
                txn.abort()
                raise

    def _grow(self, cause: Exception) -> None:
        current = self.env.info()["map_size"]
        new = min(current * 2, self.max_map_size)
        if new <= current:
            raise JournalError(
                f"{self.path}: journal map is full at {current} bytes (max_map_size); "
                "raise max_map_size, or compact the journal"
            ) from cause
        with self._readers_cv:
            # set_mapsize invalidates open transactions in this process: wait for them.
            while self._readers:
                self._readers_cv.wait(0.01)
            self.env.set_mapsize(new)

    # -- meta ----------------------------------------------------------------

    def get_meta(self, txn: lmdb.Transaction, key: str, default: Any = None) -> Any:
        raw = txn.get(key.encode(), db=self.dbs["meta"])
        return default if raw is None else decode(raw)

    def put_meta(self, txn: lmdb.Transaction, key: str, value: Any) -> None:
        txn.put(key.encode(), encode(value), db=self.dbs["meta"])

    def check_format(self, txn: lmdb.Transaction) -> dict[str, Any]:
        """Return the journal's meta data, refusing foreign or other-version journals."""
        version = self.get_meta(txn, "format_version")
        if version is None:
            raise NotAJournalError(f"{self.path}: no format version in meta: not a tradejournal journal")
        if version not in READABLE_FORMATS:
            if isinstance(version, int) and version > FORMAT_VERSION:
                hint = "it was written by a newer tradejournal: upgrade tradejournal to read it"
            else:
                hint = (
                    "it was written by an older tradejournal: export it with that version "
                    "(`journal dump --json`) and start a new journal"
                )
            raise FormatVersionError(
                f"{self.path}: journal format version {version!r}, this tradejournal reads version "
                f"{FORMAT_VERSION}; {hint}"
            )
        meta = {}
        with txn.cursor(db=self.dbs["meta"]) as cur:
            for k, v in cur:
                meta[bytes(k).decode()] = decode(v)
        return meta

    # -- info ----------------------------------------------------------------

    def last_txnid(self) -> int:
        return int(self.env.info()["last_txnid"])

    def copy(self, dest: str, compact: bool = True) -> None:
        """A consistent (compact) copy of the environment, safe while writers run."""
        self.check_usable()
        os.makedirs(dest, mode=0o700, exist_ok=True)
        self.env.copy(dest, compact=compact)
        for name in os.listdir(dest):
            os.chmod(os.path.join(dest, name), 0o600)

    def close(self) -> None:
        """Close the environment and release the writer lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._forked and os.getpid() == self._pid:
            self.env.close()
            self._release_lock()


def _read_holder(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 64, 0).decode().strip()
        return int(raw.split()[0]) if raw else None
    except (OSError, ValueError, IndexError):
        return None


def now_ns() -> int:
    return time.time_ns()
