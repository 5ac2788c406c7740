"""The LMDB environment under a journal: opening, locking, growing, meta data.

Thread and process rules:

- One writer process per journal directory. The writer takes an exclusive
  ``flock`` on ``writer.lock`` beside the LMDB files, a POSIX record lock on
  the same file, and writes its pid there; a second writer -- another process,
  or a second :class:`Storage` on the same path in this process -- fails fast
  with :class:`JournalLockedError` naming the holder and whether it still runs.
  The lock dies with its process, so a stale lock file left by a killed writer
  is taken over safely.
- The lock belongs to the process that took it (issue 11, item 6): a child
  made by ``fork()`` (``os.fork``, ``multiprocessing`` with ``fork``) closes
  its inherited copy of the lock file at once, so a worker that outlives a
  killed bot does not keep the restarted bot out; ``exec`` closes it too
  (``O_CLOEXEC``). ``flock`` does the excluding because it belongs to the open
  file, so it survives another descriptor of ``writer.lock`` being closed in
  this process (a record lock would not); the record lock, which is never
  inherited, tells a second writer which process really holds the lock.
- Readers (the dump tool, ``Journal(path, readonly=True)``) take no lock and
  may run in other processes while the writer writes. A reader that cannot
  write ``lock.mdb`` (read-only media, another user's journal) reads without
  LMDB's reader table, after checking that no writer runs, and logs a warning.
- LMDB allows one open environment per path per process: a second open of the
  same journal in this process (writer or reader) raises
  :class:`AlreadyOpenError`; share the first object instead.
- The map starts small and grows: the writer catches ``MapFullError``, aborts,
  doubles the map and retries; readers that then see ``MapResizedError``
  adopt the new size and retry.
- An environment must never be used across ``fork()``: a child that touches a
  storage opened by its parent gets :class:`ForkError`.
- ``writemap`` is never used: it hides writes from inotify, which
  ``journal dump --follow`` relies on.

Durability of names (issue 11, item 2): a new file's name survives a power cut
only once its directory is fsynced. The writer fsyncs the journal directory
and its parent on every open (after ``data.mdb``, ``lock.mdb`` and
``writer.lock`` exist and a new environment's first transaction is synced),
and :meth:`Storage.copy` fsyncs the copy's files, its directory and that
directory's parent. :func:`fsync_dir`, :func:`makedirs_durable` and
:func:`write_durable_file` serve other layers' files (emergency backups).

Damaged files (issue 11, items 4 and 5): before LMDB maps ``data.mdb`` its two
meta pages are read and the file's size is checked against the newer one's
last page (a truncated file would kill the process with SIGBUS);
an emptied or missing ``data.mdb`` in a directory that held a journal is
reported, never re-initialised; another program's LMDB environment is never
turned into a journal.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import lmdb

from ..errors import (
    AlreadyOpenError,
    CorruptionError,
    ForeignEnvironmentError,
    ForkError,
    FormatVersionError,
    JournalClosedError,
    JournalError,
    JournalLockedError,
    NotAJournalError,
    ReadOnlyError,
    StorageAccessError,
    TruncatedJournalError,
)
from .codec import decode, encode

__all__ = [
    "DATABASES",
    "DATA_FILE",
    "FORMAT_VERSION",
    "LMDB_ENGINE",
    "LMDB_LOCK_FILE",
    "LOCK_FILE",
    "DataFileExtent",
    "Storage",
    "data_file_extent",
    "fsync_dir",
    "fsync_file",
    "makedirs_durable",
    "write_durable_file",
]

log = logging.getLogger("journal.storage")

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
DATA_FILE = "data.mdb"
LMDB_LOCK_FILE = "lock.mdb"
DATABASES = (b"meta", b"log", b"pending", b"ops", b"snapshots", b"chunks", b"archive")

T = TypeVar("T")

_open_paths: dict[str, str] = {}  # realpath -> "writing" | "reading": environments open in this process
_open_lock = threading.Lock()
_all_storages: weakref.WeakSet[Storage] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for storage in list(_all_storages):
        storage._forked = True
        fd, storage._lock_fd = storage._lock_fd, None
        if fd is not None:
            # Issue 11, item 6: flock belongs to the open file, which fork shares
            # with the child; the child's copy must not keep the lock after the
            # parent dies. Closing it here leaves the parent's lock untouched.
            try:
                os.close(fd)
            except OSError:
                pass
    _open_paths.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- durable files and directories -------------------------------------------


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of directory ``path`` (names created, renamed, removed) durable.

    POSIX keeps a new file's name across a power cut only once its directory is
    fsynced. File systems that cannot fsync a directory (``EINVAL``) are taken
    to persist entries by themselves; any other error is raised.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Make a regular file's content durable (its name needs :func:`fsync_dir` of its directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: str | os.PathLike[str], mode: int = 0o700) -> list[str]:
    """Create ``path`` and any missing parents, fsyncing each new directory's parent.

    Like ``os.makedirs(path, mode, exist_ok=True)`` (``mode`` applies to the last
    level only), except that every directory it creates survives a power cut.
    Returns the directories created, outermost first.
    """
    target = os.path.abspath(os.fspath(path))
    missing: list[str] = []
    level = target
    while not os.path.isdir(level):
        if os.path.lexists(level):
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", level)
        missing.append(level)
        parent = os.path.dirname(level)
        if parent == level:
            break
        level = parent
    created: list[str] = []
    for level in reversed(missing):
        try:
            os.mkdir(level, mode if level == target else 0o777)
        except FileExistsError:
            if not os.path.isdir(level):
                raise
            continue  # made meanwhile by someone else, who owns its durability
        fsync_dir(os.path.dirname(level))
        created.append(level)
    return created


def write_durable_file(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that after a power cut it is either absent, the old file, or complete.

    Writes a temporary file beside it, fsyncs it, renames it over ``path`` and
    fsyncs the directory. An existing ``path`` is replaced.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)


# -- the data file's extent ----------------------------------------------------

# LMDB 0.9's meta page (mdb.c, 64-bit): a 16-byte page header (pgno u64, pad u16,
# flags u16, lower/upper u16), then MDB_meta: magic u32, version u32, address
# u64, mapsize u64, two MDB_db of 48 bytes (the free DB's first u32 is the page
# size), last_pgno u64, txnid u64.
_META = struct.Struct("=QHHI II QQ I44x 48x QQ")
_MDB_MAGIC = 0xBEEFC0DE
_MDB_DATA_VERSION = 1
_P_META = 0x08


@dataclass(frozen=True)
class DataFileExtent:
    """What the newer of ``data.mdb``'s two meta pages says about the file."""

    page_size: int  # bytes per page, fixed when the environment was created
    last_pgno: int  # the last page the newest transaction uses
    txnid: int  # the newest committed transaction

    @property
    def needed_bytes(self) -> int:
        """The smallest size a file with this meta page can have."""
        return (self.last_pgno + 1) * self.page_size


