"""The ``journal dump`` command and its engine: a streaming scan of the log, filters, and ``--follow``.

Streaming: the log is read ``CHUNK`` records per short read transaction
(:meth:`journal.Journal.scan_raw`, so a slow terminal never pins the writer's
old pages), each chunk is decoded, filtered and printed before the next is
read, and the environment is reopened every ``REOPEN_EVERY`` records: LMDB
maps the file, and the pages a reader has touched count in its resident memory
until it unmaps them. Memory stays bounded whatever the journal's size.

Damage: each record's checksum is checked on its stored bytes (through
:mod:`journal.log.record`, the one home of the byte layout). A damaged record
becomes a row whose ``checksum`` says what is wrong (with the raw bytes) and
the scan goes on; it is printed whatever the filters, since a filter cannot
trust a damaged header. The hash chain is ``journal verify``'s job.

Follow: after the existing records, :class:`Waker` blocks on an event set by
a watchdog observer when ``data.mdb`` is modified, with a timeout of
``POLL_S``: LMDB's writes may coalesce into fewer file events than commits, so
each wake-up compares :meth:`journal.Journal.last_txnid` and scans only when
it moved. Idle, the follower sleeps in the kernel and costs no CPU. Records
are appended in sequence order in atomic transactions, so scanning from the
next sequence number after the last one seen never misses or repeats a record.
"""

from __future__ import annotations

import difflib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptionError, DecodeError
from ..log import Journal
from ..log.codec import decode_display
from ..log.record import (
    HEADER_SIZE,
    INTENT,
    KIND_CODES,
    KIND_NAMES,
    KNOWN_BODY_KEYS,
    RawChunk,
    check,
    checked_header,
    kind_of,
    ts_of,
)
from ..log.storage import LOCK_FILE
from .base import (
    EXIT_DAMAGED,
    EXIT_OK,
    KIND_CHOICES,
    SOURCE_KINDS,
    CliError,
    Context,
    arg,
    command,
    op_id,
    open_reader,
    parse_seq,
    parse_time_ns,
    resolve_seq,
)
from .output import iso_ns

__all__ = [
    "CHUNK",
    "COMMANDS",
    "POLL_S",
    "REOPEN_EVERY",
    "Dumper",
    "Filters",
    "LogReader",
    "Waker",
    "dump_cmd",
    "writer_pid",
]

CHUNK = 4096
REOPEN_EVERY = 131072
POLL_S = 0.5


class LogReader:
    """Chunked, read-only access to a journal's stored records, through the public :class:`Journal` API."""

    def __init__(self, path: str, journal: Journal | None = None) -> None:
        self.path = path
        self.journal = journal if journal is not None else open_reader(path)
        self.journal_id = self.journal.journal_id
        self._since_open = 0
        #: The LMDB transaction id the last scan read (its snapshot).
        self.snapshot_txnid = -1

    def _tick(self, n: int) -> None:
        self._since_open += n
        if self._since_open >= REOPEN_EVERY:
            self.reopen()

    def reopen(self) -> None:
        """Close and reopen the environment: unmaps the pages read so far."""
        self.journal.close()
        self.journal = open_reader(self.path)
        self._since_open = 0

    def close(self) -> None:
        self.journal.close()

    def last_txnid(self) -> int:
        return self.journal.last_txnid()

    def last_seq(self) -> int:
        return self.journal.last_seq

    def client_ids(self) -> Callable[[int], str]:
        return self.journal.client_ids()

    def scan(self, pos: int, stop: int | None) -> Iterator[RawChunk]:
        """Stored records with ``pos <= seq <= stop``, one read transaction per chunk."""
        if stop is not None and pos > stop:
            return
        for chunk in self.journal.scan_raw(pos, stop, chunk=CHUNK):
            self.snapshot_txnid = max(self.snapshot_txnid, chunk.txnid)
            if chunk:
                yield chunk
                self._tick(len(chunk))
                if self._since_open == 0:  # reopened: continue on the new environment
                    yield from self.scan(chunk[-1].seq + 1, stop)
                    return

    def fetch(self, seqs: Sequence[int]) -> Iterator[RawChunk]:
        """The stored records of ``seqs`` (ascending), in chunks; absent ones are skipped."""
        for i in range(0, len(seqs), CHUNK):
            chunk = self.journal.get_raw(seqs[i : i + CHUNK])
            yield chunk
            self._tick(len(chunk))

    def op_seqs(self, op_id: int) -> list[int]:
        """Sequence numbers of one operation's records, from the ``ops`` index (no record decoded)."""
        return [r.seq for r in self.journal.timeline_raw(op_id)]

    def pending_ops(self) -> list[int]:
        """Op ids in the ``pending`` index, oldest first."""
        return self.journal.pending_ids()

    def kind_counts(self) -> dict[str, int]:
        """Records per kind, from each record's header (nothing decoded)."""
        counts = dict.fromkeys(KIND_NAMES.values(), 0)
        for chunk in self.scan(0, None):
            for raw in chunk:
                try:
                    name = KIND_NAMES.get(kind_of(raw.value, raw.seq), "unknown")
                except CorruptionError:
                    name = "unknown"
                counts[name] = counts.get(name, 0) + 1
        return counts


