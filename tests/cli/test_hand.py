"""Hand work on a journal, previewed (issue 16, items 5 and 6): diff for people, --dry-run, questions.

Questions are asked only of a person at a terminal, so those tests run the
command on a real pseudo-terminal and answer at its keyboard. JSON and exit
codes are checked in-process through ``main()``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from journal import Journal
from journal.cli.app import EXIT_ERROR, EXIT_LOCKED
from journal.state.store import StateStore
from tests.helpers.journal_cli import journal_cmd

ROOT = Path(__file__).resolve().parents[2]


run = journal_cmd  # in-process, through main(): the JSON and exit-code checks


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in proc.stdout.splitlines()]


@pytest.fixture
def bot(tmp_path: Path) -> tuple[Path, int]:
    """One order placed and committed, one left pending (its op id is returned), positions in the state."""
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        a = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": Decimal("0.5")})
        a.commit({"id": "1", "client_id": a.client_id, "symbol": "BTC/USDT", "status": "open"}, wait=True)
        pending = j.begin("place_order", {"symbol": "ETH/USDT", "side": "buy", "amount": Decimal("2")})
        StateStore(j).set("positions", "BTC/USDT", {"symbol": "BTC/USDT", "amount": Decimal("0.5")})
        return path, pending.op_id


# -- item 5: diff for people ----------------------------------------------------------------------


def test_diff_on_a_terminal_is_per_key_and_fits(tmp_path: Path, tty: Callable[..., Any]) -> None:
    path = tmp_path / "big.journal"
    with Journal(path, durability="process") as j:
        s = StateStore(j)
        for i in range(300):  # a state whose JSON would be one enormous cell
            s.set("orders", f"tj{i:04d}", {"status": "open", "filled": Decimal(0), "pad": "x" * 400})
        s.save()
        for i in range(0, 300, 3):
            s.set("orders", f"tj{i:04d}", {"status": "closed", "filled": Decimal("0.5"), "pad": "x" * 400})
        s.set("orders", "tj0001", None)
        s.set("balances", "USDT", {"free": Decimal(10)})
    code, text = tty("diff", path, "300", "now", "--no-pager", cols=80).finish()
    assert code == 0
    shown = text.splitlines()
    assert all(len(x) <= 80 for x in shown)
    assert "balances:" in shown and "orders:" in shown
    assert '  + USDT  {"free":"10"}' in shown
    assert any(x.startswith("  - tj0001  {") for x in shown)
    assert "  ~ tj0000  status: open -> closed" in shown and "      filled: 0 -> 0.5" in shown
    assert sum(x.startswith("  ~ ") for x in shown) == 100
    assert "1 added, 0 removed, 0 changed" in shown[0] or "1 added" in text


# -- item 6: hand corrections are previewed ---------------------------------------------------------


def test_resolve_dry_run_prints_the_records_and_writes_nothing(bot: tuple[Path, int]) -> None:
    path, op = bot
    before = run("dump", path, "--json").stdout
    proc = run("resolve", path, op, "--commit", "--result", '{"id": "7", "status": "closed"}', "--reason", "seen on UI",
               "--dry-run", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    planned = lines(proc)
    assert [(r["kind"], r["type"], r["source"], r["dry_run"]) for r in planned] == [
        ("commit", "place_order", "manual", True), ("event", "manual_resolve", "manual", True)]  # fmt: skip
    assert planned[0]["data"] == {"id": "7", "status": "closed"} and planned[0]["op"] == op
    assert planned[1]["data"]["reason"] == "seen on UI"
    assert run("dump", path, "--json").stdout == before  # nothing written
    assert [r["op"] for r in lines(run("pending", path, "--json"))] == [op]
    # and the real command writes exactly what the dry run showed
    done = lines(run("resolve", path, op, "--commit", "--result", '{"id": "7", "status": "closed"}', "--reason",
                     "seen on UI", "--json"))  # fmt: skip
    assert [(r["seq"], r["kind"], r["type"], r["data"]) for r in done] == [
        (p["seq"], p["kind"], p["type"], p["data"]) for p in planned]  # fmt: skip


def test_correct_dry_run_shows_old_and_new(bot: tuple[Path, int], tty: Callable[..., Any]) -> None:
    path, _ = bot
    proc = run("correct", path, "positions", "BTC/USDT", '{"symbol": "BTC/USDT", "amount": 0.75}', "--reason",
               "exchange UI", "--dry-run", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (planned,) = lines(proc)
    assert planned["type"] == "state_set" and planned["dry_run"] is True
    assert planned["data"]["value"] == {"symbol": "BTC/USDT", "amount": "0.75"}
    assert "exchange UI (by " in planned["data"]["reason"]
    session = tty("correct", path, "positions", "BTC/USDT", '{"symbol": "BTC/USDT", "amount": 0.75}', "--reason",
                  "exchange UI", "--dry-run")  # fmt: skip
    code, text = session.finish()
    assert (
        code == 0 and "would write to" in text and "amount: 0.5 -> 0.75" in text and "dry run: nothing written" in text
    )
    with Journal(path, readonly=True) as j:
        assert StateStore(j).state["positions"]["BTC/USDT"]["amount"] == Decimal("0.5")


def test_a_person_is_asked_before_a_hand_resolve(bot: tuple[Path, int], tty: Callable[..., Any]) -> None:
    path, op = bot
    session = tty("resolve", path, op, "--abort", "--reason", "never sent")
    session.expect("about to write to")
    session.expect("[y/N]")
    assert "abort" in session.text and "manual_resolve" in session.text
    session.send(b"n\n")
    code, text = session.finish()
    assert code == EXIT_ERROR and "not confirmed: nothing written" in text
    assert [r["op"] for r in lines(run("pending", path, "--json"))] == [op]
    session = tty("resolve", path, op, "--abort", "--reason", "never sent")
    session.expect("[y/N]")
    session.send(b"y\n")
    code, text = session.finish()
    assert code == 0 and "written to" in text
    assert lines(run("pending", path, "--json")) == []
    # --yes: no question even at a terminal
    session = tty("correct", path, "positions", "BTC/USDT", "null", "--reason", "closed on the exchange", "--yes")
    code, text = session.finish()
    assert code == 0 and "[y/N]" not in text
    with Journal(path, readonly=True) as j:
        assert "BTC/USDT" not in StateStore(j).state["positions"]


def test_a_dry_run_beside_a_running_bot_says_the_write_would_be_refused(bot: tuple[Path, int]) -> None:
    path, op = bot
    code = "import sys\nfrom journal import Journal\nj = Journal(sys.argv[1])\nprint('ready', flush=True)\nsys.stdin.read()\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        proc = run("resolve", path, op, "--abort", "--reason", "x", "--dry-run", "--table")
        assert proc.returncode == 0 and f"pid {holder.pid} holds the journal" in proc.stdout
        assert run("resolve", path, op, "--abort", "--reason", "x").returncode == EXIT_LOCKED
    finally:
        holder.kill()
        holder.wait()


# -- the lock held by a process that is gone ------------------------------------------------------------

_FORKING_BOT = """\
import ctypes, os, sys, time
from journal import Journal
j = Journal(sys.argv[1])
# libc's fork, as a C extension would call it: no Python at-fork hook closes the lock file (os.fork would)
child = ctypes.CDLL(None, use_errno=True).fork()
if child == 0:  # a worker forked without exec: it inherits the open lock file
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os._exit(0)  # the bot dies; its worker lives on
"""


def test_a_lock_whose_holder_has_gone_names_the_process_that_kept_it(bot: tuple[Path, int]) -> None:
    path, op = bot
    proc = subprocess.run([sys.executable, "-c", _FORKING_BOT, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    worker = int(proc.stdout.strip())
    try:
        dead = int((path / "writer.lock").read_text().split()[0])
        assert dead != worker
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the bot's pid is reaped by now; be sure before asserting
            try:
                os.kill(dead, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        refused = run("resolve", path, op, "--abort", "--reason", "x", "--yes")
        assert refused.returncode == EXIT_LOCKED
        assert f"held by pid {dead}, which has exited" in refused.stderr and f"pid {worker} (" in refused.stderr
        assert "stop that process" in refused.stderr
        stats = lines(run("stats", path, "--json"))[0]
        assert stats["writer_pid"] == dead and stats["lock_holders"] == [worker]
    finally:
        os.kill(worker, signal.SIGKILL)
    assert run("resolve", path, op, "--abort", "--reason", "x", "--yes").returncode == 0