def _read_meta(fd: int, offset: int) -> tuple[int, int, int, int] | None:
    """``(page_size, last_pgno, txnid, flags)`` of the meta page at ``offset``; None if too short."""
    raw = os.pread(fd, _META.size, offset)
    if len(raw) < _META.size:
        return None
    _pgno, _pad, flags, _bounds, magic, version, _addr, _mapsize, psize, last, txnid = _META.unpack(raw)
    if magic != _MDB_MAGIC or version != _MDB_DATA_VERSION:
        return (-1, 0, 0, flags)
    return psize, last, txnid, flags


def data_file_extent(path: str | os.PathLike[str]) -> DataFileExtent | None:
    """Read ``data.mdb``'s meta pages; raise :class:`TruncatedJournalError` if the file is shorter than they say.

    Returns ``None`` when the file is not an LMDB 0.9 data file (LMDB itself then
    says what it is). Reads the meta pages before the file's size: a writer only
    ever writes pages before the meta page that names them, so a live journal
    always passes.
    """
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first = _read_meta(fd, 0)
        size_now = os.fstat(fd).st_size
        if first is None:
            raise TruncatedJournalError(
                f"{name}: the data file is {size_now} bytes, shorter than one LMDB meta page: it was truncated"
            )
        page_size = first[0]
        if page_size == -1:
            return None
        if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
            raise CorruptionError(f"{name}: the first LMDB meta page is damaged (page size {page_size})")
        second = _read_meta(fd, page_size)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if second is None:
        raise TruncatedJournalError(
            f"{name}: the data file is {size} bytes, shorter than its two LMDB meta pages "
            f"({2 * page_size} bytes): it was truncated"
        )
    if second[0] == -1:
        return None  # LMDB reports the damaged second meta page itself (no mapping involved)
    newest = max((first, second), key=lambda m: m[2])
    extent = DataFileExtent(page_size=page_size, last_pgno=newest[1], txnid=newest[2])
    if size < extent.needed_bytes:
        raise TruncatedJournalError(
            f"{name}: the data file is {size} bytes but its meta page (transaction {extent.txnid}) says it holds "
            f"{extent.last_pgno + 1} pages of {page_size} bytes ({extent.needed_bytes} bytes): it was truncated "
            "(a full disk, an interrupted copy or restore); it was not opened, since reading past its end "
            "would kill the process (SIGBUS)"
        )
    return extent


