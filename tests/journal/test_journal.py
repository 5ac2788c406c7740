"""The write-ahead journal: operations, reads, verification, errors."""

from __future__ import annotations

import logging
import os
import struct
from decimal import Decimal
from pathlib import Path

import lmdb
import pytest

from journal import (
    CodecError,
    CorruptionError,
    Durability,
    Journal,
    JournalClosedError,
    OperationStateError,
    ReadOnlyError,
    UnknownOperationError,
)
from journal.log.clientid import parse_client_id


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / "j")
    yield j
    j.close()


def test_begin_commit_round_trip(journal: Journal) -> None:
    op = journal.begin("place_order", {"symbol": "BTC/USDT", "price": Decimal("30000.10"), "amount": Decimal("0.001")})
    assert op.op_id == op.seq == 1
    assert op.status == "pending"
    assert parse_client_id(op.client_id, journal.journal_id) == (journal.journal_id, 1, journal.incarnation)
    assert [r.op for r in journal.pending()] == [1]
    op.commit({"id": "123", "status": "open"})
    assert op.status == "committed"
    assert journal.pending() == []
    timeline = journal.timeline(op.op_id)
    assert [(r.kind, r.type, r.op) for r in timeline] == [("intent", "place_order", 1), ("commit", "place_order", 1)]
    assert timeline[0].data["price"] == Decimal("30000.10")
    assert str(timeline[0].data["price"]) == "30000.10"
    assert timeline[1].data == {"id": "123", "status": "open"}
    assert timeline[1].client_id == op.client_id
    assert journal.timeline(op.client_id) == timeline


def test_abort_records_reason_and_error(journal: Journal) -> None:
    op = journal.begin("place_order", {"symbol": "BTC/USDT"})
    op.abort("insufficient funds", error=RuntimeError("balance 0"))
    rec = journal.timeline(op.op_id)[-1]
    assert rec.kind == "abort"
    assert rec.data == {"reason": "insufficient funds", "error": {"type": "RuntimeError", "message": "balance 0"}}
    assert op.status == "aborted"


def test_settling_twice_or_after_abort_is_a_clear_error(journal: Journal) -> None:
    op = journal.begin("place_order", {})
    op.commit({"id": "1"})
    with pytest.raises(OperationStateError, match=r"operation 1 .* already committed at seq 2"):
        op.commit({"id": "1"})
    op2 = journal.begin("place_order", {})
    op2.abort("refused")
    with pytest.raises(OperationStateError, match="already aborted"):
        op2.commit({})
    with pytest.raises(OperationStateError, match="already aborted"):
        journal.abort(op2.op_id, "again")


def test_handle_of_another_journal_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path / "a") as a, Journal(tmp_path / "b") as b:
        op = a.begin("place_order", {})
        with pytest.raises(OperationStateError, match="belongs to the journal at"):
            b.commit(op, {})
        assert a.pending_ids() == [op.op_id]


def test_unknown_op_is_a_clear_error(journal: Journal) -> None:
    with pytest.raises(UnknownOperationError, match="no operation 99"):
        journal.timeline(99)
    with pytest.raises(UnknownOperationError, match="neither an op id nor a client id"):
        journal.timeline("someone-else-123")
    with pytest.raises(UnknownOperationError):
        journal.commit(42, {})


def test_operation_context_manager_commit_pending_and_classified_abort(journal: Journal) -> None:
    with journal.operation("place_order", {"n": 1}) as op:
        op.commit({"ok": True})
    assert op.status == "committed"

    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        with journal.operation("place_order", {"n": 2}, classify=lambda e: isinstance(e, Refused)) as op2:
            raise Refused("invalid order")
    assert op2.status == "aborted"
    assert journal.timeline(op2.op_id)[-1].data["error"]["type"] == "Refused"

    with pytest.raises(TimeoutError):
        with journal.operation("place_order", {"n": 3}, classify=lambda e: isinstance(e, Refused)) as op3:
            raise TimeoutError("in doubt")
    assert op3.status == "pending"
    assert journal.pending_ids() == [op3.op_id]


def test_operation_left_unsettled_warns_and_stays_pending(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="journal"):
        with journal.operation("place_order", {}) as op:
            pass
    assert journal.pending_ids() == [op.op_id]
    assert "without commit() or abort()" in caplog.text


