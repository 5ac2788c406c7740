"""``journal dump --json`` against the floor of doing it by hand.

Run: ``pytest bench/bench_cli.py --benchmark-only`` (add ``-s`` to see the
speed and memory lines). Size: TRADEJOURNAL_BENCH_RECORDS (default 1,000,000
records: half intents, half commits, with Decimal prices as docs/records.md
has them). The dump runs as the real command in a child process writing to
/dev/null; its peak RSS comes from ``wait4`` on that child alone. The floor,
measured in the same run, is a bare loop: an LMDB cursor over the log,
``cbor2.loads`` of each body and ``json.dumps`` with a Decimal default --
no checksums, no envelope, no client ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import cbor2
import lmdb
import pytest

from bench.conftest import ratio
from journal import Journal

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("TRADEJOURNAL_BENCH_RECORDS", "1000000"))

INTENT: dict[str, Any] = {
    "symbol": "BTC/USDT",
    "side": "buy",
    "type": "limit",
    "amount": Decimal("0.00100000"),
    "price": Decimal("30000.10"),
    "params": {},
}
RESULT: dict[str, Any] = {
    "id": "1234567890",
    "client_id": None,
    "symbol": "BTC/USDT",
    "side": "buy",
    "type": "limit",
    "status": "open",
    "price": Decimal("30000.10"),
    "amount": Decimal("0.001"),
    "filled": Decimal("0"),
    "remaining": Decimal("0.001"),
    "average": None,
    "cost": None,
    "fee": None,
    "trades": [],
    "timestamp": 1700000000000,
}

ratio("dump --json / by-hand cursor+cbor2+json.dumps (floor)", "cli.dump_json", "floor.dump_by_hand", "<= 1.5")


@pytest.fixture(scope="module")
def big_journal() -> Iterator[Path]:
    """N records: begin_many batches of 1000 intents, each followed by its 1000 commits."""
    with tempfile.TemporaryDirectory(prefix="tj-bench-cli-", dir=os.environ.get("TRADEJOURNAL_BENCH_DIR")) as d:
        path = Path(d) / "big"
        with Journal(path, durability="process", map_size=1 << 30, flush_interval_ms=1000) as j:
            done = 0
            while done < N:
                k = max(1, min(1000, (N - done) // 2))
                for op in j.begin_many([("place_order", INTENT)] * k):
                    op.commit(RESULT, wait=False)
                done += 2 * k
        yield path


def _say(request: pytest.FixtureRequest, text: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(text)


# A child's ru_maxrss keeps the high-water mark of the memory it was forked
# from (Linux records the old mm's peak at exec), and this process holds the
# journal it just built: so a small launcher process runs the dump and
# reports the dump's own peak from wait4.
_LAUNCH = """\
import os, subprocess, sys
with open(os.devnull, "wb") as sink:
    child = subprocess.Popen(sys.argv[1:], stdout=sink)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def test_cli_dump_json(benchmark: Any, record_median: Any, big_journal: Path, request: pytest.FixtureRequest) -> None:
    """The real command, in a child process, to /dev/null; seconds and the child's peak RSS."""
    peaks: list[int] = []

    def run() -> None:
        cmd = [sys.executable, "-c", _LAUNCH, sys.executable, "-m", "journal", "dump", str(big_journal), "--json"]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        code, peak_kib = map(int, out.stdout.split())
        assert code == 0, out.stderr
        peaks.append(peak_kib)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    record_median("cli.dump_json", N)
    median = benchmark.stats.stats.median if benchmark.stats is not None else float("nan")
    benchmark.extra_info.update({"records": N, "peak_rss_kib": max(peaks), "records_per_s": N / median})
    _say(
        request,
        f"\njournal dump --json: {N} records in {median:.2f} s = {N / median:,.0f} records/s, "
        f"child peak RSS {max(peaks) / 1024:.0f} MiB",
    )


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


def test_floor_dump_by_hand(
    benchmark: Any, record_median: Any, big_journal: Path, request: pytest.FixtureRequest
) -> None:
    """The peer: read the log with a cursor, decode each body, json.dumps it (no checks, no envelope)."""

    def run() -> None:
        env = lmdb.open(str(big_journal), readonly=True, max_dbs=10, lib_version=0)
        try:
            db = env.open_db(b"log", create=False)
            with open(os.devnull, "w") as sink, env.begin() as txn:
                write, dumps, loads = sink.write, json.dumps, cbor2.loads
                for _key, value in txn.cursor(db=db):
                    write(dumps(loads(value[26:]), default=_default) + "\n")
        finally:
            env.close()

    t0 = time.perf_counter()
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    record_median("floor.dump_by_hand", N)
    median = benchmark.stats.stats.median if benchmark.stats is not None else time.perf_counter() - t0
    _say(request, f"\nby hand (floor): {N} records in {median:.2f} s = {N / median:,.0f} records/s")
