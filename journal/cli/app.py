"""The ``journal`` command: inspect, verify, back up and hand-correct a journal.

Run as ``journal COMMAND PATH ...`` (console script) or ``python -m journal``.
Every command has an example in ``journal COMMAND --help``.

Read commands (``dump``, ``show``, ``pending``, ``verify``, ``backup``,
``stats``) open the journal read-only, without the writer lock, so they run
beside a bot that is writing, without blocking it. Only ``resolve`` writes;
it needs the writer lock and is refused while a bot holds the journal.

Output: a table on a terminal, JSON lines otherwise; ``--json`` or
``--table`` choose explicitly. In JSON, Decimals are strings, bytes are base64
(``--bytes hex`` for hex) and times are ``ts_ns`` plus ISO-8601 UTC ``time``
(see :mod:`journal.cli.output`).

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
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

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
from .output import Output

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
        self.exit(EXIT_USAGE, f"journal: error: {self.prog}: {message} (see '{self.prog} --help')\n")


_EPILOG = """\
exit codes: 0 ok, 1 error, 2 usage, 3 damage found, 4 journal held by a writer,
130 interrupted, 141 output closed early.
Read commands never block the bot; run 'journal COMMAND --help' for an example."""


def build_parser() -> argparse.ArgumentParser:
    """The parser: one group of verb subcommands, shared options defined once."""
    output = _Parser(add_help=False)
    group = output.add_argument_group("output")
    # (a mutually exclusive group would leave this argument group when copied from a parent parser)
    group.add_argument("--json", action="store_true", help="one JSON object per line (default when piped)")
    group.add_argument("--table", action="store_true", help="a table for people (default on a terminal)")
    group.add_argument(
        "--bytes", choices=("base64", "hex"), default="base64", help="how JSON shows bytes (default: base64)"
    )
    path = _Parser(add_help=False)
    path.add_argument("path", metavar="PATH", help="the journal directory")

    parser = _Parser(
        prog="journal",
        description="Inspect, verify, back up and hand-correct a tradejournal journal.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s (journal format {FORMAT_VERSION})")
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


# -- main ----------------------------------------------------------------------------------------


def _error(message: str) -> None:
    try:
        sys.stderr.write(f"journal: error: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _quiet_broken_pipe() -> int:
    # The reader went away (`journal dump | head`): point stdout at /dev/null so
    # the interpreter's final flush does not complain, and exit like SIGPIPE.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``journal`` command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cmd = COMMANDS[args.command]
    if args.json and args.table:
        parser.error("--json and --table exclude each other")
    as_json = args.json or (not args.table and not sys.stdout.isatty())
    ctx = Context(args, Output(as_json, args.bytes))
    try:
        code = cmd.run(ctx)
        ctx.out.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CliError as exc:
        _flush_quietly(ctx)
        _error(str(exc))
        return exc.code
    except JournalLockedError as exc:
        _error(str(exc))
        return EXIT_LOCKED
    except CorruptionError as exc:
        _flush_quietly(ctx)
        path = getattr(args, "path", "PATH")
        where = "" if str(exc).startswith(str(path)) else f"{path}: "
        hint = "" if "journal verify" in str(exc) else f"; run 'journal verify {path}'"
        _error(f"{where}{exc}{hint}")
        return EXIT_DAMAGED
    except UnknownOperationError as exc:
        _error(f"{exc}; list operations with 'journal dump {args.path} --kind intent'")
        return EXIT_ERROR
    except (NotAJournalError, FormatVersionError, JournalError) as exc:
        _error(str(exc))
        return EXIT_ERROR
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}")
        return EXIT_ERROR
    finally:
        try:
            ctx.close()
        except Exception:
            pass


def _flush_quietly(ctx: Context) -> None:
    try:
        ctx.out.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
