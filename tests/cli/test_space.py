"""``journal compact`` tells the truth about disk space, and ``--shrink`` makes the file smaller (issue 16, item 7).

JSON and exit codes are checked in-process through ``main()``; the terminal on a real pty.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from journal import Journal
from journal.cli.app import EXIT_LOCKED
from journal.state.store import StateStore
from tests.helpers.journal_cli import journal_cmd

ROOT = Path(__file__).resolve().parents[2]


run = journal_cmd  # in-process, through main(): the JSON and exit-code checks


def one(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(x) for x in proc.stdout.splitlines()]
    return row


@pytest.fixture
def grown(tmp_path: Path) -> Path:
    """6,000 records of ~700 bytes with snapshots along the way: most of it compactable."""
    path = tmp_path / "bot.journal"
    with Journal(path, durability="process") as j:
        store = StateStore(j)
        for _ in range(6):
            for op in j.begin_many([("place_order", {"symbol": "BTC/USDT", "pad": "x" * 300})] * 500):
                op.commit({"id": str(op.op_id), "status": "closed", "pad": "y" * 300}, wait=False)
            store.save()
    return path


def test_compact_says_the_file_keeps_its_size_and_shrink_makes_it_smaller(grown: Path) -> None:
    path = grown
    row = one(run("compact", path, "--retention", 0, "--json"))
    assert row["deleted"] > 4000 and row["shrunk"] is False
    assert row["file_bytes"] >= row["file_bytes_before"]  # LMDB kept (here: grew) the file
    assert "LMDB does not shrink its file" in row["note"] and f"journal compact {path} --shrink" in row["note"]
    records = run("dump", path, "--json").stdout
    state = run("state", path, "--json").stdout
    big = row["file_bytes"]

    follower = subprocess.Popen([sys.executable, "-m", "journal", "dump", str(path), "--follow", "--json"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert follower.stdout is not None and follower.stdout.readline()  # it has the journal open
        refused = run("compact", path, "--shrink", "--json")
        assert refused.returncode == 1 and f"open in pid {follower.pid}" in refused.stderr
        assert "stop it first" in refused.stderr
    finally:
        follower.kill()
        follower.wait()
    assert (path / "data.mdb").stat().st_size == big  # nothing changed

    row = one(run("compact", path, "--shrink", "--json"))
    assert row["shrunk"] is True and row["file_bytes"] < big / 2
    backup = Path(row["backup"])
    assert backup.parent == path.parent and backup.name.startswith("bot.journal.before-shrink-")
    assert (backup / "data.mdb").stat().st_size == big  # the old file, kept
    assert run("verify", backup).returncode == 0 and run("verify", path).returncode == 0
    assert run("dump", path, "--json").stdout == records  # the same records, the same state
    assert run("state", path, "--json").stdout == state
    with Journal(path) as j:  # a bot opens the smaller file and goes on
        seq = j.record("tick", {"after": "shrink"})
        assert seq == int(json.loads(records.splitlines()[-1])["seq"]) + 1
    assert run("verify", path).returncode == 0


def test_shrink_is_refused_while_a_bot_holds_the_journal(grown: Path) -> None:
    code = "import sys\nfrom journal import Journal\nj = Journal(sys.argv[1])\nprint('ready', flush=True)\nsys.stdin.read()\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(grown)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        size = (grown / "data.mdb").stat().st_size
        refused = run("compact", grown, "--shrink")
        assert refused.returncode == EXIT_LOCKED and f"pid {holder.pid}" in refused.stderr
        assert (grown / "data.mdb").stat().st_size == size
        assert not list(grown.parent.glob("bot.journal.*"))  # no copy, no backup left behind
    finally:
        holder.kill()
        holder.wait()


def test_compact_on_a_terminal_says_what_became_of_the_size(grown: Path, tty: Any) -> None:
    code, text = tty("compact", grown, "--retention", 0, "--no-pager", cols=100).finish()
    assert code == 0, text
    flat = " ".join(text.split())
    assert "deleted 5,000 records: the log now holds seq 5001..6000" in flat
    assert " MiB -> " in flat and ("grew by" in flat or "unchanged" in flat)
    assert "pages of deleted records are reused" in flat and "--shrink" in flat
