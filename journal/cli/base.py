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
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import JournalLockedError, NotAJournalError, UnknownOperationError
from ..log import Journal
from ..log.record import KIND_CODES
from ..log.storage import LOCK_FILE
from .output import Output
from .terminal import Terminal
from .times import parse_time_ns

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
    "lock_holders",
    "locked_message",
    "op_id",
    "open_reader",
    "open_writer",
    "operator_name",
    "pid_alive",
    "processes_with_open",
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
    #: Output may go through the pager on a terminal (not for commands that ask a question).
    pages: bool = True


def command(
    name: str,
    *,
    help: str,
    example: str,
    arguments: Sequence[Arg | Exclusive] = (),
    needs_path: bool = True,
    description: str = "",
    pages: bool = True,
) -> Callable[[Callable[[Context], int]], Command]:
    """Make ``fn(ctx) -> exit code`` the :class:`Command` ``journal NAME``.

    ``help`` is one line; ``example`` a full command line (both are required:
    a test checks every command has them). Commands get the journal ``PATH``
    positional (unless ``needs_path=False``) and the shared output options;
    ``pages=False`` keeps the pager away (a command that asks for confirmation).
    Nothing is registered as a side effect: each command module lists its
    commands in its ``COMMANDS``, and :mod:`journal.cli.app` imports those
    modules explicitly.
    """
    if not help or not example:
        raise ValueError(f"command {name!r} needs help text and an example")

    def make(fn: Callable[[Context], int]) -> Command:
        return Command(name, help, example, fn, tuple(arguments), needs_path, description, pages)

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
    """What a command gets: parsed ``args``, the ``out``put, the ``terminal``, and lazily opened journals."""

    def __init__(self, args: argparse.Namespace, out: Output, terminal: Terminal | None = None) -> None:
        self.args = args
        self.out = out
        self.terminal = terminal if terminal is not None else Terminal(color="never")
        self._reader: Journal | None = None
        #: Warnings for stderr, printed once the output (and the pager) is done.
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        """A ``journal: warning: ...`` line on stderr, after the output (so it is not lost in the pager)."""
        self.warnings.append(message)

    def confirm(self, question: str) -> bool:
        """Ask a person at a terminal (``--yes`` skips); without a terminal there is no one to ask: yes."""
        if getattr(self.args, "yes", False) or not self.terminal.interactive:
            return True
        self.out.flush()
        try:
            sys.stderr.write(f"{question} [y/N] ")
            sys.stderr.flush()
            answer = sys.stdin.readline()
        except (OSError, ValueError):
            return False
        return answer.strip().lower() in ("y", "yes")

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


def processes_with_open(path: str, names: Sequence[str]) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every process with one of the files ``names`` in ``path`` open (via /proc)."""
    wanted = set()
    for name in names:
        try:
            st = os.stat(os.path.join(path, name))
        except OSError:
            continue
        wanted.add((st.st_dev, st.st_ino))
    found: list[tuple[int, str]] = []
    if not wanted:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            for fd in os.listdir(fd_dir):
                try:
                    st = os.stat(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in wanted:
                    found.append((int(entry), _cmdline(int(entry))))
                    break
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found


def lock_holders(path: str) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every process with the journal's writer lock file open.

    The lock is an ``flock``: it belongs to the open file, so a process that
    inherited it (forked by native code without exec: Python's own forks close
    their copy) keeps it after the bot itself has gone -- while the lock file and ``/proc/locks`` still name the
    bot's pid. Scanning ``/proc/*/fd`` finds the processes that really hold it.
    """
    return processes_with_open(path, (LOCK_FILE,))


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:80] or "?"
    except OSError:
        return "?"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def locked_message(path: str, pid: int | None, what: str) -> str:
    """Why the writer lock could not be had, naming the process to stop (see :func:`lock_holders`)."""
    if pid and not pid_alive(pid):
        holders = [h for h in lock_holders(path) if h[0] != os.getpid()]
        who = ", ".join(f"pid {p} ({cmd})" for p, cmd in holders) or "a process this user cannot see (try as root)"
        return (
            f"{path}: journal is held by pid {pid}, which has exited; its lock lives on in {who}, which it "
            f"started without exec and which kept the lock file open: stop that process before {what}"
        )
    who = f"pid {pid}" if pid else "another process"
    return f"{path}: journal is held by {who} (a running bot?); stop it before {what}"


def open_writer(ctx: Context, what: str) -> Journal:
    """The journal opened for writing (the command's reader closed first); a clear exit 4 if a bot holds it."""
    ctx.close()
    try:
        return Journal(ctx.path)
    except JournalLockedError as exc:
        raise CliError(locked_message(ctx.path, exc.pid, what), EXIT_LOCKED) from None


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


DONE = {"commit": "committed", "abort": "aborted"}


def resolve_seq(value: int | None, last_seq: int) -> int | None:
    if value is None or value >= 0:
        return value
    return max(last_seq + 1 + value, 0)
