"""Regressions found in review (journal): each test reproduces one bug and asserts the fixed behaviour."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from journal import Journal, JournalError
from journal.state.store import StateStore


def test_state_aliases_caller_data_so_live_state_differs_from_replay(tmp_path: Path) -> None:
    """reducers.py:330 / 314: the reducer stores the caller's object; mutating it later changes live state."""
    with Journal(tmp_path / "j") as j:
        store = StateStore(j)
        levels = [1, 2]
        store.set("grid", "levels", levels)
        ctx = {"step": 1}
        j.record("strategy", {"name": "s", "context": ctx})
        levels.append(3)  # the bot keeps using its own objects
        ctx["step"] = 99
        live = store.view()
        replayed = store.state_at(j.last_seq)
        assert live["grid"]["levels"] == replayed["grid"]["levels"], (live["grid"], replayed["grid"])
        assert live["strategies"]["s"]["context"] == replayed["strategies"]["s"]["context"]


def test_compaction_during_iteration_is_reported_not_skipped(tmp_path: Path) -> None:
    """records(): a compaction between two chunks used to make set_range() jump the gap silently."""
    with Journal(tmp_path / "j") as j:
        for i in range(20):
            j.record("strategy", {"name": f"s{i}"})
        it = j.records(chunk=2)
        seen = [next(it).seq, next(it).seq]
        j.compact_log(10)  # autosave thread compacting meanwhile
        with pytest.raises(JournalError, match="compacted while being read"):
            seen += [r.seq for r in it]
        assert seen == [1, 2]


def test_compact_through_last_seq_with_a_queued_marker(tmp_path: Path) -> None:
    """wal.py:849 compact_log clamps to last_seq, which counts numbered-but-not-yet-written records."""
    with Journal(tmp_path / "j", flush_interval_ms=60_000) as j:
        op = j.begin("place_order", {"symbol": "X", "side": "buy", "type": "limit", "amount": D(1), "price": D(1)})
        j.commit(op, {"status": "open"}, wait=False)  # INTENT mode: rides on the next synced txn
        j.compact_log(j.last_seq)  # raises CorruptionError "record 2 missing during compaction"
