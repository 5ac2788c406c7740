"""Recovery of 100 pending operations over 5 symbols, through real ccxt on 127.0.0.1.

Run: ``pytest bench/bench_reconcile.py --benchmark-only``. The request count is
asserted in tests/test_reconcile.py; this measures the duration, against the
peer a bot author would write: one ``fetch_order`` per pending operation.
"""

from __future__ import annotations

import shutil
import tempfile
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import ccxt

from bench.conftest import ratio
from journal import Journal
from journal.state.store import StateStore
from recovery.reconcile import Reconciler
from recovery.sim.server import Simulator
from recovery.testing import make_exchange, pending_order

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"]
PRICES = {"BTC/USDT": "30000", "ETH/USDT": "2000", "SOL/USDT": "100", "BNB/USDT": "300", "XRP/USDT": "50"}

ratio("reconcile 100 pending / 5 symbols vs per-order lookups", "reconcile.100x5", "peer.per_order_lookup.100", "<= 1")


def _build(root: Path, sim: Simulator) -> Path:
    path = root / "template"
    with Journal(path) as j:
        StateStore(j)
        for i in range(100):
            symbol = SYMBOLS[i % 5]
            price = str(D(PRICES[symbol]) * D("0.9"))
            pending_order(j, symbol, "1", price, sent_to=sim if i % 2 == 0 else None)
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
