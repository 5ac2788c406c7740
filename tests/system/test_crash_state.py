"""kill -9 during a snapshot save and during compaction: reopen gives the same state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from journal import Journal
from journal.state.store import StateStore
from tests.helpers.fingerprint import fingerprint

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.crash

CASES = [
    ("save", "snapshot_chunks:4"),
    ("save", "snapshot_durable:4"),
    ("compact", "compaction_batch:2"),
]


@pytest.mark.parametrize("action,point", CASES, ids=[f"{a}-{p}" for a, p in CASES])
def test_kill9_during_snapshot_or_compaction_keeps_state(tmp_path: Path, action: str, point: str) -> None:
    path = tmp_path / "j"
    env = dict(os.environ, TRADEJOURNAL_CRASH_AT=point, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.helpers.state_child", str(path), action],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "DONE" not in proc.stdout
    before = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("STATE"))
    with Journal(path, verify_on_open="full") as j:
        assert j.verify().ok
        s = StateStore(j)
        assert fingerprint(s.view()) == before
        assert all(info.ok for info in s.snapshots())
        s.save()
    with Journal(path) as j:
        assert fingerprint(StateStore(j).view()) == before
