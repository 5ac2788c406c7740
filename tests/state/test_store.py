"""State kept beside the journal: reducers, snapshots, replay, migration, compaction."""

from __future__ import annotations

import logging
import shutil
import struct
from decimal import Decimal as D
from pathlib import Path

import lmdb
import pytest

from journal import CodecError, CorruptionError, Journal
from journal.state import State
from journal.state import snapshot as snap
from journal.state.diff import diff_states
from journal.state.migrate import SCHEMA_VERSION, SchemaVersionError
from journal.state.reducers import Reducers
from journal.state.store import StateStore
from tests.helpers import raw

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _order(op, status="open", filled="0", trades=(), amount="1", price="100", symbol="BTC/USDT", side="buy"):
    return {"id": str(1000 + op.op_id), "client_id": op.client_id, "symbol": symbol, "side": side, "type": "limit",
            "status": status, "amount": D(amount), "filled": D(filled), "price": D(price), "trades": list(trades)}  # fmt: skip


def _place(j: Journal, amount="1", price="100", symbol="BTC/USDT", side="buy"):
    return j.begin(
        "place_order",
        {"symbol": symbol, "side": side, "type": "limit", "amount": D(amount), "price": D(price)},
    )


@pytest.fixture
def js(tmp_path: Path):
    j = Journal(tmp_path / "j")
    s = StateStore(j)
    yield j, s
    j.close()


def _workload(j: Journal, n: int = 30) -> None:
    ops = []
    for i in range(n):
        op = _place(j, amount=str(i + 1), symbol=("BTC/USDT", "ETH/USDT")[i % 2], side=("buy", "sell")[i % 3 == 0])
        ops.append(op)
        if i % 5 == 4:
            op.abort("refused by test")
            continue
        op.commit(_order(op, amount=str(i + 1), symbol=("BTC/USDT", "ETH/USDT")[i % 2]))
        if i % 3 == 1:
            j.record("fill", {"id": f"t{i}", "client_id": op.client_id, "symbol": ("BTC/USDT", "ETH/USDT")[i % 2],
                              "side": "buy", "amount": D("0.5"), "price": D("101"),
                              "fee": {"cost": D("0.001"), "currency": "BNB"}})  # fmt: skip
    cancel = j.begin("cancel_order", {"client_id": ops[0].client_id, "id": "1001", "symbol": "BTC/USDT"})
    cancel.commit({**_order(ops[0], status="canceled"), "client_id": ops[0].client_id})
    j.record("balances", {"balances": {"USDT": {"free": D("900"), "used": D("100"), "total": D("1000")}}})
    j.record("strategy", {"name": "grid", "active": True, "params": {"step": D("25")}})


def test_intent_shows_in_flight_and_commit_settles_it(js) -> None:
    j, s = js
    op = _place(j)
    order = s.state["orders"][op.client_id]
    assert order["status"] == "pending" and order["op"] == op.op_id
    assert list(s.state["inflight"]) == [str(op.op_id)]
    op.commit(_order(op))
    assert s.state["orders"][op.client_id]["status"] == "open"
    assert s.state["orders"][op.client_id]["id"] == str(1000 + op.op_id)
    assert not s.state["inflight"]
    op2 = _place(j)
    op2.abort("insufficient funds")
    assert s.state["orders"][op2.client_id]["status"] == "rejected"
    assert s.validate() == []


def test_fills_apply_once_and_update_order_and_position(js) -> None:
    j, s = js
    op = _place(j, amount="1")
    op.commit(_order(op))
    fill = {"id": "77", "client_id": op.client_id, "symbol": "BTC/USDT", "side": "buy", "amount": D("0.25"),
            "price": D("100"), "fee": {"cost": D("0.1"), "currency": "USDT"}}  # fmt: skip
    j.record("fill", fill)
    j.record("fill", fill)  # the same trade seen twice (websocket + reconciliation)
    order = s.state["orders"][op.client_id]
    assert order["filled"] == D("0.25") and order["remaining"] == D("0.75") and order["status"] == "open"
    pos = s.state["positions"]["BTC/USDT"]
    assert pos["amount"] == D("0.25") and pos["cost"] == D("25.00") and pos["fees"] == {"USDT": D("0.1")}
    j.record("fill", dict(fill, id="78", amount=D("0.75")))
    assert s.state["orders"][op.client_id]["status"] == "closed"
    # an order update reporting less than was applied never moves filled backwards
    j.record("order_update", dict(_order(op, status="closed", filled="0.5")))
    assert s.state["orders"][op.client_id]["filled"] == D("1")
    assert s.validate() == []


