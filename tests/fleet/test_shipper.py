"""The shipper against a real nats-server: every record, in order, byte for byte, exactly once in the stream."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, cast

import lmdb
import pytest

from journal import Journal
from journal.fleet import NatsServer, ShipDamageError, Shipper
from journal.log.cursors import read_cursor
from journal.log.record import chain_of, genesis_chain
from tests.fleet.conftest import stream_messages

pytestmark = pytest.mark.integration


def _fill(j: Journal, n: int) -> None:
    for i in range(n):
        if i % 3 == 0:
            op = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": "0.001", "i": i})
            op.commit({"id": str(i), "status": "open"})
        else:
            j.record("tick", {"i": i, "pad": "x" * (i % 50)})


def _stored(path: Path) -> dict[int, bytes]:
    with Journal(path, readonly=True) as j:
        return {raw.seq: raw.value for chunk in j.scan_raw(0) for raw in chunk}


def _ship(path: Path, url: str, **kw: Any) -> Shipper:
    with Shipper(path, url, **kw) as shipper:
        shipper.run(until_caught_up=True)
    return shipper


def test_every_record_in_order_with_its_exact_bytes_and_chain(tmp_path: Path, nats_server: NatsServer) -> None:
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        _fill(j, 200)
        jid, inc = j.journal_id, j.incarnation
    shipper = _ship(path, nats_server.url)
    stored = _stored(path)
    msgs = stream_messages(nats_server.url)
    assert [int(m.headers["Tj-Seq"]) for m in msgs] == sorted(stored) == list(range(1, len(stored) + 1))
    prev = genesis_chain(jid)
    for m in msgs:
        seq = int(m.headers["Tj-Seq"])
        assert m.subject == f"tj.{jid}.records"
        assert m.data == stored[seq]
        assert m.headers["Nats-Msg-Id"] == f"{jid}.{inc}.{seq}"
        assert m.headers["Tj-Journal"] == jid and m.headers["Tj-Incarnation"] == inc
        assert int(m.headers["Tj-Prev-Chain"], 16) == prev
        prev = chain_of(stored[seq], seq)
    assert msgs[0].headers.get("Tj-Base") == "1" and all("Tj-Base" not in m.headers for m in msgs[1:])
    cursor = read_cursor(path, "TJ")
    assert cursor is not None and cursor.seq == len(stored) and cursor.chain == prev
    assert cursor.target == nats_server.url and cursor.extra["journal_id"] == jid
    assert shipper.counters["shipped"] == len(stored) and shipper.counters["duplicates"] == 0


def test_a_restart_resumes_at_the_cursor_and_a_lost_cursor_costs_only_duplicates(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        _fill(j, 60)
    _ship(path, nats_server.url)
    with Journal(path) as j:  # a new writer: a new incarnation for the new records
        _fill(j, 30)
        second = j.incarnation
    again = _ship(path, nats_server.url)
    assert again.counters["shipped"] == len(_stored(path)) - 80 and again.counters["resent"] == 0
    (Path(path) / "ship" / "TJ.cursor").unlink()
    rebased = _ship(path, nats_server.url)  # everything again: the duplicate window drops it all
    assert rebased.counters["duplicates"] == rebased.counters["shipped"] == len(_stored(path))
    msgs = stream_messages(nats_server.url)
    seqs = [int(m.headers["Tj-Seq"]) for m in msgs]
    assert seqs == list(range(1, len(_stored(path)) + 1))
    assert {m.headers["Tj-Incarnation"] for m in msgs if int(m.headers["Tj-Seq"]) > 80} == {second}


def test_a_compacted_journal_ships_from_its_base_with_the_base_chain(tmp_path: Path, nats_server: NatsServer) -> None:
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        _fill(j, 50)
        base_chain = chain_of(j.get_raw([20])[0].value, 20)
        j.compact_log(20)
    _ship(path, nats_server.url)
    msgs = stream_messages(nats_server.url)
    assert int(msgs[0].headers["Tj-Seq"]) == 21 and msgs[0].headers["Tj-Base"] == "1"
    assert int(msgs[0].headers["Tj-Prev-Chain"], 16) == base_chain


def test_in_the_bots_process_on_a_thread_while_it_writes(tmp_path: Path, nats_server: NatsServer) -> None:
    with Journal(tmp_path / "bot.journal") as j:
        shipper = Shipper(j, nats_server.url, status_interval_s=0.2).start()
        writers = [threading.Thread(target=_fill, args=(j, 100)) for _ in range(3)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        assert shipper.wait_acked(j.last_seq, timeout_s=30), shipper.status()
        status = shipper.status()
        shipper.stop()
        assert shipper.state == "stopped"
        assert status["lag_records"] == 0 and status["acked_seq"] == j.last_seq
        assert status["ship_lag_ms"]["p50"] is not None
    msgs = stream_messages(nats_server.url)
    assert [int(m.headers["Tj-Seq"]) for m in msgs] == list(range(1, len(msgs) + 1))
    entry = json.loads(_kv_get(nats_server.url, shipper.status_key))
    assert entry["journal_id"] == j.journal_id and entry["acked_seq"] <= len(msgs)


def _kv_get(url: str, key: str) -> bytes:
    import asyncio

    import nats

    async def main() -> bytes:
        nc = await nats.connect(url)
        try:
            kv = await nc.jetstream().key_value("tj-status")
            entry = await kv.get(key)
            return cast(bytes, entry.value)
        finally:
            await nc.close()

    return asyncio.run(main())


def test_a_hub_that_is_down_delays_shipping_and_loses_nothing(tmp_path: Path, nats_server: NatsServer) -> None:
    nats_server.kill()
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        _fill(j, 30)
        shipper = Shipper(j, nats_server.url, reconnect_wait_s=0.05, max_backoff_s=0.2).start()
        time.sleep(0.5)
        assert shipper.acked_seq <= 0 and shipper.state in ("link-down", "connecting")
        _fill(j, 30)  # trading goes on
        nats_server.start()
        assert shipper.wait_acked(j.last_seq, timeout_s=30), shipper.status()
        shipper.stop()
        assert shipper.counters["link_errors"] >= 1
    assert len(stream_messages(nats_server.url)) == len(_stored(path))


def test_damage_stops_shipping_before_the_damaged_record(tmp_path: Path, nats_server: NatsServer) -> None:
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        _fill(j, 20)
    env = lmdb.open(str(path), max_dbs=10, lib_version=0)
    with env.begin(write=True) as txn:
        db = env.open_db(b"log", txn=txn, create=False)
        key = (12).to_bytes(8, "big")
        value = bytearray(cast(bytes, txn.get(key, db=db)))
        value[-1] ^= 0x40
        txn.put(key, bytes(value), db=db)
    env.close()
    with Shipper(path, nats_server.url) as shipper, pytest.raises(ShipDamageError, match="record at seq 12: checksum"):
        shipper.run(until_caught_up=True)
    assert [int(m.headers["Tj-Seq"]) for m in stream_messages(nats_server.url)] == list(range(1, 12))
    assert shipper.acked_seq == 11


def test_a_bot_that_closes_its_journal_first_stops_its_shipper_quietly(tmp_path: Path, nats_server: NatsServer) -> None:
    j = Journal(tmp_path / "bot.journal")
    _fill(j, 5)
    shipper = Shipper(j, nats_server.url, poll_ms=5).start()
    assert shipper.wait_acked(j.last_seq, 30)
    j.close()  # the bot shuts down without stopping the shipper first
    assert not shipper.wait_acked(j.last_seq + 1, 5)
    shipper.stop()
    assert shipper.state == "stopped: journal closed" and shipper.error is None
    cursor = read_cursor(tmp_path / "bot.journal", "TJ")
    assert cursor is not None and cursor.seq == 7


def test_settings_are_checked_when_built(tmp_path: Path) -> None:
    Journal(tmp_path / "bot.journal").close()
    with pytest.raises(ValueError, match=r"unknown Shipper setting\(s\) \['batch_size'\]"):
        Shipper(tmp_path / "bot.journal", "nats://127.0.0.1:1", batch_size=3)
    with pytest.raises(ValueError, match="nice must be in 0..19"):
        Shipper(tmp_path / "bot.journal", "nats://127.0.0.1:1", nice=40)
    with pytest.raises(ValueError, match="subject prefix must be one token"):
        Shipper(tmp_path / "bot.journal", "nats://127.0.0.1:1", subject_prefix="a.b")


def test_a_recreated_stream_gets_the_whole_journal_again(tmp_path: Path, nats_server: NatsServer) -> None:
    import asyncio

    import nats

    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        _fill(j, 10)
    _ship(path, nats_server.url)

    async def drop() -> None:  # a new hub, or an operator who deleted the stream
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().delete_stream("TJ")
        await nc.close()

    asyncio.run(drop())
    again = _ship(path, nats_server.url)
    assert again.counters["shipped"] == len(_stored(path))
    assert [int(m.headers["Tj-Seq"]) for m in stream_messages(nats_server.url)] == sorted(_stored(path))
