"""Damage makers: truncated, emptied and foreign journal directories (issue 11, items 4 and 5).

Each maker takes a journal directory (a healthy one, or a fresh path for the
makers that build something else there) and damages or replaces it in place.
:data:`CASES` lists them with what a writer and a reader must raise, so the
storage campaign family and the regression tests share one list::

    for case in CASES:
        path = make_journal(tmp / case.name)
        case.make(path)
        # open in a subprocess: expect case.writer_error / case.reader_error
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lmdb

from journal import Journal
from journal.log.storage import data_file_extent

__all__ = [
    "CASES",
    "DamageCase",
    "data_file_is_directory",
    "empty_data_file",
    "foreign_environment",
    "foreign_plain_keys",
    "lock_file_is_directory",
    "make_journal",
    "path_is_regular_file",
    "read_only_bind_mount",
    "remove_data_file",
    "truncate_data_file",
    "truncate_inside_meta_pages",
]


def make_journal(path: Path, ops: int = 300) -> Path:
    """A healthy journal with ``ops`` committed operations, large enough to span many pages."""
    with Journal(path) as journal:
        for i in range(ops):
            op = journal.begin("place_order", {"i": i, "symbol": "BTC/USDT", "pad": "x" * 200})
            op.commit({"id": str(i)}, wait=True)
    return path


def truncate_data_file(path: Path, keep: float = 0.5) -> None:
    """Cut data.mdb to ``keep`` of the pages its meta page names (page-aligned, past both meta pages)."""
    data = path / "data.mdb"
    extent = data_file_extent(data)
    assert extent is not None, f"{data}: not an LMDB 0.9 data file"
    pages = max(2, int((extent.last_pgno + 1) * keep))
    assert pages <= extent.last_pgno, f"{data}: too small to truncate to {keep:.0%} ({extent.last_pgno + 1} pages)"
    os.truncate(data, pages * extent.page_size)


def truncate_inside_meta_pages(path: Path) -> None:
    """Cut data.mdb inside its second meta page: neither a journal nor an empty file."""
    data = path / "data.mdb"
    extent = data_file_extent(data)
    assert extent is not None
    os.truncate(data, extent.page_size + 100)


def empty_data_file(path: Path) -> None:
    """Truncate data.mdb to 0 bytes; lock.mdb and writer.lock stay (a failed restore, a full disk)."""
    os.truncate(path / "data.mdb", 0)


def remove_data_file(path: Path) -> None:
    """Delete data.mdb; lock.mdb and writer.lock stay."""
    (path / "data.mdb").unlink()


def lock_file_is_directory(path: Path) -> None:
    """Replace writer.lock with a directory."""
    (path / "writer.lock").unlink()
    (path / "writer.lock").mkdir()


def data_file_is_directory(path: Path) -> None:
    """Replace data.mdb with a directory."""
    shutil.rmtree(path)
    (path / "data.mdb").mkdir(parents=True)


def path_is_regular_file(path: Path) -> None:
    """Put a regular file where the journal directory should be."""
    if path.exists():
        shutil.rmtree(path)
    path.write_bytes(b"not a journal\n")


def foreign_environment(path: Path) -> None:
    """Another program's LMDB environment, with named databases ``users`` and ``config``."""
    if path.exists():
        shutil.rmtree(path)
    env = lmdb.open(str(path), max_dbs=4, lib_version=0)
    users = env.open_db(b"users")
    config = env.open_db(b"config")
    with env.begin(write=True) as txn:
        txn.put(b"alice", b"admin", db=users)
        txn.put(b"theme", b"dark", db=config)
    env.close()


def foreign_plain_keys(path: Path) -> None:
    """An LMDB environment that keeps plain keys in its main database."""
    if path.exists():
        shutil.rmtree(path)
    env = lmdb.open(str(path), lib_version=0)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()


@dataclass(frozen=True)
class DamageCase:
    """One kind of damage and the journal error class names a writer and a reader must raise."""

    name: str
    make: Callable[[Path], None]
    writer_error: str
    reader_error: str  # "OK": a reader opens it (the damage does not concern readers)


CASES: tuple[DamageCase, ...] = (
    DamageCase("truncated_half", truncate_data_file, "TruncatedJournalError", "TruncatedJournalError"),
    DamageCase("truncated_in_meta", truncate_inside_meta_pages, "TruncatedJournalError", "TruncatedJournalError"),
    DamageCase("emptied", empty_data_file, "TruncatedJournalError", "TruncatedJournalError"),
    DamageCase("data_removed", remove_data_file, "TruncatedJournalError", "TruncatedJournalError"),
    DamageCase("lock_is_directory", lock_file_is_directory, "StorageAccessError", "OK"),
    DamageCase("data_is_directory", data_file_is_directory, "StorageAccessError", "StorageAccessError"),
    DamageCase("regular_file", path_is_regular_file, "NotAJournalError", "NotAJournalError"),
    DamageCase("foreign_named_dbs", foreign_environment, "ForeignEnvironmentError", "ForeignEnvironmentError"),
    DamageCase("foreign_plain_keys", foreign_plain_keys, "ForeignEnvironmentError", "ForeignEnvironmentError"),
)


@contextmanager
def read_only_bind_mount(source: Path, target: Path) -> Iterator[Path]:
    """Show ``source`` read-only at ``target`` (read-only media, a mounted copy). Needs root.

    Raises ``PermissionError`` when this machine does not allow mounting.
    """
    target.mkdir(parents=True, exist_ok=True)
    steps = (["mount", "--bind", str(source), str(target)], ["mount", "-o", "remount,bind,ro", str(target)])
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["umount", str(target)], capture_output=True)
            raise PermissionError(f"{' '.join(step)}: {proc.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
