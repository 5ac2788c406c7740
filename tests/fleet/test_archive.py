"""The fleet archive against a real nats-server: every record once, in order; forks kept apart; gaps held."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats
import pytest

from journal import Journal
from journal.fleet import NatsServer, Shipper
from journal.fleet.archive import Archive
from journal.fleet.wire import Shipped, headers_of, records_subject
from journal.log.record import chain_of

pytestmark = pytest.mark.integration


def _bot(path: Path, n: int, symbol: str = "BTC/USDT") -> None:
    with Journal(path) as j:
        for i in range(n):
            op = j.begin("place_order", {"symbol": symbol, "side": "buy", "type": "limit", "amount": "0.01",
                                         "price": str(100 + i)})  # fmt: skip
            op.commit({"id": f"{j.journal_id}{i}", "status": "open", "symbol": symbol, "side": "buy",
                       "amount": "0.01", "filled": "0", "remaining": "0.01", "price": str(100 + i)})  # fmt: skip


def _ship(path: Path, url: str, **kw: object) -> None:
    with Shipper(path, url, **kw) as s:  # type: ignore[arg-type]
        s.run(until_caught_up=True)


def _records(path: Path) -> dict[int, bytes]:
    with Journal(path, readonly=True) as j:
        return {raw.seq: raw.value for chunk in j.scan_raw(0) for raw in chunk}


def _jid(path: Path) -> str:
    with Journal(path, readonly=True) as j:
        return j.journal_id


def _publish(url: str, recs: Sequence[Shipped | tuple[dict[str, str], bytes]], window_s: float = 120) -> None:
    """Publish records (or raw ``(headers, body)`` messages) as a shipper would, creating the stream if needed."""

    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        try:
            await js.stream_info("TJ")
        except nats.js.errors.NotFoundError:
            await js.add_stream(name="TJ", subjects=["tj.*.records"], duplicate_window=window_s)
        for rec in recs:
            if isinstance(rec, Shipped):
                await js.publish(records_subject("tj", rec.journal_id), rec.value, headers=headers_of(rec))
            else:
                await js.publish("tj.AAAAAAAA.records", rec[1], headers=rec[0] or None)
        await nc.close()

    asyncio.run(main())


def _shipped(path: Path) -> list[Shipped]:
    """A journal's records as its shipper would send them."""
    out = []
    with Journal(path, readonly=True) as j:
        prev = j.chain_base[1]
        for chunk in j.scan_raw(0):
            for raw in chunk:
                out.append(Shipped(j.journal_id, j.incarnations.at(raw.seq), raw.seq, prev, raw.value, raw.seq == 1))
                prev = chain_of(raw.value, raw.seq)
    return out


def test_three_journals_archived_exactly_once_and_in_order(tmp_path: Path, nats_server: NatsServer) -> None:
    bots = [tmp_path / f"bot{i}.journal" for i in range(3)]
    for i, bot in enumerate(bots):
        _bot(bot, 10 + i)
        _ship(bot, nats_server.url)
    with Archive(tmp_path / "archive") as archive:
        report = archive.sync(nats_server.url)
        assert report.problems == [] and report.held == [] and report.forks == []
        assert report.appended == sum(len(_records(b)) for b in bots) == report.messages
        rows = archive.verify()
        assert len(rows) == 3 and all(r["ok"] for r in rows)
    for bot in bots:
        assert _records(tmp_path / "archive" / _jid(bot)) == _records(bot)
    with Archive(tmp_path / "archive") as archive:  # again: nothing new, nothing doubled
        again = archive.sync(nats_server.url)
        assert again.appended == 0 and again.messages == 0
        _bot(bots[0], 5)
        _ship(bots[0], nats_server.url)
        more = archive.sync(nats_server.url)
        assert more.appended == 10 and more.duplicates == 0
    state = json.loads((tmp_path / "archive" / "archive.json").read_text())
    assert state["next_stream_seq"] == more.stream_last_seq + 1 and state["held"] == []


def test_duplicates_past_the_window_are_dropped_by_the_archive(tmp_path: Path, nats_server: NatsServer) -> None:
    bot = tmp_path / "bot.journal"
    _bot(bot, 8)
    _ship(bot, nats_server.url, duplicate_window_s=0.2)  # creates the stream with a tiny window
    time.sleep(0.5)
    (bot / "ship" / "TJ.cursor").unlink()
    _ship(bot, nats_server.url)  # everything again, past the window: stored twice
    with Archive(tmp_path / "archive") as archive:
        report = archive.sync(nats_server.url)
        assert report.messages == 2 * len(_records(bot))
        assert report.duplicates == len(_records(bot)) == report.appended
        assert _records(tmp_path / "archive" / _jid(bot)) == _records(bot)