def test_events_and_filters(journal: Journal) -> None:
    op = journal.begin("place_order", {"symbol": "ETH/USDT"})
    seq = journal.record("fill", {"amount": "1"}, op=op.op_id)
    journal.record("strategy_param", {"name": "grid", "step": 5})
    op.commit({})
    journal.record("balance", {"asset": "USDT", "free": "10"}, source="recovery")
    assert [r.kind for r in journal.records()] == ["intent", "event", "event", "commit", "event"]
    assert [r.seq for r in journal.records(kinds=["event"])] == [seq, 3, 5]
    assert [r.seq for r in journal.records(types=["fill"])] == [seq]
    assert [r.seq for r in journal.records(op=op.op_id)] == [1, 2, 4]
    assert [r.seq for r in journal.records(2, 4)] == [2, 3, 4]
    assert [r.seq for r in journal.records(source="recovery")] == [5]
    assert [r.kind for r in journal.timeline(op.op_id)] == ["intent", "event", "commit"]
    with pytest.raises(ValueError, match="start .* after stop"):
        list(journal.records(5, 2))
    with pytest.raises(ValueError, match="unknown kind"):
        list(journal.records(kinds=["bogus"]))


def test_records_iterate_in_chunks(journal: Journal) -> None:
    for i in range(50):
        journal.record("tick", {"i": i})
    got = [r.data["i"] for r in journal.records(chunk=7)]
    assert got == list(range(50))


def test_batch_intents_share_one_transaction(journal: Journal) -> None:
    ops = journal.begin_many([("place_order", {"level": i}) for i in range(10)])
    assert [op.op_id for op in ops] == list(range(1, 11))
    assert len({op.client_id for op in ops}) == 10
    assert journal.stats()["counters"]["transactions"] == 1
    assert journal.pending_ids() == list(range(1, 11))


def test_unencodable_data_raises_before_anything_is_written(journal: Journal) -> None:
    journal.begin("place_order", {"ok": 1})
    before = journal.last_seq
    with pytest.raises(CodecError) as info:
        journal.begin("place_order", {"orders": [{"price": float("nan")}]})
    assert "data.orders[0].price" in str(info.value)
    assert "nothing was written" in str(info.value)
    with pytest.raises(CodecError):
        journal.record("x", {"when": {1, 2}})
    assert journal.last_seq == before
    assert journal.verify().ok


