"""The engine of ``journal dump``: a streaming scan of the log, its filters, and ``--follow``.

Streaming: the log is read ``CHUNK`` records per short read transaction (so a
slow terminal never pins the writer's old pages), each chunk is decoded,
filtered and printed before the next is read, and the environment is reopened
every ``REOPEN_EVERY`` records: LMDB maps the file, and the pages a reader has
touched count in its resident memory until it unmaps them. Memory stays
bounded whatever the journal's size.

Damage: each record's checksum is checked on its stored bytes. A damaged
record becomes a row whose ``checksum`` says what is wrong (with the raw bytes)
and the scan goes on; it is printed whatever the filters, since a filter
cannot trust a damaged header. The hash chain is ``journal verify``'s job.

Follow: after the existing records, :class:`Waker` blocks on an event set by
a watchdog observer when ``data.mdb`` is modified, with a timeout of
``POLL_S``: LMDB's writes may coalesce into fewer file events than commits, so
each wake-up compares ``last_txnid`` and scans only when it moved. Idle, the
follower sleeps in the kernel and costs no CPU. Records are appended in
sequence order in atomic transactions, so scanning from the next sequence
number after the last one seen never misses or repeats a record.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import cbor2
import xxhash

from ..errors import CorruptionError, DecodeError, NotAJournalError
from ..log.codec import decode
from ..log.journal import Journal
from ..log.record import INTENT, KIND_NAMES, check, seq_key
from ..log.storage import LOCK_FILE
from .output import base62 as _base62
from .output import decimal_text

__all__ = [
    "CHUNK",
    "POLL_S",
    "REOPEN_EVERY",
    "Dumper",
    "Filters",
    "LogReader",
    "Waker",
    "dbs",
    "open_reader",
    "writer_pid",
]

CHUNK = 4096
REOPEN_EVERY = 131072
POLL_S = 0.5

_HEADER = struct.Struct(">QQQB")
_SEQ = struct.Struct(">Q")
_xxh3 = xxhash.xxh3_64_intdigest
_KNOWN = frozenset({"t", "d", "op", "src"})


def _body_decoder() -> Callable[[bytes], Any]:
    """The codec's hardened decoder, with each Decimal decoded straight to its exact text.

    A dump prints Decimals as strings anyway; skipping the Decimal object
    halves the cost of a record holding a few prices (bench/bench_cli.py).
    Same tags, limits and refusals as :func:`journal.codec.decode` (a test
    checks they agree); falls back to it if the codec's internals change.
    """
    try:
        from ..log.codec import _CBOR_MAX_DEPTH, _SEMANTIC_DECODERS, _decode_failure, _refuse_unknown_tag
    except ImportError:  # pragma: no cover - the codec was reorganised: stay correct, lose speed
        return lambda data: decode(data, check=False)

    def decimal(value: Any, immutable: bool) -> str:
        try:
            exponent, mantissa = value
        except (TypeError, ValueError):
            exponent = mantissa = None
        if type(exponent) is not int or type(mantissa) is not int:
            raise DecodeError("a decimal fraction (tag 4) must hold [exponent, mantissa] integers")
        if -64 <= exponent < 0 and mantissa > 0:  # the common case, inline: a positive price or amount
            digits = str(mantissa)
            if len(digits) > -exponent:
                return f"{digits[:exponent]}.{digits[exponent:]}"
            return f"0.{'0' * (-exponent - len(digits))}{digits}"
        return decimal_text(mantissa, exponent)

    semantic = {**_SEMANTIC_DECODERS, 4: decimal}
    empty = io.BytesIO(b"")

    def new() -> cbor2.CBORDecoder:
        return cbor2.CBORDecoder(
            empty,
            tag_hook=_refuse_unknown_tag,
            semantic_decoders=semantic,
            max_depth=_CBOR_MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )

    decoder = new()

    def body(data: bytes) -> Any:
        nonlocal decoder
        stream = io.BytesIO(data)
        try:
            decoder.fp = stream
            value = decoder.decode()
        except Exception as exc:
            decoder = new()  # never reuse a decoder after a failure
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(_decode_failure(exc, len(data))) from exc
        end = stream.tell()
        if end != len(data):
            raise DecodeError(f"cannot decode {len(data)} bytes: {len(data) - end} trailing bytes at offset {end}")
        return value

    return body


def dbs(journal: Journal) -> dict[str, Any]:
    """The journal's LMDB database handles by name (None for a database a reader found absent)."""
    return journal._storage.dbs


