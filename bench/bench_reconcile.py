"""Recovery of 100 pending operations over 5 symbols, through real ccxt on 127.0.0.1.

Run: ``pytest bench/bench_reconcile.py --benchmark-only -s``. The request count is
asserted in tests/test_reconcile.py; this measures the duration, against the
peer a bot author would write: one ``fetch_order`` per pending operation.

"Restart to trading" measures what a bot waits for after a restart: open the
journal, load the state, reconcile 100 pending operations over 5 symbols, place
the next order (StateManager.start + place_order) -- for a journal with a long
history (TRADEJOURNAL_BENCH_HISTORY orders seen, default 100,000, all settled)
against one with none, interleaved.

A shortcut, said here: both set ``settle_window_ms`` to 0. The pending intents
are written a moment before each run, so inside a real window (recvWindow + 1 s)
they could not be decided yet; a bot restarting after a crash meets intents older
than their window, for which the window changes nothing in the requests made or
their cost. The journal copies are fsynced before each timed restart (a copy
left as dirty page cache would make the first synced commit write it all).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import ccxt
import pytest

from bench.conftest import MEDIANS, build_history, ratio
from journal import Journal
from journal.state.store import StateStore
from recovery import StateManager
from recovery.exchanges import make_exchange
from recovery.reconcile import Reconciler
from recovery.sim.server import Simulator
from recovery.testing import pending_order

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"]
PRICES = {"BTC/USDT": "30000", "ETH/USDT": "2000", "SOL/USDT": "100", "BNB/USDT": "300", "XRP/USDT": "50"}

HISTORY = int(os.environ.get("TRADEJOURNAL_BENCH_HISTORY", "100000"))

ratio("reconcile 100 pending / 5 symbols vs per-order lookups", "reconcile.100x5", "peer.per_order_lookup.100", "<= 1")
ratio(f"restart to trading, {HISTORY}-order history / empty", "restart.history", "restart.empty", "<= 1.5")


def _add_pending(path: Path, sim: Simulator) -> None:
    """100 place_order intents left pending over 5 symbols; the simulator holds every other one."""
    with Journal(path) as j:
        StateStore(j)
        for i in range(100):
            symbol = SYMBOLS[i % 5]
            price = str(D(PRICES[symbol]) * D("0.9"))
            pending_order(j, symbol, "1", price, sent_to=sim if i % 2 == 0 else None)


def _build(root: Path, sim: Simulator) -> Path:
    path = root / "template"
    _add_pending(path, sim)
    return path


def test_reconcile_100_pending_over_5_symbols(benchmark: Any, record_median: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp, Simulator(prices=PRICES, balances={"USDT": "100000000"}) as sim:
        root = Path(tmp)
        template = _build(root, sim)
        ex = make_exchange(sim.url)
        ex.load_markets()
        counter = [0]

        def setup() -> tuple[tuple[Path], dict[str, Any]]:
            counter[0] += 1
            dest = root / f"run{counter[0]}"
            shutil.copytree(template, dest)
            return (dest,), {}

        def run(path: Path) -> None:
            with Journal(path) as j:
                report = Reconciler(j, StateStore(j), ex, settle_window_ms=0).run()
                assert report.resolved == 50 and report.aborted == 50

        benchmark.pedantic(run, setup=setup, rounds=8, iterations=1, warmup_rounds=1)
        record_median("reconcile.100x5")


def test_peer_one_fetch_order_per_pending(benchmark: Any, record_median: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp, Simulator(prices=PRICES, balances={"USDT": "100000000"}) as sim:
        template = _build(Path(tmp), sim)
        with Journal(template, readonly=True) as j:
            pending = [(r.client_id, r.data["symbol"]) for r in j.pending()]
        ex = make_exchange(sim.url)
        ex.load_markets()

        def run() -> int:
            found = 0
            for cid, symbol in pending:
                try:
                    ex.fetch_order(None, symbol, {"clientOrderId": cid})
                    found += 1
                except ccxt.OrderNotFound:
                    pass
            return found

        assert benchmark.pedantic(run, rounds=8, iterations=1, warmup_rounds=1) == 50
        record_median("peer.per_order_lookup.100")


def _sync_tree(path: Path) -> None:
    """fsync every file under ``path``: copytree leaves them dirty, and the first synced commit of the
    restart would then pay for writing the whole copied data file (100+ MB with the long history)."""
    for f in path.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _say(request: pytest.FixtureRequest, text: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(text)


def test_restart_to_trading_with_a_long_history(benchmark: Any, request: pytest.FixtureRequest) -> None:
    """StateManager.start (open, load, reconcile 100 pending over 5 symbols) + place_order, history vs none.

    Each round copies both templates, then times the two restarts one after the
    other (the order alternating); the order placed is canceled afterwards,
    outside the timing, so every round meets the same exchange.
    """
    with tempfile.TemporaryDirectory(dir=os.environ.get("TRADEJOURNAL_BENCH_DIR")) as tmp, \
            Simulator(prices=PRICES, balances={"USDT": "100000000"}) as sim_h, \
            Simulator(prices=PRICES, balances={"USDT": "100000000"}) as sim_e:  # fmt: skip
        root = Path(tmp)
        t0 = time.perf_counter()
        built = build_history(root / "history", HISTORY, 0)
        built_s = time.perf_counter() - t0
        _add_pending(root / "history", sim_h)
        _add_pending(root / "empty", sim_e)
        exchanges = {"history": make_exchange(sim_h.url), "empty": make_exchange(sim_e.url)}
        for ex in exchanges.values():
            ex.load_markets()
        times: dict[str, list[float]] = {"history": [], "empty": []}
        counter = [0]

        def restart(name: str) -> None:
            counter[0] += 1
            dest = root / f"{name}-{counter[0]}"
            shutil.copytree(root / name, dest)
            _sync_tree(dest)  # a restarting bot finds its journal on disk, not as dirty page cache a commit must flush
            ex = exchanges[name]
            t0 = time.perf_counter()
            manager = StateManager(dest, ex, reconcile_settings={"settle_window_ms": 0})
            report = manager.start()
            order = manager.place_order("BTC/USDT", "limit", "buy", "0.001", "20000")
            times[name].append(time.perf_counter() - t0)
            assert report.resolved == 50 and report.aborted == 50 and not report.unresolved
            ex.cancel_order(order["id"], "BTC/USDT")
            manager.close()
            shutil.rmtree(dest)

        def run() -> None:
            for r in range(7):
                for name in ("history", "empty") if r % 2 else ("empty", "history"):
                    restart(name)

        benchmark.pedantic(run, rounds=1, iterations=1)
    MEDIANS["restart.history"] = statistics.median(times["history"])
    MEDIANS["restart.empty"] = statistics.median(times["empty"])
    _say(
        request,
        f"\nrestart to trading: {HISTORY} orders seen ({built['records']} records, built in {built_s:.0f} s, "
        f"archived {built['status']['archived']}): {MEDIANS['restart.history'] * 1e3:.0f} ms; "
        f"empty history: {MEDIANS['restart.empty'] * 1e3:.0f} ms",
    )
