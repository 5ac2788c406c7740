"""Storage faults: the disk filling up mid-write, a read-only directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from journal import Journal
from journal.state.store import StateStore

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.crash


def test_disk_full_during_writes_keeps_everything_acknowledged(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes past a size fail (EFBIG) as a full disk would."""
    path = tmp_path / "j"
    code = textwrap.dedent(
        """
        import os, resource, signal, sys
        from journal import Journal, JournalError
        from journal.state.store import StateStore
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        j = Journal(sys.argv[1], map_size=64 << 20)
        s = StateStore(j)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        blob = "x" * 2000
        n = 0
        try:
            while True:
                op = j.begin("place_order", {"n": n, "pad": blob})
                print("I", op.op_id, flush=True)
                op.commit({"n": n}, wait=True)
                print("C", op.op_id, flush=True)
                n += 1
        except JournalError as exc:
            print("FULL", type(exc).__name__, str(exc)[:300], flush=True)
        try:
            j.begin("place_order", {"after": "full"})
            print("WROTE AFTER FAILURE", flush=True)
        except JournalError as exc:
            print("REFUSED", str(exc)[:200], flush=True)
        os._exit(0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    lines = proc.stdout.splitlines()
    assert any(line.startswith("FULL") for line in lines), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert any(line.startswith("REFUSED") for line in lines) and "WROTE AFTER FAILURE" not in proc.stdout
    intents = {int(x.split()[1]) for x in lines if x.startswith("I ")}
    commits = {int(x.split()[1]) for x in lines if x.startswith("C ")}
    assert len(commits) > 10
    with Journal(path, verify_on_open="full") as j:  # reopens with everything acknowledged
        assert j.verify().ok
        records = {(r.kind, r.op) for r in j.records()}
        assert all(("intent", op) in records for op in intents)
        assert all(("commit", op) in records for op in commits)
        StateStore(j)
        j.record("after", {"reopened": True})  # and accepts writes again


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_read_only_directory_gives_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        j.record("x", {})
    nobody = 65534
    os.chmod(tmp_path, 0o755)
    os.chown(path, nobody, nobody)
    for name in os.listdir(path):
        os.chown(path / name, nobody, nobody)
    os.chmod(path, 0o500)  # read-only for its owner
    code = textwrap.dedent(
        """
        import os, sys
        from journal import Journal, JournalError  # imported first: the stdlib may be unreadable to nobody
        import journal.state.store, encodings.idna, uuid, ipaddress, fractions, datetime, email.parser, fcntl
        from journal.log.codec import decode, encode, warm_up
        warm_up(); decode(encode({"a": [1, "b"]}))
        os.setgid(65534); os.setuid(65534)
        try:
            Journal(sys.argv[1])
            print("OPENED FOR WRITING")
        except (JournalError, OSError) as exc:
            print("WRITE REFUSED", type(exc).__name__, exc)
        try:
            with Journal(sys.argv[1], readonly=True) as r:
                print("READ", r.last_seq)
        except (JournalError, OSError) as exc:
            print("READ REFUSED", type(exc).__name__, exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    out = proc.stdout
    assert "OPENED FOR WRITING" not in out, out + proc.stderr
    assert "WRITE REFUSED" in out and "permission" in out.lower(), out + proc.stderr
    assert "READ 1" in out or ("READ REFUSED" in out and "permission" in out.lower()), out + proc.stderr
