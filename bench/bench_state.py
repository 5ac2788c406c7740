"""The state a bot really has, saved and loaded: against pickle (the floor) and JSON (what most bots do).

Run: ``pytest bench/bench_state.py --benchmark-only -s``. Every state here is
built through the journal's public API -- orders placed and committed with
float prices as ccxt returns them, which the reducers turn into Decimal -- so
the figures describe what a bot gets (issue 14). Each test measures ours and
its peer interleaved in one loop, on the same state, and records medians
(printed with the ratios at the end of the run).

Sizes: TRADEJOURNAL_BENCH_STATE_SIZES (open orders, default "1000,10000,100000"),
TRADEJOURNAL_BENCH_HISTORY (orders seen by the history journal, default 100000),
TRADEJOURNAL_BENCH_DIR (where journals are built).
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench.conftest import MEDIANS, build_history, build_open_orders, ratio
from journal import Journal
from journal.state.store import StateStore

SIZES = [int(n) for n in os.environ.get("TRADEJOURNAL_BENCH_STATE_SIZES", "1000,10000,100000").split(",")]
HISTORY = int(os.environ.get("TRADEJOURNAL_BENCH_HISTORY", "100000"))
HISTORY_OPEN = 1000

for n in SIZES:
    ratio(f"full save, {n} open orders / pickle.dumps", f"state.save.{n}", f"pickle.dumps.{n}", "<= 1.0")
    ratio(f"open + state ready, {n} / pickle.loads gc off", f"state.open_load.{n}", f"pickle.loads.{n}", "<= 1.0")
    ratio(f"incremental save (1 % changed), {n} / full save", f"state.save_1pct.{n}", f"state.save.{n}", "<= 0.05")
    ratio(f"full save, {n} / JSON write+fsync+rename", f"state.save.{n}", f"json.save.{n}", "report")
    ratio(f"open + state ready, {n} / JSON load", f"state.open_load.{n}", f"json.load.{n}", "report")
ratio(
    f"restart, {HISTORY} seen {HISTORY_OPEN} open / {HISTORY_OPEN} seen",
    "history.open_load",
    "fresh.open_load",
    "<= 2.0",
)
ratio("restart peak memory, history / fresh (tracemalloc)", "history.peak_MB", "fresh.peak_MB", "<= 2.0")


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tj-bench-state-", dir=os.environ.get("TRADEJOURNAL_BENCH_DIR")) as d:
        yield Path(d)


def _timed(fn: Callable[[], Any], times: list[float], *, gc_off: bool = False) -> Any:
    if gc_off:
        gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    finally:
        if gc_off:
            gc.enable()
    return out


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    raise TypeError(type(v).__name__)


def _say(request: pytest.FixtureRequest, text: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(text)


def _restart(path: Path) -> tuple[Journal, StateStore]:
    j = Journal(path)
    return j, StateStore(j)


@pytest.mark.parametrize("n", SIZES)
def test_journal_built_state_save_and_load(benchmark: Any, root: Path, n: int, request: pytest.FixtureRequest) -> None:
    """Full save, open + state ready, and a save after 1 % of the orders changed; against pickle and JSON.

    Each round: close and reopen the journal (open + StateStore: the bot's
    restart); pickle.loads of the same sections with the garbage collector off;
    a full save after one balance changed; pickle.dumps of the sections; 1 % of
    the orders changed through the journal (an order_update each) and a save.
    """
    path = root / f"open-{n}"
    build_open_orders(path, n)
    rounds = 5 if n >= 100_000 else 11
    times: dict[str, list[float]] = {k: [] for k in ("open", "loads", "save", "dumps", "incr", "jsave", "jload")}
    rnd = random.Random(3)
    json_path = root / f"state-{n}.json"

    def json_save(sections: dict[str, Any]) -> None:
        tmp = json_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(sections, f, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, json_path)

    def json_load() -> Any:
        with open(json_path) as f:
            return json.load(f, parse_float=Decimal)

    def one_round(r: int) -> None:
        j, s = _timed(lambda: _restart(path), times["open"])
        try:
            sections = s.state.raw_sections()
            blob = pickle.dumps(sections, protocol=pickle.HIGHEST_PROTOCOL)
            _timed(lambda: pickle.loads(blob), times["loads"], gc_off=True)
            j.record("balances", {"balances": {"BENCH": {"free": r, "used": 0, "total": r}}})
            _timed(lambda: s.save(full=True), times["save"])
            _timed(lambda: pickle.dumps(sections, protocol=pickle.HIGHEST_PROTOCOL), times["dumps"])
            for key in rnd.sample(sorted(sections["orders"]), max(1, n // 100)):
                j.record("order_update", dict(sections["orders"][key], client_id=key, filled=Decimal("0.001")),
                         wait=False)  # fmt: skip
            j.flush()
            _timed(lambda: s.save(), times["incr"])
            _timed(lambda: json_save(sections), times["jsave"])
            _timed(json_load, times["jload"])
        finally:
            j.close()

    def run() -> None:
        for r in range(rounds):
            one_round(r)

    benchmark.pedantic(run, rounds=1, iterations=1)
    for key, name in (("open", "state.open_load"), ("loads", "pickle.loads"), ("save", "state.save"),
                      ("dumps", "pickle.dumps"), ("incr", "state.save_1pct"), ("jsave", "json.save"),
                      ("jload", "json.load")):  # fmt: skip
        MEDIANS[f"{name}.{n}"] = statistics.median(times[key])
    _say(
        request,
        f"\n{n} open orders: open+load {MEDIANS[f'state.open_load.{n}'] * 1e3:.1f} ms "
        f"(pickle.loads {MEDIANS[f'pickle.loads.{n}'] * 1e3:.1f}), full save {MEDIANS[f'state.save.{n}'] * 1e3:.1f} ms "
        f"(pickle.dumps {MEDIANS[f'pickle.dumps.{n}'] * 1e3:.1f}), 1 % save {MEDIANS[f'state.save_1pct.{n}'] * 1e3:.2f} ms",
    )


@pytest.fixture(scope="module")
def histories(root: Path) -> dict[str, Any]:
    """A journal that has seen HISTORY orders with HISTORY_OPEN open, and one that only ever saw those many."""
    t0 = time.perf_counter()
    history = build_history(root / "history", HISTORY, HISTORY_OPEN)
    built_s = time.perf_counter() - t0
    build_open_orders(root / "fresh", HISTORY_OPEN)
    return {"history": history, "built_s": built_s}


def test_restart_with_a_long_history(
    benchmark: Any, root: Path, histories: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """Open + state ready and its peak memory: HISTORY orders seen (HISTORY_OPEN open) against HISTORY_OPEN only.

    Interleaved restarts of the two journals; peak memory from tracemalloc over
    the open and the load (Python allocations), measured apart from the times.
    Then an archived order looked up by client id.
    """
    times: dict[str, list[float]] = {"history": [], "fresh": []}

    def run() -> None:
        for _ in range(9):
            for name in ("history", "fresh"):
                j, s = _timed(lambda: _restart(root / name), times[name])  # noqa: B023 (runs now)
                assert len([o for o in s.state["orders"].values() if o["status"] == "open"]) == HISTORY_OPEN
                j.close()

    benchmark.pedantic(run, rounds=1, iterations=1)
    peaks = {}
    for name in ("history", "fresh"):
        gc.collect()
        tracemalloc.start()
        j, s = _restart(root / name)
        _, peaks[name] = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        hot = {k: len(v) for k, v in s.state.raw_sections().items() if v}
        _say(request, f"\n{name}: in memory after load {hot}, archived {s.status()['archived']}")
        j.close()
    j, s = _restart(root / "history")
    settled = histories["history"]["settled"]
    sample = random.Random(5).sample(settled[: len(settled) // 2], 200)  # old ones: archived
    lookups: list[float] = []
    for cid in sample:
        assert cid not in s.state.raw_sections()["orders"]
        order = _timed(lambda: s.order(cid), lookups)  # noqa: B023 (runs now)
        assert order is not None and order["status"] in ("canceled", "closed")
    j.close()
    MEDIANS["history.open_load"] = statistics.median(times["history"])
    MEDIANS["fresh.open_load"] = statistics.median(times["fresh"])
    MEDIANS["history.peak_MB"] = peaks["history"] / 1e6 / 1e6  # shown as MB in the "us" column
    MEDIANS["fresh.peak_MB"] = peaks["fresh"] / 1e6 / 1e6
    MEDIANS["history.archived_lookup"] = statistics.median(lookups)
    _say(
        request,
        f"\nrestart: {HISTORY} seen / {HISTORY_OPEN} open ({histories['history']['records']} records, built in "
        f"{histories['built_s']:.0f} s): {MEDIANS['history.open_load'] * 1e3:.1f} ms, peak {peaks['history'] / 1e6:.1f} MB; "
        f"{HISTORY_OPEN} seen: {MEDIANS['fresh.open_load'] * 1e3:.1f} ms, peak {peaks['fresh'] / 1e6:.1f} MB; "
        f"archived order by client id: median {MEDIANS['history.archived_lookup'] * 1e6:.0f} us, "
        f"max {max(lookups) * 1e6:.0f} us",
    )


RECORDS = int(os.environ.get("TRADEJOURNAL_BENCH_RECORDS", "1000000"))
ratio("tools: snapshots() on the big journal (s)", "tools.snapshots", "one_second", "<= 1.0")
ratio("tools: verify = log verify + snapshots + state check (s)", "tools.verify_total", "one_second", "<= 10.0")

_CHILD = """\
import sys, time
from journal import Journal
from journal.state import snapshots
t0 = time.perf_counter()
with Journal(sys.argv[1], readonly=True) as j:
    listed = snapshots(j)