def writer_pid(path: str) -> int | None:
    """The pid holding the writer lock, from /proc/locks (never by touching the lock: a bot may be starting)."""
    try:
        st = os.stat(os.path.join(path, LOCK_FILE))
        wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 5 and parts[1] in ("FLOCK", "POSIX", "OFDLCK") and parts[5] == wanted:
                    return int(parts[4])
    except (OSError, ValueError):
        pass
    return None


@dataclass
class Filters:
    """What ``journal dump`` prints. Values of one option are alternatives; options combine with AND."""

    start: int | None = None
    stop: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    kinds: frozenset[int] | None = None  # record kind codes
    sources: frozenset[str] | None = None  # "recovery", "manual" (from --kind)
    types: frozenset[str] | None = None
    op: int | None = None
    symbol: str | None = None
    pending: set[int] | None = None  # op ids; grows with new intents while following


Emit = Callable[[list[Any]], None]


class Dumper:
    """Decodes, filters and emits the rows of ``journal dump``; counts damage."""

    def __init__(self, reader: LogReader, filters: Filters, emit: Emit) -> None:
        self.reader = reader
        self.f = filters
        self.emit = emit
        self.damaged = 0
        self.first_damaged: int | None = None
        self.following = False
        self.passed_until = False  # a record after --until was seen: following can stop
        #: Types and symbols of the records a --type / --symbol filter looked at (matched or not).
        self.seen_types: set[str] = set()
        self.seen_symbols: set[str] = set()

    # -- the hot loop ----------------------------------------------------------

    def rows(self, pairs: RawChunk) -> list[Any]:
        f = self.f
        since, until, kinds, sources, types = f.since_ns, f.until_ns, f.kinds, f.sources, f.types
        want_op, symbol, pending = f.op, f.symbol, f.pending
        growing = pending is not None and self.following
        client_id = self.reader.client_ids()  # per chunk: the reader may have reopened
        seen_types, seen_symbols = self.seen_types, self.seen_symbols
        out: list[Any] = []
        append = out.append
        for key, value in pairs:
            try:
                ts, kind_code = checked_header(key, value)
            except CorruptionError:
                append(self._damaged(key, value))
                continue
            if since is not None and ts < since:
                continue
            if until is not None and ts > until:
                self.passed_until = True
                continue
            if kinds is not None and kind_code not in kinds:
                continue
            seq = int.from_bytes(key, "big")
            kind = KIND_NAMES.get(kind_code)
            if kind is None:
                append(self._damaged(key, value, f"record at seq {seq}: unknown record kind {kind_code}"))
                continue
            try:
                # the checksum matched (checked_header checked the length); the JSON output refuses NaN itself
                body: Any = decode_display(value[HEADER_SIZE:])
            except DecodeError as exc:
                append(self._damaged(key, value, f"record at seq {seq}: body does not decode: {exc}"))
                continue
            type_ = body.get("t") if type(body) is dict else None
            if type(type_) is not str:
                append(self._damaged(key, value, f"record at seq {seq}: body is not a record map"))
                continue
            op = seq if kind_code == INTENT else body.get("op")
            if op is not None and (type(op) is not int or op < 0):
                append(self._damaged(key, value, f"record at seq {seq}: op id is not an integer"))
                continue
            src = body.get("src", "bot")
            if type(src) is not str:
                append(self._damaged(key, value, f"record at seq {seq}: source is not a string"))
                continue
            if types is not None:
                seen_types.add(type_)  # to name the types that exist when a --type matches none
                if type_ not in types:
                    continue
            if sources is not None and src not in sources:
                continue
            if want_op is not None and op != want_op:
                continue
            if pending is not None:
                if growing and kind_code == INTENT:
                    pending.add(seq)
                elif op not in pending:
                    continue
            data = body.get("d")
            if symbol is not None:
                sym = data.get("symbol") if type(data) is dict else None
                if sym != symbol:
                    if type(sym) is str:
                        seen_symbols.add(sym)
                    continue
                seen_symbols.add(sym)
            extra = None
            if len(body) - ("d" in body) - ("op" in body) - ("src" in body) > 1:  # keys a newer version wrote
                extra = {k: v for k, v in body.items() if k not in KNOWN_BODY_KEYS}
            cid = None if op is None else client_id(op)
            append((seq, ts, kind, type_, op, cid, src, data, extra, None, None))
        return out

    def _damaged(self, key: bytes, value: bytes, problem: str | None = None) -> tuple[Any, ...]:
        seq = int.from_bytes(key, "big") if len(key) == 8 else -1
        if problem is None:
            try:
                check(key, value, None)
                problem = f"record at seq {seq}: damaged"
            except CorruptionError as exc:
                problem = str(exc)
        self.damaged += 1
        if self.first_damaged is None:
            self.first_damaged = seq
        return (seq, None, None, None, None, None, None, None, None, problem, bytes(value))

    # -- passes ------------------------------------------------------------------

    def _emit_chunks(self, chunks: Iterator[RawChunk]) -> int | None:
        """Emit every chunk's rows; return the last sequence number read."""
        last = None
        for pairs in chunks:
            if not pairs:
                continue
            last = pairs[-1].seq
            rows = self.rows(pairs)
            if rows:
                self.emit(rows)
        return last

    def initial(self) -> int:
        """Print the records that exist now; return the sequence number to follow from."""
        f = self.f
        last_seq = self.reader.last_seq()
        if f.op is not None or f.pending is not None:
            # Index-driven: an operation's records or the pending ones, without decoding the log.
            ops = [f.op] if f.op is not None else sorted(f.pending or ())
            if f.op is not None and f.pending is not None and f.op not in f.pending:
                ops = []
            seqs = sorted({s for op in ops for s in self.reader.op_seqs(op)})
            lo = f.start if f.start is not None else 0
            hi = min(f.stop, last_seq) if f.stop is not None else last_seq
            self._emit_chunks(self.reader.fetch([s for s in seqs if lo <= s <= hi]))
            return max(hi, lo - 1) + 1
        pos = f.start if f.start is not None else 0
        last = self._emit_chunks(self.reader.scan(pos, f.stop))
        return max(pos, (last if last is not None else pos - 1) + 1)

    def follow(self, pos: int, waker: Waker, flush: Callable[[], None], poll_s: float = POLL_S) -> None:
        """Print records as they are committed, until ``--to``/``--until`` is passed (or Ctrl-C)."""
        self.following = True
        stop = self.f.stop
        seen_txn = -1
        lag_s = 0.002
        while (stop is None or pos <= stop) and not self.passed_until:
            txn = self.reader.last_txnid()
            if txn == seen_txn:
                waker.wait(poll_s)
                continue
            last = self._emit_chunks(self.reader.scan(pos, stop))
            if last is not None:
                pos = last + 1
            flush()
            if self.reader.snapshot_txnid >= txn:
                seen_txn, lag_s = txn, 0.002
            else:
                # The meta page already says `txn` but new read transactions still get the
                # previous snapshot: LMDB's writer publishes the txn id to readers a moment
                # after writing the meta page. Look again shortly (this was a missed record).
                waker.wait(lag_s)
                lag_s = min(lag_s * 2, poll_s)


