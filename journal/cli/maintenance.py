"""The maintenance commands of ``journal``: ``verify`` (every check), ``backup``, ``stats``."""

from __future__ import annotations

import os
import time
from typing import Any

from ..errors import CorruptionError, DecodeError
from ..log import Journal
from ..log.codec import decode_display
from ..log.record import ABORT, COMMIT, INTENT, KIND_NAMES, body_of, kind_of, ts_of
from . import state as state_commands
from .base import (
    EXIT_DAMAGED,
    EXIT_OK,
    CheckResult,
    CliError,
    Context,
    arg,
    command,
    lock_holders,
    locked_message,
    open_reader,
    pid_alive,
    verify_check,
)
from .dump import LogReader, writer_pid
from .output import iso_ns, ms
from .pictures import glyphs_for, histogram, latency_summary, size, when
from .terminal import Progress
from .times import duration

__all__ = ["CHECKS", "COMMANDS", "backup_cmd", "stats_cmd", "verify_cmd"]


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
    ops = journal.pending_ids()
    stored = {raw.seq: raw.value for raw in journal.get_raw(ops)}
    for op in ops:
        value = stored.get(op)
        if value is None:
            return CheckResult(
                "pending-index", False, f"pending index names op {op} but the log has no such record", op
            )
        if kind_of(value, op) != INTENT:
            return CheckResult("pending-index", False, f"pending index names op {op}, which is not an intent", op)
    return CheckResult("pending-index", True, f"ok: {len(ops)} pending operations, each with its intent")


#: What ``journal verify`` runs, in order: the log's checks here, then the state layer's.
CHECKS = (_check_records, _check_pending_index, *state_commands.CHECKS)


@command(
    "verify",
    help="check every record's checksum, the hash chain and the indexes; exit 3 at the first damage",
    example="journal verify bot.journal && echo intact",
)
def verify_cmd(ctx: Context) -> int:
    journal = ctx.reader()
    results = []
    # on a terminal, a progress line by check (the log's is the long one on a big journal)
    with ctx.terminal.progress("verifying (log, snapshots, state)", len(CHECKS)) as progress:
        for i, check in enumerate(CHECKS):
            progress.update(i)
            try:
                res = check.run(journal)
            except CorruptionError as exc:
                res = CheckResult(check.name, False, str(exc), exc.seq)
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
    journal.backup(dest, compact=True)
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


