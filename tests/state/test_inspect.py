"""The tools' view of the state: snapshots listed without a load, the state at a point from the nearest snapshot."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

from journal import CorruptionError, Journal
from journal.state import check_state, snapshot_state, snapshots, state_at
from journal.state.store import StateStore
from tests.helpers import raw


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A journal of 60 records with snapshots at 20, 40 and 60."""
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        for i in range(60):
            s.set("custom", f"k{i % 9}", {"i": i})
            if i % 20 == 19:
                s.save()
    return path


def test_snapshots_are_checked_without_decoding_and_report_progress(saved: Path) -> None:
    calls: list[tuple[int, int]] = []
    with Journal(saved, readonly=True) as j:
        listed = snapshots(j, progress=lambda done, total: calls.append((done, total)))
    assert [(i.seq, i.ok, i.counts["custom"]) for i in listed] == [(20, True, 9), (40, True, 9), (60, True, 9)]
    assert calls and calls[-1][0] == calls[-1][1] > 0
    env = lmdb.open(str(saved), max_dbs=10, lib_version=0)
    with env.begin(write=True) as txn:
        manifest = raw.manifest(txn, env.open_db(b"snapshots", txn=txn), 40)
        section = manifest["sections"]["custom"]
        digest = (section["deltas"] or section["base"])[-1]
        chunks = env.open_db(b"chunks", txn=txn)
        blob = bytearray(txn.get(digest, db=chunks))
        blob[-1] ^= 0x55
        txn.put(digest, bytes(blob), db=chunks)
    env.close()
    with Journal(saved, readonly=True) as j:
        listed = snapshots(j)
    assert [i.ok for i in listed][1] is False and "fails its checksum" in (listed[1].problem or "")


def test_state_at_starts_from_the_nearest_snapshot(saved: Path) -> None:
    with Journal(saved, readonly=True) as j:
        calls: list[tuple[int, int]] = []
        at = state_at(j, 45, progress=lambda done, total: calls.append((done, total)))
        assert at.seq == 45 and at["custom"]["k8"] == {"i": 44}
        assert calls[-1] == (5, 5)  # replayed 41..45 only: it started from the snapshot at 40
        calls.clear()
        whole = state_at(j, 10, progress=lambda done, total: calls.append((done, total)))
        assert calls[-1] == (10, 10)  # before the first snapshot: a replay from the first record
        assert whole.seq == 10 and whole["custom"]["k0"] == {"i": 9} and whole["custom"]["k1"] == {"i": 1}
        assert snapshot_state(j, 40)["custom"]["k3"] == {"i": 39}
        with pytest.raises(ValueError, match="after the last record"):
            state_at(j, 61)


def test_state_at_needs_no_record_before_its_snapshot(saved: Path) -> None:
    with Journal(saved) as j:
        s = StateStore(j, keep_snapshots=2)
        s.set("custom", "more", 1)
        s.save()
        assert s.compact(retention_s=0) > 0  # records through the snapshot at 60 are gone
        first = j.first_seq
        assert first is not None
        assert state_at(j, j.last_seq)["custom"]["more"] == 1
        with pytest.raises(CorruptionError, match="compacted"):
            state_at(j, first - 2)


def test_check_state_loads_and_validates(saved: Path) -> None:
    seen: list[tuple[int, int]] = []
    with Journal(saved, readonly=True) as j:
        state, problems = check_state(j, progress=lambda d, t: seen.append((d, t)))
    assert state.seq == 60 and problems == [] and seen == []  # the newest snapshot covers everything
