"""journal.log.replica: a journal directory built from pre-framed records reads exactly like its source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from journal import CorruptionError, Journal, NotAJournalError, StateStore
from journal.log.record import body_of, frame, genesis_chain, kind_of, ts_of
from journal.log.replica import Replica, ReplicaError

ROOT = Path(__file__).resolve().parents[2]


def _source(path: Path) -> Journal:
    """A journal with every kind of record, pending operations, and two writer incarnations."""
    with Journal(path) as j:
        for i in range(12):
            op = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "amount": "0.01",
                                         "price": str(30000 + i), "client_id": None})  # fmt: skip
            if i % 3 == 0:
                op.commit({"id": str(i), "status": "open", "symbol": "BTC/USDT", "amount": "0.01", "filled": "0"})
            elif i % 3 == 1:
                op.abort("refused: InsufficientFunds")
            j.record("tick", {"i": i}, op=op.op_id)
    j = Journal(path)
    op = j.begin("place_order", {"symbol": "ETH/USDT", "side": "sell", "type": "limit", "amount": "1", "price": "2000"})
    j.record("balance", {"USDT": {"free": "100", "used": "0", "total": "100"}})
    assert op.status == "pending"
    return j


def _copy(src: Journal, dest: Path, start: int = 0) -> Replica:
    base_seq, base_chain = src.chain_base if start == 0 else (start - 1, src.get(start - 1).chain)
    replica = Replica.create(dest, src.journal_id, base_seq=base_seq, base_chain=base_chain, source="test")
    for chunk in src.scan_raw(start or base_seq + 1):
        for raw in chunk:
            replica.stage(raw.seq, src.incarnations.at(raw.seq), raw.value)
    assert replica.commit() == src.last_seq - base_seq
    return replica


def _run(*args: object) -> str:
    return subprocess.run([sys.executable, "-m", "journal", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


def _rows(*args: object) -> list[dict[str, object]]:
    """A command's JSON rows, without the ages (they move with the clock)."""
    return [
        {k: v for k, v in json.loads(line).items() if not k.endswith("age_ms")} for line in _run(*args).splitlines()
    ]


def test_a_replica_reads_like_its_source_with_every_tool(tmp_path: Path) -> None:
    src = _source(tmp_path / "bot.journal")
    try:
        with _copy(src, tmp_path / "replica") as replica:
            assert replica.last_seq == src.last_seq and replica.base_chain == genesis_chain(src.journal_id)
        with Journal(tmp_path / "replica", readonly=True, verify_on_open="full") as copy:
            assert copy.journal_id == src.journal_id
            assert copy.verify().ok
            assert [r.as_dict() for r in copy.records()] == [r.as_dict() for r in src.records()]
            assert copy.pending_ids() == src.pending_ids() != []
            assert copy.timeline(1) == src.timeline(1)
            assert copy.incarnations.entries() == src.incarnations.entries()
            assert copy.client_id(src.last_seq - 1) == src.client_id(src.last_seq - 1)
            assert StateStore(copy).state == StateStore(src).state
        for cmd in (["dump", "--json"], ["pending", "--json"]):  # (show: the timelines compared above)
            assert _rows(cmd[0], tmp_path / "replica", *cmd[1:]) == _rows(cmd[0], src.path, *cmd[1:]) != []
        assert all(row["ok"] for row in _rows("verify", tmp_path / "replica", "--json"))
    finally:
        src.close()


def test_a_replica_refuses_what_does_not_follow_and_keeps_nothing_of_it(tmp_path: Path) -> None:
    src = _source(tmp_path / "bot.journal")
    raws = {raw.seq: raw.value for chunk in src.scan_raw(0) for raw in chunk}
    inc = src.incarnations.at(1)
    src.close()
    with Replica.create(tmp_path / "r", src.journal_id) as r:
        r.stage(1, inc, raws[1])
        with pytest.raises(ReplicaError, match="record 3 does not follow the last record 1"):
            r.stage(3, inc, raws[3])
        _, other, _ = frame(2, 12345, ts_of(raws[2]), kind_of(raws[2]), bytes(body_of(raws[2])))  # another predecessor
        with pytest.raises(ReplicaError, match="follows another record"):
            r.stage(2, inc, other)
        damaged = bytearray(raws[2])
        damaged[-1] ^= 1
        with pytest.raises(CorruptionError, match="seq 2: checksum mismatch"):
            r.stage(2, inc, bytes(damaged))
        assert r.last_seq == 1 and r.staged == 1
        r.stage(2, inc, raws[2])
        r.commit()
        r.discard()
        assert r.last_seq == 2
    with Replica(tmp_path / "r") as again:  # reopened: appends after what was committed
        assert again.last_seq == 2
        again.stage(3, inc, raws[3])
        again.discard()
        assert again.last_seq == 2 and again.value(3) is None and again.value(2) == raws[2]


def test_a_replica_of_a_compacted_journal_starts_at_its_base(tmp_path: Path) -> None:
    src = _source(tmp_path / "bot.journal")
    try:
        _copy(src, tmp_path / "r", start=10).close()
        with Journal(tmp_path / "r", readonly=True, verify_on_open="full") as copy:
            assert copy.first_seq == 10 and copy.base_seq == 9 and copy.verify().ok
        with pytest.raises(ValueError, match="needs the chain value"):
            Replica.create(tmp_path / "r2", src.journal_id, base_seq=5)
    finally:
        src.close()


def test_a_journal_is_not_a_replica(tmp_path: Path) -> None:
    Journal(tmp_path / "bot.journal").close()
    with pytest.raises(NotAJournalError, match="a journal, not a replica"):
        Replica(tmp_path / "bot.journal")
    with pytest.raises(NotAJournalError, match="no replica here"):
        Replica(tmp_path / "nothing")
