"""Many threads at once: group commit, no duplicate sequence numbers or client ids."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from journal import Journal

THREADS = int(os.environ.get("TRADEJOURNAL_STRESS_THREADS", "8"))
OPS = int(os.environ.get("TRADEJOURNAL_STRESS_SIZE", "500"))

pytestmark = pytest.mark.stress


def test_threads_running_operations_at_once(tmp_path: Path) -> None:
    path = tmp_path / "j"
    errors: list[BaseException] = []
    results: list[list[tuple[int, str]]] = [[] for _ in range(THREADS)]
    with Journal(path) as j:
        barrier = threading.Barrier(THREADS)

        def work(t: int) -> None:
            try:
                barrier.wait()
                for i in range(OPS):
                    op = j.begin("place_order", {"thread": t, "i": i})
                    results[t].append((op.op_id, op.client_id))
                    if i % 10 == 9:
                        op.abort("test refusal")
                    else:
                        op.commit({"thread": t, "i": i})
                    if i % 50 == 0:
                        j.record("tick", {"thread": t, "i": i})
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        stats = j.stats()
    ids = [op for r in results for op, _ in r]
    cids = [cid for r in results for _, cid in r]
    assert len(ids) == THREADS * OPS
    assert len(set(ids)) == len(ids) and len(set(cids)) == len(cids)
    # group commit: fewer transactions than durable writes
    assert stats["counters"]["transactions"] < stats["counters"]["intent"] + stats["counters"]["commit"]
    with Journal(path) as j:
        assert j.verify().ok
        assert j.pending() == []
        records = list(j.records())
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        intents = {r.op: r.data for r in records if r.kind == "intent"}
        outcomes = [r.op for r in records if r.kind in ("commit", "abort")]
        assert len(outcomes) == len(set(outcomes)) == len(intents) == THREADS * OPS
        for t, r in enumerate(results):
            for i, (op, _) in enumerate(r):
                assert intents[op] == {"thread": t, "i": i}
