"""The operation commands of ``journal``: ``show`` (one operation's timeline), ``pending``, ``resolve``."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any, NoReturn

from ..errors import JournalLockedError, OperationStateError
from ..log import Journal
from .base import DONE, EXIT_LOCKED, EXIT_OK, CliError, Context, arg, command, exclusive, op_id, operator_name
from .output import age_text, iso_ns, ms, record_dict

__all__ = ["COMMANDS", "pending_cmd", "resolve_cmd", "show_cmd"]


@command(
    "show",
    help="one operation's timeline: intent, outcome, events, recovery and manual records, with durations",
    example="journal show bot.journal tjAbC123xy4F  # or an op id: journal show bot.journal 1042",
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
    if not out.json:
        outcome = next((r for r in records if r.kind in ("commit", "abort")), None)
        first = records[0]
        if outcome is None:
            status = f"PENDING for {age_text(ms(time.time_ns() - intent_ns))}"
        else:
            status = f"{DONE[outcome.kind]} by {outcome.source} after {ms(outcome.ts_ns - intent_ns)} ms"
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
    op = op_id(reader, a.op)
    records = reader.timeline(op)
    outcome = next((r for r in records if r.kind in ("commit", "abort")), None)
    if outcome is not None:
        raise CliError(
            f"{ctx.path}: operation {op} ({records[0].type}) was already {DONE[outcome.kind]} at seq {outcome.seq} "
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


COMMANDS = (show_cmd, pending_cmd, resolve_cmd)
