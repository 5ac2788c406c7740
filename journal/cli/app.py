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
(see :mod:`journal.cli_output`).

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

Adding a command (:mod:`journal.cli_state` adds ``snapshots``, ``state``,
``diff``, ``correct`` and ``compact`` this way): one function, registered
with :func:`command`::

    @command("state", help="print the state at a sequence number",
             example="journal state bot.journal --at 1200 --json",
             arguments=[arg("--at", type=int, metavar="SEQ", help="...")])
    def state_cmd(ctx: Context) -> int:
        journal = ctx.reader()
        ...
        ctx.out.objects([...])
        return EXIT_OK

in a module listed in :data:`EXTENSION_MODULES` (imported when it exists).
``journal verify`` runs every function registered with :func:`verify_check`;
snapshot checksums and state invariants are added the same way.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import importlib.util
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from ..errors import (
    CorruptionError,
    FormatVersionError,
    JournalError,
    JournalLockedError,
    NotAJournalError,
    OperationStateError,
    UnknownOperationError,
)
from ..log.journal import Journal
from ..log.record import HEADER, KIND_CODES, KIND_NAMES
from ..log.storage import FORMAT_VERSION
from .dump import Dumper, Filters, LogReader, Waker, dbs, open_reader, writer_pid
from .output import Output, age_text, iso_ns, ms, record_dict