class Waker:
    """Wakes a follower when ``data.mdb`` in ``path`` is modified; falls back to polling.

    ``wait(timeout)`` blocks on an event (no CPU while idle) until a file event
    or the timeout. The watchdog observer runs in its own daemon thread.
    """

    def __init__(self, path: str) -> None:
        self._event = threading.Event()
        self._observer: Any = None
        self.error: str | None = None
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer

            event = self._event

            class _Handler(FileSystemEventHandler):
                def on_any_event(self, ev: FileSystemEvent) -> None:
                    if ev.event_type in ("modified", "created", "moved", "closed"):
                        name = os.path.basename(os.fsdecode(ev.src_path))
                        if name == "data.mdb":
                            event.set()

            observer = Observer()
            observer.daemon = True
            observer.schedule(_Handler(), path, recursive=False)
            observer.start()
            self._observer = observer
        except Exception as exc:  # inotify limits, odd file systems: polling alone still works
            self.error = f"{type(exc).__name__}: {exc}"

    @property
    def watching(self) -> bool:
        return self._observer is not None

    def wait(self, timeout: float) -> bool:
        woke = self._event.wait(timeout)
        self._event.clear()
        return woke

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None


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
        arg(
            "--from", dest="start", type=parse_seq, metavar="SEQ", help="first sequence number (negative: from the end)"
        ),
        arg("--to", dest="stop", type=parse_seq, metavar="SEQ", help="last sequence number (negative: from the end)"),
        arg("--since", type=parse_time_ns, metavar="TIME", help="records at or after TIME (ISO-8601 UTC or ns)"),
        arg("--until", type=parse_time_ns, metavar="TIME", help="records at or before TIME (ISO-8601 UTC or ns)"),
        arg("--type", dest="types", action="append", metavar="TYPE", help="record type, e.g. place_order (repeatable)"),
        arg("--kind", dest="kinds", action="append", choices=KIND_CHOICES, help="record kind or source (repeatable)"),
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
    start, stop = resolve_seq(a.start, last_seq), resolve_seq(a.stop, last_seq)
    if start is not None and stop is not None and start > stop:
        raise CliError(f"--from {a.start} is after --to {a.stop} (seq {start} > {stop}); swap them")
    if a.since is not None and a.until is not None and a.since > a.until:
        raise CliError(f"--since {iso_ns(a.since)} is after --until {iso_ns(a.until)}; swap them")
    kinds = [k for k in a.kinds or () if k in KIND_CODES]
    sources = [k for k in a.kinds or () if k in SOURCE_KINDS]
    reader = LogReader(ctx.path, journal)
    op = None
    if a.op is not None:
        op = op_id(journal, a.op)
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
    out.dump_header(last_seq)
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
    if not a.follow:
        for warning in filter_warnings(a, dumper, out.dumped, journal):
            ctx.warn(warning)
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