def test_a_restored_backup_is_kept_apart_as_a_fork(tmp_path: Path, nats_server: NatsServer) -> None:
    live = tmp_path / "live.journal"
    _bot(live, 10)
    with Journal(live) as j:
        j.backup(tmp_path / "restored.journal")
        jid = j.journal_id
    _bot(live, 5)  # the live bot goes on...
    _bot(tmp_path / "restored.journal", 3, symbol="ETH/USDT")  # ...and so does a restored copy
    _ship(live, nats_server.url)
    _ship(tmp_path / "restored.journal", nats_server.url)
    with Archive(tmp_path / "archive") as archive:
        report = archive.sync(nats_server.url)
        (fork,) = report.forks
        assert fork["journal_id"] == jid and fork["fork_of"] == jid and fork["fork_seq"] == 21
        assert all(r["ok"] for r in archive.verify())
        assert archive.names() == sorted([jid, fork["history"]])
    assert _records(tmp_path / "archive" / jid) == _records(live)
    assert _records(tmp_path / "archive" / fork["history"]) == _records(tmp_path / "restored.journal")


def test_a_record_ahead_of_its_predecessor_waits_for_it(tmp_path: Path, nats_server: NatsServer) -> None:
    bot = tmp_path / "bot.journal"
    _bot(bot, 3)
    recs = _shipped(bot)
    _publish(nats_server.url, [recs[0], recs[2], recs[3]])  # seq 2 is missing for now
    with Archive(tmp_path / "archive") as archive:
        report = archive.sync(nats_server.url)
        assert [(h["seq"], h["waiting_for"]) for h in report.held] == [(3, 2), (4, 3)]
        assert report.appended == 1
    _publish(nats_server.url, [recs[1], *recs[4:]])
    with Archive(tmp_path / "archive") as archive:  # a new process: held messages are fetched again
        report = archive.sync(nats_server.url)
        assert report.held == [] and report.problems == []
    assert _records(tmp_path / "archive" / recs[0].journal_id) == _records(bot)


def test_conflicting_and_malformed_messages_are_reported_never_applied(tmp_path: Path, nats_server: NatsServer) -> None:
    bot = tmp_path / "bot.journal"
    _bot(bot, 2)
    recs = _shipped(bot)
    other = bytearray(recs[1].value)
    other[-1] ^= 1
    forged = Shipped(recs[1].journal_id, recs[1].incarnation, recs[1].seq, recs[1].prev_chain, bytes(other))
    _publish(nats_server.url, recs, window_s=0.1)
    time.sleep(0.3)  # past the duplicate window, or the hub itself drops the forged copy by its id
    _publish(nats_server.url, [forged, ({}, b"not ours"), ({"Tj-Journal": "AAAAAAAA", "Tj-Seq": "x"}, b"")])
    with Archive(tmp_path / "archive") as archive:
        report = archive.sync(nats_server.url)
        conflict, malformed = report.problems
        assert conflict["seq"] == 2 and "conflict" in conflict["problem"]
        assert "malformed message" in malformed["problem"] and report.foreign == 1
    assert _records(tmp_path / "archive" / recs[0].journal_id) == _records(bot)


def test_more_journals_than_replicas_kept_open(tmp_path: Path, nats_server: NatsServer, monkeypatch: Any) -> None:
    from journal.fleet import archive as archive_module

    monkeypatch.setattr(archive_module, "MAX_OPEN_JOURNALS", 1)
    bots = [tmp_path / f"bot{i}.journal" for i in range(3)]
    for bot in bots:
        _bot(bot, 4)
    shipped = [_shipped(b) for b in bots]
    _publish(nats_server.url, [rec for group in zip(*shipped, strict=True) for rec in group])  # interleaved
    with Archive(tmp_path / "archive") as archive:
        report = archive.sync(nats_server.url)
        assert report.appended == sum(len(s) for s in shipped) and report.problems == [] and report.held == []
    for bot in bots:
        assert _records(tmp_path / "archive" / _jid(bot)) == _records(bot)