def _scan(reader: LogReader, progress: Progress | None = None) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Records per kind, and intent-to-outcome latencies in ms, in one pass over the log.

    Latencies come from the log's own timestamps: the writer stamps a record
    when it is submitted, so intent -> commit is the bot's whole wait (the
    intent's sync, the exchange's answer) as the journal saw it. Only the
    outcomes' bodies are decoded (for their op id); intents waiting for an
    outcome are the only memory held.
    """
    counts = dict.fromkeys(KIND_NAMES.values(), 0)
    waiting: dict[int, int] = {}
    latencies: dict[str, list[float]] = {"commit": [], "abort": []}
    done = 0
    for chunk in reader.scan(0, None):
        done += len(chunk)
        if progress is not None:
            progress.update(done)
        for raw in chunk:
            try:
                kind = kind_of(raw.value, raw.seq)
                ts = ts_of(raw.value, raw.seq)
            except CorruptionError:
                counts["unknown"] = counts.get("unknown", 0) + 1
                continue
            name = KIND_NAMES.get(kind, "unknown")
            counts[name] = counts.get(name, 0) + 1
            if kind == INTENT:
                waiting[raw.seq] = ts
            elif kind in (COMMIT, ABORT):
                try:
                    body = decode_display(body_of(raw.value, raw.seq))
                except (CorruptionError, DecodeError):
                    continue
                op = body.get("op") if type(body) is dict else None
                began = waiting.pop(op, None) if type(op) is int else None
                if began is not None:
                    latencies[name].append((ts - began) / 1e6)
    return counts, latencies


def _writer_text(path: str, holder: int | None, holders: list[int]) -> str:
    if holder is None:
        return "none (no bot holds the journal)"
    if pid_alive(holder):
        return f"pid {holder} holds the journal"
    return locked_message(path, holder, "writing").removeprefix(f"{path}: ")


@command(
    "stats",
    help="sizes, records per kind, pending operations, and the intent-to-commit latency from the log's times",
    example="journal stats bot.journal --json",
    description=(
        "Latency here is the time from an operation's intent to its commit (or abort), from the writer's own\n"
        "time stamps in the log: what the bot waited, whole. The writer's append and sync percentiles of\n"
        "the running process are in the bot (Journal.stats(), StateManager.health())."
    ),
)
def stats_cmd(ctx: Context) -> int:
    journal = ctx.reader()
    reader = LogReader(ctx.path, journal)
    with ctx.terminal.progress("reading the log", journal.last_seq - journal.base_seq) as progress:
        counts, latencies = _scan(reader, progress)
    journal = ctx.adopt(reader.journal)
    stats = journal.stats()
    with journal.read_tables() as tables:
        snapshots = tables.count("snapshots")
    pending = journal.pending_ids()
    oldest = None
    for raw in journal.get_raw(pending[:1]):
        oldest = ts_of(raw.value, raw.seq)
    now = time.time_ns()
    file_bytes = os.path.getsize(os.path.join(ctx.path, "data.mdb"))
    holder = writer_pid(ctx.path)
    holders = [pid for pid, _ in lock_holders(ctx.path)] if holder is not None else []
    latency = {f"intent_to_{k}": latency_summary(v) for k, v in latencies.items()}
    row: dict[str, Any] = {
        "path": ctx.path,
        "journal_id": journal.journal_id,
        "format_version": journal.meta.get("format_version"),
        "created": iso_ns(journal.meta.get("created_ns")),
        "lmdb_engine": journal.meta.get("lmdb_engine"),
        "file_bytes": file_bytes,
        "used_bytes": stats["used_bytes"],
        "map_size": stats["map_size"],
        "records": stats["records"],
        "first_seq": journal.first_seq,
        "last_seq": journal.last_seq,
        "counts": counts,
        "pending": len(pending),
        "oldest_pending_op": pending[0] if pending else None,
        "oldest_pending_age_ms": ms(now - oldest) if oldest is not None else None,
        "snapshots": snapshots,
        "last_txnid": stats["last_txnid"],
        "writer_pid": holder,
        "lock_holders": holders,
        "shipping": stats["shipping"],
        "latency": latency,
    }
    out = ctx.out
    if out.mode != "table":
        out.objects([row])
        return EXIT_OK
    st = out.style
    g = glyphs_for(ctx.terminal.unicode)
    created = journal.meta.get("created_ns")
    kinds = ", ".join(f"{n:,} {k}" for k, n in counts.items() if n)
    people = {
        "journal": f"{ctx.path}  (id {journal.journal_id}, format {row['format_version']}, LMDB {row['lmdb_engine']})",
        "created": when(created, now) if created else "-",
        "size": f"{size(file_bytes)} on disk, {size(stats['used_bytes'])} of it reached by LMDB, "
        f"map {size(stats['map_size'])}",
        "records": f"{stats['records']:,} (seq {journal.first_seq}..{journal.last_seq}): {kinds or 'none'}",
        "pending": (
            f"{len(pending)}, the oldest op {pending[0]}, {duration(now - oldest)} old"
            if pending and oldest is not None
            else "none"
        ),  # fmt: skip
        "snapshots": f"{snapshots}",
        "writer": _writer_text(ctx.path, holder, holders),
        "shipping": _shipping_text(stats["shipping"]),
    }
    out.objects([people])
    lines = [""]
    for key, title in (("commit", "intent -> commit"), ("abort", "intent -> abort")):
        summary = latency[f"intent_to_{key}"]
        if summary["count"] or key == "commit":
            lines += histogram(f"{title} latency, from the log's time stamps", summary, st, g)
    out.write_lines(lines)
    return EXIT_OK


COMMANDS = (verify_cmd, backup_cmd, stats_cmd)


def _shipping_text(shipping: list[dict[str, Any]] | str) -> str:
    """Each shipping destination's lag in one line, or why it is unknown (a damaged cursor file)."""
    if isinstance(shipping, str):
        return f"unknown: {shipping}"
    if not shipping:
        return "not shipped (no cursor)"
    parts = []
    for d in shipping:
        lag = "up to date" if not d["lag_records"] else f"{d['lag_records']:,} records, {d['lag_s']:.1f} s behind"
        parts.append(f"{d['name']} -> {d['target']}: acknowledged seq {d['acked_seq']}, {lag}")
    return "; ".join(parts)
