"""What every ``journal`` command shares: exit codes, errors, the command type, the context, parsing.

A command is a :class:`Command` made by the :func:`command` decorator; its
module lists it in ``COMMANDS`` and :mod:`journal.cli.app` imports the module
explicitly (no registry filled by import side effects). A command gets a
:class:`Context`: the parsed arguments, the :class:`~journal.cli.output.Output`,
and the journal opened read-only on first use. It calls only the public
library (:class:`journal.Journal`, :class:`journal.StateStore`).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import NotAJournalError, UnknownOperationError
from ..log import Journal
from ..log.record import KIND_CODES
from .output import Output

__all__ = [
    "DONE",
    "EXIT_DAMAGED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "KIND_CHOICES",
    "SOURCE_KINDS",
    "Arg",
    "Check",
    "CheckResult",
    "CliError",
    "Command",
    "Context",
    "Exclusive",
    "arg",
    "command",
    "exclusive",
    "op_id",
    "open_reader",
    "operator_name",
    "parse_seq",
    "parse_time_ns",
    "resolve_seq",
    "verify_check",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DAMAGED = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141

#: ``--kind`` values that select by source instead of by record kind.
SOURCE_KINDS = ("recovery", "manual")
KIND_CHOICES = (*KIND_CODES, *SOURCE_KINDS)


class CliError(Exception):
    """A one-line error for the user: what went wrong, where, and what to do."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Arg:
    """An ``add_argument`` call, kept until the parser is built."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Exclusive:
    """Arguments of which at most one (exactly one if ``required``) may be given."""

    args: tuple[Arg, ...]
    required: bool = False


def arg(*flags: str, **kwargs: Any) -> Arg:
    """Declare an argument of a command: the same parameters as ``add_argument``."""
    return Arg(flags, kwargs)


def exclusive(*args: Arg, required: bool = False) -> Exclusive:
    return Exclusive(args, required)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    example: str
    run: Callable[[Context], int]
    arguments: tuple[Arg | Exclusive, ...] = ()
    needs_path: bool = True
    description: str = ""


def command(
    name: str,
    *,
    help: str,
    example: str,
    arguments: Sequence[Arg | Exclusive] = (),
    needs_path: bool = True,
    description: str = "",
) -> Callable[[Callable[[Context], int]], Command]:
    """Make ``fn(ctx) -> exit code`` the :class:`Command` ``journal NAME``.

    ``help`` is one line; ``example`` a full command line (both are required:
    a test checks every command has them). Commands get the journal ``PATH``
    positional (unless ``needs_path=False``) and the shared output options.
    Nothing is registered as a side effect: each command module lists its
    commands in its ``COMMANDS``, and :mod:`journal.cli.app` imports those
    modules explicitly.
    """
    if not help or not example:
        raise ValueError(f"command {name!r} needs help text and an example")

    def make(fn: Callable[[Context], int]) -> Command:
        return Command(name, help, example, fn, tuple(arguments), needs_path, description)

    return make


@dataclass
class CheckResult:
    """The outcome of one ``journal verify`` check."""

    check: str
    ok: bool
    summary: str
    first_bad_seq: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One ``journal verify`` check: ``run(journal) -> CheckResult``."""

    name: str
    run: Callable[[Journal], CheckResult]
    help: str = ""


def verify_check(name: str) -> Callable[[Callable[[Journal], CheckResult]], Check]:
    """Make ``fn(journal) -> CheckResult`` a :class:`Check` (listed in its module's ``CHECKS``)."""

    def make(fn: Callable[[Journal], CheckResult]) -> Check:
        return Check(name, fn, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "")

    return make


class Context:
    """What a command gets: parsed ``args``, the ``out``put, and lazily opened journals."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.args = args
        self.out = out
        self._reader: Journal | None = None

    @property
    def path(self) -> str:
        return str(self.args.path)

    def reader(self) -> Journal:
        """The journal opened read-only (no lock, nothing verified on open), shared by the command."""
        if self._reader is None or self._reader.closed:
            self._reader = open_reader(self.path)
        return self._reader

    def adopt(self, journal: Journal) -> Journal:
        """Make ``journal`` (a reopened reader) the one closed at the end."""
        self._reader = journal
        return journal

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def open_reader(path: str) -> Journal:
    """The read-only journal every read command uses (takes no lock, verifies nothing on open)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotAJournalError(f"{path}: is a file; a journal is a directory (the one the bot opens)")
    return Journal(path, readonly=True, verify_on_open="none")


def operator_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        return f"uid {os.getuid()}"


def op_id(journal: Journal, text: str) -> int:
    """An op id from ``text``: an integer op id or a client id of this journal."""
    try:
        return journal.resolve_op(text)
    except UnknownOperationError as exc:
        raise CliError(f"{exc}; list operations with 'journal dump {journal.path} --kind intent'") from None


def parse_seq(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a sequence number (an integer; negative counts from the end, -1 is the last)"
        ) from None


_TIME_RE = re.compile(r"^(?P<main>[^.]*)(?:\.(?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d\d:?\d\d)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time_ns(text: str) -> int:
    """ISO-8601 (UTC unless an offset is given) or integer nanoseconds -> nanoseconds since the epoch."""
    s = text.strip()
    if s.isdigit():
        return int(s)
    m = _TIME_RE.match(s)
    try:
        if m is None:
            raise ValueError(s)
        dt = datetime.fromisoformat(m["main"] + (m["tz"] or ""))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give ISO-8601 UTC like 2026-05-09T12:00:00Z (or 2026-05-09) "
            "or integer nanoseconds since the epoch"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    frac = (m["frac"] or "").ljust(9, "0")
    return (dt - _EPOCH) // timedelta(seconds=1) * 1_000_000_000 + int(frac or 0)


DONE = {"commit": "committed", "abort": "aborted"}


def resolve_seq(value: int | None, last_seq: int) -> int | None:
    if value is None or value >= 0:
        return value
    return max(last_seq + 1 + value, 0)
