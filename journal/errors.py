"""Errors raised by the journal.

One base class, :class:`JournalError`, and a subclass per failure. Each message
says what happened, to what (path, sequence number, op id) and what to do.
LMDB's own errors are wrapped with ``raise ... from`` so the cause stays visible.
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "CorruptionError",
    "DecodeError",
    "FormatVersionError",
    "ForkError",
    "JournalClosedError",
    "JournalError",
    "JournalLockedError",
    "NotAJournalError",
    "OperationStateError",
    "ReadOnlyError",
    "UnknownOperationError",
]


class JournalError(Exception):
    """Base class of every error the journal raises."""


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


class FormatVersionError(JournalError):
    """The journal was written by a format version this code does not read."""


class NotAJournalError(JournalError):
    """The path exists but holds no tradejournal journal."""


class JournalLockedError(JournalError):
    """Another writer (process or object) holds the journal."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


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