# -- the writer lock's holder --------------------------------------------------

_FLOCK = struct.Struct("@hhqqi4x")  # struct flock on 64-bit Linux


def _record_lock_owner(fd: int) -> int | None:
    """The pid holding a POSIX record lock on the file, or None (free, or unknown)."""
    try:
        raw = fcntl.fcntl(fd, fcntl.F_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        l_type, _whence, _start, _len, pid = _FLOCK.unpack(raw)
    except (OSError, struct.error):
        return None
    return pid if l_type != fcntl.F_UNLCK and pid > 0 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to another user
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")  # a zombie has exited and holds no lock
    except (OSError, IndexError):
        return True


def _read_holder(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 64, 0).decode().strip()
        return int(raw.split()[0]) if raw else None
    except (OSError, ValueError, IndexError):
        return None


def _names_a_writer(lock_path: str) -> bool:
    """Whether writer.lock names a writer (a pid): a writer opened this directory before."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return _read_holder(fd) is not None
    finally:
        # Not this process's own writer (_register refused that): closing a descriptor
        # of a file drops the record locks this process holds on it (flock stays).
        os.close(fd)


def _locked_error(path: str, lock_path: str, fd: int) -> JournalLockedError:
    owner = _record_lock_owner(fd)
    named = _read_holder(fd)
    if owner is not None:
        return JournalLockedError(
            f"{path}: journal is held by pid {owner} (running); stop that process first, "
            "or open the journal read-only for inspection",
            owner,
            alive=True,
        )
    if named is not None and not _pid_alive(named):
        return JournalLockedError(
            f"{path}: the writer lock is still held, but pid {named}, which took it, has exited: a process it "
            f"forked or started (a worker) kept its lock file open; stop that process (`fuser -v {lock_path}` "
            "names it) and open the journal again",
            named,
            alive=False,
        )
    who = f"pid {named} (running)" if named is not None else "another process"
    return JournalLockedError(
        f"{path}: journal is held by {who}; stop that process first, or open the journal read-only for inspection",
        named,
        alive=True if named is not None else None,
    )


def _access_error(what: str, path: str, exc: OSError) -> StorageAccessError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EROFS:
        todo = "the file system is mounted read-only: open the journal read-only (`readonly=True`) to inspect it"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        todo = (
            "run as the journal's owner or fix its permissions (the writer needs write access to the directory "
            "and its files); `readonly=True` opens it for inspection"
        )
    elif exc.errno == errno.EISDIR:
        todo = "something other than a file stands where tradejournal keeps one: move it away"
    elif exc.errno == errno.ENOTDIR:
        todo = "a file stands where a directory belongs: give the path of a journal directory"
    else:
        todo = "check the path, the disk and its free space"
    return StorageAccessError(f"{path}: cannot {what} ({reason}); {todo}", path, exc.errno)


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
        self.path = os.fspath(path)  # the journal directory, as given
        self.readonly = readonly  # no lock, no writes
        self.max_map_size = max_map_size  # the map never grows past this
        self._forked = False  # set in a child after fork(): every use then raises ForkError
        self._closed = True  # until fully opened; close() is idempotent
        self._pid = os.getpid()  # the process that opened it
        self._lock_fd: int | None = None  # writer.lock, flock'ed and record-locked (writers only)
        self._readers = 0  # open read transactions; a map grow waits for them
        self._readers_cv = threading.Condition()
        self._real = os.path.realpath(self.path)  # key of _open_paths
        self._registered = False  # this object holds the _open_paths entry
        self.lockless = False  # a reader that could not use LMDB's reader table (see _open_reader_env)
        _all_storages.add(self)  # from the start: a fork() meanwhile must close the child's lock file too
        created: list[str] = []  # files this open created: undone if it fails
        try:
            with _open_lock:
                self._register()
            if readonly:
                self._check_readable_dir()
                self._check_data_file(lock_in_use=_names_a_writer(self._file(LOCK_FILE)))
                self.env = self._open_reader_env(map_size)
            else:
                self._make_dir()
                lock_created, lock_in_use = self._take_lock()
                if lock_created:
                    created.append(LOCK_FILE)
                self._check_data_file(lock_in_use=lock_in_use)
                created += [n for n in (DATA_FILE, LMDB_LOCK_FILE) if not os.path.lexists(self._file(n))]
                self.env = self._open_env(map_size, sync=sync, metasync=metasync)
        except BaseException as exc:
            self._undo(created, foreign=isinstance(exc, ForeignEnvironmentError))
            raise
        self.dbs: dict[str, Any] = {}
        try:
            self._open_dbs()
            if not readonly:
                if DATA_FILE in created and not sync:
                    self.env.sync(True)  # a new environment is durable before its names are
                self._fsync_entries()
        except BaseException as exc:
            self.env.close()
            self._undo(created, foreign=isinstance(exc, ForeignEnvironmentError))
            raise
        self._closed = False

    # -- opening -------------------------------------------------------------

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _register(self) -> None:
        held = _open_paths.get(self._real)
        if held == "writing":
            hint = (
                "read through that Journal object (records(), pending(), verify())"
                if self.readonly
                else "a second writer in one process would corrupt the log"
            )
            raise AlreadyOpenError(
                f"{self.path}: already open for writing in this process (pid {os.getpid()}); {hint}", os.getpid()
            )
        if held == "reading":
            raise AlreadyOpenError(
                f"{self.path}: already open read-only in this process (pid {os.getpid()}); close that reader "
                "first if this process is to write",
                os.getpid(),
            )
        _open_paths[self._real] = "reading" if self.readonly else "writing"
        self._registered = True

    def _unregister(self) -> None:
        if self._registered:
            with _open_lock:
                _open_paths.pop(self._real, None)
            self._registered = False

    def _undo(self, created: list[str], *, foreign: bool) -> None:
        """Undo a failed open: leave no traces that a later open would take for a damaged journal.

        Runs while the writer lock is still held, so no other writer can be
        creating these files meanwhile. ``writer.lock`` is emptied rather than
        removed (removing a lock file others may have open lets two writers
        lock two different files), except in another program's environment,
        which no journal can ever use.
        """
        for name in created:
            if name == LOCK_FILE and not foreign:
                if self._lock_fd is not None:
                    os.ftruncate(self._lock_fd, 0)
                continue
            try:
                os.unlink(self._file(name))
            except OSError:
                pass
        self._release_lock()
        self._unregister()

    def _check_readable_dir(self) -> None:
        if not os.path.lexists(self.path):
            raise NotAJournalError(f"{self.path}: no such journal directory (check the path)")
        if not os.path.isdir(self.path):
            raise NotAJournalError(
                f"{self.path}: is a file, not a journal directory; give the directory the bot opens (it holds data.mdb)"
            )

    def _make_dir(self) -> None:
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise NotAJournalError(
                f"{self.path}: is a file, not a journal directory; give a directory path (it is created "
                "if missing) or move the file away"
            )
        try:
            makedirs_durable(self.path)
        except OSError as exc:
            raise _access_error("create the journal directory", exc.filename or self.path, exc) from exc

    def _check_data_file(self, *, lock_in_use: bool) -> None:
        """Refuse a truncated, emptied or missing data file before LMDB maps (or re-initialises) it.

        ``lock_in_use``: writer.lock named a writer before this open took it,
        so a writer opened this directory before.
        """
        data = self._file(DATA_FILE)
        try:
            st = os.stat(data)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise _access_error("read data.mdb", data, exc) from exc
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise StorageAccessError(
                f"{data}: is not a regular file; move it away (the journal's data lives in a file data.mdb)",
                data,
            )
        never_held = (
            "it is not re-initialised as a new journal (if it never held records -- a power cut while it was "
            "first created -- moving the directory away is all there is to do)"
        )
        if st is not None and st.st_size == 0:
            raise TruncatedJournalError(
                f"{data}: the data file is empty (0 bytes): the journal was emptied (a failed copy or restore, "
                f"a full disk); {never_held}"
            )
        if st is None:
            traces = [LOCK_FILE] if lock_in_use else []
            if os.path.lexists(self._file(LMDB_LOCK_FILE)):
                traces.append(LMDB_LOCK_FILE)
            if traces:
                raise TruncatedJournalError(
                    f"{data}: the data file is missing, but {' and '.join(traces)} show a journal was opened "
                    f"here; {never_held}"
                )
            if self.readonly:
                raise NotAJournalError(f"{self.path}: not a journal (no data.mdb inside)")
            return
        try:
            data_file_extent(data)
        except PermissionError:
            return  # unreadable: LMDB says so, and maps nothing
        except OSError as exc:
            raise _access_error("read data.mdb", data, exc) from exc

    def _env_args(self, map_size: int) -> dict[str, Any]:
        return {
            "map_size": map_size,
            "subdir": True,
            "writemap": False,
            "max_dbs": len(DATABASES) + 2,
            "max_readers": 126,
            "mode": 0o600,
            "lib_version": LMDB_ENGINE,
        }

    def _lmdb_error(self, exc: lmdb.Error) -> JournalError:
        text = str(exc)
        if "already open in this process" in text:
            return AlreadyOpenError(
                f"{self.path}: this process (pid {os.getpid()}) already has this LMDB environment open "
                "(perhaps through another path)",
                os.getpid(),
            )
        if isinstance(exc, lmdb.ReadonlyError) or "Permission denied" in text:
            return StorageAccessError(
                f"{self.path}: cannot open the LMDB files ({exc}); run as the journal's owner or fix its "
                "permissions; `readonly=True` opens it for inspection",
                self.path,
                errno.EACCES,
            )
        if "Read-only file system" in text:
            return StorageAccessError(
                f"{self.path}: cannot open the LMDB files for writing ({exc}): the file system is mounted "
                "read-only; open the journal read-only (`readonly=True`) to inspect it",
                self.path,
                errno.EROFS,
            )
        return NotAJournalError(
            f"{self.path}: cannot open as an LMDB environment ({exc}); "
            "is it a tradejournal directory written with the LMDB 0.9 engine?"
        )

    def _open_env(self, map_size: int, *, sync: bool, metasync: bool) -> lmdb.Environment:
        try:
            env = lmdb.open(self.path, readonly=False, create=True, sync=sync, metasync=metasync,
                            **self._env_args(map_size))  # fmt: skip
        except lmdb.Error as exc:
            raise self._lmdb_error(exc) from exc
        for name in (DATA_FILE, LMDB_LOCK_FILE):
            try:
                os.chmod(self._file(name), 0o600)
            except OSError:
                pass
        try:
            os.chmod(self.path, 0o700)
        except OSError:
            pass
        return env

    def _open_reader_env(self, map_size: int) -> lmdb.Environment:
        """Open read-only; without LMDB's reader table when ``lock.mdb`` cannot be written."""
        lock_mdb = self._file(LMDB_LOCK_FILE)
        if os.path.lexists(lock_mdb):
            can_lock = os.access(lock_mdb, os.R_OK | os.W_OK)
        else:
            can_lock = os.access(self.path, os.W_OK | os.X_OK)
        if can_lock:
            try:
                return lmdb.open(self.path, readonly=True, create=False, **self._env_args(map_size))
            except lmdb.ReadonlyError:
                pass  # lock.mdb not writable after all (ACLs, a read-only mount): go without it
            except lmdb.Error as exc:
                if "Permission denied" not in str(exc) and "Read-only file system" not in str(exc):
                    raise self._lmdb_error(exc) from exc
        self._refuse_lockless_beside_writer()
        try:
            env = lmdb.open(self.path, readonly=True, create=False, lock=False, **self._env_args(map_size))
        except lmdb.Error as exc:
            raise self._lmdb_error(exc) from exc
        self.lockless = True
        log.warning(
            "%s: opened read-only without LMDB's reader table (lock.mdb cannot be written here); "
            "no writer may run on this journal while it is open",
            self.path,
        )
        return env

    def _refuse_lockless_beside_writer(self) -> None:
        """A reader outside the reader table may read pages a running writer reuses: refuse."""
        lock_path = self._file(LOCK_FILE)
        try:
            fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return  # no lock file (no writer ever ran here), or unreadable: nothing to learn
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            owner = _record_lock_owner(fd)
            if owner is None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    return
                except OSError:
                    owner = _read_holder(fd)
            raise JournalLockedError(
                f"{self.path}: cannot read safely: lock.mdb cannot be written here, so this reader cannot "
                f"register with LMDB, and a writer ({f'pid {owner}' if owner else 'another process'}) is running "
                "and may reuse the pages it reads; read as a user who can write lock.mdb, stop the writer, or "
                "read a copy (`journal backup` run by the journal's owner)",
                owner,
                alive=True,
            )
        finally:
            os.close(fd)

    def _main_db_names(self) -> list[bytes]:
        with self.env.begin() as txn:
            return [bytes(k) for k in txn.cursor().iternext(values=False)]

    def _check_ours(self) -> None:
        """Refuse another program's environment: its main database holds names that are not ours."""
        foreign = [name for name in self._main_db_names() if name not in DATABASES]
        if foreign:
            shown = ", ".join(repr(n.decode(errors="backslashreplace")) for n in foreign[:6])
            more = f" and {len(foreign) - 6} more" if len(foreign) > 6 else ""
            raise ForeignEnvironmentError(
                f"{self.path}: holds another program's LMDB environment, not a tradejournal journal "
                f"(keys or databases {shown}{more}); "
                "it was left untouched"
            )

    def _open_dbs(self) -> None:
        self._check_ours()
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

    def _fsync_entries(self) -> None:
        """Make the names of writer.lock, data.mdb, lock.mdb and the journal directory durable."""
        try:
            fsync_dir(self.path)
        except OSError as exc:
            raise _access_error("fsync the journal directory", self.path, exc) from exc
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            fsync_dir(parent)
        except PermissionError as exc:  # a parent we may not read (mode -wx): its entry is old, or ours
            log.warning("%s: cannot fsync the parent directory %s (%s)", self.path, parent, exc.strerror)
        except OSError as exc:
            raise _access_error("fsync the journal's parent directory", parent, exc) from exc

    def _take_lock(self) -> tuple[bool, bool]:
        """Take writer.lock; return ``(created, in_use)``: this call made the file; it named a writer before."""
        lock_path = self._file(LOCK_FILE)
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
        created = False
        try:
            try:
                fd = os.open(lock_path, flags | os.O_CREAT | os.O_EXCL, 0o600)
                created = True
            except FileExistsError:
                fd = os.open(lock_path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW
                exc = OSError(errno.EISDIR, "a symbolic link stands there", lock_path)
            raise _access_error("open writer.lock", lock_path, exc) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StorageAccessError(
                    f"{lock_path}: is not a regular file; move it away (the journal keeps its writer lock there)",
                    lock_path,
                )
            for take in (lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB),
                         lambda: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)):  # fmt: skip
                try:
                    take()
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise _locked_error(self.path, lock_path, fd) from None
                    raise _access_error("lock writer.lock", lock_path, exc) from exc
            in_use = _read_holder(fd) is not None
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)  # drops both locks; an empty writer.lock is no trace of a journal
            raise
        self._lock_fd = fd
        return created, in_use

    def _release_lock(self) -> None:
        if self._lock_fd is None:
            return
        fd, self._lock_fd = self._lock_fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)  # drops the record lock

    # -- guards --------------------------------------------------------------

    @property
    def in_owner_process(self) -> bool:
        """True in the process that opened it (False in a child made by fork())."""
        return not self._forked and os.getpid() == self._pid

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
        """A consistent (compact) copy of the environment, safe while writers run, durable when it returns.

        ``dest`` is created if missing (with its parents). When this returns, the
        copy's files, its directory's entries and its entry in its parent
        directory are fsynced: a power cut cannot leave a backup that seemed
        written but is gone or empty.
        """
        self.check_usable()
        makedirs_durable(dest)
        self.env.copy(dest, compact=compact)
        for name in os.listdir(dest):
            file = os.path.join(dest, name)
            os.chmod(file, 0o600)
            if os.path.isfile(file):
                fsync_file(file)
        fsync_dir(dest)
        fsync_dir(os.path.dirname(os.path.abspath(dest)))

    def close(self) -> None:
        """Close the environment and release the writer lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.in_owner_process:
            self.env.close()
            self._release_lock()
            self._unregister()


def now_ns() -> int:
    return time.time_ns()
