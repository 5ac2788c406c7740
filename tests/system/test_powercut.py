"""Power cuts on a strictly POSIX file system (issue 11, item 2).

The journal runs on a FUSE layer that keeps only fsynced data and fsynced
directory entries (tests/helpers/fuselayer.py); crash images taken at random
moments -- while the bot writes, or after it was killed -- must hold every
acknowledged intent and commit and verify clean. Before the directory fsyncs,
the journal and its first intents were gone from most images.

Size: ``TRADEJOURNAL_POWERCUT_RUNS`` (default 3 runs of a few crash images
each); ``TRADEJOURNAL_POWERCUT_SEED`` repeats a run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal import Journal
from journal.log.storage import makedirs_durable
from tests.helpers.fuselayer import FuseLayer, FuseUnavailable, fuse_unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("TRADEJOURNAL_POWERCUT_RUNS", "3"))
SEED = int(os.environ.get("TRADEJOURNAL_POWERCUT_SEED", str(random.randrange(1 << 30))))

pytestmark = [
    pytest.mark.crash,
    pytest.mark.skipif(fuse_unavailable_reason() is not None, reason=f"no FUSE: {fuse_unavailable_reason()}"),
]


@pytest.fixture
def layer(tmp_path: Path) -> Iterator[FuseLayer]:
    try:
        mounted = FuseLayer(tmp_path / "backing", tmp_path / "mnt").__enter__()
    except FuseUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield mounted
    finally:
        errors = mounted.errors()
        mounted.close()
    assert "Traceback" not in errors, f"the FUSE layer failed requests:\n{errors[-3000:]}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_fuse_layer_keeps_only_what_was_fsynced(layer: FuseLayer, tmp_path: Path) -> None:
    """The layer itself: without this, a passing power-cut test would prove nothing."""
    mnt = Path(layer.mount)
    (mnt / "d").mkdir()
    with open(mnt / "d" / "synced", "wb", buffering=0) as f:
        f.write(b"durable")
        os.fsync(f.fileno())
        f.write(b" and more")  # never synced
    (mnt / "d" / "unsynced").write_bytes(b"lost")
    layer.image(tmp_path / "img1")
    assert os.listdir(tmp_path / "img1") == [], "a directory whose parent was never fsynced survived"
    _fsync_dir(mnt)
    _fsync_dir(mnt / "d")
    os.rename(mnt / "d" / "synced", mnt / "d" / "renamed")  # not fsynced: the old name survives
    layer.image(tmp_path / "img2")
    assert sorted(os.listdir(tmp_path / "img2" / "d")) == ["synced", "unsynced"]
    assert (tmp_path / "img2" / "d" / "synced").read_bytes() == b"durable"
    assert (tmp_path / "img2" / "d" / "unsynced").read_bytes() == b""  # its name was synced, its data not
    _fsync_dir(mnt / "d")
    layer.image(tmp_path / "img3")
    assert sorted(os.listdir(tmp_path / "img3" / "d")) == ["renamed", "unsynced"]
    assert (mnt / "d" / "renamed").read_bytes() == b"durable and more"  # the live view has everything


def test_new_journal_fsyncs_its_directory_and_parent_on_the_layer(layer: FuseLayer) -> None:
    with Journal(Path(layer.mount) / "bots" / "bot.journal") as journal:
        journal.begin("place_order", {"n": 1})
    stats = layer.stats()
    assert stats.get("fsyncdir:/", 0) >= 1 and stats.get("fsyncdir:/bots", 0) >= 1, stats
    assert stats.get("fsyncdir:/bots/bot.journal", 0) >= 1, stats
    assert stats.get("fdatasync:/bots/bot.journal/data.mdb", 0) >= 2, stats  # LMDB's own syncs arrive too


class _Bot:
    """The child process and the lines it printed, read by a thread as they come."""

    def __init__(self, path: Path, n_ops: int, mode: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.powercut_child", str(path), str(n_ops),
                                      mode], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def acknowledged(self) -> tuple[set[int], set[int]]:
        lines = list(self.lines)
        intents = {int(x.split()[1]) for x in lines if x.startswith("I ")}
        commits = {int(x.split()[1]) for x in lines if x.startswith("C ")}
        return intents, commits

    def wait_for(self, n_lines: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.lines) < n_lines and self.proc.poll() is None:
            assert time.monotonic() < deadline, f"bot stalled: {self.lines[-3:]}"
            time.sleep(0.001)

    def finish(self, kill: bool) -> str:
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=120)
        self._thread.join(10)  # stdout belongs to the reader thread
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def _check_image(image: Path, rel: str, intents: set[int], commits: set[int]) -> str | None:
    """None if the image holds every acknowledged intent and commit and verifies; else what is wrong."""
    path = image / rel
    if not path.is_dir():
        return f"journal directory gone ({len(intents)} intents acknowledged)" if intents else None
    try:
        with Journal(path) as journal:  # opening as the restarted bot would
            report = journal.verify()
            records = {(r.kind, r.op) for r in journal.records()}
    except Exception as exc:
        return f"does not open: {type(exc).__name__}: {exc}"
    if not report.ok:
        return f"verify: {report}"
    lost = sorted(op for op in intents if ("intent", op) not in records)
    lost_commits = sorted(op for op in commits if ("commit", op) not in records)
    if lost or lost_commits:
        return f"lost intents {lost[:5]} ({len(lost)}), commits {lost_commits[:5]} ({len(lost_commits)})"
    return None


def test_power_cut_keeps_every_acknowledged_intent(layer: FuseLayer, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    images = acked = 0
    violations: list[str] = []
    for run in range(RUNS):
        rel = f"run{run}/bot.journal"
        bot = _Bot(Path(layer.mount) / rel, n_ops=40, mode="batch" if run % 2 else "seq")
        # Crash images at random points: the first during Journal() itself, one right
        # after the first acknowledgement, the rest anywhere in the run.
        points = sorted({0, 2, *(rng.randrange(3, 120) for _ in range(3))})
        for n in points:
            bot.wait_for(n)
            intents, commits = bot.acknowledged()  # taken before the image: all of it must be there
            image = tmp_path / f"image{images}"
            layer.image(image)
            images += 1
            acked += len(intents)
            problem = _check_image(image, rel, intents, commits)
            if problem:
                violations.append(f"run {run} after {n} lines: {problem}")
        kill = rng.random() < 0.5
        err = bot.finish(kill=kill)
        assert kill or "DONE" in bot.lines, err[-2000:]
        intents, commits = bot.acknowledged()
        layer.image(tmp_path / f"image{images}")  # the power goes after the bot (killed or done)
        problem = _check_image(tmp_path / f"image{images}", rel, intents, commits)
        images += 1
        if problem:
            violations.append(f"run {run} at the end ({'killed' if kill else 'done'}): {problem}")
    summary = f"powercut runs={RUNS} images={images} acknowledged_intents_checked={acked} seed={SEED}"
    print(summary)
    assert not violations, f"{summary} violations={len(violations)}:\n" + "\n".join(violations)


def test_backup_survives_a_power_cut_once_journal_backup_returns(layer: FuseLayer, tmp_path: Path) -> None:
    mnt = Path(layer.mount)
    with Journal(mnt / "bot.journal") as journal:
        for i in range(20):
            journal.begin("place_order", {"i": i}).commit({"id": i}, wait=True)
        makedirs_durable(mnt / "backups")  # the operator's backup directory, made to last
        proc = subprocess.run([sys.executable, "-m", "journal", "backup", str(mnt / "bot.journal"),
                               str(mnt / "backups" / "b1")], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        layer.image(tmp_path / "image")  # the power goes right after the command returned
    with Journal(tmp_path / "image" / "backups" / "b1", readonly=True) as copy:
        assert copy.last_seq == 40 and copy.verify().ok