print(time.perf_counter() - t0, len(listed), all(i.ok for i in listed))
"""
# A child's ru_maxrss keeps the high-water mark of the process it was forked from (Linux records
# the old mm's peak at exec), and this process holds the journal it built: so a small launcher
# runs the child and reports the child's own peak from wait4 (as bench_cli.py does).
_LAUNCH = """\
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)
out = child.stdout.read()
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, out.strip())
"""


@pytest.fixture(scope="module")
def big(root: Path) -> dict[str, Any]:
    """A journal of about TRADEJOURNAL_BENCH_RECORDS records, built with the state attached and saved every 10,000."""
    orders = max(1000, int(RECORDS / 3.45))  # a settled order costs 3 or 4 records
    t0 = time.perf_counter()
    built = build_history(root / "big", orders, 1000)
    built["built_s"] = time.perf_counter() - t0
    return built


def test_tools_on_a_big_journal(
    benchmark: Any, root: Path, big: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """What `journal snapshots`, `state --at`, `diff` and `verify` need of the state layer, on the big journal.

    snapshots() in a child process (its time and peak RSS, as the command would
    see them); state_at() a fixed distance after a snapshot, and at seq 100,000
    (before every kept snapshot: a replay from the first record); the three
    parts of `journal verify`. Progress callbacks are counted, not printed.
    """
    import subprocess
    import sys

    from journal.state import check_state, diff_states, snapshots, state_at

    path = root / "big"
    out: dict[str, float] = {}

    def run() -> None:
        cmd = [sys.executable, "-c", _LAUNCH, sys.executable, "-c", _CHILD, str(path)]
        child = subprocess.run(cmd, capture_output=True, text=True, check=True)
        code, rss_kib, secs, count, ok = child.stdout.split()
        assert code == "0" and ok == "True" and int(count) >= 2
        out["snapshots_s"], out["snapshots_rss_MB"] = float(secs), int(rss_kib) / 1024
        with Journal(path, readonly=True) as j:
            seqs = [i.seq for i in snapshots(j)]
            calls: list[tuple[int, int]] = []
            t0 = time.perf_counter()
            near = state_at(j, seqs[-2] + 5000, progress=lambda d, t: calls.append((d, t)))
            out["state_at_near_s"] = time.perf_counter() - t0
            assert calls[-1] == (5000, 5000) and near.seq == seqs[-2] + 5000
            far = min(100_000, seqs[0] - 1)
            t0 = time.perf_counter()
            old = state_at(j, far, progress=lambda d, t: calls.append((d, t)))
            out["state_at_far_s"] = time.perf_counter() - t0
            out["state_at_far_seq"] = far
            t0 = time.perf_counter()
            d = diff_states(state_at(j, seqs[-2] + 5000), state_at(j, j.last_seq))
            out["diff_s"] = time.perf_counter() - t0
            assert d.summary()
            t0 = time.perf_counter()
            report = j.verify()
            out["log_verify_s"] = time.perf_counter() - t0
            assert report.ok
            t0 = time.perf_counter()
            assert all(i.ok for i in snapshots(j))
            out["snapshot_check_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            _, problems = check_state(j)
            out["state_check_s"] = time.perf_counter() - t0
            assert problems == [] and old.seq == far

    benchmark.pedantic(run, rounds=1, iterations=1)
    MEDIANS["one_second"] = 1.0
    MEDIANS["tools.snapshots"] = out["snapshots_s"]
    MEDIANS["tools.verify_total"] = out["log_verify_s"] + out["snapshot_check_s"] + out["state_check_s"]
    _say(
        request,
        f"\nbig journal: {big['records']} records (built in {big['built_s']:.0f} s), archived {big['status']['archived']}; "
        f"snapshots() {out['snapshots_s']:.3f} s, child peak RSS {out['snapshots_rss_MB']:.0f} MB; "
        f"state_at(snapshot + 5000) {out['state_at_near_s']:.3f} s; state_at({out['state_at_far_seq']:.0f}) "
        f"{out['state_at_far_s']:.2f} s (a replay from the first record); diff {out['diff_s']:.2f} s; "
        f"verify: log {out['log_verify_s']:.2f} s + snapshots {out['snapshot_check_s']:.3f} s "
        f"+ state {out['state_check_s']:.3f} s",
    )
