"""The maintenance commands of ``journal``: ``verify`` (every check), ``backup``, ``stats``."""

from __future__ import annotations

import os
import time
from typing import Any

from ..errors import CorruptionError
from ..log import Journal
from ..log.record import INTENT, kind_of, ts_of
from . import state as state_commands
from .base import EXIT_DAMAGED, EXIT_OK, CheckResult, CliError, Context, arg, command, open_reader, verify_check
from .dump import LogReader, writer_pid
from .output import iso_ns, ms

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
    for check in CHECKS:
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
    stats = journal.stats()
    with journal.read_tables() as tables:
        snapshots = tables.count("snapshots")
    pending = journal.pending_ids()
    oldest = None
    for raw in journal.get_raw(pending[:1]):
        oldest = ts_of(raw.value, raw.seq)
    row: dict[str, Any] = {
        "path": ctx.path,
        "journal_id": journal.journal_id,
        "format_version": journal.meta.get("format_version"),
        "created": iso_ns(journal.meta.get("created_ns")),
        "lmdb_engine": journal.meta.get("lmdb_engine"),
        "file_bytes": os.path.getsize(os.path.join(ctx.path, "data.mdb")),
        "used_bytes": stats["used_bytes"],
        "map_size": stats["map_size"],
        "records": stats["records"],
        "first_seq": journal.first_seq,
        "last_seq": journal.last_seq,
        "counts": counts,
        "pending": len(pending),
        "oldest_pending_op": pending[0] if pending else None,
        "oldest_pending_age_ms": ms(time.time_ns() - oldest) if oldest is not None else None,
        "snapshots": snapshots,
        "last_txnid": stats["last_txnid"],
        "writer_pid": writer_pid(ctx.path),
        "shipping": stats["shipping"],
        "latency": "known only to the writer: Journal.stats() in the bot",
    }
    ctx.out.objects([row])
    return EXIT_OK


COMMANDS = (verify_cmd, backup_cmd, stats_cmd)