def open_reader(path: str) -> Journal:
    """The read-only journal every read command uses (takes no lock, verifies nothing on open)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotAJournalError(f"{path}: is a file; a journal is a directory (the one the bot opens)")
    return Journal(path, readonly=True, verify_on_open="none")


class LogReader:
    """Raw, chunked, read-only access to a journal's log and indexes."""

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
        return self.journal._storage.last_txnid()

    def last_seq(self) -> int:
        return self.journal.last_seq

    def scan(self, pos: int, stop: int | None) -> Iterator[list[tuple[bytes, bytes]]]:
        """``(key, value)`` chunks with ``pos <= seq <= stop``, one read transaction per chunk."""
        while stop is None or pos <= stop:
            with self.journal._storage.read() as txn:
                self.snapshot_txnid = txn.id()
                cur = txn.cursor(db=dbs(self.journal)["log"])
                if not cur.set_range(seq_key(pos)):
                    return
                chunk: list[tuple[bytes, bytes]] = []
                for item in cur:  # buffers=False: bytes copies, valid after the transaction
                    chunk.append(cast(tuple[bytes, bytes], item))
                    if len(chunk) >= CHUNK:
                        break
            if stop is not None and chunk and _key_seq(chunk[-1][0]) > stop:
                chunk = [kv for kv in chunk if _key_seq(kv[0]) <= stop]
                if chunk:
                    yield chunk
                return
            if not chunk:
                return
            yield chunk
            self._tick(len(chunk))
            if len(chunk) < CHUNK:
                return
            pos = _key_seq(chunk[-1][0]) + 1

    def fetch(self, seqs: Sequence[int]) -> Iterator[list[tuple[bytes, bytes]]]:
        """The stored records of ``seqs`` (ascending), in chunks; absent ones are skipped."""
        for i in range(0, len(seqs), CHUNK):
            log_db = dbs(self.journal)["log"]
            with self.journal._storage.read() as txn:
                chunk: list[tuple[bytes, bytes]] = []
                for seq in seqs[i : i + CHUNK]:
                    key = seq_key(seq)
                    value = txn.get(key, db=log_db)
                    if value is not None:
                        chunk.append((key, bytes(value)))
            yield chunk
            self._tick(len(chunk))

    def op_seqs(self, op_id: int) -> list[int]:
        """Sequence numbers of one operation's records, from the ``ops`` index (no record decoded)."""
        db = dbs(self.journal)
        prefix = _SEQ.pack(op_id)
        out = []
        with self.journal._storage.read() as txn:
            value = txn.get(prefix, db=db["log"])
            if value is not None and len(value) > 24 and value[24] == INTENT:
                out.append(op_id)
            if db.get("ops") is not None:
                cur = txn.cursor(db=db["ops"])
                if cur.set_range(prefix):
                    for key in cur.iternext(values=False):
                        if key[:8] != prefix:
                            break
                        out.append(_key_seq(bytes(key[8:])))
        return out

    def pending_ops(self) -> list[int]:
        """Op ids in the ``pending`` index, oldest first."""
        db = dbs(self.journal).get("pending")
        if db is None:
            return []
        with self.journal._storage.read() as txn:
            return [_key_seq(bytes(k)) for k in txn.cursor(db=db).iternext(values=False)]

    def kind_counts(self) -> dict[str, int]:
        """Records per kind, from each record's header byte (nothing decoded)."""
        counts = dict.fromkeys(KIND_NAMES.values(), 0)
        for chunk in self.scan(0, None):
            for _key, value in chunk:
                name = KIND_NAMES.get(value[24], "unknown") if len(value) > 24 else "unknown"
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
                if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == wanted:
                    return int(parts[4])
    except (OSError, ValueError):
        pass
    return None


def _key_seq(key: bytes) -> int:
    return int(_SEQ.unpack(key)[0]) if len(key) == 8 else -1


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
        self._prefix = "tj" + reader.journal_id
        self._decode = _body_decoder()

    # -- the hot loop ----------------------------------------------------------

    def rows(self, pairs: list[tuple[bytes, bytes]]) -> list[Any]:
        f = self.f
        since, until, kinds, sources, types = f.since_ns, f.until_ns, f.kinds, f.sources, f.types
        want_op, symbol, pending = f.op, f.symbol, f.pending
        growing = pending is not None and self.following
        prefix = self._prefix
        unpack = _HEADER.unpack_from
        out: list[Any] = []
        append = out.append
        decode_body = self._decode
        for key, value in pairs:
            if len(key) != 8 or len(value) < 26:
                append(self._damaged(key, value))
                continue
            checksum, _chain, ts, kind_code = unpack(value)
            if _xxh3(key + value[8:]) != checksum:
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
                body = decode_body(value[26:])  # the checksum matched; the JSON output refuses NaN itself
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
            if types is not None and type_ not in types:
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
            if symbol is not None and (type(data) is not dict or data.get("symbol") != symbol):
                continue
            extra = None
            if len(body) - ("d" in body) - ("op" in body) - ("src" in body) > 1:  # keys a newer version wrote
                extra = {k: v for k, v in body.items() if k not in _KNOWN}
            cid = None if op is None else prefix + _base62(op)
            append((seq, ts, kind, type_, op, cid, src, data, extra, None, None))
        return out

    def _damaged(self, key: bytes, value: bytes, problem: str | None = None) -> tuple[Any, ...]:
        seq = _key_seq(key)
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

    def _emit_chunks(self, chunks: Iterator[list[tuple[bytes, bytes]]]) -> int | None:
        """Emit every chunk's rows; return the last sequence number read."""
        last = None
        for pairs in chunks:
            if not pairs:
                continue
            last = _key_seq(pairs[-1][0])
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

    def kick(self) -> None:
        self._event.set()

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None
