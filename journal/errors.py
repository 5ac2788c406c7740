"""Errors raised by the journal.

One base class, :class:`JournalError`, and a subclass per failure. Each message
says what happened, to what (path, sequence number, op id) and what to do.
LMDB's own errors are wrapped with ``raise ... from`` so the cause stays visible.
A class whose remedy is always the same carries it in ``remedy``; it is appended
to every instance's message, which holds the specifics (path, sizes, pid)::

    JournalError
    +-- CodecError (also ValueError)
    +-- DecodeError
    +-- CorruptionError
    |   +-- TruncatedJournalError
    +-- FormatVersionError
    +-- NotAJournalError
    |   +-- ForeignEnvironmentError
    +-- JournalLockedError
    |   +-- AlreadyOpenError
    +-- StorageAccessError
    +-- ForkError
    +-- JournalClosedError
    +-- ReadOnlyError
    +-- OperationStateError
    +-- UnknownOperationError (also KeyError)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AlreadyOpenError",
    "CodecError",
    "CorruptionError",
    "DecodeError",
    "ForeignEnvironmentError",
    "FormatVersionError",
    "ForkError",
    "JournalClosedError",
    "JournalError",
    "JournalLockedError",
    "NotAJournalError",
    "OperationStateError",
    "ReadOnlyError",
    "StorageAccessError",
    "TruncatedJournalError",
    "UnknownOperationError",
]


class JournalError(Exception):
    """Base class of every error the journal raises."""

    #: What to do, the same for every instance of the class; appended to the message.
    remedy: ClassVar[str] = ""

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}; {self.remedy}" if self.remedy and text else text


class CodecError(JournalError, ValueError):
    """A value cannot be encoded: raised before anything is written.

    ``path`` names the place inside the payload, e.g. ``data.orders[3].price``.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class DecodeError(JournalError):
    """Stored bytes could not be decoded (damaged or hostile input)."""


class CorruptionError(JournalError):
    """A checksum or the hash chain does not match: the file is damaged.

    LMDB commits are atomic, so a mismatch is never a torn write. ``seq`` is the
    first damaged sequence number (``None`` for damage outside the log).
    """

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class TruncatedJournalError(CorruptionError):
    """``data.mdb`` is shorter than its own meta pages say, empty, or gone.

    Raised before the file is mapped: touching a page past the end of a mapped
    file kills the process with SIGBUS. A directory that held a journal is never
    silently re-initialised as a new, empty one.
    """

    remedy = (
        "restore the journal directory from a backup (`journal backup` copies, emergency backups) and "
        "run `journal verify` on it; to start a new journal instead, move this directory away first"
    )


class FormatVersionError(JournalError):
    """The journal was written by a format version this code does not read."""


class NotAJournalError(JournalError):
    """The path exists but holds no tradejournal journal."""


class ForeignEnvironmentError(NotAJournalError):
    """The directory holds another program's LMDB environment (other databases, other keys)."""

    remedy = "give the journal a directory of its own: tradejournal never adds its databases to another environment"


class JournalLockedError(JournalError):
    """Another writer (process or object) holds the journal.

    ``pid`` is the holder named by the lock (``None`` when unknown), ``alive``
    whether that process still runs (``None`` when unknown).
    """

    def __init__(self, message: str, pid: int | None = None, *, alive: bool | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.alive = alive


class AlreadyOpenError(JournalLockedError):
    """This process already has the journal open (LMDB allows one open per process)."""

    remedy = "share the Journal object this process already has instead of opening the path again"


class StorageAccessError(JournalError):
    """The journal's directory or files cannot be used as asked.

    Permissions, a read-only file system, a file where a directory belongs,
    a directory where a file belongs. ``path`` names the file at fault and
    ``errno`` the operating system's error number (``None`` when not an OS error).
    """

    def __init__(self, message: str, path: str = "", errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno


class ForkError(JournalError):
    """An open journal was used in a child process after ``fork()``."""


class JournalClosedError(JournalError):
    """The journal was used after ``close()``."""


class ReadOnlyError(JournalError):
    """A write was attempted on a journal opened read-only."""


class OperationStateError(JournalError):
    """An operation handle was used wrongly (committed twice, wrong journal, ...)."""


class UnknownOperationError(JournalError, KeyError):
    """No operation with that op id or client id exists in this journal."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
