"""The ``journal`` command: inspect, verify, back up and hand-correct a journal.

Run as ``journal COMMAND PATH ...`` (console script) or ``python -m journal``.
Every command has an example in ``journal COMMAND --help``.

Read commands (``dump``, ``show``, ``pending``, ``verify``, ``backup``,
``stats``) open the journal read-only, without the writer lock, so they run
beside a bot that is writing, without blocking it. Only ``resolve`` writes;
it needs the writer lock and is refused while a bot holds the journal.

Output: a table on a terminal, JSON lines otherwise; ``--json``, ``--table``,
``--csv`` or ``--line`` (every field of a row on a line of its own) choose
explicitly. In JSON, Decimals are strings, bytes are base64 (``--bytes hex``
for hex) and times are ``ts_ns`` plus ISO-8601 UTC ``time`` (see
:mod:`journal.cli.output`). On a terminal, tables fit its width, long output
goes through a pager and colour marks kinds and problems (see
:mod:`journal.cli.terminal`: ``--no-pager``, ``--color``, ``NO_COLOR``).
Times may be typed as people do: ``--since 2h``, ``--since "2026-12-01 03:00"``
(see :mod:`journal.cli.times`). Warnings (a filter that matched nothing, a
library's complaint) go to stderr as ``journal: warning: ...``.

Exit codes:

- 0: success (and nothing damaged was seen);
- 1: error: bad input, not a journal, a journal of another format version, an
  unknown operation, malformed JSON, an I/O failure (one line on stderr);
- 2: usage error (unknown option, missing argument);
- 3: damage found: ``verify`` failed, ``dump`` printed damaged records, or a
  command met a record whose checksum or chain is wrong;
- 4: the journal is held by a writer (``resolve`` while a bot runs);
- 130: interrupted with Ctrl-C (``dump --follow`` exits 0 on Ctrl-C instead);
- 141: stdout closed early (``journal dump | head``), quietly, as a tool
  killed by SIGPIPE would.

The commands live in one module per family, each listing them in its
``COMMANDS``; this module imports those modules explicitly and builds one
parser from them, so ``journal``, ``python -m journal`` and
``python -m journal.cli`` always show the same commands:

- :mod:`journal.cli.dump` -- ``dump`` (and ``--follow``);
- :mod:`journal.cli.operations` -- ``show``, ``pending``, ``resolve``;
- :mod:`journal.cli.maintenance` -- ``verify``, ``backup``, ``stats``;
- :mod:`journal.cli.state` -- ``snapshots``, ``state``, ``diff``, ``correct``, ``compact``.

Adding a command: one function made a :class:`~journal.cli.base.Command` with
:func:`~journal.cli.base.command`, listed in its module's ``COMMANDS``::

    @command("state", help="print the state at a sequence number",
             example="journal state bot.journal --at 1200 --json",
             arguments=[arg("--at", type=int, metavar="SEQ", help="...")])
    def state_cmd(ctx: Context) -> int:
        journal = ctx.reader()
        ...
        ctx.out.objects([...])
        return EXIT_OK

``journal verify`` runs :data:`journal.cli.maintenance.CHECKS`.

What a command prints with, so that every command behaves alike for people:

- ``ctx.out.table([Column("OP", "op", ">", priority=9), ..., Column("DATA", "what", flex=True)], rows)``
  -- JSON lines, CSV, ``--line`` or a table fitted to the terminal
  (:mod:`journal.cli.layout`: the flex column is cut or wrapped, low
  priorities shortened or dropped first); ``ctx.out.objects([...])`` for
  key-value blocks; ``ctx.out.prose(text)`` for a sentence wrapped to the width;
- ``ctx.terminal.progress(label, total)`` -- a progress line on stderr, only on
  a terminal (:class:`journal.cli.terminal.Progress`); ``ctx.warn(text)`` -- a
  ``journal: warning:`` line after the output;
- ``@command(..., pages=False)`` for a command that asks a question or runs
  until stopped (the pager stays away); ``ctx.confirm(question)`` asks;
- :mod:`journal.cli.times` (``--since 2h``, ``3 min ago``),
  :mod:`journal.cli.pictures` (bars, histograms, ``size()``),
  :mod:`journal.cli.summary` (a record's data in one line).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from ..errors import (
    CorruptionError,
    FormatVersionError,
    JournalError,
    JournalLockedError,
    NotAJournalError,
    UnknownOperationError,
)
from ..log.storage import FORMAT_VERSION
from . import dump, fleet, maintenance, operations, state
from .base import (
    EXIT_DAMAGED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_USAGE,
    CliError,
    Command,
    Context,
    Exclusive,
    parse_time_ns,
)
from .output import MODES, Output
from .terminal import COLOR_CHOICES, Terminal

__all__ = [
    "COMMANDS",
    "EXIT_DAMAGED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "build_parser",
    "main",
    "parse_time_ns",
]

#: Every subcommand, by name, in the order ``journal --help`` lists them.
COMMANDS: dict[str, Command] = {
    cmd.name: cmd
    for cmd in (*dump.COMMANDS, *operations.COMMANDS, *maintenance.COMMANDS, *state.COMMANDS, *fleet.COMMANDS)
}


# -- the parser ----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # "journal: error: dump: ..." for a subcommand, "journal: error: ..." for the command itself
        where = self.prog.removeprefix("journal").strip()
        prefix = f"{where}: " if where else ""
        self.exit(EXIT_USAGE, f"journal: error: {prefix}{message} (see '{self.prog} --help')\n")


_EPILOG = """\
exit codes: 0 ok, 1 error, 2 usage, 3 damage found, 4 journal held by a writer,
130 interrupted, 141 output closed early.
Read commands never block the bot; run 'journal COMMAND --help' for an example.
Recovery procedures, by symptom: docs/recovery.md."""


def version_text() -> str:
    """``journal 0.1.0 (tradejournal, journal format 2)``."""
    from importlib import metadata

    try:
        package = metadata.version("tradejournal")
    except metadata.PackageNotFoundError:
        package = "unknown (tradejournal is not installed)"
    return f"journal {package} (tradejournal, journal format {FORMAT_VERSION})"


class _Version(argparse.Action):
    """``--version``, reading the package metadata only when asked (importlib.metadata costs every run ~20 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        sys.stdout.write(version_text() + "\n")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The parser: one group of verb subcommands, shared options defined once."""
    output = _Parser(add_help=False)
    group = output.add_argument_group("output")
    # (a mutually exclusive group would leave this argument group when copied from a parent parser)
    group.add_argument("--json", action="store_true", help="one JSON object per line (default when piped)")
    group.add_argument("--table", action="store_true", help="a table for people (default on a terminal)")
    group.add_argument("--csv", action="store_true", help="comma-separated values with a header line")
    group.add_argument("--line", action="store_true", help="every field of each row on a line of its own")
    group.add_argument("--wrap", action="store_true", help="wrap long table cells instead of cutting them")
    group.add_argument(
        "--bytes", choices=("base64", "hex"), default="base64", help="how JSON shows bytes (default: base64)"
    )
    group.add_argument(
        "--color",
        choices=COLOR_CHOICES,
        default="auto",
        help="colour: auto (a terminal without NO_COLOR), always, never",
    )
    group.add_argument("--no-pager", action="store_true", help="never page the output (a pipe never is)")
    path = _Parser(add_help=False)
    path.add_argument("path", metavar="PATH", help="the journal directory")

    parser = _Parser(
        prog="journal",
        description="Inspect, verify, back up and hand-correct a tradejournal journal.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for cmd in COMMANDS.values():
        parents = [path, output] if cmd.needs_path else [output]
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.help + (f"\n\n{cmd.description}" if cmd.description else ""),
            epilog=f"example:\n  {cmd.example}",
            parents=parents,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for a in cmd.arguments:
            if isinstance(a, Exclusive):
                g = p.add_mutually_exclusive_group(required=a.required)
                for x in a.args:
                    g.add_argument(*x.flags, **x.kwargs)
            else:
                p.add_argument(*a.flags, **a.kwargs)
    return parser


# -- messages on stderr ----------------------------------------------------------------------------


def _stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class _LibraryMessages(logging.Handler):
    """The library's warnings (``logging`` and ``warnings``) as ``journal: warning: ...`` lines.

    Installed for one run of :func:`main` and removed after it, so calling
    ``main()`` in a process leaves its logging as it found it.
    """

    def __init__(self, terminal: Terminal) -> None:
        super().__init__(logging.WARNING)
        self.terminal = terminal
        self._loggers = [logging.getLogger("journal")]
        self._saved_showwarning: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not end the command
            message = str(record.msg)
        level = "error" if record.levelno >= logging.ERROR else "warning"
        _stderr(_prefix(self.terminal, level) + message)

    def show_warning(self, message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
        _stderr(f"{_prefix(self.terminal, 'warning')}{message} ({category.__name__})")

    def __enter__(self) -> _LibraryMessages:
        for logger in self._loggers:
            logger.addHandler(self)
        self._saved_showwarning = warnings.showwarning
        warnings.showwarning = self.show_warning
        return self

    def __exit__(self, *exc: object) -> None:
        for logger in self._loggers:
            logger.removeHandler(self)
        warnings.showwarning = self._saved_showwarning


def _prefix(terminal: Terminal | None, level: str) -> str:
    text = f"journal: {level}:"
    if terminal is not None:
        text = terminal.err_style(text, "bad" if level == "error" else "warn")
    return text + " "


def _quiet_broken_pipe() -> int:
    # The reader went away (`journal dump | head`): point stdout at /dev/null so
    # the interpreter's final flush does not complain, and exit like SIGPIPE.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_PIPE


# -- main ----------------------------------------------------------------------------------------


def _run(cmd: Command, ctx: Context) -> tuple[int, str | None]:
    """Run ``cmd``; its exit code and the one-line error to print (None: none)."""
    args = ctx.args
    try:
        code = cmd.run(ctx)
        ctx.out.flush()
        return code, None
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED, None
    except CliError as exc:
        _flush_quietly(ctx)
        return exc.code, str(exc)
    except JournalLockedError as exc:
        return EXIT_LOCKED, str(exc)
    except CorruptionError as exc:
        _flush_quietly(ctx)
        path = getattr(args, "path", "PATH")
        where = "" if str(exc).startswith(str(path)) else f"{path}: "
        hint = "" if "journal verify" in str(exc) else f"; run 'journal verify {path}'"
        return EXIT_DAMAGED, f"{where}{exc}{hint}"
    except UnknownOperationError as exc:
        return EXIT_ERROR, f"{exc}; list operations with 'journal dump {args.path} --kind intent'"
    except (NotAJournalError, FormatVersionError, JournalError) as exc:
        return EXIT_ERROR, str(exc)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return EXIT_ERROR, f"{where}{exc.strerror or exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``journal`` command; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # a newcomer typing `journal`: the commands, not an error about a missing one
        sys.stdout.write(parser.format_help())
        return EXIT_USAGE
    args = parser.parse_args(argv)
    cmd = COMMANDS[args.command]
    chosen = [m for m in MODES if getattr(args, m)]
    if len(chosen) > 1:
        parser.error(f"--{chosen[0]} and --{chosen[1]} exclude each other: choose one output")
    terminal = Terminal(color=args.color, stdout_fd=_fileno(sys.stdout), stderr_fd=_fileno(sys.stderr))
    mode = chosen[0] if chosen else ("table" if terminal.is_tty else "json")
    ctx = Context(args, Output(mode, args.bytes, terminal=terminal, wrap=args.wrap), terminal)
    pipe_closed = False
    with _LibraryMessages(terminal):
        try:
            if cmd.pages and not args.no_pager and not getattr(args, "follow", False):
                terminal.start_pager()
            code, message = _run(cmd, ctx)
        except BrokenPipeError:
            pipe_closed = True
            code, message = EXIT_PIPE, None
        finally:
            try:
                ctx.close()
            except Exception:
                pass
            paged = terminal.paging
            terminal.stop_pager()  # the person reads to the end (or quits) before any message below
        if pipe_closed:
            _quiet_broken_pipe()
            if paged:  # the person quit the pager early: that is not a failure
                code = EXIT_OK
        for warning in ctx.warnings:
            _stderr(_prefix(terminal, "warning") + warning)
        if message is not None:
            _stderr(_prefix(terminal, "error") + message)
    return code


def _fileno(stream: Any) -> int:
    """The descriptor behind ``stream``; -1 (not a terminal) for one in memory (main() called by a program)."""
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return -1


def _flush_quietly(ctx: Context) -> None:
    try:
        ctx.out.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
