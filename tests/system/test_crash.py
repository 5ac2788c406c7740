"""kill -9 at every named crash point, repeated: nothing acknowledged is lost.

A child process (tests/helpers/crash_child.py) journals operations and prints
each acknowledged step; a crash point armed through TRADEJOURNAL_CRASH_AT kills
it with SIGKILL. The parent reopens the journal and checks it against what the
child acknowledged. Repetitions: TRADEJOURNAL_CRASH_REPEAT (default 2).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from journal import Journal

ROOT = Path(__file__).resolve().parents[2]
REPEAT = int(os.environ.get("TRADEJOURNAL_CRASH_REPEAT", "2"))

pytestmark = pytest.mark.crash


def _run_child(path: Path, mode: str, crash_at: str, n_ops: int = 40) -> list[str]:
    env = dict(os.environ, TRADEJOURNAL_CRASH_AT=crash_at, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.helpers.crash_child", str(path), str(n_ops), mode],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, f"child was not killed at {crash_at}: {proc.returncode} {proc.stderr}"
    return proc.stdout.split("\n")


def _check_after_crash(path: Path, lines: list[str]) -> None:
    intents = {int(p[1]): p[2] for p in (line.split() for line in lines) if p and p[0] == "I"}
    commits = {int(p[1]) for p in (line.split() for line in lines) if p and p[0] == "C"}
    flushed = [int(p[1]) for p in (line.split() for line in lines) if p and p[0] == "F"]
    events = {int(p[1]) for p in (line.split() for line in lines) if p and p[0] == "E"}
    if flushed:  # buffered mode: every commit before the last flush is durable
        commits |= {op for op in intents if op <= max(flushed)}
    with Journal(path) as j:
        report = j.verify()
        assert report.ok, report
        records = list(j.records())
        seqs = [r.seq for r in records]
        assert seqs == list(range(1, len(seqs) + 1)), "sequence numbers must be contiguous"
        by_op: dict[int, list[str]] = {}
        for r in records:
            if r.op is not None:
                by_op.setdefault(r.op, []).append(r.kind)
        for op, cid in intents.items():  # every acknowledged intent is there, with its client id
            assert by_op.get(op, [None])[0] == "intent", f"acknowledged intent {op} lost"
            assert j.client_id(op) == cid
        for op in commits:
            assert "commit" in by_op[op], f"acknowledged commit of {op} lost"
        for seq in events:
            assert any(r.seq == seq and r.kind == "event" for r in records), f"acknowledged event {seq} lost"
        expected_pending = sorted(op for op, kinds in by_op.items() if kinds[0] == "intent" and "commit" not in kinds)
        assert [r.op for r in j.pending()] == expected_pending, "pending index disagrees with the log"
        assert j.pending_ids() == expected_pending
        new = j.begin("place_order", {"after": "crash"})
        assert new.op_id == len(seqs) + 1, "a new operation continues the sequence"
        new.commit({}, wait=True)


CASES = [
    ("seq", "intent_durable:7"),
    ("seq", "outcome_durable:5"),
    ("events", "event_durable:4"),
    ("batch", "batch_partial:2"),
    ("batch", "batch_durable:3"),
    ("buffered", "intent_durable:8"),
    ("buffered", "outcome_durable:4"),
]


@pytest.mark.parametrize("mode,crash_at", CASES, ids=[f"{m}-{c}" for m, c in CASES])
@pytest.mark.parametrize("round_", range(REPEAT))
def test_kill9_at_crash_point_loses_nothing_acknowledged(tmp_path: Path, mode: str, crash_at: str, round_: int) -> None:
    path = tmp_path / "j"
    lines = _run_child(path, mode, crash_at)
    _check_after_crash(path, lines)
    # crash again on the same journal: recovery of a recovered journal
    lines = _run_child(path, mode, crash_at)
    _check_after_crash(path, lines)


def test_batch_partial_crash_writes_none_of_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "j"
    lines = _run_child(path, "batch", "batch_partial:1")
    assert not [line for line in lines if line.startswith("I ")]
    with Journal(path) as j:
        assert j.last_seq == 0 and j.pending() == []