def test_cancel_and_edit_reducers(js) -> None:
    j, s = js
    a = _place(j)
    a.commit(_order(a))
    c = j.begin("cancel_order", {"client_id": a.client_id, "id": "1", "symbol": "BTC/USDT"})
    assert s.state["orders"][a.client_id]["cancel_pending"] == c.op_id
    c.abort("cancel refused")
    assert s.state["orders"][a.client_id]["cancel_pending"] is None
    e = j.begin("edit_order", {"client_id": a.client_id, "id": "1", "symbol": "BTC/USDT", "side": "buy",
                               "type": "limit", "amount": D("2"), "price": D("99")})  # fmt: skip
    assert s.state["orders"][e.client_id]["status"] == "pending"
    e.commit(dict(_order(e, amount="2", price="99")))
    assert s.state["orders"][a.client_id]["status"] == "canceled"
    assert s.state["orders"][a.client_id]["replaced_by"] == e.client_id
    assert s.state["orders"][e.client_id]["status"] == "open"
    assert s.validate() == []


def test_replay_gives_byte_identical_snapshot_encodings(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        _workload(j)
        live = s.view()
    with Journal(path) as j:
        replayed = StateStore(j).state
    assert replayed.seq == live.seq
    a, _ = snap.build(None, live.as_dict(), {}, seq=live.seq, chain=0, schema=2, created_ns=0)
    b, _ = snap.build(None, replayed.as_dict(), {}, seq=replayed.seq, chain=0, schema=2, created_ns=0)
    assert a == b
    assert _, "chunks were built"
    assert not diff_states(live, replayed)


def test_load_is_snapshot_plus_replay_and_equals_live(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        _workload(j, 20)
        info = s.save()
        assert info is not None and info.seq == j.last_seq
        _workload(j, 10)
        live = s.view()
    with Journal(path) as j:
        s2 = StateStore(j)
        assert s2.loaded_from == info.seq
        assert s2.state == live and not diff_states(live, s2.state)


def test_incremental_snapshot_writes_only_what_changed(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j, chunk_items=16)
        for i in range(200):
            s.set("custom", f"k{i:04d}", {"v": i, "note": "x" * 100})
        first = s.save()
        s.set("custom", "k0100", {"v": -1})
        second = s.save()
        assert first is not None and second is not None
        assert second.new_chunks == 1  # one delta chunk, nothing else rewritten
        assert second.new_bytes < first.new_bytes / 5
        assert s.save() is None  # nothing changed
    with Journal(tmp_path / "j") as j:
        assert StateStore(j).state["custom"]["k0100"] == {"v": -1}


def test_snapshots_are_bounded(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j, keep_snapshots=3)
        for i in range(8):
            s.set("custom", f"k{i}", i)
            s.save(full=i % 2 == 0)
        infos = s.snapshots()
        assert len(infos) == 3 and all(i.ok for i in infos)
        with j.read_tables() as tables:
            referenced = set()
            for seq in snap.list_snapshots(tables):
                for sec in snap.read_manifest(tables, seq)["sections"].values():
                    referenced |= {*sec["base"], *sec["deltas"]}
            stored = set(tables.keys("chunks"))
        assert stored == referenced  # no orphan chunks


def _damage_newest_chunk(path: Path) -> int:
    env = lmdb.open(str(path), max_dbs=10, lib_version=0)
    snaps, chunks = env.open_db(b"snapshots"), env.open_db(b"chunks")
    with env.begin(write=True) as txn:
        cur = txn.cursor(db=snaps)
        cur.last()
        seq = struct.unpack(">Q", cur.key())[0]
        manifest = raw.manifest(txn, snaps, seq)
        digest = next(iter(manifest["sections"].values()))["base"][0]
        for sec in manifest["sections"].values():
            if sec["deltas"]:
                digest = sec["deltas"][-1]
        blob = bytearray(txn.get(digest, db=chunks))
        blob[len(blob) // 2] ^= 0xFF
        txn.put(digest, bytes(blob), db=chunks)
    env.close()
    return seq


def test_corrupt_newest_snapshot_falls_back_to_previous(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        _workload(j, 10)
        older = s.save(full=True)
        _workload(j, 10)
        s.save(full=True)
        live = s.view()
    damaged = _damage_newest_chunk(path)
    with caplog.at_level(logging.WARNING, logger="journal"):
        with Journal(path) as j:
            s2 = StateStore(j)
            assert s2.loaded_from == older.seq
            assert s2.state == live
            assert [i.ok for i in s2.snapshots()] == [True, False]
    assert f"snapshot at seq {damaged}" in caplog.text and "falling back" in caplog.text


def test_no_valid_snapshot_and_compacted_log_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        for _ in range(3):
            _workload(j, 5)
            s.save(full=True)
        assert s.compact(retention_s=0) > 0
        assert j.verify().ok
    env = lmdb.open(str(path), max_dbs=10, lib_version=0)
    snaps = env.open_db(b"snapshots")
    with env.begin(write=True) as txn:
        for key in list(txn.cursor(db=snaps).iternext(values=False)):
            value = bytearray(txn.get(key, db=snaps))
            value[0] ^= 1
            txn.put(key, bytes(value), db=snaps)
    env.close()
    with Journal(path) as j:
        with pytest.raises(CorruptionError, match="no usable snapshot .* compacted"):
            StateStore(j)


def test_full_replay_without_any_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        _workload(j)
        live = s.view()
    with Journal(path) as j:
        s2 = StateStore(j)
        assert s2.loaded_from is None and s2.state == live


def test_compaction_keeps_pending_fallback_and_young_records(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        _workload(j, 10)
        s.save()
        _workload(j, 10)
        second = s.save()
        _workload(j, 5)
        s.save()
        assert s.compact(retention_s=3600) == 0  # everything is younger than an hour
        deleted = s.compact(retention_s=0)
        assert deleted == second.seq  # through the second-newest snapshot
        assert j.first_seq == second.seq + 1
        assert j.verify().ok
        pending = _place(j)
        _workload(j, 5)
        s.save()
        _workload(j, 2)
        s.save()
        s.compact(retention_s=0)
        assert j.first_seq <= pending.op_id  # a pending intent is never compacted
        live = s.view()
    with Journal(path, verify_on_open="full") as j:
        s2 = StateStore(j)
        assert s2.state == live
        assert [r.op for r in j.pending()] == [pending.op_id]


def test_schema_v1_fixture_loads_through_migration(tmp_path: Path) -> None:
    path = tmp_path / "j"
    shutil.copytree(FIXTURES / "schema_v1", path)
    with Journal(path) as j:
        s = StateStore(j)
        orders = s.state["orders"]
        first = next(o for o in orders.values() if o["symbol"] == "BTC/USDT")
        assert first["amount"] == D("0.5") and first["filled"] == D("0") and first["id"] == "1001"
        assert "qty" not in first and "exchange_id" not in first
        replayed = next(o for o in orders.values() if o["symbol"] == "ETH/USDT")  # record after the snapshot
        assert replayed["amount"] == D("2") and replayed["status"] == "pending"
        assert s.state["strategies"]["grid"]["params"] == {"step": D("50")}
        assert [r.type for r in j.records(kinds=["event"])][-1] == "schema_upgrade"
        s.save()
    with Journal(path) as j:  # reopened: the upgrade is recorded once, state unchanged
        s2 = StateStore(j)
        assert [r.type for r in j.records(types=["schema_upgrade"])] == ["schema_upgrade"]
        assert s2.state["orders"] == s.state["orders"]


def test_newer_schema_snapshot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        j.write_tables(lambda t: t.put_meta("schema_history", [[1, SCHEMA_VERSION + 1]]))
        with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
            StateStore(j)


def test_unencodable_state_value_raises_and_changes_nothing(js) -> None:
    j, s = js
    before, seq = s.view(), j.last_seq
    with pytest.raises(CodecError) as info:
        s.set("custom", "when", {"at": {1, 2}})
    assert "custom['when']" in str(info.value) and "unchanged" in str(info.value)
    assert j.last_seq == seq and s.view() == before


def test_custom_reducer_and_custom_section(tmp_path: Path) -> None:
    reducers = Reducers.default()

    @reducers.register("event", "grid_level")
    def grid_level(state: State, rec) -> None:
        state.put("grid", str(rec.data["level"]), {"price": rec.data["price"]})

    with Journal(tmp_path / "j") as j:
        s = StateStore(j, reducers=reducers)
        j.record("grid_level", {"level": 3, "price": D("99.5")})
        assert s.state["grid"]["3"] == {"price": D("99.5")}
        s.save()
    with Journal(tmp_path / "j") as j:
        assert StateStore(j, reducers=reducers).state["grid"]["3"] == {"price": D("99.5")}


def test_validation_names_key_and_records(js) -> None:
    j, s = js
    op = _place(j, amount="1")
    op.commit(_order(op))
    s.set("orders", op.client_id, dict(s.state["orders"][op.client_id], filled=D("2"), status="weird"))
    problems = {str(v) for v in s.validate()}
    assert any(op.client_id in p and "exceeds amount" in p for p in problems)
    assert any("unknown status 'weird'" in p for p in problems)
    s.set("positions", "XRP/USDT", {"symbol": "XRP/USDT", "amount": D("5")}, reason="operator fix")
    assert not any("XRP/USDT" in p for p in (str(v) for v in s.validate()))  # marked adjusted


def test_state_at_and_diff(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j)
        s.set("custom", "a", 1)
        mid = j.last_seq
        s.save()
        s.set("custom", "a", 2)
        s.set("custom", "b", 3)
        s.set("custom", "c", 4)
        s.set("custom", "c", None)
        past = s.state_at(mid)
        assert past["custom"] == {"a": 1}
        d = diff_states(past, s.view())
        assert d.sections["custom"].added == {"b": 3}
        assert d.sections["custom"].changed == {"a": (1, 2)}
        assert d.summary() == {"custom": {"added": 1, "removed": 0, "changed": 1}}
