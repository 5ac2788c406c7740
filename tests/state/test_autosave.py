"""The autosave service: periodic and threshold saves, emergency backups, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from journal import Journal
from journal.state.autosave import AutoSaver, emergency_backup
from journal.state.store import StateStore

ROOT = Path(__file__).resolve().parents[2]


def _wait(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_periodic_save_when_something_changed(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j)
        saver = AutoSaver(s, interval_s=0.05)
        try:
            s.set("custom", "a", 1)
            assert _wait(lambda: s.records_since_save == 0)
            assert saver.status()["saves"] >= 1
            saves = saver.saves
            time.sleep(0.2)
            assert saver.saves == saves  # nothing changed: no new snapshot
        finally:
            saver.close()


def test_tail_threshold_triggers_a_save(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j)
        saver = AutoSaver(s, interval_s=3600, tail_records=20)
        try:
            for i in range(25):
                s.set("custom", f"k{i}", i)
            saver.poke()
            assert _wait(lambda: saver.saves >= 1)
        finally:
            saver.close(final_save=False)


def test_failed_save_makes_an_emergency_backup_and_never_raises(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j)
        s.set("custom", "a", 1)
        real_save = s.save

        def broken_save(**kw):
            raise OSError("disk on fire")

        s.save = broken_save  # type: ignore[method-assign]
        saver = AutoSaver(s, interval_s=0.02, backups_dir=str(tmp_path / "backups"), keep_backups=2)
        try:
            assert _wait(lambda: saver.backups >= 3)
            assert saver.save_now() is False  # explicit save reports, does not raise
            status = saver.status()
            assert status["failures"] >= 3 and "disk on fire" in status["last_error"]
            backups = sorted(os.listdir(tmp_path / "backups"))
            assert len(backups) == 2  # bounded
            newest = tmp_path / "backups" / backups[-1]
            assert (tmp_path / "backups").stat().st_mode & 0o777 == 0o700
            assert (newest / "state.json").stat().st_mode & 0o777 == 0o600
            dump = json.loads((newest / "state.json").read_text())
            assert dump["state"]["custom"] == {"a": 1}
            assert "disk on fire" in (newest / "REASON.txt").read_text()
        finally:
            s.save = real_save  # type: ignore[method-assign]
            saver.close()
        assert saver.consecutive_failures == 0  # the final save worked
    with Journal(newest / "journal", readonly=True) as copy:  # the copy is a working journal
        assert copy.verify().ok
        assert StateStore(copy).state["custom"] == {"a": 1}


def test_emergency_backup_copies_while_writing(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j)
        for i in range(100):
            s.set("custom", f"k{i}", i)
        dest = emergency_backup(s, str(tmp_path / "b"), "test")
    with Journal(Path(dest) / "journal", readonly=True) as copy:
        assert copy.last_seq == 100 and copy.verify().ok


def test_close_writes_a_final_snapshot(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        s = StateStore(j)
        saver = AutoSaver(s, interval_s=3600)
        s.set("custom", "a", 1)
        assert saver.close() is True
        assert saver.close() is True  # idempotent
        assert s.snapshots()[-1].seq == j.last_seq


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_handler_saves_then_exits_as_before(tmp_path: Path, sig: int) -> None:
    code = textwrap.dedent(
        """
        import sys, time
        from journal import Journal
        from journal.state.store import StateStore
        from journal.state.autosave import AutoSaver, install_signal_handlers
        j = Journal(sys.argv[1]); s = StateStore(j); saver = AutoSaver(s, interval_s=3600)
        def shutdown():
            saver.close(); j.close(); print("saved", flush=True)
        install_signal_handlers(shutdown)
        s.set("custom", "a", 1)
        print("ready", flush=True)
        time.sleep(30)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "j")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert "saved" in out
    if sig == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM
    else:
        assert "KeyboardInterrupt" in err and proc.returncode != 0
    with Journal(tmp_path / "j") as j:
        s = StateStore(j)
        assert s.loaded_from == j.last_seq and s.state["custom"] == {"a": 1}