__all__ = [
    "COMMANDS",
    "EXIT_DAMAGED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "EXTENSION_MODULES",
    "VERIFY_CHECKS",
    "CheckResult",
    "CliError",
    "Command",
    "Context",
    "arg",
    "build_parser",
    "command",
    "exclusive",
    "main",
    "parse_time_ns",
    "verify_check",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DAMAGED = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141

#: Modules that register more commands or verify checks; each is imported if it exists.
EXTENSION_MODULES: tuple[str, ...] = ("journal.cli.state_commands",)

_SOURCE_KINDS = ("recovery", "manual")
_KIND_CHOICES = (*KIND_CODES, *_SOURCE_KINDS)


class CliError(Exception):
    """A one-line error for the user: what went wrong, where, and what to do."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# -- the command registry ----------------------------------------------------


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


#: Every subcommand, by name, in registration order.
COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    *,
    help: str,
    example: str,
    arguments: Sequence[Arg | Exclusive] = (),
    needs_path: bool = True,
    description: str = "",
) -> Callable[[Callable[[Context], int]], Callable[[Context], int]]:
    """Register ``fn(ctx) -> exit code`` as ``journal NAME``.

    ``help`` is one line; ``example`` a full command line (both are required:
    a test checks every command has them). Commands get the journal ``PATH``
    positional (unless ``needs_path=False``) and the shared output options.
    """
    if not help or not example:
        raise ValueError(f"command {name!r} needs help text and an example")

    def register(fn: Callable[[Context], int]) -> Callable[[Context], int]:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} is registered twice")
        COMMANDS[name] = Command(name, help, example, fn, tuple(arguments), needs_path, description)
        return fn

    return register


@dataclass
class CheckResult:
    """The outcome of one ``journal verify`` check."""

    check: str
    ok: bool
    summary: str
    first_bad_seq: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


#: ``journal verify`` runs these in order: (name, fn(journal) -> CheckResult).
VERIFY_CHECKS: list[tuple[str, Callable[[Journal], CheckResult]]] = []


def verify_check(name: str) -> Callable[[Callable[[Journal], CheckResult]], Callable[[Journal], CheckResult]]:
    """Register a check for ``journal verify`` (snapshots and state invariants go here)."""

    def register(fn: Callable[[Journal], CheckResult]) -> Callable[[Journal], CheckResult]:
        VERIFY_CHECKS.append((name, fn))
        return fn

    return register


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


def _seq(text: str) -> int:
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


# -- helpers -----------------------------------------------------------------------


def _op_id(journal: Journal, text: str) -> int:
    """An op id from ``text``: an integer op id or a client id of this journal."""
    if text.isdigit():
        return int(text)
    op = journal.op_id_of(text)
    if op is None:
        raise CliError(
            f"{journal.path}: {text!r} is neither an op id nor a client id of this journal "
            f"(its client ids start with 'tj{journal.journal_id}'); list operations with 'journal dump {journal.path}'"
        )
    return op


_DONE = {"commit": "committed", "abort": "aborted"}


def _resolve_seq(value: int | None, last_seq: int) -> int | None:
    if value is None or value >= 0:
        return value
    return max(last_seq + 1 + value, 0)


# -- dump ------------------------------------------------------------------------------


@command(
    "dump",
    help="print records, filtered, as a table or JSON lines; --follow prints new ones as they come",
    example="journal dump bot.journal --type place_order --since 2026-05-09T00:00:00Z --json",
    description=(
        "Records stream in sequence order with bounded memory. Each record's checksum is checked: a damaged\n"
        "record prints as a row whose 'checksum' says what is wrong (whatever the filters) and the exit code\n"
        "is 3 at the end. --kind recovery/manual select by source; values of one option are alternatives,\n"
        "different options must all match. --pending: records of the operations pending now (and, with\n"
        "--follow, of operations begun later). --symbol matches data.symbol exactly (an abort has none: use\n"
        "'journal show OP'). --follow ends on Ctrl-C (exit 0) or once past --to/--until."
    ),
    arguments=[
        arg("--from", dest="start", type=_seq, metavar="SEQ", help="first sequence number (negative: from the end)"),
        arg("--to", dest="stop", type=_seq, metavar="SEQ", help="last sequence number (negative: from the end)"),
        arg("--since", type=parse_time_ns, metavar="TIME", help="records at or after TIME (ISO-8601 UTC or ns)"),
        arg("--until", type=parse_time_ns, metavar="TIME", help="records at or before TIME (ISO-8601 UTC or ns)"),
        arg("--type", dest="types", action="append", metavar="TYPE", help="record type, e.g. place_order (repeatable)"),
        arg("--kind", dest="kinds", action="append", choices=_KIND_CHOICES, help="record kind or source (repeatable)"),
        arg("--op", metavar="OP", help="one operation's records: op id or client id"),
        arg("--symbol", metavar="SYM", help="records whose data.symbol is SYM, e.g. BTC/USDT"),
        arg("--pending", action="store_true", help="only records of operations without an outcome"),
        arg("-f", "--follow", action="store_true", help="keep printing records as they are committed"),
    ],
)
def dump_cmd(ctx: Context) -> int:
    a = ctx.args
    journal = ctx.reader()
    last_seq = journal.last_seq
    start, stop = _resolve_seq(a.start, last_seq), _resolve_seq(a.stop, last_seq)
    if start is not None and stop is not None and start > stop:
        raise CliError(f"--from {a.start} is after --to {a.stop} (seq {start} > {stop}); swap them")
    if a.since is not None and a.until is not None and a.since > a.until:
        raise CliError(f"--since {iso_ns(a.since)} is after --until {iso_ns(a.until)}; swap them")
    kinds = [k for k in a.kinds or () if k in KIND_CODES]
    sources = [k for k in a.kinds or () if k in _SOURCE_KINDS]
    reader = LogReader(ctx.path, journal)
    op = None
    if a.op is not None:
        op = _op_id(journal, a.op)
        if not reader.op_seqs(op):
            raise CliError(
                f"{ctx.path}: no operation {a.op} in this journal (or it was compacted); "
                f"list operations with 'journal dump {ctx.path} --kind intent'"
            )
    filters = Filters(
        start=start,
        stop=stop,
        since_ns=a.since,
        until_ns=a.until,
        kinds=frozenset(KIND_CODES[k] for k in kinds) if kinds else None,
        sources=frozenset(sources) if sources else None,
        types=frozenset(a.types) if a.types else None,
        op=op,
        symbol=a.symbol,
        pending=set(reader.pending_ops()) if a.pending else None,
    )
    out = ctx.out
    out.dump_header()
    dumper = Dumper(reader, filters, out.dump_rows)
    waker = None
    if a.follow:  # Ctrl-C (or SIGTERM) is how a follow ends: exit cleanly
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        pos = dumper.initial()
        if a.follow:
            out.flush()
            waker = Waker(ctx.path)
            if waker.error:
                print(f"journal: note: file events unavailable ({waker.error}); polling", file=sys.stderr)
            dumper.follow(pos, waker, out.flush)
    except KeyboardInterrupt:
        if not a.follow:
            raise
    finally:
        if waker is not None:
            waker.close()
        ctx.adopt(reader.journal)  # the reader may have reopened: close the live one
    damaged = dumper.damaged + out.unprintable
    if damaged:
        out.flush()
        first = f", the first at seq {dumper.first_damaged}" if dumper.first_damaged is not None else ""
        raise CliError(
            f"{ctx.path}: {damaged} damaged record(s){first}; run 'journal verify {ctx.path}' "
            "and restore from a backup",
            EXIT_DAMAGED,
        )
    return EXIT_OK


# -- show, pending ------------------------------------------------------------------------


@command(
    "show",
    help="one operation's timeline: intent, outcome, events, recovery and manual records, with durations",
    example="journal show bot.journal tjAbC123xy4F  # or an op id: journal show bot.journal 1042",
    arguments=[arg("op", metavar="OP", help="op id (the intent's sequence number) or client order id")],
)
def show_cmd(ctx: Context) -> int:
    journal = ctx.reader()
    op = _op_id(journal, ctx.args.op)
    records = journal.timeline(op)
    intent_ns = records[0].ts_ns
    rows = []
    prev = intent_ns
    for rec in records:
        row = record_dict(rec)
        row["since_intent_ms"] = ms(rec.ts_ns - intent_ns)
        row["since_prev_ms"] = ms(rec.ts_ns - prev)
        prev = rec.ts_ns
        rows.append(row)
    out = ctx.out
    if not out.json:
        outcome = next((r for r in records if r.kind in ("commit", "abort")), None)
        first = records[0]
        if outcome is None:
            status = f"PENDING for {age_text(ms(time.time_ns() - intent_ns))}"
        else:
            status = f"{_DONE[outcome.kind]} by {outcome.source} after {ms(outcome.ts_ns - intent_ns)} ms"
        out.write_lines([f"op {op} {first.type}, client id {first.client_id}: {status}"])
    out.table(
        [
            ("SEQ", "seq"),
            ("TIME (UTC)", "time"),
            ("KIND", "kind"),
            ("TYPE", "type"),
            ("SOURCE", "source"),
            ("+MS", "since_intent_ms"),
            ("GAP MS", "since_prev_ms"),
            ("DATA", "data"),
        ],
        rows,
    )
    return EXIT_OK


@command(
    "pending",
    help="operations without an outcome (to reconcile), oldest first, with their age",
    example="journal pending bot.journal --json",
)
def pending_cmd(ctx: Context) -> int:
    journal = ctx.reader()
    now = time.time_ns()
    rows = [
        {
            "op": rec.op,
            "client_id": rec.client_id,
            "type": rec.type,
            "seq": rec.seq,
            "time": iso_ns(rec.ts_ns),
            "ts_ns": rec.ts_ns,
            "age_ms": ms(now - rec.ts_ns),
            "source": rec.source,
            "data": rec.data,
        }
        for rec in journal.pending()
    ]
    out = ctx.out
    if not out.json:
        for row in rows:
            row["age"] = age_text(row["age_ms"])
        if not rows:
            out.write_lines(["no pending operations"])
            return EXIT_OK
    out.table(
        [
            ("OP", "op"),
            ("CLIENT ID", "client_id"),
            ("TYPE", "type"),
            ("SINCE (UTC)", "time"),
            ("AGE", "age"),
            ("DATA", "data"),
        ],
        rows,
    )
    return EXIT_OK


# -- verify ------------------------------------------------------------------------------


@verify_check("records")
def _check_records(journal: Journal) -> CheckResult:
    """Every record's checksum and the whole hash chain (Journal.verify)."""
    report = journal.verify()
    details = {"records_checked": report.records_checked, "first_seq": report.first_seq, "last_seq": report.last_seq}
    if report.ok:
        return CheckResult("records", True, str(report), None, details)
    return CheckResult(
        "records", False, f"damaged at seq {report.first_bad_seq}: {report.problem}", report.first_bad_seq, details
    )


@verify_check("pending-index")
def _check_pending_index(journal: Journal) -> CheckResult:
    """Every op id in the pending index names an intent in the log."""
    reader = LogReader(journal.path, journal)
    ops = reader.pending_ops()
    stored = {int.from_bytes(k, "big"): v for chunk in reader.fetch(ops) for k, v in chunk}
    for op in ops:
        value = stored.get(op)
        if value is None:
            return CheckResult(
                "pending-index", False, f"pending index names op {op} but the log has no such record", op
            )
        if len(value) < HEADER.size or KIND_NAMES.get(value[24]) != "intent":
            return CheckResult("pending-index", False, f"pending index names op {op}, which is not an intent", op)
    return CheckResult("pending-index", True, f"ok: {len(ops)} pending operations, each with its intent")


@command(
    "verify",
    help="check every record's checksum, the hash chain and the indexes; exit 3 at the first damage",
    example="journal verify bot.journal && echo intact",
)
def verify_cmd(ctx: Context) -> int:
    journal = ctx.reader()
    results = []
    for name, fn in VERIFY_CHECKS:
        try:
            res = fn(journal)
        except CorruptionError as exc:
            res = CheckResult(name, False, str(exc), exc.seq)
        results.append(res)
    rows = [
        {"check": r.check, "ok": r.ok, "summary": r.summary, "first_bad_seq": r.first_bad_seq, **r.details}
        for r in results
    ]
    if not ctx.out.json:
        for row in rows:
            row["status"] = "ok" if row["ok"] else "FAILED"
    ctx.out.table([("CHECK", "check"), ("STATUS", "status"), ("RESULT", "summary")], rows)
    bad = next((r for r in results if not r.ok), None)
    if bad is not None:
        ctx.out.flush()
        raise CliError(f"{ctx.path}: {bad.check}: {bad.summary}; restore from a backup or repair by hand", EXIT_DAMAGED)
    return EXIT_OK


# -- resolve ---------------------------------------------------------------------------------


def _parse_result(text: str | None) -> Any:
    if text is None:
        return None

    def no_constant(name: str) -> NoReturn:
        raise ValueError(f"{name} is not a number the journal stores")

    try:
        return json.loads(text, parse_float=Decimal, parse_constant=no_constant)
    except ValueError as exc:
        raise CliError(
            f'--result is not valid JSON ({exc}); quote keys and strings, e.g. --result \'{{"id": "123", "status": "closed"}}\''
        ) from None


@command(
    "resolve",
    help="settle a pending operation by hand (journaled with source 'manual' and your reason)",
    example='journal resolve bot.journal 1042 --commit --result \'{"id": "98765", "status": "closed"}\' '
    "--reason 'filled, seen on the exchange UI'",
    description=(
        "Writes the commit or abort marker with source 'manual', followed by a 'manual_resolve' event\n"
        "holding the reason and the operator. Needs the writer lock: refused (exit 4) while a bot holds the\n"
        "journal. Numbers with a fraction in --result are stored as exact Decimals."
    ),
    arguments=[
        arg("op", metavar="OP", help="op id or client id of a pending operation"),
        exclusive(
            arg("--commit", action="store_true", help="the operation happened"),
            arg("--abort", action="store_true", help="the operation definitely did not happen"),
            required=True,
        ),
        arg("--result", metavar="JSON", help="with --commit: the outcome, e.g. the exchange's order"),
        arg("--reason", required=True, metavar="TEXT", help="why (kept in the journal)"),
    ],
)
def resolve_cmd(ctx: Context) -> int:
    a = ctx.args
    if a.result is not None and not a.commit:
        raise CliError("--result goes with --commit; an abort records only its --reason")
    if not a.reason.strip():
        raise CliError("--reason must say why you resolve the operation by hand")
    result = _parse_result(a.result)
    reader = ctx.reader()
    op = _op_id(reader, a.op)
    records = reader.timeline(op)
    outcome = next((r for r in records if r.kind in ("commit", "abort")), None)
    if outcome is not None:
        raise CliError(
            f"{ctx.path}: operation {op} ({records[0].type}) was already {_DONE[outcome.kind]} at seq {outcome.seq} "
            f"by {outcome.source}; only a pending operation can be resolved"
        )
    ctx.close()
    try:
        writer = Journal(ctx.path)
    except JournalLockedError as exc:
        who = f"pid {exc.pid}" if exc.pid else "another process"
        raise CliError(
            f"{ctx.path}: journal is held by {who} (a running bot?); stop it before resolving op {op}, "
            "or let its reconciliation resolve it",
            EXIT_LOCKED,
        ) from None
    with writer:
        note = {"outcome": "commit" if a.commit else "abort", "reason": a.reason, "operator": operator_name()}
        try:
            if a.commit:
                writer.commit(op, result, source="manual", wait=False)
            else:
                writer.abort(op, a.reason, source="manual", wait=False)
        except OperationStateError as exc:
            raise CliError(str(exc)) from None
        writer.record("manual_resolve", note, op=op, source="manual", wait=True)
        written = [r for r in writer.timeline(op) if r.source == "manual"][-2:]
    rows = [record_dict(r) for r in written]
    ctx.out.table([("SEQ", "seq"), ("KIND", "kind"), ("TYPE", "type"), ("SOURCE", "source"), ("DATA", "data")], rows)
    return EXIT_OK


def operator_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        return f"uid {os.getuid()}"


# -- backup, stats ----------------------------------------------------------------------------


@command(
    "backup",
    help="a consistent, compact copy of the journal, safe while the bot writes",
    example="journal backup bot.journal /backups/bot-$(date +%F)",
    arguments=[
        arg("dest", metavar="DEST", help="a new (or empty) directory for the copy"),
        arg("--no-verify", action="store_true", help="skip verifying the copy"),
    ],
)
def backup_cmd(ctx: Context) -> int:
    dest = ctx.args.dest
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise CliError(f"{dest}: exists and is not a directory; give a new directory for the backup")
        if os.listdir(dest):
            raise CliError(f"{dest}: directory is not empty; give a new or empty directory for the backup")
    journal = ctx.reader()
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise CliError(f"{dest}: parent directory {parent} does not exist; create it first")
    os.makedirs(dest, mode=0o700, exist_ok=True)
    os.chmod(dest, 0o700)
    t0 = time.perf_counter()
    journal._storage.copy(dest, compact=True)
    copy_ms = ms(int((time.perf_counter() - t0) * 1e9))
    row: dict[str, Any] = {"dest": dest, "bytes": os.path.getsize(os.path.join(dest, "data.mdb")), "copy_ms": copy_ms}
    with open_reader(dest) as copy:
        row.update({"journal_id": copy.journal_id, "first_seq": copy.first_seq, "last_seq": copy.last_seq})
        if not ctx.args.no_verify:
            report = copy.verify()
            row["verified"] = report.ok
            if not report.ok:
                ctx.out.objects([row])
                raise CliError(
                    f"{dest}: the copy is damaged at seq {report.first_bad_seq}: {report.problem}", EXIT_DAMAGED
                )
    for name in os.listdir(dest):  # opening the copy made lock.mdb
        os.chmod(os.path.join(dest, name), 0o600)
    ctx.out.objects([row])
    return EXIT_OK


@command(
    "stats",
    help="sizes, record counts per kind, pending operations and their age, as a reader sees them",
    example="journal stats bot.journal --json",
    description="Append and sync latency percentiles are known only to the writing process (Journal.stats()).",
)
def stats_cmd(ctx: Context) -> int:
    journal = ctx.reader()
    reader = LogReader(ctx.path, journal)
    counts = reader.kind_counts()
    journal = ctx.adopt(reader.journal)
    info, stat = journal._storage.env.info(), journal._storage.env.stat()
    with journal._storage.read() as txn:
        entries = {name: (txn.stat(db)["entries"] if db is not None else 0) for name, db in dbs(journal).items()}
    pending = reader.pending_ops()
    oldest = None
    if pending:
        for chunk in reader.fetch(pending[:1]):
            for _key, value in chunk:
                oldest = int.from_bytes(value[16:24], "big")
    row: dict[str, Any] = {
        "path": ctx.path,
        "journal_id": journal.journal_id,
        "format_version": journal.meta.get("format_version"),
        "created": iso_ns(journal.meta.get("created_ns")),
        "lmdb_engine": journal.meta.get("lmdb_engine"),
        "file_bytes": os.path.getsize(os.path.join(ctx.path, "data.mdb")),
        "used_bytes": (info["last_pgno"] + 1) * stat["psize"],
        "map_size": info["map_size"],
        "records": entries.get("log", 0),
        "first_seq": journal.first_seq,
        "last_seq": journal.last_seq,
        "counts": counts,
        "pending": len(pending),
        "oldest_pending_op": pending[0] if pending else None,
        "oldest_pending_age_ms": ms(time.time_ns() - oldest) if oldest is not None else None,
        "snapshots": entries.get("snapshots", 0),
        "last_txnid": info["last_txnid"],
        "writer_pid": writer_pid(ctx.path),
        "latency": "known only to the writer: Journal.stats() in the bot",
    }
    ctx.out.objects([row])
    return EXIT_OK


# -- main ----------------------------------------------------------------------------------------


def _load_extensions() -> None:
    for name in EXTENSION_MODULES:
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


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
    _load_extensions()
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


if __name__ == "__main__":
    sys.exit(main())
