"""The fleet commands of ``journal``: ``ship`` (a journal to a NATS JetStream hub) and ``fleet`` (the hub's view).

``journal ship PATH --to nats://HOST:PORT`` runs a :class:`journal.fleet.Shipper`
beside the bot, as a process of its own: it opens the journal read-only and
never blocks the bot. ``journal fleet status|archive|verify`` read the hub:
``archive`` materialises every shipped journal into a local directory the other
commands read (``journal dump ARCHIVE/<journal id>``), ``status`` shows every
bot seen, ``verify`` checks every chain in an archive.

The library (:mod:`journal.fleet`) is imported when one of these commands runs,
so the other commands start as fast as before and work without the
``[fleet]`` extra.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, ModuleType
from typing import Any

from .base import EXIT_DAMAGED, EXIT_ERROR, EXIT_OK, EXIT_USAGE, CliError, Context, arg, command
from .times import ago

__all__ = ["COMMANDS", "fleet_cmd", "ship_cmd"]


def _fleet() -> ModuleType:
    import journal.fleet

    return journal.fleet


def _warn(message: str) -> None:
    sys.stderr.write(f"journal: warning: {message}\n")
    sys.stderr.flush()


@contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (a service manager stopping us) ends shipping as Ctrl-C does: after a last cursor write."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test calling main()): no handler
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@command(
    "ship",
    help="stream every record of the journal, in order, to a NATS JetStream hub (runs until stopped)",
    example="journal ship bot.journal --to nats://hub.example:4222",
    description=(
        "Publishes each record's stored bytes to <prefix>.<journal id>.records with a deduplication id\n"
        "from the journal id, incarnation and seq; the last acknowledged seq is kept in\n"
        "PATH/ship/<stream>.cursor, which compaction never passes. Opens the journal read-only:\n"
        "the bot keeps writing. A dead hub or a cut link only delays shipping. Stop with Ctrl-C or SIGTERM."
    ),
    arguments=[
        arg("--to", required=True, metavar="URL", help="the hub, nats://HOST:PORT (several: comma-separated)"),
        arg("--stream", default="TJ", help="the JetStream stream (created if missing; default TJ)"),
        arg("--subject-prefix", default="tj", metavar="TOKEN", help="subjects are TOKEN.<journal id>.records"),
        arg("--once", action="store_true", help="ship what the journal holds now, then exit (exit 1 if not all)"),
        arg("--timeout", type=float, default=60.0, metavar="S", help="with --once: give up after S seconds"),
        arg("--report-every", type=float, default=0.0, metavar="S", help="print a status line every S seconds"),
        arg("--nice", type=int, default=0, metavar="N", help="lower the shipper's CPU priority by N (0-19)"),
    ],
)
def ship_cmd(ctx: Context) -> int:
    # This command reports for itself (status lines, one error line): keep the library's log records
    # (link trouble, re-basing, the shipper's own error, which comes back as shipper.error and is
    # printed once) out of stderr for the run.
    quiet = logging.getLogger("journal.fleet")
    saved, null = quiet.propagate, logging.NullHandler()  # NullHandler: not even logging's last resort
    quiet.propagate = False
    quiet.addHandler(null)
    try:
        return _ship(ctx)
    finally:
        quiet.removeHandler(null)
        quiet.propagate = saved


def _ship(ctx: Context) -> int:
    fleet = _fleet()
    servers = [u.strip() for u in ctx.args.to.split(",") if u.strip()]
    try:
        shipper = fleet.Shipper(ctx.path, servers, stream=ctx.args.stream, subject_prefix=ctx.args.subject_prefix,
                                nice=ctx.args.nice)  # fmt: skip
    except ValueError as exc:
        raise CliError(f"journal ship: {exc}", EXIT_USAGE) from None
    stop = threading.Event()
    try:
        target = shipper.journal.last_seq
        shipper.start()
        if ctx.args.once:
            done = shipper.wait_acked(target, ctx.args.timeout)
        else:
            done = True
            with _stop_on_sigterm(stop):
                every = float(ctx.args.report_every)
                next_report = time.monotonic() + every if every > 0 else None
                try:
                    while not stop.wait(0.2) and shipper.error is None:
                        if next_report is not None and time.monotonic() >= next_report:
                            ctx.out.objects([shipper.status()])
                            ctx.out.flush()
                            next_report += every
                except KeyboardInterrupt:
                    pass
        shipper.stop()
        status = shipper.status()
        ctx.out.objects([status])
        if shipper.error is not None:
            ctx.out.flush()
            code = EXIT_DAMAGED if isinstance(shipper.error, fleet.ShipDamageError) else EXIT_ERROR
            raise CliError(str(shipper.error), code)
        if not done:
            ctx.out.flush()
            raise CliError(
                f"{ctx.path}: shipped up to seq {status['acked_seq']} of {target} within {ctx.args.timeout} s "
                f"({status['error'] or status['state']}); the rest ships on the next run",
                EXIT_ERROR,
            )
        return EXIT_OK
    finally:
        shipper.close()


def _safe_text(row: dict[str, Any]) -> str:
    safe = row.get("safe_mode")
    text = "?" if safe is None else ("yes" if safe else "no")
    if safe and row.get("safe_mode_reasons"):
        text += ": " + "; ".join(row["safe_mode_reasons"][:3])
    if row.get("in_doubt"):
        text += f" (+{len(row['in_doubt'])} in doubt)"
    return text


def _status_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        orders = r.get("open_orders_by_symbol")
        lag = r.get("lag_records")
        out.append(
            {
                "journal": r["journal_id"] if r.get("fork_of") is None else f"{r['history']} (fork)",
                "host": r.get("host"),
                "last_seq": r.get("last_seq"),
                "last": ago(0, int(r["last_age_s"] * 1e9)) if r.get("last_age_s") is not None else None,
                "pending": r.get("pending"),
                "safe": _safe_text(r) if r.get("history") else None,
                "orders": "unknown"
                if orders is None and r.get("history")
                else ", ".join(f"{s} {o['orders']}" for s, o in (orders or {}).items()) or "none",  # fmt: skip
                "lag": None if lag is None else f"{lag} ({r.get('lag_s')}s)",
            }
        )
    return out


def _report_sync(report: Any) -> None:
    for fork in report.forks:
        _warn(f"journal {fork['journal_id']} forked at seq {fork['fork_seq']} (incarnation "
              f"{fork['incarnation'] or 'v1'}): kept apart as {fork['history']} (a restored backup or a clone?)")  # fmt: skip
    for held in report.held[:10]:
        _warn(
            f"journal {held['journal_id']} seq {held['seq']} waits for seq {held['waiting_for']} (not on the hub yet)"
        )
    for problem in report.problems[:10]:
        _warn(f"stream message {problem.get('stream_seq')}: {problem['problem']}")


@command(
    "fleet",
    help="the fleet on a NATS hub: every bot's status, a local archive of their journals, its verification",
    example="journal fleet status --from nats://hub.example:4222 --archive /srv/tj-archive",
    needs_path=False,
    description=(
        "status   one row per bot seen: last seq and time, pending operations, safe mode and why,\n"
        "         open orders per symbol, shipping lag (--symbols: open orders per symbol across bots)\n"
        "archive  copy every shipped record into DIR, one journal directory per journal id (and per\n"
        "         fork), readable with journal dump/show/pending/verify DIR/<journal id>\n"
        "verify   check every journal's checksums and chain in the archive DIR\n"
        "status and archive read the hub incrementally into DIR (status without DIR reads it all into a\n"
        "temporary one)."
    ),
    arguments=[
        arg("action", choices=("status", "archive", "verify"), help="what to do (see below)"),
        arg("--from", dest="source", metavar="URL", help="the hub, nats://HOST:PORT"),
        arg("--into", "--archive", dest="archive", metavar="DIR", help="the local archive directory"),
        arg("--stream", default="TJ", help="the JetStream stream the journals were shipped to (default TJ)"),
        arg("--subject-prefix", default="tj", metavar="TOKEN", help="subjects are TOKEN.<journal id>.records"),
        arg("--status-bucket", default="tj-status", metavar="NAME", help="the shippers' status bucket"),
        arg("--symbols", action="store_true", help="status: open orders per symbol across the fleet"),
        arg(
            "--in-doubt-after",
            type=float,
            default=60.0,
            metavar="S",
            help="status: a pending operation older than S seconds counts as in doubt",
        ),  # fmt: skip
    ],
)
def fleet_cmd(ctx: Context) -> int:
    action = ctx.args.action
    if action in ("archive", "verify") and not ctx.args.archive:
        raise CliError(f"journal fleet {action} needs the archive directory: --into DIR", EXIT_USAGE)
    if action == "archive" and not ctx.args.source:
        raise CliError("journal fleet archive needs the hub: --from nats://HOST:PORT", EXIT_USAGE)
    if action == "status" and not (ctx.args.source or ctx.args.archive):
        raise CliError(
            "journal fleet status needs the hub (--from nats://HOST:PORT) or an archive (--archive DIR)", EXIT_USAGE
        )
    if action == "verify":
        return _verify(ctx)
    if ctx.args.archive:
        return _with_archive(ctx, ctx.args.archive)
    with tempfile.TemporaryDirectory(prefix="tj-fleet-") as tmp:
        return _with_archive(ctx, tmp)


def _verify(ctx: Context) -> int:
    from journal.fleet.archive import Archive

    with Archive(ctx.args.archive) as archive:
        rows = archive.verify()
    _print_verify(ctx, rows)
    bad = [r for r in rows if not r["ok"]]
    if bad:
        ctx.out.flush()
        raise CliError(f"{bad[0]['path']}: damaged at seq {bad[0].get('first_bad_seq')}: {bad[0]['problem']}",
                       EXIT_DAMAGED)  # fmt: skip
    if not rows:
        _warn(f"{ctx.args.archive}: no journals in this archive")
    return EXIT_OK


def _print_verify(ctx: Context, rows: list[dict[str, Any]]) -> None:
    if not ctx.out.json:
        for r in rows:
            r["status"] = "ok" if r["ok"] else "FAILED"
            r["summary"] = (f"{r.get('records')} records, seq {r.get('first_seq')}..{r.get('last_seq')}" if r["ok"]
                            else f"damaged at seq {r.get('first_bad_seq')}: {r.get('problem')}")  # fmt: skip
    ctx.out.table([("JOURNAL", "name"), ("STATUS", "status"), ("RESULT", "summary")], rows)


def _with_archive(ctx: Context, root: str) -> int:
    import asyncio

    from journal.fleet.archive import Archive
    from journal.fleet.hub import connect, read_statuses
    from journal.fleet.view import fleet_rows, symbol_rows

    statuses: dict[str, dict[str, Any]] = {}
    with Archive(root) as archive:
        report = None
        if ctx.args.source:
            servers = [u.strip() for u in ctx.args.source.split(",") if u.strip()]
            report = archive.sync(servers, stream=ctx.args.stream, subject_prefix=ctx.args.subject_prefix)
            _report_sync(report)
            if ctx.args.action == "status":

                async def statuses_of() -> dict[str, dict[str, Any]]:
                    nc = await connect(servers, name="tj-fleet-status")
                    try:
                        return await read_statuses(nc, ctx.args.status_bucket)
                    finally:
                        await nc.close()

                statuses = asyncio.run(statuses_of())
        if ctx.args.action == "archive":
            assert report is not None
            checked = {r["name"]: r for r in archive.verify(list(report.appended_by))}  # what this sync touched
            rows = []
            for info in archive.history_info():
                v = checked.get(info["name"])
                rows.append({**info, "appended": report.appended_by.get(info["name"], 0),
                             "verified": None if v is None else v["ok"],
                             "problem": None if v is None else v.get("problem")})  # fmt: skip
            if not ctx.out.json:
                for row in rows:
                    row["check"] = "-" if row["verified"] is None else ("ok" if row["verified"] else "FAILED")
            ctx.out.table([("JOURNAL", "name"), ("FIRST", "first_seq"), ("LAST", "last_seq"), ("NEW", "appended"),
                           ("FORK OF", "fork_of"), ("VERIFIED", "check")], rows)  # fmt: skip
            bad = [r for r in rows if r["verified"] is False]
            if bad or report.problems:
                ctx.out.flush()
                what = bad[0]["problem"] if bad else report.problems[0]["problem"]
                raise CliError(f"{root}: {what}", EXIT_DAMAGED)
            return EXIT_OK
        rows = fleet_rows(archive, statuses, in_doubt_after_s=ctx.args.in_doubt_after)
    if ctx.args.symbols:
        ctx.out.table([("SYMBOL", "symbol"), ("OPEN ORDERS", "orders"), ("BUY LEFT", "buy"), ("SELL LEFT", "sell"),
                       ("BOTS", "bots")], symbol_rows(rows))  # fmt: skip
        return EXIT_OK
    if ctx.out.json:
        ctx.out.table([], rows)
    else:
        ctx.out.table([("JOURNAL", "journal"), ("HOST", "host"), ("LAST SEQ", "last_seq"), ("LAST", "last"),
                       ("PENDING", "pending"), ("LAG", "lag"), ("OPEN ORDERS", "orders"), ("SAFE MODE", "safe")],
                      _status_table(rows))  # fmt: skip
    return EXIT_OK


COMMANDS = (ship_cmd, fleet_cmd)
