"""The operation commands of ``journal``: ``show`` (one operation's timeline), ``pending``, ``resolve``."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any, NoReturn

from ..errors import OperationStateError
from .base import DONE, EXIT_OK, CliError, Context, arg, command, exclusive, op_id, open_writer, operator_name
from .dump import writer_pid
from .layout import Column
from .output import iso_ns, ms, record_dict
from .pictures import Step, age_bar, glyphs_for, timeline
from .summary import summarize
from .times import ago, duration

__all__ = ["COMMANDS", "DEFAULT_SETTLE_WINDOW_MS", "PREVIEW_ARGS", "pending_cmd", "preview", "resolve_cmd", "show_cmd"]

#: The settle window a bot on a default ccxt binance client runs with (recvWindow 10 s + 1 s, recovery.venue;
#: the command cannot import recovery, so a test checks the two agree).
DEFAULT_SETTLE_WINDOW_MS = 11_000


@command(
    "show",
    help="one operation's timeline: intent, outcome, events, recovery and manual records, with durations",
    example="journal show bot.journal tjAbC123xy4F  # or an op id: journal show bot.journal 1042",
    description=(
        "On a terminal: the steps one under another, what each means, and the time between them drawn as\n"
        "bars. JSON: one line per record with since_intent_ms and since_prev_ms."
    ),
    arguments=[arg("op", metavar="OP", help="op id (the intent's sequence number) or client order id")],
)
def show_cmd(ctx: Context) -> int:
    journal = ctx.reader()
    op = op_id(journal, ctx.args.op)
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
    if out.mode != "table":
        out.table([("SEQ", "seq"), ("KIND", "kind"), ("TYPE", "type"), ("DATA", "data")], rows)
        return EXIT_OK
    first = records[0]
    outcome = next((r for r in records if r.kind in ("commit", "abort")), None)
    if outcome is None:
        age = time.time_ns() - intent_ns
        status = (f"PENDING for {duration(age)}: no outcome yet; reconciliation looks it up by its client id "
                  "('journal pending' shows it against the settle window)")  # fmt: skip
    else:
        by = {"bot": "the bot", "manual": "hand"}.get(outcome.source, outcome.source)
        status = (f"{DONE[outcome.kind]} by {by} {duration(outcome.ts_ns - intent_ns)} after the intent, "
                  f"{ago(outcome.ts_ns)}")  # fmt: skip
    st = out.style
    g = glyphs_for(ctx.terminal.unicode)
    lines = [
        st(f"op {op} {first.type}", "bold") + f"  client id {first.client_id}",
        *out.prose(summarize(first.data, out.encode)),
        *out.prose(status, "warn" if outcome is None else ("bad" if outcome.kind == "abort" else "ok")),
        "",
    ]
    steps = [Step(r.seq, r.ts_ns, r.kind, r.type, r.source, summarize(r.data, out.encode) if i else "")
             for i, r in enumerate(records)]  # fmt: skip
    lines += timeline(steps, out.width, st, g)
    out.write_lines(lines)
    return EXIT_OK


@command(
    "pending",
    help="operations without an outcome (to reconcile), oldest first, with their age against the settle window",
    example="journal pending bot.journal --settle-window 11000",
    description=(
        "Within the settle window after its intent, an order may exist on the exchange and not show yet\n"
        "(Binance executes a request up to recvWindow after its timestamp): reconciliation keeps such an\n"
        "operation pending. Past it, the exchange's answer settles it. The window is the bot's\n"
        "reconcile setting settle_window_ms (default 11000: recvWindow 10 s + 1 s of clock skew)."
    ),
    arguments=[
        arg(
            "--settle-window",
            type=int,
            default=DEFAULT_SETTLE_WINDOW_MS,
            metavar="MS",
            help=f"the bot's settle_window_ms (default {DEFAULT_SETTLE_WINDOW_MS})",
        ),  # fmt: skip
    ],
)
def pending_cmd(ctx: Context) -> int:
    journal = ctx.reader()
    window_ms = ctx.args.settle_window
    if window_ms < 0:
        raise CliError(f"--settle-window {window_ms}: give milliseconds >= 0")
    now = time.time_ns()
    g = glyphs_for(ctx.terminal.unicode)
    rows = []
    for rec in journal.pending():
        age_ns = now - rec.ts_ns
        picture, settled = age_bar(age_ns, window_ms * 1_000_000, g)
        row = {
            "op": rec.op,
            "client_id": rec.client_id,
            "type": rec.type,
            "seq": rec.seq,
            "time": iso_ns(rec.ts_ns),
            "ts_ns": rec.ts_ns,
            "age_ms": ms(age_ns),
            "settle_window_ms": window_ms,
            "past_settle_window": settled,
            "source": rec.source,
            "data": rec.data,
        }
        if ctx.out.people:
            row["age"] = ago(rec.ts_ns, now).removesuffix(" ago")
            left = window_ms * 1_000_000 - age_ns
            row["settle"] = f"{picture} past" if settled else f"{picture} {duration(left)} left"
            row["what"] = summarize(rec.data, ctx.out.encode)
        rows.append(row)
    out = ctx.out
    if out.mode == "table":
        if not rows:
            out.write_lines(["no pending operations"])
            return EXIT_OK
        past = sum(r["past_settle_window"] for r in rows)
        out.write_lines(out.prose(
            f"{len(rows)} pending; settle window {duration(window_ms * 1_000_000)}: {past} past it (the exchange's "
            f"answer settles them), {len(rows) - past} within it (may not show on the exchange yet)"
        ))  # fmt: skip
    out.table(
        [
            Column("OP", "op", ">", priority=9),
            Column("CLIENT ID", "client_id", priority=3, shorten="middle", min_width=10),
            Column("TYPE", "type", priority=8, shorten="end", min_width=8),
            Column("SINCE (UTC)", "time", priority=1),
            Column("AGE", "age", priority=6),
            Column("SETTLE", "settle", priority=7, paint=lambda r: "ok" if r["past_settle_window"] else "warn"),
            Column("DATA", "what", flex=True),
        ],
        rows,
    )
    return EXIT_OK


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


#: ``--dry-run`` and ``--yes``, shared by the commands that write by hand.
PREVIEW_ARGS = (
    arg("--dry-run", action="store_true", help="print the records that would be written, and write nothing"),
    arg("-y", "--yes", action="store_true", help="write without asking (a terminal asks first)"),
)


def preview(ctx: Context, rows: list[dict[str, Any]], question: str, effect: list[str] | None = None) -> bool:
    """Show the records about to be written; True to go on (``--dry-run`` stops here, a person may say no)."""
    out = ctx.out
    holder = writer_pid(ctx.path)
    if out.mode == "table":
        out.write_lines(out.prose(f"{'would write' if ctx.args.dry_run else 'about to write'} to {ctx.path}:",
                                  "bold"))  # fmt: skip
    # machines get the planned records only from a dry run (else the written ones, once, after the write)
    shown = [dict(r, dry_run=True) for r in rows] if out.json else rows
    if out.people or ctx.args.dry_run:
        out.table([("SEQ", "seq"), ("KIND", "kind"), ("TYPE", "type"), ("OP", "op"), ("SOURCE", "source"),
                   Column("DATA", "data", flex=True)], shown)  # fmt: skip
    if effect and out.people:
        out.write_lines(effect)
    if holder is not None and out.people:
        out.write_lines(out.prose(f"pid {holder} holds the journal: the write would be refused until it stops", "warn"))
    if ctx.args.dry_run:
        if out.mode == "table":
            out.write_lines(out.prose("dry run: nothing written", "dim"))
        return False
    if not ctx.confirm(question):
        raise CliError(f"{ctx.path}: not confirmed: nothing written (--yes writes without asking)")
    return True


@command(
    "resolve",
    help="settle a pending operation by hand (journaled with source 'manual' and your reason)",
    example='journal resolve bot.journal 1042 --commit --result \'{"id": "98765", "status": "closed"}\' '
    "--reason 'filled, seen on the exchange UI' --dry-run",
    description=(
        "Writes the commit or abort marker with source 'manual', followed by a 'manual_resolve' event\n"
        "holding the reason and the operator. --dry-run prints both records and writes nothing; on a terminal\n"
        "the command shows them and asks before writing (--yes does not ask). Needs the writer lock: refused\n"
        "(exit 4) while a bot holds the journal. Numbers with a fraction in --result are stored as exact Decimals."
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
        *PREVIEW_ARGS,
    ],
    pages=False,
)
def resolve_cmd(ctx: Context) -> int:
    a = ctx.args
    if a.result is not None and not a.commit:
        raise CliError("--result goes with --commit; an abort records only its --reason")
    if not a.reason.strip():
        raise CliError("--reason must say why you resolve the operation by hand")
    result = _parse_result(a.result)
    reader = ctx.reader()
    op = op_id(reader, a.op)
    records = reader.timeline(op)
    outcome = next((r for r in records if r.kind in ("commit", "abort")), None)
    if outcome is not None:
        raise CliError(
            f"{ctx.path}: operation {op} ({records[0].type}) was already {DONE[outcome.kind]} at seq {outcome.seq} "
            f"by {outcome.source}; only a pending operation can be resolved"
        )
    note = {"outcome": "commit" if a.commit else "abort", "reason": a.reason, "operator": operator_name()}
    nxt = reader.last_seq + 1
    planned = [
        {"seq": nxt, "kind": "commit" if a.commit else "abort", "type": records[0].type, "op": op,
         "client_id": records[0].client_id, "source": "manual", "data": result if a.commit else {"reason": a.reason}},
        {"seq": nxt + 1, "kind": "event", "type": "manual_resolve", "op": op, "client_id": records[0].client_id,
         "source": "manual", "data": note},
    ]  # fmt: skip
    verb = "commit" if a.commit else "abort"
    if not preview(ctx, planned, f"{verb} op {op} ({records[0].type}, {records[0].client_id}) by hand?"):
        return EXIT_OK
    with open_writer(ctx, f"resolving op {op}, or let its reconciliation resolve it") as writer:
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
    if ctx.out.mode == "table":
        ctx.out.write_lines(ctx.out.prose(f"written to {ctx.path}:", "ok"))
    ctx.out.table([("SEQ", "seq"), ("KIND", "kind"), ("TYPE", "type"), ("SOURCE", "source"), ("DATA", "data")], rows)
    return EXIT_OK


COMMANDS = (show_cmd, pending_cmd, resolve_cmd)
