"""Shipping a journal's records, in order, to a NATS JetStream stream.

A :class:`Shipper` follows one journal and publishes every record -- its exact
stored bytes, with its checksum and chain value -- to the subject
``tj.<journal id>.records`` of a JetStream stream (:mod:`journal.fleet.wire`
has the message format). It runs beside the bot, never in its way:

- It reads the journal through short read transactions only (LMDB readers
  never block the writer). In the bot's own process it takes the bot's
  :class:`~journal.Journal` (``Shipper(journal, url).start()`` runs it on a
  thread with its own event loop); as a process of its own (``journal ship``)
  it opens the journal read-only. Trading never waits for it, nor for the
  network: a dead hub or a cut link only makes the backlog grow.
- **At least once, deduplicated.** Up to ``max_in_flight`` records are in
  flight at a time; each carries the deduplication id
  ``<journal id>.<incarnation>.<seq>``. The *cursor* (the last seq the server
  acknowledged, with everything before it) advances over the acknowledged
  prefix only and is written atomically beside the journal
  (:mod:`journal.log.cursors`) every ``cursor_interval_s``. After any failure
  -- an ack that does not come within ``ack_timeout_s``, a closed connection,
  a SIGKILL of this process or of the server -- shipping resumes at cursor + 1
  on a fresh connection: what was in flight is sent again and the stream's
  duplicate window drops it (past the window, the archive drops it by
  ``(journal, incarnation, seq)``).
- **The journal is the buffer.** The cursor is also the journal's retention
  floor: compaction never deletes a record the hub has not acknowledged, so a
  link down for a day costs a day of delay, never a record.
- **It never ships damage.** Each record is checked (checksum, chain from the
  previous one, known kind) before it is sent; a damaged one stops shipping
  with :class:`ShipDamageError`, naming the seq.
- **It re-bases when the history under the cursor changed**: no cursor yet,
  a cursor that does not match the record at its seq (a journal restored from
  a backup at the same path), or a stream that was recreated (its creation
  time differs from the one in the cursor). It then ships again from the first
  record still in the journal, marked ``Tj-Base``; duplicates are dropped
  downstream and a restored backup's new records show in the archive as a fork.
- Every ``status_interval_s`` it puts a status entry (journal position,
  acknowledged position, lag, host, pid) into the hub's ``tj-status`` bucket
  for the fleet view.

Thread rules: :meth:`start` runs the shipper on a daemon thread (which can
lower its own CPU priority: the ``nice`` setting); :meth:`stop` (any thread)
ends it after a last cursor write. :meth:`run` runs
it in the calling thread. :meth:`status` and :meth:`wait_acked` may be called
from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import xxhash

from ..errors import CorruptionError, JournalClosedError, JournalError
from ..log import Journal, settings_from
from ..log.cursors import Cursor, read_cursor, write_cursor
from ..log.record import RawRecord, chain_of, check, ts_of
from ..log.stats import LatencyWindow
from . import wire
from .errors import FleetError, FleetExtraMissingError, HubUnreachableError, ShipDamageError, ShipGapError

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

__all__ = ["DEFAULT_SHIP_SETTINGS", "ShipSettings", "Shipper", "import_nats"]

log = logging.getLogger("journal.fleet.shipper")


def import_nats() -> Any:
    """The ``nats`` package, or :class:`FleetExtraMissingError` saying how to install it."""
    try:
        import nats
        import nats.js.errors  # noqa: F401 (used through the package)
    except ImportError as exc:
        raise FleetExtraMissingError(f"the fleet tools need nats-py ({exc})") from None
    return nats


@dataclasses.dataclass(frozen=True)
class ShipSettings:
    """Settings of a :class:`Shipper` (each checked when built)."""

    #: The JetStream stream the records go to (created if missing).
    stream: str = wire.DEFAULT_STREAM
    #: First token of the subjects: records go to ``<prefix>.<journal id>.records``.
    subject_prefix: str = wire.DEFAULT_PREFIX
    #: The cursor file's name (``<journal>/ship/<name>.cursor``); default: the stream's name.
    cursor_name: str | None = None
    #: Records published and not yet acknowledged, at most.
    max_in_flight: int = 1024
    #: Records read per read transaction.
    batch: int = 256
    #: How often the journal is looked at when there is nothing to send, ms.
    poll_ms: float = 20.0
    #: A record not acknowledged within this long means the link is down: reconnect and resend.
    ack_timeout_s: float = 5.0
    #: The cursor is written at most this often (and when shipping stops); a crash re-sends at most this much.
    cursor_interval_s: float = 0.5
    #: How often the status entry is put into the hub's bucket; 0 disables it.
    status_interval_s: float = 2.0
    #: The hub's key-value bucket for status entries.
    status_bucket: str = wire.DEFAULT_STATUS_BUCKET
    #: When the stream is created here: its duplicate window, seconds.
    duplicate_window_s: float = 600.0
    #: Create the stream and the status bucket when missing (else they must exist).
    create_stream: bool = True
    #: First wait before reconnecting, seconds (doubles up to ``max_backoff_s``).
    reconnect_wait_s: float = 0.2
    max_backoff_s: float = 2.0
    #: Connecting gives up after this long (then waits and tries again).
    connect_timeout_s: float = 2.0
    #: Seconds between pings on an idle connection (a silent partition is noticed after two).
    ping_interval_s: float = 2.0
    #: How much the shipper's thread lowers its own CPU priority (Linux: the thread's nice value) when
    #: started with :meth:`Shipper.start`, so a bot that saturates the CPU wins it. 0 (the default)
    #: keeps it: measured, shipping at nice 0 does not slow the durable operation, while at nice 10 on
    #: a loaded host the shipper starves and the lag grows to seconds (bench/bench_fleet.py, the campaign).
    nice: int = 0

    def __post_init__(self) -> None:
        wire.stream_subjects(self.subject_prefix)  # checks the prefix
        if not self.stream or not all(c.isalnum() or c in "_-" for c in self.stream):
            raise ValueError(f"stream must be a name of [A-Za-z0-9_-], got {self.stream!r}")
        if int(self.max_in_flight) < 1 or int(self.batch) < 1:
            raise ValueError("max_in_flight and batch must be >= 1")
        for name in ("poll_ms", "ack_timeout_s", "cursor_interval_s", "duplicate_window_s", "reconnect_wait_s",
                     "max_backoff_s", "connect_timeout_s", "ping_interval_s"):  # fmt: skip
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= int(self.nice) <= 19:
            raise ValueError(f"nice must be in 0..19, got {self.nice!r}")
        if float(self.status_interval_s) < 0:
            raise ValueError("status_interval_s must be >= 0 (0 disables status entries)")


DEFAULT_SHIP_SETTINGS: Mapping[str, Any] = {f.name: f.default for f in dataclasses.fields(ShipSettings)}


class _Restart(Exception):
    """The link failed: reconnect, then resend from the cursor."""


@dataclasses.dataclass(slots=True)
class _InFlight:
    seq: int
    chain: int
    ts_ns: int
    sent: float
    future: asyncio.Future[Any]


class Shipper:
    """Ships one journal's records to a NATS JetStream hub (see the module docstring)."""

    def __init__(
        self,
        journal: Journal | str | os.PathLike[str],
        servers: str | Sequence[str],
        *,
        settings: ShipSettings | Mapping[str, Any] | None = None,
        connect_options: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        cfg = settings_from(ShipSettings, settings, owner="Shipper", **kw)
        #: The checked settings.
        self.settings = cfg
        #: The hub's URLs (``nats://host:port``).
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        if not self.servers:
            raise ValueError("Shipper needs at least one server URL (nats://host:port)")
        #: Extra keyword arguments for ``nats.connect`` (credentials, TLS).
        self.connect_options = dict(connect_options or {})
        #: True when this shipper opened the journal itself (read-only) and closes it.
        self._owns_journal = not isinstance(journal, Journal)
        #: The journal shipped (the bot's own object, or one opened read-only here).
        self.journal = (
            journal if isinstance(journal, Journal) else Journal(journal, readonly=True, verify_on_open="none")
        )
        self.path = self.journal.path
        self.journal_id = self.journal.journal_id
        self.cursor_name = cfg.cursor_name or cfg.stream
        self.subject = wire.records_subject(cfg.subject_prefix, self.journal_id)
        self.host = socket.gethostname()
        #: Where this journal lives, hashed: a status key per bot even when hosts share journal ids.
        self.status_key = wire.status_key(
            self.journal_id, self.host, xxhash.xxh3_64_hexdigest(os.path.realpath(self.path).encode())[:8]
        )
        #: The acknowledged position: (seq, chain, ts_ns), loaded or re-based on start.
        self._acked: tuple[int, int, int] | None = None
        #: The acknowledged position last written to the cursor file.
        self._written: tuple[int, int, int] | None = None
        #: The stream's creation time as the hub reports it (a recreated stream means re-basing).
        self._stream_created: str | None = None
        #: The first record of this run is the first left in the journal (re-based): marked Tj-Base.
        self._rebased_at: int | None = None
        #: The highest seq published so far (a seq at or below it sent again counts as a re-send).
        self._sent_upto = -1
        #: Set to stop; the loop notices within poll_ms.
        self._stop = threading.Event()
        #: Wakes threads waiting for acknowledgements.
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        #: A fatal error (damage, a gap): shipping stopped because of it.
        self.error: BaseException | None = None
        #: What the shipper does right now, for people.
        self.state = "new"
        self.last_error: str | None = None
        #: Time from a record's write to its acknowledgement by the hub, ns (recent window).
        self.lag = LatencyWindow(8192)
        self.counters = {"shipped": 0, "duplicates": 0, "resent": 0, "reconnects": 0, "link_errors": 0}
        self._last_cursor_write = 0.0
        self._last_status = 0.0
        self._closed = False

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Shipper:
        """Ship on a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError(f"shipper of {self.path} already started")
        self._thread = threading.Thread(target=self._thread_main, name=f"tj-ship:{self.journal_id}", daemon=True)
        self._thread.start()
        return self

    def _thread_main(self) -> None:
        if int(self.settings.nice):
            try:  # Linux applies a nice value to one thread when given its id; elsewhere this may fail
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + int(self.settings.nice))
            except (OSError, AttributeError):
                log.debug("could not lower the shipper thread's priority")
        try:
            self.run()
        except FleetError:
            pass  # logged where it happened, and kept in self.error
        except Exception:
            log.exception("shipping %s to %s stopped", self.path, self.servers[0])

    def run(self, *, until_caught_up: bool = False) -> None:
        """Ship in this thread until :meth:`stop` (or, with ``until_caught_up``, until every record
        present when called is acknowledged). Raises the fatal error that stopped it, if any."""
        target = self.journal.last_seq if until_caught_up else None
        asyncio.run(self._main(target))
        if self.error is not None:
            raise self.error

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop shipping (after a last cursor write); idempotent, from any thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def close(self) -> None:
        """Stop, and close the journal if this shipper opened it. Idempotent."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        if self._owns_journal:
            self.journal.close()

    def __enter__(self) -> Shipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- position ------------------------------------------------------------

    @property
    def acked_seq(self) -> int:
        """The last seq the hub acknowledged (with everything before it); -1 before the cursor is known."""
        return self._acked[0] if self._acked is not None else -1

    def wait_acked(self, seq: int, timeout_s: float) -> bool:
        """Wait until the hub acknowledged ``seq``; False on timeout or if shipping stopped."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.acked_seq < seq:
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None or (self._thread is not None and not self._thread.is_alive()):
                    return self.acked_seq >= seq
                self._cond.wait(min(left, 0.1))
        return True

    def _load_position(self, stream_created: str | None) -> tuple[int, int, int]:
        """The position to resume from, re-basing when the cursor does not describe this journal and stream."""
        cur = read_cursor(self.path, self.cursor_name)
        why = None
        if cur is None:
            why = "no cursor yet"
        elif stream_created and cur.extra.get("stream_created") not in (None, stream_created):
            was = cur.extra.get("stream_created")
            why = f"stream {self.settings.stream} was recreated (created {stream_created}, the cursor's {was})"
        elif not self._matches(cur):
            why = f"the record at seq {cur.seq} is not the one the cursor names (journal restored from a backup?)"
        if why is None:
            assert cur is not None
            self._rebased_at = None
            return cur.seq, cur.chain, cur.ts_ns
        for _ in range(100):  # a compaction may move the base between reading it and writing the cursor
            base_seq, base_chain = self.journal.chain_base
            self._write_cursor((base_seq, base_chain, 0), stream_created)
            first = self._read(base_seq + 1, 1)
            if not first or self._follows(first[0], base_chain):
                break
        else:
            raise JournalError(f"{self.path}: the first record keeps moving under compaction; try again")
        log.log(logging.INFO if cur is None else logging.WARNING, "shipping %s from seq %d (re-based: %s)",
                self.path, base_seq + 1, why)  # fmt: skip
        self._rebased_at = base_seq + 1
        return base_seq, base_chain, 0

    def _matches(self, cur: Cursor) -> bool:
        base_seq, base_chain = self.journal.chain_base
        if cur.seq == base_seq:
            return cur.chain == base_chain
        if cur.seq < base_seq:
            return True  # compacted past it: _read reports the gap
        raws = self.journal.get_raw([cur.seq])
        return bool(raws) and chain_of(raws[0].value, cur.seq) == cur.chain

    @staticmethod
    def _follows(raw: RawRecord, prev_chain: int) -> bool:
        try:
            check(raw.key, raw.value, prev_chain)
            return True
        except CorruptionError:
            return False

    def _write_cursor(self, pos: tuple[int, int, int], stream_created: str | None) -> None:
        extra = {"stream_created": stream_created} if stream_created else {}
        extra["journal_id"] = self.journal_id
        write_cursor(
            self.path,
            Cursor(self.cursor_name, pos[0], pos[1], pos[2], self.servers[0], time.time_ns(), extra),
        )
        self._written = pos

    def _read(self, start: int, n: int) -> list[RawRecord]:
        for chunk in self.journal.scan_raw(start, start + n - 1, chunk=n):
            return list(chunk)
        return []

    # -- the loop ------------------------------------------------------------

    async def _main(self, target: int | None) -> None:
        backoff = float(self.settings.reconnect_wait_s)
        try:
            if self._acked is None:  # known without the hub; a recreated stream re-bases on connect
                self._acked = await asyncio.to_thread(self._load_position, None)
            while not self._stop.is_set():
                nc = None
                try:
                    self.state = "connecting"
                    nc, js = await self._connect()
                    backoff = float(self.settings.reconnect_wait_s)
                    if await self._pump(nc, js, target):
                        break
                except (ShipDamageError, ShipGapError) as exc:
                    self.error, self.state, self.last_error = exc, "stopped: " + type(exc).__name__, str(exc)
                    log.error("%s", exc)
                    if nc is not None:
                        with contextlib.suppress(Exception):
                            await self._put_status(js)
                    return
                except (_Restart, HubUnreachableError) as exc:
                    self._link_error(exc)
                except JournalClosedError:
                    self.state = "stopped: journal closed"  # the bot shut down first: nothing more to ship
                    return
                except JournalError:
                    raise  # the journal itself failed (damaged meta): not a link problem
                except Exception as exc:  # the link: timeouts, OSError, nats-py's own (closed, no responders, API)
                    self._link_error(exc)
                finally:
                    if nc is not None:
                        with contextlib.suppress(Exception):
                            await nc.close()
                if self._stop.is_set():
                    break
                await self._sleep(backoff)
                backoff = min(backoff * 2, float(self.settings.max_backoff_s))
        finally:
            if self._acked is not None and self._acked != self._written:
                await asyncio.to_thread(self._write_cursor, self._acked, self._stream_created)
            if self.error is None and not self.state.startswith("stopped"):
                self.state = "stopped"
            with self._cond:
                self._cond.notify_all()

    def _link_error(self, exc: BaseException) -> None:
        self.counters["link_errors"] += 1
        self.state = "link-down"
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.info("shipping %s: link to %s down (%s); retrying", self.path, self.servers[0], self.last_error)

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.05, end - time.monotonic()))

    async def _connect(self) -> tuple[NatsClient, JetStreamContext]:
        nats = import_nats()
        cfg = self.settings

        async def quiet(exc: Exception) -> None:
            log.debug("nats: %s", exc)

        try:
            nc = await nats.connect(
                servers=self.servers,
                allow_reconnect=False,  # a fresh connection resends from the cursor: nothing buffered arrives late
                max_reconnect_attempts=1,  # the first connect tries each server twice, then our backoff takes over
                reconnect_time_wait=0.01,
                connect_timeout=cfg.connect_timeout_s,
                ping_interval=cfg.ping_interval_s,
                max_outstanding_pings=2,
                name=f"tj-ship {self.journal_id} {self.host}",
                error_cb=quiet,
                **self.connect_options,
            )
        except Exception as exc:
            raise HubUnreachableError(f"cannot reach {', '.join(self.servers)}: {type(exc).__name__}: {exc}") from exc
        self.counters["reconnects"] += 1
        js = nc.jetstream(timeout=cfg.ack_timeout_s, publish_async_max_pending=int(cfg.max_in_flight) + 16)
        await self._ensure_stream(js)
        return nc, js

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        nats = import_nats()
        cfg = self.settings
        try:
            info = await js.stream_info(cfg.stream)
        except nats.js.errors.NotFoundError:
            if not cfg.create_stream:
                raise HubUnreachableError(f"stream {cfg.stream} does not exist on {self.servers[0]}") from None
            info = await js.add_stream(
                name=cfg.stream,
                subjects=wire.stream_subjects(cfg.subject_prefix),
                duplicate_window=float(cfg.duplicate_window_s),
            )
            log.info("created stream %s on %s", cfg.stream, self.servers[0])
        created = info.created
        self._stream_created = created.isoformat() if created is not None else None
        if self._stream_created_changed():
            self._acked = await asyncio.to_thread(self._load_position, self._stream_created)

    def _stream_created_changed(self) -> bool:
        cur = read_cursor(self.path, self.cursor_name)
        return bool(
            cur and self._stream_created and cur.extra.get("stream_created") not in (None, self._stream_created)
        )

    async def _pump(self, nc: NatsClient, js: JetStreamContext, target: int | None) -> bool:
        """Publish and harvest acknowledgements until stopped (True) or caught up with ``target`` (True)."""
        cfg = self.settings
        assert self._acked is not None
        acked_seq, acked_chain, _ = self._acked
        next_seq, prev_chain = acked_seq + 1, acked_chain
        inflight: deque[_InFlight] = deque()
        resend_upto = self._sent_upto
        self.state = "shipping"
        poll_s = float(cfg.poll_ms) / 1000
        max_in_flight = int(cfg.max_in_flight)
        batch = int(cfg.batch)
        status_every = float(cfg.status_interval_s)
        incarnations_upto = 0
        fatal: FleetError | None = None  # damage or a gap ahead: ship what was sent, then stop
        while True:
            # 1. acknowledgements, in order: the cursor moves over the acknowledged prefix only
            moved = False
            while inflight and inflight[0].future.done():
                item = inflight.popleft()
                ack = item.future.result()  # raises the publish's error: handled as a link failure
                if getattr(ack, "duplicate", False):
                    self.counters["duplicates"] += 1
                self.counters["shipped"] += 1
                self._acked = (item.seq, item.chain, item.ts_ns)
                self.lag.add(max(0, time.time_ns() - item.ts_ns))
                moved = True
            if moved:
                with self._cond:
                    self._cond.notify_all()
            now = time.monotonic()
            if self._acked != self._written and now - self._last_cursor_write >= float(cfg.cursor_interval_s):
                self._last_cursor_write = now
                await asyncio.to_thread(self._write_cursor, self._acked, self._stream_created)
            if status_every and now - self._last_status >= status_every:
                self._last_status = now
                await self._put_status(js)
            if nc.is_closed:
                raise _Restart(f"connection to {self.servers[0]} closed")
            if inflight and now - inflight[0].sent > float(cfg.ack_timeout_s):
                raise _Restart(f"seq {inflight[0].seq} not acknowledged within {cfg.ack_timeout_s} s")
            if fatal is not None and not inflight:
                raise fatal
            if (self._stop.is_set() or (target is not None and self._acked[0] >= target)) and not inflight:
                await self._finish(js)
                return True
            # 2. new records, while there is room
            room = max_in_flight - len(inflight)
            raws: list[RawRecord] = []
            if room > 0 and not self._stop.is_set() and fatal is None:
                raws = self._read(next_seq, min(room, batch))
                if raws and raws[0].seq != next_seq:
                    raws, fatal = (
                        [],
                        ShipGapError(
                            f"{self.path}: records {next_seq}..{raws[0].seq - 1} are no longer in the journal but "
                            f"{self.servers[0]} never acknowledged them (cursor {self._cursor_file()} at {next_seq - 1})"
                        ),
                    )
                if raws and raws[-1].seq > incarnations_upto:
                    # A read-only journal learns a newer writer's incarnation when asked for a client id
                    # past what it knows (Journal.client_id refreshes the history from meta).
                    self.journal.client_id(raws[-1].seq)
                    incarnations_upto = raws[-1].seq
                incarnations = self.journal.incarnations
                for raw in raws:
                    try:
                        seq, chain = check(raw.key, raw.value, prev_chain)
                    except CorruptionError as exc:
                        fatal = ShipDamageError(f"{self.path}: {exc}")
                        break
                    inc = incarnations.at(seq)
                    headers = {
                        wire.H_JOURNAL: self.journal_id,
                        wire.H_MSG_ID: wire.msg_id(self.journal_id, inc, seq),
                        wire.H_INCARNATION: inc,
                        wire.H_SEQ: str(seq),
                        wire.H_PREV_CHAIN: f"{prev_chain:016x}",
                    }
                    if seq == self._rebased_at:
                        headers[wire.H_BASE] = "1"
                    future = await js.publish_async(self.subject, raw.value, headers=headers)
                    inflight.append(_InFlight(seq, chain, ts_of(raw.value, seq), time.monotonic(), future))
                    if seq <= resend_upto:
                        self.counters["resent"] += 1
                    prev_chain = chain
                    next_seq = seq + 1
                self._sent_upto = max(resend_upto, next_seq - 1)
            # 3. wait for an acknowledgement, or a moment for new records
            if inflight and (len(inflight) >= max_in_flight or not raws or fatal is not None):
                await asyncio.wait([inflight[0].future], timeout=poll_s)
            elif not raws:
                await asyncio.sleep(poll_s)

    async def _finish(self, js: JetStreamContext) -> None:
        """Shipping ends: the cursor and a last status entry, while the connection is still up."""
        if self._acked is not None and self._acked != self._written:
            await asyncio.to_thread(self._write_cursor, self._acked, self._stream_created)
        self.state = "stopped"
        await self._put_status(js)

    def _cursor_file(self) -> str:
        return os.path.join(self.path, "ship", f"{self.cursor_name}.cursor")

    # -- status --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Where shipping stands: the journal's position, the hub's, the lag, counters."""
        acked = self._acked
        try:
            last_seq = self.journal.last_seq
        except JournalError:
            last_seq = None
        lag_records = max(0, last_seq - acked[0]) if acked is not None and last_seq is not None else None
        lag_s = 0.0
        if lag_records and acked is not None:
            raws = self.journal.get_raw([acked[0] + 1])
            if raws:
                lag_s = round(max(0, time.time_ns() - ts_of(raws[0].value, raws[0].seq)) / 1e9, 3)
        summary = self.lag.summary()
        return {
            "journal_id": self.journal_id,
            "incarnation": self.journal.incarnation,
            "path": os.path.abspath(self.path),
            "host": self.host,
            "pid": os.getpid(),
            "target": self.servers[0],
            "stream": self.settings.stream,
            "state": self.state,
            "last_seq": last_seq,
            "acked_seq": acked[0] if acked is not None else None,
            "acked_ts_ns": acked[2] if acked is not None else None,
            "lag_records": lag_records,
            "lag_s": lag_s,
            "ship_lag_ms": {
                k.replace("_us", ""): (None if v is None else round(v / 1000, 3))
                for k, v in summary.items()
                if k.endswith("_us")
            },  # fmt: skip
            **self.counters,
            "error": self.last_error,
            "updated_ns": time.time_ns(),
        }

    async def _put_status(self, js: JetStreamContext) -> None:
        """Put the status entry into the hub's bucket (best effort: a failure is logged, never fatal)."""
        if not float(self.settings.status_interval_s):
            return
        nats = import_nats()
        try:
            try:
                kv = await js.key_value(self.settings.status_bucket)
            except nats.js.errors.BucketNotFoundError:
                if not self.settings.create_stream:
                    return
                kv = await js.create_key_value(bucket=self.settings.status_bucket, history=1)
            status = await asyncio.to_thread(self.status)
            await kv.put(self.status_key, json.dumps(status).encode())
        except Exception as exc:
            log.debug("status entry for %s not written: %s", self.path, exc)

    def __repr__(self) -> str:
        return f"<Shipper {self.path} -> {self.servers[0]} {self.state} acked={self.acked_seq}>"
