"""Secrets never reach any artefact; every file is private to the owner."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import ccxt
import pytest

from journal.state.autosave import emergency_backup
from recovery import StateManager
from recovery.sim.server import TEST_API_KEY, TEST_SECRET, Simulator
from recovery.testing import make_exchange

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_no_secret_in_journal_logs_backups_or_dump(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bot.journal"
    old_umask = os.umask(0)  # files must be private regardless of umask
    try:
        with caplog.at_level(logging.DEBUG), Simulator(prices={"BTC/USDT": "30000"}) as sim:
            ex = make_exchange(sim.url, timeout_ms=500)
            m = StateManager(path, ex, reconcile_settings={"settle_window_ms": 0},
                             order_settings={"settle_window_ms": 0, "backoff_s": 0.01})  # fmt: skip
            m.start()
            m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000")
            sim.faults.arm("POST", "/api/v3/order", "reject", code=-2010)
            with pytest.raises(ccxt.InsufficientFunds):
                m.place_order("BTC/USDT", "limit", "buy", "100", "29000")
            sim.faults.arm("POST", "/api/v3/order", "commit_then_drop")
            m.place_order("BTC/USDT", "limit", "buy", "0.01", "29100")
            assert m.store is not None
            backup = emergency_backup(m.store, str(tmp_path / "backups"), "test")
            m.close()
    finally:
        os.umask(old_umask)
    dump = subprocess.run([sys.executable, "-m", "journal", "dump", "--json", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert dump.returncode == 0 and dump.stdout
    artefacts = {"logs": caplog.text, "dump": dump.stdout + dump.stderr}
    for root, _, files in os.walk(tmp_path):
        for name in files:
            artefacts[os.path.join(root, name)] = Path(root, name).read_bytes().decode("latin-1")
    for where, text in artefacts.items():
        assert TEST_SECRET not in text, f"secret found in {where}"
        assert TEST_API_KEY not in text, f"API key found in {where}"
    # every file and directory we created is private to the owner
    for root, dirs, files in os.walk(tmp_path):
        for name in dirs:
            p = Path(root, name)
            if p.is_relative_to(path) or p.is_relative_to(tmp_path / "backups"):
                assert p.stat().st_mode & 0o077 == 0, f"{p} is not private"
        for name in files:
            p = Path(root, name)
            assert p.stat().st_mode & 0o077 == 0, f"{p} is not private: {oct(p.stat().st_mode)}"
    assert Path(backup).exists()


def test_simulator_binds_loopback_only() -> None:
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        Simulator(host="0.0.0.0")
    with Simulator() as sim:
        assert sim.url.startswith("http://127.0.0.1:")


def test_decimal_amounts_survive_exactly(tmp_path: Path) -> None:
    with Simulator(prices={"BTC/USDT": "30000"}) as sim:
        m = StateManager(tmp_path / "j", make_exchange(sim.url), reconcile_settings={"settle_window_ms": 0})
        m.start()
        order = m.place_order("BTC/USDT", "limit", "buy", "0.00123", "29000.01")
        assert m.state["orders"][order["client_id"]]["amount"] == D("0.00123")
        m.close()
