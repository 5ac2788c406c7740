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
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal import Journal
from journal.log.storage import makedirs_durable
from tests.helpers.fuselayer import FuseLayer, FuseUnavailable, fuse_unavailable_reason
from tests.helpers.powercut import power_cut_runs

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


def test_power_cut_keeps_every_acknowledged_intent(layer: FuseLayer, tmp_path: Path) -> None:
    result = power_cut_runs(layer, tmp_path, RUNS, random.Random(SEED))
    summary = f"{result.line()} seed={SEED}"
    print(summary)
    assert result.images >= 4 * RUNS and result.acknowledged > 0, summary
    assert not result.violations, summary + "\n" + "\n".join(result.violations)


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
