"""The fleet archive: every journal shipped to the hub, as local journal directories the tools read.

Layout of an archive directory::

    archive.json                              where the archive stands in the stream (next stream seq,
                                              messages held back, the stream's creation time)
    <journal id>/                             each journal's history: a replica (journal.log.replica)
    <journal id>.fork-<seq>-<incarnation>/    another history of the same journal (see forks below)
    views/                                    the fleet view's cache (journal.fleet.view)

Each history directory is a journal: ``journal dump``, ``show``, ``pending``,
``verify`` and a read-only :class:`~journal.StateStore` work on it unchanged,
and :meth:`Archive.verify` checks every one's checksums and chain.

**Where a record goes** (:meth:`Archive.offer`). A shipped record names its
journal, the incarnation that wrote it, its seq and the chain value it follows
(:mod:`journal.fleet.wire`). In that order:

1. A history already holding this ``(incarnation, seq)`` with the same bytes:
   a duplicate (a re-send past the hub's duplicate window), dropped. The same
   ``(incarnation, seq)`` with other bytes is a conflict: reported, dropped.
2. A history whose last record is ``seq - 1`` with exactly that chain value:
   appended (the replica checks checksum and chain again).
3. A history holding record ``seq - 1`` with that chain value, and another
   record at ``seq``: a **fork** -- two copies of one journal (a restored
   backup, a cloned template) that wrote different records from ``seq`` on. A
   new history directory is made for it: the shared records up to ``seq - 1``
   are copied, then it continues on its own, so each history verifies from the
   journal's first record and neither is mixed into the other. Reported.
4. The first record of a journal never seen (seq 1, or the first record left in
   a compacted journal, marked ``Tj-Base``): a new history.
5. Otherwise the record arrived before its predecessor (a gap in the stream,
   e.g. a publish lost with a dying connection while a later one got through):
   held back, and placed as soon as the predecessor arrives. Held messages are
   remembered by their stream seq in ``archive.json`` and fetched again by the
   next sync; ones still waiting are reported with the seq they wait for.

**Exactly once, in order.** Steps 1-2 make every record land once, after its
predecessor, whatever the stream repeats; the replica refuses anything else.

**Re-running is safe.** The stream position is saved only after the replicas
are committed, so a sync killed halfway re-reads messages whose records are
already in place: duplicates, dropped by step 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CorruptionError, JournalError, NotAJournalError
from ..log import Journal
from ..log.record import chain_of
from ..log.replica import Replica, ReplicaError
from . import wire
from .errors import FleetError, HubUnreachableError
from .hub import connect
from .shipper import import_nats

__all__ = ["ARCHIVE_STATE", "Archive", "History", "SyncReport"]

log = logging.getLogger("journal.fleet.archive")

#: The archive's own state file.
ARCHIVE_STATE = "archive.json"
VIEWS_DIR = "views"
#: Journals whose replicas a sync keeps open at once.
MAX_OPEN_JOURNALS = 64
_STATE_FORMAT = 1

APPENDED, DUPLICATE, FORK, NEW, HELD, CONFLICT, DAMAGED = (
    "appended", "duplicate", "fork", "new", "held", "conflict", "damaged"
)  # fmt: skip


@dataclass
class History:
    """One history of one journal in the archive: a replica directory."""

    #: The directory name (the journal id for the first history seen).
    name: str
    journal_id: str
    replica: Replica
    #: The history this one forked from, and the first seq where they differ (None: not a fork).
    fork_of: str | None = None
    fork_seq: int | None = None

    def chain_at(self, seq: int) -> int | None:
        """The chain value of record ``seq`` in this history (the base's for its base), None if absent."""
        r = self.replica
        if seq == r.base_seq:
            return r.base_chain
        value = r.value(seq)
        return None if value is None else chain_of(value, seq)


@dataclass
class SyncReport:
    """What one :meth:`Archive.sync` did."""

    source: str
    stream: str
    messages: int = 0
    appended: int = 0
    duplicates: int = 0
    #: History directories made by this sync (new journals and forks).
    created: list[str] = field(default_factory=list)
    forks: list[dict[str, Any]] = field(default_factory=list)
    #: Records still waiting for their predecessor (journal, seq, stream seq, waiting for).
    held: list[dict[str, Any]] = field(default_factory=list)
    #: Messages that were malformed, damaged or in conflict (never applied).
    problems: list[dict[str, Any]] = field(default_factory=list)
    #: Messages on the stream's subjects that are not shipped records.
    foreign: int = 0
    stream_last_seq: int = 0
    next_stream_seq: int = 1
    #: Records appended per history (the histories this sync touched).
    appended_by: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Archive:
    """A directory of replicas, one per journal history (see the module docstring). Not thread-safe."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        #: The archive directory.
        self.root = os.fspath(root)
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise FleetError(f"{self.root}: exists and is not a directory; give a directory for the archive")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        #: archive.json: the stream position, held messages.
        self.state: dict[str, Any] = self._load_state()
        #: Open histories by journal id, least recently used first (opened when a record of that journal
        #: arrives; at most MAX_OPEN_JOURNALS kept open, each LMDB environment holding file descriptors).
        self._histories: OrderedDict[str, list[History]] = OrderedDict()
        #: Records waiting for their predecessor: (record, stream seq).
        self._held: list[tuple[wire.Shipped, int]] = []

    # -- state ---------------------------------------------------------------

    def _state_path(self) -> str:
        return os.path.join(self.root, ARCHIVE_STATE)

    def _load_state(self) -> dict[str, Any]:
        try:
            with open(self._state_path(), "rb") as f:
                state = json.loads(f.read())
        except FileNotFoundError:
            return {"format": _STATE_FORMAT, "next_stream_seq": 1, "held": []}
        except ValueError as exc:
            raise FleetError(
                f"{self._state_path()}: unreadable ({exc}); delete it to read the whole stream again "
                "(records already archived are recognised as duplicates)"
            ) from None
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise FleetError(f"{self._state_path()}: not an archive state of format {_STATE_FORMAT}")
        return state

    def _save_state(self) -> None:
        self.state["updated_ns"] = time.time_ns()
        data = json.dumps(self.state, sort_keys=True).encode() + b"\n"
        path = self._state_path()
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- histories -----------------------------------------------------------

    def names(self) -> list[str]:
        """Every history directory in the archive, sorted."""
        out = []
        for entry in sorted(os.listdir(self.root)):
            if entry != VIEWS_DIR and os.path.exists(os.path.join(self.root, entry, "data.mdb")):
                out.append(entry)
        return out

    def history_info(self) -> list[dict[str, Any]]:
        """Each history: name, path, journal id, fork origin, first and last seq."""
        self.release()
        out = []
        for name in self.names():
            path = os.path.join(self.root, name)
            with Journal(path, readonly=True, verify_on_open="none") as j:
                source = j.meta.get("replica") or {}
                out.append(
                    {
                        "name": name,
                        "path": path,
                        "journal_id": j.journal_id,
                        "fork_of": source.get("fork_of"),
                        "fork_seq": source.get("fork_seq"),
                        "first_seq": j.first_seq,
                        "last_seq": j.last_seq,
                    }
                )
        return out

    def _open_histories(self, journal_id: str) -> list[History]:
        found = self._histories.get(journal_id)
        if found is not None:
            self._histories.move_to_end(journal_id)
            return found
        while len(self._histories) >= MAX_OPEN_JOURNALS:  # a fleet of hundreds: close the least recent
            _, oldest = self._histories.popitem(last=False)
            for h in oldest:
                h.replica.commit()
                h.replica.close()
        found = []
        for name in self.names():
            if name != journal_id and not name.startswith(journal_id + "."):
                continue
            replica = Replica(os.path.join(self.root, name))
            if replica.journal_id != journal_id:
                replica.close()
                continue
            found.append(
                History(name, journal_id, replica, replica.source.get("fork_of"), replica.source.get("fork_seq"))
            )
        found.sort(key=lambda h: (h.fork_of is not None, h.fork_seq or 0, h.name))
        self._histories[journal_id] = found
        return found

    def _new_history(self, rec: wire.Shipped, source: str, *, parent: History | None) -> History:
        if parent is None:
            name = rec.journal_id
            if os.path.exists(os.path.join(self.root, name)):
                name = f"{rec.journal_id}.base-{rec.seq}-{rec.incarnation or 'v1'}"
        else:
            name = f"{rec.journal_id}.fork-{rec.seq}-{rec.incarnation or 'v1'}"
        base_name, n = name, 1
        while os.path.exists(os.path.join(self.root, name)):
            n += 1
            name = f"{base_name}-{n}"
        info: dict[str, Any] = {}
        if parent is not None:
            info = {"fork_of": parent.name, "fork_seq": rec.seq}
            base_seq, base_chain = parent.replica.base_seq, parent.replica.base_chain
        else:
            base_seq, base_chain = rec.seq - 1, rec.prev_chain
        replica = Replica.create(
            os.path.join(self.root, name), rec.journal_id, base_seq=base_seq, base_chain=base_chain,
            source=source, info=info,
        )  # fmt: skip
        history = History(name, rec.journal_id, replica, info.get("fork_of"), info.get("fork_seq"))
        if parent is not None:  # the shared records, so the fork verifies from the journal's first record
            parent.replica.commit()
            for raw in parent.replica.raw_records(base_seq + 1, rec.seq - 1):
                replica.stage(raw.seq, parent.replica.incarnations.at(raw.seq), raw.value)
                if replica.staged >= 4096:
                    replica.commit()
            replica.commit()
        self._histories.setdefault(rec.journal_id, []).append(history)
        return history

    # -- placing records -----------------------------------------------------

    def offer(self, rec: wire.Shipped, stream_seq: int, report: SyncReport) -> str:
        """Place one shipped record (see the module docstring); returns what happened to it."""
        histories = self._open_histories(rec.journal_id)
        for h in histories:  # 1. already here?
            r = h.replica
            if r.base_seq < rec.seq <= r.last_seq and r.incarnations.at(rec.seq) == rec.incarnation:
                if r.value(rec.seq) == rec.value:
                    report.duplicates += 1
                    return DUPLICATE
                report.problems.append({
                    "stream_seq": stream_seq, "journal_id": rec.journal_id, "seq": rec.seq,
                    "incarnation": rec.incarnation, "history": h.name,
                    "problem": f"conflict: {h.name} holds other bytes for incarnation "
                               f"{rec.incarnation or 'v1'} seq {rec.seq}",
                })  # fmt: skip
                return CONFLICT
        for h in histories:  # 2. the next record of a history
            if h.replica.last_seq == rec.seq - 1 and h.replica.last_chain == rec.prev_chain:
                return self._stage(h, rec, stream_seq, report, APPENDED)
        for h in histories:  # 3. a fork: h holds the predecessor, and another record after it
            r = h.replica
            if r.base_seq <= rec.seq - 1 < r.last_seq and h.chain_at(rec.seq - 1) == rec.prev_chain:
                fork = self._new_history(rec, report.source, parent=h)
                report.created.append(fork.name)
                report.forks.append({"journal_id": rec.journal_id, "history": fork.name, "fork_of": h.name,
                                     "fork_seq": rec.seq, "incarnation": rec.incarnation})  # fmt: skip
                log.warning("journal %s forked at seq %d (incarnation %s): kept apart as %s",
                            rec.journal_id, rec.seq, rec.incarnation or "v1", fork.name)  # fmt: skip
                return self._stage(fork, rec, stream_seq, report, FORK)
        if rec.seq == 1 or rec.base:  # 4. a journal's first record
            waiting = any(h.replica.last_seq < rec.seq - 1 for h in histories)
            if not histories or not waiting:
                h = self._new_history(rec, report.source, parent=None)
                report.created.append(h.name)
                return self._stage(h, rec, stream_seq, report, NEW)
        self._held.append((rec, stream_seq))  # 5. its predecessor has not arrived yet
        return HELD

    def _stage(self, h: History, rec: wire.Shipped, stream_seq: int, report: SyncReport, outcome: str) -> str:
        try:
            h.replica.stage(rec.seq, rec.incarnation, rec.value)
        except (CorruptionError, ReplicaError) as exc:
            report.problems.append({"stream_seq": stream_seq, "journal_id": rec.journal_id, "seq": rec.seq,
                                    "incarnation": rec.incarnation, "history": h.name, "problem": str(exc)})  # fmt: skip
            return DAMAGED
        report.appended += 1
        report.appended_by[h.name] = report.appended_by.get(h.name, 0) + 1
        return outcome

    def commit(self) -> None:
        """Write every history's staged records (one synced transaction each)."""
        for histories in self._histories.values():
            for h in histories:
                h.replica.commit()

    def retry_held(self, report: SyncReport) -> None:
        """Place held records whose predecessor has arrived (repeatedly, while that helps)."""
        progress = True
        while progress and self._held:
            progress = False
            held, self._held = self._held, []
            for rec, sseq in sorted(held, key=lambda x: (x[0].journal_id, x[0].seq)):
                if self.offer(rec, sseq, report) != HELD:
                    progress = True

    def held(self) -> list[dict[str, Any]]:
        """The records still waiting, with the seq each waits for."""
        out = []
        for rec, sseq in sorted(self._held, key=lambda x: x[1]):
            have = max((h.replica.last_seq for h in self._open_histories(rec.journal_id)), default=None)
            out.append({"journal_id": rec.journal_id, "seq": rec.seq, "incarnation": rec.incarnation,
                        "stream_seq": sseq, "waiting_for": rec.seq - 1, "archived_up_to": have})  # fmt: skip
        return out

    # -- syncing from the hub ------------------------------------------------

    def sync(
        self,
        servers: str | Sequence[str],
        *,
        stream: str = wire.DEFAULT_STREAM,
        subject_prefix: str = wire.DEFAULT_PREFIX,
        batch: int = 1000,
        fetch_timeout_s: float = 2.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> SyncReport:
        """Read the stream from where the archive stands to its current end, placing every record."""
        return asyncio.run(self.sync_async(servers, stream=stream, subject_prefix=subject_prefix, batch=batch,
                                           fetch_timeout_s=fetch_timeout_s, connect_options=connect_options))  # fmt: skip

    async def sync_async(
        self,
        servers: str | Sequence[str],
        *,
        stream: str = wire.DEFAULT_STREAM,
        subject_prefix: str = wire.DEFAULT_PREFIX,
        batch: int = 1000,
        fetch_timeout_s: float = 2.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> SyncReport:
        """:meth:`sync` inside a running event loop."""
        nats = import_nats()
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        url = servers if isinstance(servers, str) else ", ".join(servers)
        if self.state.get("stream") not in (None, stream):
            raise FleetError(
                f"{self.root}: this archive holds stream {self.state['stream']!r}, not {stream!r}; "
                "give another directory for another stream"
            )
        report = SyncReport(source=url, stream=stream)
        nc = await connect(servers, name="tj-archive", options=connect_options)
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                raise HubUnreachableError(f"{url} has no stream {stream!r} (nothing shipped there yet?)") from None
            created = info.created.isoformat() if info.created is not None else None
            if self.state.get("stream_created") not in (None, created):
                log.warning("stream %s on %s was recreated (%s, archive read %s): reading it from the start",
                            stream, url, created, self.state.get("stream_created"))  # fmt: skip
                self.state["next_stream_seq"], self.state["held"] = 1, []
            self.state.update({"stream": stream, "stream_created": created, "source": url})
            last = int(info.state.last_seq)
            report.stream_last_seq = last
            for sseq in list(self.state.get("held") or []):  # held last time: fetch them again
                try:
                    msg = await js.get_msg(stream, int(sseq))
                except nats.js.errors.NotFoundError:
                    continue
                self._handle(msg.headers, msg.data or b"", int(sseq), report)
            self.retry_held(report)
            pos = max(int(self.state.get("next_stream_seq") or 1), int(info.state.first_seq or 1))
            if pos <= last:
                config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=pos,
                                        ack_policy=AckPolicy.NONE, inactive_threshold=60.0)  # fmt: skip
                sub = await js.pull_subscribe(wire.stream_subjects(subject_prefix)[0], stream=stream, config=config)
                try:
                    while pos <= last:
                        try:
                            msgs = await sub.fetch(batch, timeout=fetch_timeout_s)
                        except (TimeoutError, nats.errors.TimeoutError):
                            break  # the rest was deleted from the stream meanwhile
                        for m in msgs:
                            sseq = m.metadata.sequence.stream
                            if sseq > last:
                                break
                            self._handle(m.headers, m.data, sseq, report)
                            pos = sseq + 1
                        self._checkpoint(pos, report)
                finally:
                    await sub.unsubscribe()
            self._checkpoint(max(pos, int(self.state.get("next_stream_seq") or 1)), report)
        finally:
            await nc.close()
        report.held = self.held()
        self.release()  # the histories are journals again: readable in this process too
        report.next_stream_seq = int(self.state["next_stream_seq"])
        return report

    def _handle(self, headers: Mapping[str, str] | None, data: bytes, sseq: int, report: SyncReport) -> None:
        report.messages += 1
        if not headers or wire.H_JOURNAL not in headers:
            report.foreign += 1
            return
        try:
            rec = wire.parse_message(headers, data)
        except ValueError as exc:
            report.problems.append({"stream_seq": sseq, "problem": f"malformed message: {exc}"})
            return
        self.offer(rec, sseq, report)

    def _checkpoint(self, pos: int, report: SyncReport) -> None:
        self.commit()
        self.retry_held(report)
        self.commit()  # records placed only now (their predecessors were in this batch)
        self.state["next_stream_seq"] = pos
        self.state["held"] = sorted({sseq for _, sseq in self._held})
        self._save_state()

    # -- checking ------------------------------------------------------------

    def verify(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Verify every history (or ``names``): checksums and the whole chain. One row per history."""
        self.release()
        rows = []
        for name in names if names is not None else self.names():
            path = os.path.join(self.root, name)
            row: dict[str, Any] = {"name": name, "path": path}
            try:
                with Journal(path, readonly=True, verify_on_open="none") as j:
                    report = j.verify()
                    row.update({"journal_id": j.journal_id, "ok": report.ok, "records": report.records_checked,
                                "first_seq": report.first_seq, "last_seq": report.last_seq,
                                "first_bad_seq": report.first_bad_seq, "problem": report.problem})  # fmt: skip
            except (JournalError, NotAJournalError) as exc:
                row.update({"ok": False, "problem": str(exc)})
            rows.append(row)
        return rows

    def journals(self) -> Iterator[str]:
        """The journal ids in the archive."""
        seen = set()
        for name in self.names():
            jid = name.split(".", 1)[0]
            if jid not in seen:
                seen.add(jid)
                yield jid

    # -- lifecycle -----------------------------------------------------------

    def release(self) -> None:
        """Commit what is staged and close the replicas, so journals can open them read-only in this
        process (LMDB opens an environment once per process); they reopen when records arrive."""
        try:
            self.commit()
        finally:
            for histories in self._histories.values():
                for h in histories:
                    h.replica.close()
            self._histories.clear()

    def close(self) -> None:
        """Commit what is staged and close every replica. Idempotent."""
        self.release()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
