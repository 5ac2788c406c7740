"""Compaction knows about shipping: the retention floor that shipping cursors set, and the lag in stats.

These need no NATS server: a cursor file is what a shipper leaves beside the journal
(journal.log.cursors), and the log layer reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from journal import Journal, JournalError, StateStore
from journal.log.cursors import Cursor, cursor_path, read_cursor, read_cursors, retention_floor, write_cursor
from journal.log.record import chain_of

ROOT = Path(__file__).resolve().parents[2]


def _journal(path: Path, n: int, **kw: object) -> Journal:
    j = Journal(path, **kw)  # type: ignore[arg-type]
    for i in range(n):
        j.record("tick", {"i": i})
    return j


def _cursor_at(j: Journal, seq: int, name: str = "TJ") -> Cursor:
    value = j.get_raw([seq])[0].value
    cursor = Cursor(
        name=name, seq=seq, chain=chain_of(value, seq), target="nats://127.0.0.1:1", updated_ns=time.time_ns()
    )
    write_cursor(j.path, cursor)
    return cursor


def test_cursor_round_trip_is_atomic_and_keeps_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.mkdir()
    c = Cursor(name="TJ", seq=42, chain=0xDEADBEEF, ts_ns=7, target="nats://h:4222", updated_ns=9,
               extra={"stream_created": "2026-01-01T00:00:00Z"})  # fmt: skip
    written = write_cursor(path, c)
    assert written == cursor_path(path, "TJ") == str(path / "ship" / "TJ.cursor")
    assert os.listdir(path / "ship") == ["TJ.cursor"]  # no temporary file left behind
    assert read_cursor(path, "TJ") == c
    assert read_cursor(path, "other") is None
    assert oct(os.stat(written).st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="cursor name"):
        cursor_path(path, "../escape")


def test_compaction_stops_at_the_lowest_cursor(tmp_path: Path) -> None:
    with _journal(tmp_path / "j", 20) as j:
        _cursor_at(j, 12, "hubA")
        _cursor_at(j, 7, "hubB")
        assert retention_floor(j.path) is not None and retention_floor(j.path).name == "hubB"  # type: ignore[union-attr]
        assert j.compact_log(15) == 7
        assert j.first_seq == 8 and j.base_seq == 7
        assert j.verify().ok
        _cursor_at(j, 18, "hubB")
        assert j.compact_log(15) == 5  # hubA at 12 is now the floor
        assert j.first_seq == 13


def test_refuse_mode_raises_and_deletes_nothing(tmp_path: Path) -> None:
    with _journal(tmp_path / "j", 10, retention_floor="refuse") as j:
        _cursor_at(j, 4)
        with pytest.raises(JournalError, match=r"acknowledged only up to seq 4.*TJ\.cursor"):
            j.compact_log(8)
        assert j.first_seq == 1
        assert j.compact_log(4) == 4  # up to the floor is fine


def test_unknown_retention_floor_mode_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="retention_floor must be one of"):
        Journal(tmp_path / "j", retention_floor="ignore")


def test_an_unreadable_cursor_stops_compaction(tmp_path: Path) -> None:
    with _journal(tmp_path / "j", 10) as j:
        ship = Path(j.path) / "ship"
        ship.mkdir()
        (ship / "TJ.cursor").write_text("{not json")
        with pytest.raises(JournalError, match=r"TJ\.cursor: unreadable shipping cursor.*delete the file"):
            j.compact_log(5)
        assert j.first_seq == 1
        (ship / "TJ.cursor").unlink()
        assert read_cursors(j.path) == []
        assert j.compact_log(5) == 5  # a forgotten destination no longer holds records back


def test_state_store_compaction_respects_the_floor(tmp_path: Path) -> None:
    with _journal(tmp_path / "j", 0) as j:
        store = StateStore(j, retention_s=0)
        for i in range(30):
            store.set("custom", f"k{i}", i)
            if i % 10 == 9:
                store.save()
        _cursor_at(j, 5)
        assert store.compact() == 5
        assert j.first_seq == 6


def test_stats_show_the_shipping_lag(tmp_path: Path) -> None:
    with _journal(tmp_path / "j", 10) as j:
        assert j.stats()["shipping"] == []
        _cursor_at(j, 10)
        (lag,) = j.stats()["shipping"]
        assert lag["acked_seq"] == 10 and lag["lag_records"] == 0 and lag["lag_s"] == 0.0
        _cursor_at(j, 6)
        time.sleep(0.01)
        (lag,) = j.stats()["shipping"]
        assert lag["lag_records"] == 4 and lag["lag_s"] >= 0.01
        assert lag["target"] == "nats://127.0.0.1:1"
    out = subprocess.run([sys.executable, "-m", "journal", "stats", str(tmp_path / "j"), "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    (shown,) = json.loads(out)["shipping"]
    assert shown["name"] == "TJ" and shown["lag_records"] == 4
