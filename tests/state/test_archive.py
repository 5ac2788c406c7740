"""The working set and the archive: settled orders and old trades leave memory, and stay findable."""

from __future__ import annotations

import shutil
import struct
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import lmdb
import pytest

from journal import Journal
from journal.state import State, snapshot_state, state_at
from journal.state import snapshot as snap
from journal.state.diff import diff_states
from journal.state.store import StateStore
from tests.helpers import raw

AFTER = 20  # archive_after_records in these tests


def _order(op: Any, status: str = "open", filled: str = "0", amount: str = "1") -> dict[str, Any]:
    return {"id": str(1000 + op.op_id), "client_id": op.client_id, "symbol": "BTC/USDT", "side": "buy",
            "type": "limit", "status": status, "amount": D(amount), "filled": D(filled), "price": D("100"),
            "trades": []}  # fmt: skip


def _fill(op: Any, trade_id: str, amount: str = "1") -> dict[str, Any]:
    return {"id": trade_id, "client_id": op.client_id, "symbol": "BTC/USDT", "side": "buy", "amount": D(amount),
            "price": D("100")}  # fmt: skip


def _placed(j: Journal) -> Any:
    op = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "amount": D("1"),
                                 "price": D("100")})  # fmt: skip
    op.commit(_order(op))
    return op


def _filled(j: Journal) -> Any:
    op = _placed(j)
    j.record("fill", _fill(op, f"t{op.op_id}"))
    return op


def _canceled(j: Journal) -> Any:
    op = _placed(j)
    c = j.begin("cancel_order", {"client_id": op.client_id, "id": str(1000 + op.op_id), "symbol": "BTC/USDT"})
    c.commit(_order(op, status="canceled"))
    return op


def _ticks(j: Journal, n: int) -> None:
    for i in range(n):
        j.record("tick", {"i": i})


def _store(j: Journal) -> StateStore:
    return StateStore(j, archive_after_records=AFTER)


def everything(state: State) -> dict[str, dict[str, Any]]:
    """Every section with its archived entries too: the state as a whole, wherever each key lives."""
    out = state.as_dict()
    for name in ("orders", "trades"):
        out[name] = {**dict(state.archived_items(name)), **out[name]}
    return {k: v for k, v in out.items() if v}


