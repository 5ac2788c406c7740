"""The state commands of ``journal``: snapshots, state, diff, correct, compact.

Two checks join ``journal verify`` (:data:`CHECKS`): every snapshot's
checksums, and the state's invariants.

- ``snapshots PATH`` -- every stored snapshot: covered seq, age, schema,
  keys per section, and whether every checksum holds.
- ``state PATH [--at SEQ | --snapshot SEQ] [--section NAME]`` -- the state as
  JSON: now, right after record SEQ (a snapshot at or before it plus replay),
  or exactly as a snapshot stored it.
- ``diff PATH A B`` -- what changed between two points; each is a sequence
  number (state right after it) or ``snap:SEQ`` (a snapshot as stored) or
  ``now``: per section and key, for people (``~ key  field: old -> new``) and
  as JSON lines, one per change, for machines.
- ``correct PATH SECTION KEY JSON --reason TEXT`` -- a manual correction,
  journaled as a ``state_set`` event with ``source="manual"``; refused while a
  bot holds the journal.
- ``compact PATH [--retention SECONDS] [--shrink]`` -- snapshot, then delete
  records the second-newest snapshot covers (never pending ones, never
  younger ones); says what became of the file's size (LMDB reuses the pages,
  it never shrinks the file), and with ``--shrink`` swaps in a compact copy
  (:mod:`journal.cli.shrink`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from ..errors import CorruptionError
from ..log import Journal
from ..state import inspect
from ..state import snapshot as snap
from ..state.diff import diff_states
from ..state.state import State
from ..state.store import StateStore
from .base import (
    EXIT_OK,
    CheckResult,
    CliError,
    Context,
    arg,
    command,
    exclusive,
    open_writer,
    operator_name,
    verify_check,
)
from .layout import Column, shorten, wrap
from .operations import PREVIEW_ARGS, preview
from .output import iso_ns
from .pictures import size
from .shrink import shrink
from .times import ago

__all__ = [
    "CHECKS",
    "SPACE_NOTE",
    "COMMANDS",
    "compact_cmd",
    "correct_cmd",
    "diff_cmd",
    "diff_lines",
    "snapshots_cmd",
    "state_cmd",
]


def _store(ctx: Context) -> StateStore:
    try:
        return StateStore(ctx.reader())
    except CorruptionError as exc:
        raise CliError(f"{ctx.path}: the state cannot be loaded: {exc}") from None


@verify_check("snapshots")
def _check_snapshots(journal: Journal) -> CheckResult:
    """Every snapshot's manifest checksum and every chunk's digest."""
    with journal.read_tables() as tables:
        listed = snap.check_all(tables)
    bad = [i for i in listed if not i.ok]
    if bad:
        return CheckResult("snapshots", False, f"snapshot at seq {bad[0].seq}: {bad[0].problem}", bad[0].seq,
                           {"snapshots": len(listed), "damaged": len(bad)})  # fmt: skip
    return CheckResult("snapshots", True, f"ok: {len(listed)} snapshots, every checksum holds",
                       details={"snapshots": len(listed)})  # fmt: skip


@verify_check("state")
def _check_state(journal: Journal) -> CheckResult:
    """The state loads (snapshot + replay) and holds its invariants."""
    store = StateStore(journal)
    problems = store.validate(consistent_copy=False)
    if problems:
        first = problems[0]
        return CheckResult("state", False, f"{first} (+{len(problems) - 1} more)",
                           first.seqs[0] if first.seqs else None, {"violations": len(problems)})  # fmt: skip
    return CheckResult("state", True, f"ok: state at seq {store.state.seq} holds every invariant")


@command(
    "snapshots",
    help="list the stored snapshots: covered seq, age, schema, keys per section, checksums",
    example="journal snapshots bot.journal",
)
def snapshots_cmd(ctx: Context) -> int:
    journal = ctx.reader()
    now = time.time_ns()
    rows = []
    # listed and checked (manifest checksum, every chunk's digest) without loading any state
    with ctx.terminal.progress("checking snapshot chunks") as progress:
        listed = inspect.snapshots(journal, progress=progress.update)
    for info in listed:
        rows.append(
            {
                "seq": info.seq,
                "age_s": round((now - info.created_ns) / 1e9, 1) if info.created_ns else None,
                "schema": info.schema,
                "chunks": info.chunks,
                "keys": {k: v for k, v in info.counts.items() if v},
                "ok": info.ok,
                "problem": info.problem,
            }
        )
        if ctx.out.people and info.created_ns:
            rows[-1]["taken"] = iso_ns(info.created_ns)
            rows[-1]["age"] = ago(info.created_ns, now)
    ctx.out.table([Column("SEQ", "seq", ">", priority=9), Column("TAKEN (UTC)", "taken", priority=2),
                   Column("AGE", "age", priority=6), Column("SCHEMA", "schema", priority=3),
                   Column("CHUNKS", "chunks", priority=1), Column("KEYS", "keys", flex=True),
                   Column("OK", "ok", priority=8), Column("PROBLEM", "problem", priority=7)], rows)  # fmt: skip
    return EXIT_OK


def _point(ctx: Context, text: str) -> State:
    """The state at ``text`` (SEQ, snap:SEQ or now), from the nearest snapshot: never a replay of the history."""
    journal = ctx.reader()
    if text == "now":
        text = str(journal.last_seq)
    if text.startswith("snap:"):
        try:
            return inspect.snapshot_state(journal, int(text[5:]))
        except ValueError:
            raise CliError(f"{text!r}: give snap:SEQ with SEQ a snapshot's sequence number") from None
        except CorruptionError as exc:
            raise CliError(f"{text}: {exc}; list them with 'journal snapshots'") from None
    try:
        seq = int(text)
    except ValueError:
        raise CliError(f"{text!r} is not a point: give a sequence number, snap:SEQ, or now") from None
    if seq < 0:
        raise CliError(f"sequence number {seq} is negative")
    try:
        with ctx.terminal.progress(f"replaying up to seq {seq}") as progress:
            return inspect.state_at(journal, seq, progress=progress.update)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except CorruptionError as exc:
        raise CliError(f"state at seq {seq} cannot be rebuilt: {exc}") from None


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: str(v) if isinstance(v, Decimal) else v.hex()))


@command(
    "state",
    help="print the state as JSON: now, right after a sequence number, or as a snapshot stored it",
    example="journal state bot.journal --at 1042 --section orders",
    arguments=[
        exclusive(
            arg("--at", metavar="SEQ", help="the state right after record SEQ"),
            arg("--snapshot", metavar="SEQ", help="the state exactly as snapshot SEQ stored it"),
        ),
        arg("--section", metavar="NAME", help="only this section (orders, positions, balances, strategies, ...)"),
    ],
)
def state_cmd(ctx: Context) -> int:
    a = ctx.args
    point = "now" if a.at is None and a.snapshot is None else (a.at if a.at is not None else f"snap:{a.snapshot}")
    state = _point(ctx, point)
    sections = state.as_dict()
    if a.section is not None:
        if a.section not in sections:
            raise CliError(f"no section {a.section!r}; sections: {', '.join(sorted(sections))}")
        sections = {a.section: sections[a.section]}
    ctx.out.objects([{"seq": state.seq, "state": sections}])
    return EXIT_OK


def _field_changes(old: Any, new: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(dotted field, old, new)`` for every field that differs, descending into maps (``fee.cost``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            a, b = old.get(k, _ABSENT), new.get(k, _ABSENT)
            if a != b:
                yield from _field_changes(a, b, f"{path}.{k}" if path else str(k))
        return
    yield path, old, new


_ABSENT: Any = type("_Absent", (), {"__repr__": lambda self: "(absent)"})()


def diff_lines(d: Any) -> Iterator[dict[str, Any]]:
    """A :class:`~journal.state.diff.StateDiff` as one plain change per line, for JSON and for people.

    ``added`` / ``removed`` carry the whole ``value``; ``changed`` is one line
    per field (``field`` a dotted path, ``old`` / ``new``; an absent side is
    left out), or one for the whole value when it is not a map (``field`` null).
    """
    for name, sd in d.sections.items():
        for key, value in sd.added.items():
            yield {"section": name, "key": key, "change": "added", "value": value}
        for key, value in sd.removed.items():
            yield {"section": name, "key": key, "change": "removed", "value": value}
        for key, (old, new) in sd.changed.items():
            for path, a, b in _field_changes(old, new):
                line: dict[str, Any] = {"section": name, "key": key, "change": "changed", "field": path or None}
                if a is not _ABSENT:
                    line["old"] = a
                if b is not _ABSENT:
                    line["new"] = b
                yield line


def _short(value: Any, out: Any) -> str:
    if isinstance(value, list) and value:
        return f"[{len(value)} items]"
    return out.cell(value)


@command(
    "diff",
    help="what changed between two points (seq, snap:SEQ or now): keys added, removed, changed per section",
    example="journal diff bot.journal snap:900 now",
    description=(
        "On a terminal: per section, + added and - removed keys, ~ changed ones with each field old -> new.\n"
        "JSON: a summary line (change: summary), then one line per added or removed key and per changed\n"
        'field: {section, key, change, field, old, new} (jq: select(.change == "changed")).'
    ),
    arguments=[
        arg("a", metavar="A", help="from: SEQ, snap:SEQ or now"),
        arg("b", metavar="B", help="to: SEQ, snap:SEQ or now"),
        arg("--section", metavar="NAME", help="only this section"),
    ],  # fmt: skip
)
def diff_cmd(ctx: Context) -> int:
    a, b = _point(ctx, ctx.args.a), _point(ctx, ctx.args.b)
    d = diff_states(a, b)
    section = ctx.args.section
    if section is not None:
        known = set(a.sections()) | set(b.sections())
        if section not in known:
            raise CliError(f"no section {section!r}; sections: {', '.join(sorted(known))}")
        d.sections = {section: d.sections[section]}
    out = ctx.out
    summary = d.summary()
    head = {"change": "summary", "from": ctx.args.a, "to": ctx.args.b, "from_seq": a.seq, "to_seq": b.seq,
            "sections": summary}  # fmt: skip
    if out.json:
        out.write_lines([out.encode(head)])
        batch: list[str] = []
        for line in diff_lines(d):
            batch.append(out.encode(line))
            if len(batch) >= 1024:
                out.write_lines(batch)
                batch = []
        out.write_lines(batch)
        return EXIT_OK
    if out.mode != "table":
        out.table(
            [
                ("SECTION", "section"),
                ("KEY", "key"),
                ("CHANGE", "change"),
                ("FIELD", "field"),
                ("OLD", "old"),
                ("NEW", "new"),
                ("VALUE", "value"),
            ],  # fmt: skip
            list(diff_lines(d)),
        )
        return EXIT_OK
    st, width, ell = out.style, out.width, out.ellipsis
    what = "; ".join(f"{n}: {c['added']} added, {c['removed']} removed, {c['changed']} changed"
                     for n, c in summary.items())  # fmt: skip
    lines = out.prose(f"{ctx.args.a} (seq {a.seq}) -> {ctx.args.b} (seq {b.seq}): {what or 'no difference'}", "bold")
    arrow = "->"
    current: tuple[str, str] | None = None
    for line in diff_lines(d):
        name, key, change = line["section"], line["key"], line["change"]
        if current is None or current[0] != name:
            lines.append(st(f"{name}:", "bold"))
        if change == "changed":
            field = line["field"]
            old = _short(line["old"], out) if "old" in line else "(absent)"
            new = _short(line["new"], out) if "new" in line else "(absent)"
            text = f"{field}: {old} {arrow} {new}" if field else f"{old} {arrow} {new}"
            if current == (name, key):
                lines.append(_fit(f"      {text}", width, ell, out.wrap))
            else:
                lines.append(st("  ~ ", "changed") + _fit(f"{key}  {text}", width - 4, ell, out.wrap))
        else:
            mark = "  + " if change == "added" else "  - "
            lines.append(st(mark, change) + _fit(f"{key}  {out.cell(line['value'])}", width - 4, ell, out.wrap))
        current = (name, key)
        if len(lines) >= 1024:
            out.write_lines(lines)
            lines = []
    out.write_lines(lines)
    return EXIT_OK


def _fit(text: str, width: int, ellipsis: str, wrap_lines: bool) -> str:
    if len(text) <= width:
        return text
    if wrap_lines:
        return "\n      ".join(wrap(text, max(width - 6, 20)))
    return shorten(text, width, ellipsis=ellipsis)


@command(
    "correct",
    help="set (or with null, delete) one state key by hand, journaled with source 'manual' and your reason",
    example='journal correct bot.journal positions BTC/USDT \'{"symbol": "BTC/USDT", "amount": "0.5"}\' '
    "--reason 'matches the exchange UI' --dry-run",
    description=(
        "Writes one 'state_set' event with source 'manual'. --dry-run prints it and the change it makes\n"
        "(old -> new per field) and writes nothing; on a terminal the command shows them and asks before\n"
        "writing (--yes does not ask). Refused (exit 4) while a bot holds the journal."
    ),
    arguments=[
        arg("section", metavar="SECTION", help="orders, positions, balances, strategies, or a custom section"),
        arg("key", metavar="KEY"),
        arg(
            "value", metavar="JSON", help="the new value (numbers with a fraction become exact Decimals); null deletes"
        ),
        arg("--reason", required=True, metavar="TEXT", help="why (kept in the journal)"),
        *PREVIEW_ARGS,
    ],
    pages=False,
)
def correct_cmd(ctx: Context) -> int:
    a = ctx.args
    if not a.reason.strip():
        raise CliError("--reason must say why you correct the state by hand")
    try:
        value = json.loads(a.value, parse_float=Decimal)
    except ValueError as exc:
        raise CliError(f'the value is not valid JSON ({exc}); e.g. \'{{"amount": "0.5"}}\' or null') from None
    reason = f"{a.reason} (by {operator_name()})"
    current = _store(ctx).state.get(a.section, a.key)  # a clear error for a path that is not a journal, too
    planned = [{"seq": ctx.reader().last_seq + 1, "kind": "event", "type": "state_set", "op": None, "source": "manual",
                "data": {"section": a.section, "key": a.key, "value": value, "reason": reason}}]  # fmt: skip
    effect = [f"{a.section}[{a.key!r}]:"] + [
        f"  {path or '(value)'}: {ctx.out.cell(old) if old is not _ABSENT else '(absent)'} -> "
        f"{ctx.out.cell(new) if new is not _ABSENT else '(absent)'}"
        for path, old, new in _field_changes(_ABSENT if current is None else current,
                                             _ABSENT if value is None else value)
    ]  # fmt: skip
    if len(effect) == 1:
        effect.append("  no change: the key already holds this value")
    if not preview(ctx, planned, f"set {a.section}[{a.key!r}] by hand?", effect):
        return EXIT_OK
    with open_writer(ctx, f"correcting {a.section}[{a.key!r}]") as writer:
        store = StateStore(writer)
        old = store.state.get(a.section, a.key)
        seq = store.set(a.section, a.key, value, reason=reason, source="manual")
        new = store.state.get(a.section, a.key)
        store.save()
    ctx.out.objects([{"seq": seq, "section": a.section, "key": a.key, "old": _plain(old), "new": _plain(new)}])
    return EXIT_OK


#: What a person should know about the file after a compaction (in every compact's output).
SPACE_NOTE = (
    "LMDB does not shrink its file: the pages of deleted records are reused for the records that follow, "
    "so the file stops growing for a while, but keeps its size (and may grow a little while compacting)"
)


@command(
    "compact",
    help="snapshot, then delete records older snapshots cover (never pending ones, never younger ones)",
    example="journal compact bot.journal --retention 86400  # with the bot stopped: --shrink",
    description=(
        "Deleting records frees pages inside the file, which LMDB reuses; the file keeps its size. --shrink\n"
        "(with no bot and no reader holding the journal) then swaps in a verified compact copy and keeps the\n"
        "old file as PATH.before-shrink-<time>/ (delete it once the journal works)."
    ),
    arguments=[
        arg(
            "--retention",
            type=float,
            default=None,
            metavar="SECONDS",
            help="keep records younger than this (default: 24 hours)",
        ),
        arg(
            "--shrink",
            action="store_true",
            help="then make the file smaller: swap in a compact copy, keeping the old file beside it",
        ),
    ],  # fmt: skip
)
def compact_cmd(ctx: Context) -> int:
    if ctx.args.retention is not None and ctx.args.retention < 0:
        raise CliError("--retention must be >= 0 seconds")
    ctx.reader()
    data = os.path.join(ctx.path, "data.mdb")
    file_before = os.path.getsize(data)
    with open_writer(ctx, "compacting") as writer:
        store = StateStore(writer)
        before = writer.first_seq
        store.save()
        store.save(full=True)  # two snapshots: the newest, and one to fall back on
        deleted = store.compact(retention_s=ctx.args.retention)
        report = writer.verify()
        row: dict[str, Any] = {"deleted": deleted, "first_seq_before": before, "first_seq": writer.first_seq,
                               "last_seq": writer.last_seq, "verify": str(report)}  # fmt: skip
    row["file_bytes_before"] = file_before
    row["file_bytes"] = os.path.getsize(data)
    if ctx.args.shrink:
        with ctx.terminal.progress("copying the journal compactly") as progress:
            result = shrink(ctx.path)
            progress.close()
        row.update({"shrunk": True, "file_bytes": result.file_bytes, "backup": result.backup,
                    "copy_ms": result.copy_ms})  # fmt: skip
        row["note"] = (f"the compact copy replaced the file; the old file is kept in {result.backup} "
                       "(delete it once the journal works)")  # fmt: skip
    else:
        row["shrunk"] = False
        row["note"] = (f"{SPACE_NOTE}; for a smaller file, stop the bot and run 'journal compact {ctx.path} "
                       "--shrink'")  # fmt: skip
    out = ctx.out
    if out.mode != "table":
        out.objects([row])
        return EXIT_OK
    lines = out.prose(
        f"deleted {deleted:,} records: the log now holds seq {row['first_seq']}..{row['last_seq']} ({row['verify']})"
    )
    grew = row["file_bytes"] - file_before
    change = "grew by" if grew > 0 else "shrank by"
    lines += out.prose(
        f"file {size(file_before)} -> {size(row['file_bytes'])}"
        + (f" ({change} {size(abs(grew))})" if grew else " (unchanged)"),
        "bold",
    )
    lines += out.prose(row["note"], "ok" if ctx.args.shrink else "warn")
    out.write_lines(lines)
    return EXIT_OK


CHECKS = (_check_snapshots, _check_state)
COMMANDS = (snapshots_cmd, state_cmd, diff_cmd, correct_cmd, compact_cmd)
