"""Snapshot save and load, against a JSON file (what most bots do) and pickle (the floor).

Run: ``pytest bench/bench_state.py --benchmark-only``. State: N open orders
shaped like ccxt's, 50 positions, 20 balances; float prices and Decimal prices
separately. Sizes: TRADEJOURNAL_BENCH_STATE_SIZES (default "1000,10000,100000").
Peak memory of save and load at the largest N is printed at the end.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import random
import tempfile
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench.conftest import MEDIANS, ratio
from journal import Journal
from journal.state import State
from journal.state.store import StateStore

SIZES = [int(n) for n in os.environ.get("TRADEJOURNAL_BENCH_STATE_SIZES", "1000,10000,100000").split(",")]
KINDS = ["float", "decimal"]

for n in SIZES:
    for kind in KINDS:
        tag = f"{n}.{kind}"
        ratio(f"save N={tag} / JSON write+fsync+rename", f"ours.save.{tag}", f"json.save.{tag}", "<= 1 (ours faster)")
        ratio(f"load N={tag} / JSON read", f"ours.load.{tag}", f"json.load.{tag}", "<= 1")
        ratio(f"load N={tag} / pickle load, gc off (floor)", f"ours.load.{tag}", f"pickle.load.{tag}", "report")
        ratio(f"incremental save (1%) N={tag} / full save", f"ours.incr.{tag}", f"ours.save.{tag}", "report")


def make_sections(n: int, kind: str, seed: int = 7) -> dict[str, dict[str, Any]]:
    rnd = random.Random(seed)
    num = (lambda x: Decimal(str(round(x, 2)))) if kind == "decimal" else (lambda x: round(x, 2))
    orders = {}
    for i in range(n):
        cid = f"tjBench0001{i:08d}"
        price = num(20000 + rnd.random() * 10000)
        amount = num(rnd.random() * 2 + 0.01)
        orders[cid] = {
            "id": str(5_000_000 + i), "clientOrderId": cid, "client_id": cid, "symbol": "BTC/USDT",
            "side": "buy" if i % 2 else "sell", "type": "limit", "price": price, "amount": amount,
            "filled": num(0), "remaining": amount, "average": None, "cost": num(0), "status": "open",
            "timestamp": 1_700_000_000_000 + i, "fee": {"cost": num(0), "currency": "USDT"}, "trades": [],
            "op": i + 1, "last_seq": i + 1,
        }  # fmt: skip
    positions = {f"SYM{i}/USDT": {"symbol": f"SYM{i}/USDT", "amount": num(i), "cost": num(i * 10.5), "fees": {}, "adjusted": True}
                 for i in range(50)}  # fmt: skip
    balances = {f"A{i}": {"free": num(i * 3.25), "used": num(0), "total": num(i * 3.25)} for i in range(20)}
    return {"orders": orders, "positions": positions, "balances": balances}


class _Setup:
    def __init__(self, n: int, kind: str, root: Path) -> None:
        self.n, self.kind, self.root = n, kind, root
        self.sections = make_sections(n, kind)
        self.path = root / f"j-{n}-{kind}"
        self.journal = Journal(self.path, map_size=64 << 20)
        self.store = StateStore(self.journal)
        self.store.state = State(self.sections, self.journal.last_seq)
        for name, items in self.sections.items():
            for key in items:
                self.store.state._dirty.setdefault(name, {})[key] = True


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tj-bench-state-", dir=os.environ.get("TRADEJOURNAL_BENCH_DIR")) as d:
        yield Path(d)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_save_full(benchmark: Any, record_median: Any, root: Path, n: int, kind: str) -> None:
    s = _Setup(n, kind, root)
    counter = [0]

    def run() -> None:
        counter[0] += 1
        s.store.state.put("balances", "BENCH", {"free": counter[0]})  # something changed
        s.store.save(full=True)

    benchmark.pedantic(run, rounds=5 if n >= 100_000 else 15, iterations=1, warmup_rounds=1)
    record_median(f"ours.save.{n}.{kind}")
    s.journal.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_save_incremental_1pct(benchmark: Any, record_median: Any, root: Path, n: int, kind: str) -> None:
    s = _Setup(n, kind, root)
    s.store.save(full=True)
    keys = list(s.sections["orders"])
    rnd = random.Random(1)
    filled = Decimal("0.001") if kind == "decimal" else 0.001

    def run() -> None:
        for key in rnd.sample(keys, max(1, n // 100)):
            s.store.state.patch("orders", key, {"filled": filled, "status": "open"})
        s.store.save()

    benchmark.pedantic(run, rounds=15, iterations=1, warmup_rounds=1)
    record_median(f"ours.incr.{n}.{kind}")
    s.journal.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_load(benchmark: Any, record_median: Any, root: Path, n: int, kind: str) -> None:
    s = _Setup(n, kind, root)
    s.store.save(full=True)
    s.journal.close()
    j = Journal(s.path, readonly=True)

    def run() -> int:
        return len(StateStore(j).state["orders"])

    assert benchmark.pedantic(run, rounds=5 if n >= 100_000 else 15, iterations=1, warmup_rounds=1) == n
    record_median(f"ours.load.{n}.{kind}")
    j.close()


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    raise TypeError(type(v).__name__)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_peer_json_save_and_load(benchmark: Any, record_median: Any, root: Path, n: int, kind: str) -> None:
    """What most bots do: json.dump to a temp file, fsync, rename; read back with json.load."""
    sections = make_sections(n, kind)
    path = root / f"state-{n}-{kind}.json"

    def save() -> None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(sections, f, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    benchmark.pedantic(save, rounds=5 if n >= 100_000 else 15, iterations=1, warmup_rounds=1)
    record_median(f"json.save.{n}.{kind}")
    parse_float = Decimal if kind == "decimal" else float
    times = []
    import time

    for _ in range(5 if n >= 100_000 else 15):
        t0 = time.perf_counter()
        with open(path) as f:
            json.load(f, parse_float=parse_float)
        times.append(time.perf_counter() - t0)
    MEDIANS[f"json.load.{n}.{kind}"] = sorted(times)[len(times) // 2]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_floor_pickle_load_gc_off(benchmark: Any, record_median: Any, n: int, kind: str) -> None:
    blob = pickle.dumps(make_sections(n, kind), protocol=pickle.HIGHEST_PROTOCOL)

    def run() -> Any:
        gc.disable()
        try:
            return pickle.loads(blob)
        finally:
            gc.enable()

    benchmark.pedantic(run, rounds=5 if n >= 100_000 else 15, iterations=1, warmup_rounds=1)
    record_median(f"pickle.load.{n}.{kind}")


def test_peak_memory_at_largest_n(root: Path) -> None:
    """Peak Python memory (tracemalloc) of a full save and of a load at the largest N, float prices."""
    n = max(SIZES)
    s = _Setup(n, "float", root)
    state_bytes = len(pickle.dumps(s.sections))
    tracemalloc.start()
    s.store.save(full=True)
    _, save_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    s.journal.close()
    j = Journal(s.path, readonly=True)
    tracemalloc.start()
    store = StateStore(j)
    _, load_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(store.state["orders"]) == n
    j.close()
    # reported through the medians table (bytes, shown as "us" column / 1e6 => MB)
    MEDIANS[f"memory.save_peak_MB.N{n}"] = save_peak / 1e6 / 1e6
    MEDIANS[f"memory.load_peak_MB.N{n}"] = load_peak / 1e6 / 1e6
    MEDIANS[f"memory.state_pickle_MB.N{n}"] = state_bytes / 1e6 / 1e6