def test_reopen_keeps_pending_and_continues_sequence(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        a = j.begin("place_order", {"n": 1})
        b = j.begin("place_order", {"n": 2})
        a.commit({"id": "x"})
        jid = j.journal_id
    with Journal(path) as j:
        assert j.journal_id == jid
        assert [r.op for r in j.pending()] == [b.op_id]
        c = j.begin("place_order", {"n": 3})
        assert c.op_id == 4
        j.commit(b.op_id, {"id": "y"}, source="recovery")
        assert j.timeline(b.op_id)[-1].source == "recovery"
        assert j.verify().ok


def _on_disk_pending(j: Journal) -> list[int]:
    """The pending index as stored, without flushing buffered markers first."""
    st = j._storage
    with st.read() as txn:
        return [struct.unpack(">Q", k)[0] for k in txn.cursor(db=st.dbs["pending"]).iternext(values=False)]


def test_markers_buffered_in_intent_mode_become_durable_on_flush_and_close(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = Journal(path, flush_interval_ms=60_000)
    op = j.begin("place_order", {})
    op.commit({})
    assert _on_disk_pending(j) == [op.op_id]  # the marker is still buffered
    assert j.pending_ids() == []  # but the writer knows it is settled
    j.flush()
    assert _on_disk_pending(j) == []
    op2 = j.begin("place_order", {})
    op2.commit({})
    j.close()
    with Journal(path, readonly=True) as reader:
        assert reader.pending() == []


def test_buffered_marker_is_flushed_by_the_timer(tmp_path: Path) -> None:
    import time

    with Journal(tmp_path / "j", flush_interval_ms=5) as j:
        op = j.begin("place_order", {})
        op.commit({})
        deadline = time.monotonic() + 5
        while _on_disk_pending(j) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert _on_disk_pending(j) == []


def test_marker_rides_on_next_intent_transaction(tmp_path: Path) -> None:
    with Journal(tmp_path / "j", flush_interval_ms=60_000) as j:
        for _ in range(20):
            j.begin("place_order", {}).commit({})
        # 20 intents, the 19 first commits rode on them; the last sits in the buffer.
        assert j.stats()["counters"]["transactions"] == 20


def test_full_durability_writes_each_marker_before_returning(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path, durability="full") as j:
        assert j.durability is Durability.FULL
        op = j.begin("place_order", {})
        op.commit({})
        assert _on_disk_pending(j) == []


def test_process_durability_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path, durability="process", flush_interval_ms=1) as j:
        for _ in range(10):
            j.begin("place_order", {}).commit({})
    with Journal(path) as j:
        assert j.pending() == [] and j.last_seq == 20 and j.verify().ok


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown Journal setting"):
        Journal(tmp_path / "j", sink=True)
    with pytest.raises(ValueError, match="durability must be one of"):
        Journal(tmp_path / "j", durability="yolo")
    with pytest.raises(ValueError, match="verify_on_open"):
        Journal(tmp_path / "j", verify_on_open="sometimes")


def test_readonly_journal_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        j.record("x", {})
    with Journal(path, readonly=True) as r:
        assert r.last_seq == 1
        with pytest.raises(ReadOnlyError, match="read-only"):
            r.record("y", {})


def test_close_is_idempotent_and_use_after_close_is_an_error(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    j.close()
    j.close()
    with pytest.raises(JournalClosedError):
        j.begin("x", {})


def test_writes_are_logged_at_debug_with_seq_and_op(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="journal"):
        op = journal.begin("place_order", {})
        op.commit({}, wait=True)
    assert f"wrote seq=1 kind=intent op={op.op_id}" in caplog.text
    assert f"wrote seq=2 kind=commit op={op.op_id}" in caplog.text


def test_stats_report_counters_and_percentiles(journal: Journal) -> None:
    for _ in range(5):
        journal.begin("place_order", {}).commit({}, wait=True)
    stats = journal.stats()
    assert stats["counters"]["intent"] == 5 and stats["counters"]["commit"] == 5
    assert stats["records"] == 10 and stats["pending"] == 0
    assert stats["append_latency"]["count"] == 10
    assert 0 < stats["sync_latency"]["p50_us"] <= stats["sync_latency"]["max_us"]


# -- damage ------------------------------------------------------------------


def _raw_log(path: Path):
    env = lmdb.open(str(path), max_dbs=10, lib_version=0)
    return env, env.open_db(b"log")


def _build(path: Path, n: int = 10) -> None:
    with Journal(path) as j:
        for i in range(n):
            j.record("tick", {"i": i})


def test_altered_record_is_detected_by_verify_and_on_open(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _build(path)
    env, db = _raw_log(path)
    with env.begin(write=True) as txn:
        key = struct.pack(">Q", 6)
        value = bytearray(txn.get(key, db=db))
        value[-1] ^= 0x01  # flip one bit of the body
        txn.put(key, bytes(value), db=db)
    env.close()
    with pytest.raises(CorruptionError, match="seq 6") as info:
        Journal(path)
    assert info.value.seq == 6
    with Journal(path, readonly=True, verify_on_open="none") as j:
        report = j.verify()
    assert not report.ok and report.first_bad_seq == 6 and "checksum" in report.problem


def test_deleted_record_is_detected_by_verify_and_on_open(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _build(path)
    env, db = _raw_log(path)
    with env.begin(write=True) as txn:
        txn.delete(struct.pack(">Q", 4), db=db)
    env.close()
    with pytest.raises(CorruptionError, match="missing") as info:
        Journal(path)
    assert info.value.seq == 4
    with Journal(path, readonly=True, verify_on_open="none") as j:
        report = j.verify()
    assert not report.ok and report.first_bad_seq == 4


def test_resealed_splice_is_caught_by_the_chain(tmp_path: Path) -> None:
    """A forger who recomputes the checksum of an altered record still breaks the chain."""
    import xxhash

    path = tmp_path / "j"
    _build(path)
    env, db = _raw_log(path)
    with env.begin(write=True) as txn:
        key = struct.pack(">Q", 3)
        value = bytearray(txn.get(key, db=db))
        value[-1] ^= 0x01
        value[0:8] = struct.pack(">Q", xxhash.xxh3_64_intdigest(key + bytes(value[8:])))
        txn.put(key, bytes(value), db=db)
    env.close()
    with Journal(path, readonly=True, verify_on_open="none") as j:
        report = j.verify()
    assert not report.ok and report.first_bad_seq == 3 and "chain" in report.problem


def test_tail_verification_starts_at_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path, checkpoint_interval=8) as j:
        for i in range(20):
            j.record("tick", {"i": i})
    env, db = _raw_log(path)
    with env.begin(write=True) as txn:  # damage before the checkpoint at seq 16
        key = struct.pack(">Q", 5)
        value = bytearray(txn.get(key, db=db))
        value[-1] ^= 0x01
        txn.put(key, bytes(value), db=db)
    env.close()
    with Journal(path) as j:  # tail check passes: the damage is older than the checkpoint
        assert j.verify().first_bad_seq == 5
    with pytest.raises(CorruptionError, match="seq 5"):
        Journal(path, verify_on_open="full")


def test_map_grows_well_past_its_initial_size(tmp_path: Path) -> None:
    path = tmp_path / "j"
    blob = os.urandom(2000)
    with Journal(path, map_size=256 * 1024) as j:
        ops = j.begin_many([("bulk", {"blob": blob}) for _ in range(100)])
        for i in range(1500):
            j.record("bulk", {"i": i, "blob": blob})
        assert j.stats()["map_size"] >= 4 * 1024 * 1024
        assert len(ops) == 100
    with Journal(path) as j:
        assert j.last_seq == 1600
        assert j.verify().ok