def test_settled_orders_and_old_trades_leave_memory_and_are_still_found(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = _store(j)
        filled, canceled, open_ = _filled(j), _canceled(j), _placed(j)
        s.save()
        assert set(s.state["orders"]) == {filled.client_id, canceled.client_id, open_.client_id}  # too young
        _ticks(j, AFTER)
        info = s.save(full=True)
        assert info is not None and info.archived == {"orders": 2, "trades": 1}
        assert info.counts["orders"] == 1 and info.counts["trades"] == 0
        orders = s.state["orders"]
        assert list(orders) == [open_.client_id]  # iteration: the working set
        assert orders[filled.client_id]["status"] == "closed" and canceled.client_id in orders  # lookups read through
        assert s.order(canceled.client_id)["status"] == "canceled"
        assert s.state.get("trades", f"BTC/USDT:t{filled.op_id}")["amount"] == D("1")
        assert s.order("tjNoSuchOrder") is None and "tjNoSuchOrder" not in orders
        assert dict(s.state.archived_items("orders")).keys() == {filled.client_id, canceled.client_id}
        assert s.validate() == []  # the position still sums its (archived) trade
    with Journal(tmp_path / "j") as j:
        s2 = _store(j)
        assert list(s2.state["orders"]) == [open_.client_id]  # a restart loads the working set only
        assert s2.order(filled.client_id)["filled"] == D("1")
        assert s2.validate() == []


def test_a_fill_seen_again_for_an_archived_order_is_not_applied_twice(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = _store(j)
        op = _placed(j)
        j.record("fill", _fill(op, "t1", "0.4"))
        j.record("fill", _fill(op, "t2", "0.5"))
        c = j.begin("cancel_order", {"client_id": op.client_id, "id": str(1000 + op.op_id), "symbol": "BTC/USDT"})
        c.commit(_order(op, status="canceled", filled="0.9"))
        _ticks(j, AFTER)
        s.save()
        assert op.client_id not in s.state.raw_sections()["orders"]
        assert not s.state.raw_sections()["trades"]
        j.record("fill", _fill(op, "t2", "0.5"))  # the websocket replays it, or reconciliation sees it again
        assert s.state["positions"]["BTC/USDT"]["amount"] == D("0.9")
        assert op.client_id not in s.state.raw_sections()["orders"]  # nothing was applied: still archived
        j.record("fill", _fill(op, "t3", "0.1"))  # a trade made before the cancel, seen late: applied once
        assert s.order(op.client_id)["filled"] == D("1.0")
        assert s.state["positions"]["BTC/USDT"]["amount"] == D("1.0")
        assert op.client_id in s.state.raw_sections()["orders"]  # changed: back in the working set
        assert s.validate() == []
        s.save()
        assert s.validate() == []
    with Journal(tmp_path / "j") as j:  # and after a restart, from the snapshot plus replay
        s2 = _store(j)
        j.record("fill", _fill(op, "t1", "0.4"))
        j.record("fill", _fill(op, "t3", "0.1"))
        assert s2.state["positions"]["BTC/USDT"]["amount"] == D("1.0")
        assert s2.order(op.client_id)["filled"] == D("1.0")
        assert s2.validate() == []


def test_a_changed_archived_order_comes_back_and_is_archived_again(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = _store(j)
        op = _canceled(j)
        _ticks(j, AFTER)
        first = s.save()
        assert first is not None and first.archived == {"orders": 1}
        j.record("order_update", dict(_order(op, status="canceled"), filled=D("0.5")))  # a late partial fill
        assert s.order(op.client_id)["filled"] == D("0.5")
        second = s.save()
        assert second is not None and second.counts["orders"] == 1 and second.archived == {}  # back, a tombstone
        _ticks(j, AFTER)
        third = s.save()
        assert third is not None and third.archived == {"orders": 1} and third.counts["orders"] == 0
        assert s.order(op.client_id)["filled"] == D("0.5")
        live = s.view()
        whole = everything(live)
    with Journal(tmp_path / "j") as j:
        s2 = _store(j)
        assert s2.state == live and everything(s2.state) == whole
        assert s2.order(op.client_id)["filled"] == D("0.5")
        assert s2.state_at(first.seq).get("orders", op.client_id)["filled"] == D("0")  # as it was then
        assert s2.state_at(second.seq).get("orders", op.client_id)["filled"] == D("0.5")


def test_deleting_an_archived_order_holds_across_saves_and_restarts(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = _store(j)
        op = _canceled(j)
        _ticks(j, AFTER)
        s.save()
        s.set("orders", op.client_id, None, reason="test removes it")
        assert s.order(op.client_id) is None and op.client_id not in s.state["orders"]
        info = s.save()
        assert info is not None and info.archived == {}
        assert s.order(op.client_id) is None
    with Journal(tmp_path / "j") as j:
        assert _store(j).order(op.client_id) is None


def test_replay_archives_the_same_keys_and_writes_the_same_chunks(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = _store(j)
        for i in range(30):
            (_filled, _canceled, _placed)[i % 3](j)
            if i % 7 == 6:
                s.save()  # saves at arbitrary points: the archive is built up bit by bit
        _ticks(j, 5)
        live = s.save(full=True)
        assert live is not None and live.archived["orders"] > 0
        with j.read_tables() as tables:
            live_manifest = snap.read_manifest(tables, live.seq)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    env = lmdb.open(str(copy), max_dbs=10, lib_version=0)
    with env.begin(write=True) as txn:  # forget every snapshot and the archive: a full replay
        for name in (b"snapshots", b"chunks", b"archive"):
            txn.drop(env.open_db(name, txn=txn), delete=False)
    env.close()
    with Journal(copy) as j:
        s2 = _store(j)
        assert s2.loaded_from is None
        replayed = s2.save(full=True)
        assert replayed is not None and replayed.seq == live.seq
        with j.read_tables() as tables:
            replayed_manifest = snap.read_manifest(tables, replayed.seq)
    assert replayed.archived == live.archived and replayed.counts == live.counts
    assert replayed_manifest["sections"] == live_manifest["sections"]  # byte-identical chunks (by digest)
    assert replayed_manifest["archive"]["trade_sums"] == live_manifest["archive"]["trade_sums"]


def _damage_newest_manifest(path: Path) -> int:
    env = lmdb.open(str(path), max_dbs=10, lib_version=0)
    snaps = env.open_db(b"snapshots")
    with env.begin(write=True) as txn:
        cur = txn.cursor(db=snaps)
        cur.last()
        seq = struct.unpack(">Q", cur.key())[0]
        raw.manifest(txn, snaps, seq)
        value = bytearray(cur.value())
        value[0] ^= 1
        txn.put(cur.key(), bytes(value), db=snaps)
    env.close()
    return seq


def test_falling_back_to_an_older_snapshot_never_sees_what_later_ones_archived(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = _store(j)
        early = _canceled(j)
        older = s.save()
        assert older is not None and older.archived == {}
        _ticks(j, AFTER)
        late = _filled(j)
        newest = s.save()
        assert newest is not None and newest.archived == {"orders": 1}
        whole = everything(s.view())
    assert _damage_newest_manifest(path) == newest.seq
    with Journal(path) as j:
        s2 = _store(j)
        assert s2.loaded_from == older.seq
        assert early.client_id in s2.state.raw_sections()["orders"]  # in memory, as the older snapshot had it
        assert late.client_id in s2.state.raw_sections()["orders"]
        assert everything(s2.state) == whole
        assert s2.order(early.client_id)["status"] == "canceled"
        assert s2.validate() == []
        again = s2.save()
        assert again is not None and again.archived == {"orders": 1}  # counted once, not twice
        assert s2.order(early.client_id)["status"] == "canceled"


def test_superseded_versions_go_with_the_snapshots_that_could_see_them(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j, archive_after_records=AFTER, keep_snapshots=2)
        op = _canceled(j)
        _ticks(j, AFTER)
        s.save()
        for i in range(4):  # the order changes and is archived again, four times
            j.record("order_update", dict(_order(op, status="canceled"), filled=D(i + 1) / 10))
            _ticks(j, AFTER)
            s.save()
        with j.read_tables() as tables:
            versions = [k for k in tables.keys("archive") if k.startswith(b"v")]
        assert len(versions) <= 3  # not one per save: only what the two kept snapshots can see
        assert s.order(op.client_id)["filled"] == D("0.4")


def test_diff_across_archiving_reports_real_changes_only(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = _store(j)
        op = _canceled(j)
        other = _canceled(j)
        _ticks(j, AFTER)
        first = s.save()
        assert first is not None
        j.record("order_update", dict(_order(op, status="canceled"), filled=D("0.5")))
        _ticks(j, AFTER)
        second = s.save()
        assert second is not None and second.archived == {"orders": 2}
        past, now = s.state_at(first.seq), s.view()
        d = diff_states(past, now)
        assert set(d.sections["orders"].changed) == {op.client_id}  # archived in both, changed in between
        assert other.client_id not in d.sections["orders"].removed
        assert not diff_states(now, s.view())


def test_archiving_can_be_turned_off(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j, archive_after_records=None)
        op = _canceled(j)
        _ticks(j, 2000)
        info = s.save()
        assert info is not None and info.archived == {} and op.client_id in s.state.raw_sections()["orders"]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="archive_after_records"):
        from journal.state.store import StoreSettings

        StoreSettings(archive_after_records=-1)


def test_one_old_snapshot_per_stretch_is_kept_and_still_sees_its_archive(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j, archive_after_records=AFTER, keep_snapshots=2, snapshot_every_records=100)
        op = _canceled(j)
        _ticks(j, AFTER)
        s.save()
        saves = []
        for i in range(12):  # the order changes and is archived again at every save; 12 saves over ~300 records
            j.record("order_update", dict(_order(op, status="canceled"), filled=D(i + 1) / 100))
            _ticks(j, AFTER)
            info = s.save()
            assert info is not None
            saves.append((info.seq, D(i + 1) / 100))
        _ticks(j, 5)
        kept = [i.seq for i in s.snapshots()]
        firsts = {}
        for seq, _ in saves:
            if seq >= 100:
                firsts.setdefault(seq // 100, seq)
        assert kept == sorted({*firsts.values(), *(seq for seq, _ in saves[-2:])})
        for seq in kept:
            filled = dict(saves)[seq]
            assert snapshot_state(j, seq).get("orders", op.client_id)["filled"] == filled  # its own archive version
            calls: list[tuple[int, int]] = []
            assert state_at(j, seq + 3, progress=lambda d, t, c=calls: c.append((d, t))).seq == seq + 3
            assert calls[-1] == (3, 3)  # from that snapshot, not from the first record
        assert s.compact(retention_s=0) > 0
        assert [i.seq for i in s.snapshots()] == kept[-2:]  # the ones compaction passed are gone
        assert s.order(op.client_id)["filled"] == D("0.12")


def test_an_emergency_dump_holds_the_archived_orders_too(tmp_path: Path) -> None:
    import json

    from journal.state.autosave import emergency_backup

    with Journal(tmp_path / "j") as j:
        s = _store(j)
        op = _canceled(j)
        _ticks(j, AFTER)
        s.save()
        dest = Path(emergency_backup(s, str(tmp_path / "backups"), "test"))
    dump = json.loads((dest / "state.json").read_text())
    assert op.client_id not in dump["state"]["orders"]
    assert dump["archived"]["orders"][op.client_id]["status"] == "canceled"