def _names(values: set[str], limit: int = 12) -> str:
    shown = sorted(values)[:limit]
    more = f", ... ({len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(shown) + more if shown else "none"


def _suggest(value: str, known: set[str]) -> str:
    """`` (did you mean X?)`` for a close or differently written value (``BTCUSDT`` for ``BTC/USDT``)."""

    def plain(s: str) -> str:
        return "".join(ch for ch in s.upper() if ch.isalnum())

    same = sorted(k for k in known if plain(k) == plain(value))
    close = same or difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def filter_warnings(a: Any, dumper: Dumper, printed: int, journal: Journal) -> list[str]:
    """What to tell a person whose filter matched nothing: the values that do exist, the journal's span.

    A ``--type`` or ``--symbol`` value that no record had is almost always a
    typo (``plcae_order``, ``BTCUSDT`` for ``BTC/USDT``): name the values the
    scanned records have. When each value exists but nothing matched them all,
    say that, and the time span when a --since/--until was given.
    """
    scoped = any(getattr(a, k) is not None for k in ("start", "stop", "since", "until", "kinds", "op")) or a.pending
    where = "in the records selected" if scoped else "in this journal"
    out = []
    for t in a.types or ():
        if t not in dumper.seen_types:
            out.append(
                f"no record of type {t!r}; types {where}: {_names(dumper.seen_types)}{_suggest(t, dumper.seen_types)}"
            )
    if a.symbol is not None and a.symbol not in dumper.seen_symbols:
        if a.types:
            where = f"{where} of type {', '.join(a.types)}"
        out.append(
            f"no record with symbol {a.symbol!r}; symbols {where}: {_names(dumper.seen_symbols)}"
            f"{_suggest(a.symbol, dumper.seen_symbols)}"
        )
    if out or printed or dumper.damaged:
        return out
    given = []
    for flag, key in (("--from", "start"), ("--to", "stop"), ("--since", "since"), ("--until", "until"),
                      ("--type", "types"), ("--kind", "kinds"), ("--op", "op"), ("--symbol", "symbol")):  # fmt: skip
        value = getattr(a, key)
        if value is None:
            continue
        if key in ("since", "until"):
            value = iso_ns(value)
        given += [f"{flag} {v}" for v in value] if isinstance(value, list) else [f"{flag} {value}"]
    if a.pending:
        given.append("--pending")
    if not given:
        return ["the journal holds no records" + (" (all compacted)" if journal.last_seq else "")]
    span = ""
    if a.since is not None or a.until is not None:
        first, last = journal.first_seq, journal.last_seq
        stamps = [ts_of(raw.value, raw.seq) for raw in journal.get_raw([s for s in (first, last) if s is not None])]
        if stamps:
            span = f"; its records span {iso_ns(min(stamps))} .. {iso_ns(max(stamps))} (times are UTC)"
    together = " together" if len(given) > 1 else ""
    return [f"no record matches {' '.join(given)}{together}{span}"]


COMMANDS = (dump_cmd,)
