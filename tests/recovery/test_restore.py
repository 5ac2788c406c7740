"""Issue 11.1: a restored backup, or a template cloned for several bots, never re-sends a client id."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from journal import Journal, StateStore
from recovery import StateManager
from recovery.sim.server import Simulator
from recovery.testing import make_exchange

pytestmark = pytest.mark.integration

FAST = {"reconcile_settings": {"settle_window_ms": 0}, "autosave_settings": {"interval_s": 3600}}


def test_restored_backup_never_reissues_a_client_id_the_live_journal_sent(tmp_path: Path) -> None:
    path, backup = tmp_path / "bot.journal", tmp_path / "backup"
    with Journal(path) as j:
        first = j.begin("place_order", {"symbol": "BTC/USDT"})
        first.commit({"status": "open"})
        j.backup(backup)  # `journal backup` does the same
        live_next = j.begin("place_order", {"symbol": "BTC/USDT"})  # the disk is lost after this one
    shutil.rmtree(path)
    shutil.copytree(backup, path)  # restore
    with Journal(path) as j:
        restored_next = j.begin("place_order", {"symbol": "BTC/USDT"})
    assert restored_next.op_id == live_next.op_id  # the same sequence number...
    assert restored_next.client_id != live_next.client_id  # ...never the same client id
    assert restored_next.client_id[:10] == live_next.client_id[:10]  # both recognisably this journal's


def test_two_bots_from_one_template_never_share_a_client_id(tmp_path: Path) -> None:
    template = tmp_path / "template"
    with Journal(template) as j:
        StateStore(j).set("config", "grid", {"step": "5"})
    ids = []
    for name in ("bot-a", "bot-b"):
        shutil.copytree(template, tmp_path / name)
        with Journal(tmp_path / name) as j:
            ids.append({j.begin("place_order", {"symbol": "BTC/USDT"}).client_id for _ in range(50)})
    assert not ids[0] & ids[1]


def test_restore_then_restart_adopts_the_orders_the_lost_copy_placed(tmp_path: Path) -> None:
    """What docs/recovery.md promises: orders placed after the backup was taken are adopted by their prefix."""
    path, backup = tmp_path / "bot.journal", tmp_path / "backup"
    with Simulator(prices={"BTC/USDT": "30000"}, balances={"USDT": "1000000"}) as sim:
        m = StateManager(path, make_exchange(sim.url), **FAST)  # type: ignore[arg-type]
        m.start()
        before = m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000")
        assert m.journal is not None
        m.journal.backup(backup)
        after = [m.place_order("BTC/USDT", "limit", "buy", "0.01", str(28000 - i)) for i in range(3)]
        m.close()
        shutil.rmtree(path)
        shutil.copytree(backup, path)
        m = StateManager(path, make_exchange(sim.url), **FAST)  # type: ignore[arg-type]
        report = m.start()
        try:
            assert report.clean and report.adopted == 3 and not report.external
            for order in (before, *after):
                assert m.state["orders"][order["client_id"]]["status"] == "open"
            new = m.place_order("BTC/USDT", "limit", "buy", "0.01", "27000")
            sent = [r.params["newClientOrderId"] for r in sim.requests("POST", "/api/v3/order")]
            assert len(sent) == len(set(sent)) == 5 and new["client_id"] in sent
            assert m.journal is not None and m.journal.op_id_of(after[0]["client_id"]) is None  # another copy's
        finally:
            m.close()


def test_verify_beside_a_writer_compares_state_and_pending_at_one_point(tmp_path: Path) -> None:
    """Issue 11.3: the read-only state check read the pending list in a newer transaction than the state
    (2 false alarms in 23 runs beside a writer, each telling the operator to restore a backup)."""
    import subprocess
    import sys
    import threading

    path = tmp_path / "j"
    stop = threading.Event()
    with Journal(path) as j:
        StateStore(j)

        def write() -> None:
            while not stop.is_set():
                op = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": "1", "price": "1"})
                op.commit({"status": "open"}, wait=True)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            for _ in range(12):
                proc = subprocess.run([sys.executable, "-m", "journal", "verify", str(path), "--json"],
                                      capture_output=True, text=True)  # fmt: skip
                assert proc.returncode == 0, proc.stdout + proc.stderr
        finally:
            stop.set()
            writer.join()
