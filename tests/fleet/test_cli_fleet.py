"""``journal ship`` and ``journal fleet`` as subprocesses against a real nats-server: output, exit codes, errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from journal import Journal
from journal.fleet import NatsServer, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run(*args: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "journal", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def rows(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _bot(path: Path, n: int) -> str:
    with Journal(path) as j:
        for i in range(n):
            op = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "amount": "1",
                                         "price": "10"})  # fmt: skip
            if i % 2 == 0:
                op.commit({"id": str(i), "status": "open", "symbol": "BTC/USDT", "side": "buy", "amount": "1",
                           "filled": "0", "remaining": "1"})  # fmt: skip
        return j.journal_id


def test_ship_then_archive_then_the_usual_tools_on_the_archive(tmp_path: Path, nats_server: NatsServer) -> None:
    jids = [_bot(tmp_path / f"bot{i}", 4 + i) for i in range(2)]
    for i in range(2):
        (status,) = rows(run("ship", tmp_path / f"bot{i}", "--to", nats_server.url, "--once", "--json"))
        assert status["acked_seq"] == status["last_seq"] and status["lag_records"] == 0
        assert status["state"] == "stopped" and status["journal_id"] == jids[i]
    archived = rows(run("fleet", "archive", "--from", nats_server.url, "--into", tmp_path / "arch", "--json"))
    assert sorted(r["name"] for r in archived) == sorted(jids)
    assert all(r["verified"] and r["appended"] == r["last_seq"] for r in archived)
    original = run("dump", tmp_path / "bot1", "--json").stdout  # the other tools: test_replica.py
    assert run("dump", tmp_path / "arch" / jids[1], "--json").stdout == original != ""
    assert run("verify", tmp_path / "arch" / jids[1]).returncode == 0
    checked = rows(run("fleet", "verify", "--archive", tmp_path / "arch", "--json"))
    assert [r["ok"] for r in checked] == [True, True]
    status_rows = rows(run("fleet", "status", "--from", nats_server.url, "--json"))  # a temporary archive
    by = {r["journal_id"]: r for r in status_rows}
    assert by[jids[1]]["pending"] == 2 and by[jids[1]]["open_orders_by_symbol"]["BTC/USDT"]["orders"] == 5
    assert by[jids[0]]["lag_records"] == 0 and by[jids[0]]["ship_state"] == "stopped"
    table = run("fleet", "status", "--from", nats_server.url, "--archive", tmp_path / "arch", "--table")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["JOURNAL", "HOST", "LAST"]
    assert len(table.stdout.splitlines()) == 3 and "BTC/USDT 5" in table.stdout
    symbols = rows(run("fleet", "status", "--archive", tmp_path / "arch", "--symbols", "--json"))
    assert symbols == [{"symbol": "BTC/USDT", "orders": 9, "buy": "9", "sell": "0", "bots": sorted(jids)}]


def test_ship_runs_until_sigterm_and_follows_new_records(tmp_path: Path, nats_server: NatsServer) -> None:
    _bot(tmp_path / "bot", 2)
    proc = subprocess.Popen([sys.executable, "-m", "journal", "ship", str(tmp_path / "bot"), "--to", nats_server.url,
                             "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _bot(tmp_path / "bot", 3)  # the bot goes on writing while the shipper runs beside it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cursor = tmp_path / "bot" / "ship" / "TJ.cursor"
            if cursor.exists() and json.loads(cursor.read_text())["seq"] == 8:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    (status,) = [json.loads(line) for line in out.splitlines()]
    assert status["acked_seq"] == 8 and status["state"] == "stopped"


def test_errors_are_one_line_with_the_documented_exit_code(tmp_path: Path) -> None:
    _bot(tmp_path / "bot", 2)
    dead = f"nats://127.0.0.1:{free_port()}"
    proc = run("ship", tmp_path / "bot", "--to", dead, "--once", "--timeout", "1", "--json")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "shipped up to seq 0 of 3 within 1.0 s" in proc.stderr
    assert "cannot reach" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("fleet", "status", "--from", dead)
    assert proc.returncode == 1 and proc.stderr.startswith("journal: error: cannot reach nats://127.0.0.1:")
    assert "nats-server runs with JetStream" in proc.stderr
    proc = run("fleet", "archive", "--from", dead)
    assert proc.returncode == 2 and "--into DIR" in proc.stderr
    proc = run("ship", tmp_path / "missing", "--to", dead, "--once")
    assert proc.returncode == 1 and "no such journal directory" in proc.stderr


def test_a_damaged_journal_ships_up_to_the_damage_and_exits_3(tmp_path: Path, nats_server: NatsServer) -> None:
    import lmdb

    _bot(tmp_path / "bot", 3)
    env = lmdb.open(str(tmp_path / "bot"), max_dbs=10, lib_version=0)
    with env.begin(write=True) as txn:
        db = env.open_db(b"log", txn=txn, create=False)
        key = (3).to_bytes(8, "big")
        value = bytearray(txn.get(key, db=db))
        value[-1] ^= 1
        txn.put(key, bytes(value), db=db)
    env.close()
    proc = run("ship", tmp_path / "bot", "--to", nats_server.url, "--once", "--json")
    assert proc.returncode == 3 and "record at seq 3: checksum mismatch" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, repr(proc.stderr)
    assert json.loads(proc.stdout)["acked_seq"] == 2
