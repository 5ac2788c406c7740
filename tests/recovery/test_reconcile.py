"""Startup reconciliation and the StateManager, with real ccxt against the simulator."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from journal import Journal
from journal.state.store import StateStore
from recovery import AsyncStateManager, SafeModeError, StateManager
from recovery.reconcile import Reconciler
from recovery.sim.server import Simulator
from recovery.testing import make_exchange, pending_order

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"]
PRICES = {"BTC/USDT": "30000", "ETH/USDT": "2000", "SOL/USDT": "100", "BNB/USDT": "300", "XRP/USDT": "50"}
SETTLED = {"settle_window_ms": 0}


@pytest.fixture
def sim():
    with Simulator(prices=PRICES, balances={"USDT": "10000000", "BTC": "100", "ETH": "1000"}) as s:
        yield s


def _limit_below(symbol: str) -> D:
    return (D(PRICES[symbol]) * D("0.9")).quantize(D("0.01") if D(PRICES[symbol]) >= 1 else D("0.0001"))


def _manager(path: Path, exchange: Any, **kw: Any) -> StateManager:
    kw.setdefault("reconcile_settings", SETTLED)
    kw.setdefault("autosave_settings", {"interval_s": 3600})
    return StateManager(path, exchange, **kw)


def test_100_pending_over_5_symbols_cost_O_symbols_requests(tmp_path: Path, sim: Simulator) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        StateStore(j)
        for i in range(100):
            symbol = SYMBOLS[i % 5]
            # the exchange got every other order before the "crash"
            pending_order(j, symbol, "1", str(_limit_below(symbol)), sent_to=sim if i % 2 == 0 else None)
    sim.log.clear()
    m = _manager(path, make_exchange(sim.url))
    report = m.start()
    try:
        assert report.resolved == 50 and report.aborted == 50 and not report.unresolved
        # 1 exchange time (the settle window is judged on the exchange's clock) + 1 open orders (all
        # symbols) + 5 order histories of 2 pages (the second proves the end) + 5 trade histories
        # (empty: 1 page) + 1 balance
        wire = [r for r in sim.requests() if r.path != "/api/v3/exchangeInfo"]  # ccxt loads markets once
        assert report.requests == 18 == len(wire)
        assert not m.safe_mode
        assert m.journal is not None and m.journal.pending_ids() == []
        orders = m.state["orders"]
        assert sum(1 for o in orders.values() if o["status"] == "open") == 50
        assert sum(1 for o in orders.values() if o["status"] == "rejected") == 50
        second = m.reconcile()
        assert (second.resolved, second.aborted, second.order_updates, second.fills_applied) == (0, 0, 0, 0)
        assert second.balance_corrections == 0
    finally:
        m.close()


def test_decisions_are_journaled_with_source_recovery(tmp_path: Path, sim: Simulator) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        StateStore(j)
        op = pending_order(j, "BTC/USDT", "0.01", "29000", sent_to=sim)
    m = _manager(path, make_exchange(sim.url))
    m.start()
    assert m.journal is not None
    timeline = m.journal.timeline(op.op_id)
    assert [(r.kind, r.source) for r in timeline] == [("intent", "bot"), ("commit", "recovery")]
    assert timeline[-1].data["id"] and timeline[-1].data["status"] == "open"
    reports = list(m.journal.records(types=["reconcile_report"]))
    assert reports and reports[-1].source == "recovery" and reports[-1].data["resolved"] == 1
    m.close()


def test_fills_and_cancels_while_down_are_journaled(tmp_path: Path, sim: Simulator) -> None:
    path = tmp_path / "j"
    ex = make_exchange(sim.url)
    m = _manager(path, ex)
    m.start()
    a = m.place_order("BTC/USDT", "limit", "buy", "0.02", "29000")
    b = m.place_order("ETH/USDT", "limit", "buy", "1", "1900")
    m.close()
    sim.fill(a["client_id"], "0.005")
    sim.fill(a["client_id"], "0.005")
    sim.cancel(b["client_id"])
    m = _manager(path, ex)
    report = m.start()
    try:
        assert report.fills_applied == 2 and report.order_updates == 2
        assert m.state["orders"][a["client_id"]]["filled"] == D("0.010")
        assert m.state["orders"][b["client_id"]]["status"] == "canceled"
        assert m.state["positions"]["BTC/USDT"]["amount"] == D("0.010")
        assert m.store is not None and m.store.validate() == []
        for asset, bal in sim.balances().items():
            if bal.free + bal.locked:
                assert m.state["balances"][asset]["total"] == bal.free + bal.locked
    finally:
        m.close()


def test_exchange_down_at_start_means_safe_mode_until_it_returns(tmp_path: Path, sim: Simulator) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        StateStore(j)
        op = pending_order(j, "BTC/USDT", "0.01", "29000")
    sim.faults.down()
    m = _manager(path, make_exchange(sim.url, timeout_ms=500))
    report = m.start()
    try:
        assert [u["op"] for u in report.unresolved] == [op.op_id]
        assert report.errors and m.safe_mode
        assert m.journal is not None and m.journal.pending_ids() == [op.op_id]  # never read as "not found"
        with pytest.raises(SafeModeError, match="1 operation\\(s\\) unresolved"):
            m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000")
        assert m.health()["safe_mode"] is True
        sim.faults.up()
        report = m.reconcile()
        assert report.aborted == 1 and not report.unresolved and not m.safe_mode
        assert m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000")["status"] == "open"
    finally:
        m.close()


def test_offline_start_keeps_everything_pending(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        StateStore(j)
        pending_order(j, "BTC/USDT", "1", "1")
    m = _manager(path, None)
    report = m.start()
    assert len(report.unresolved) == 1 and m.safe_mode
    assert m.open_orders() and m.open_orders()[0]["status"] == "pending"
    m.close()


def test_unknown_orders_adopted_or_reported(tmp_path: Path, sim: Simulator) -> None:
    path = tmp_path / "j"
    m = _manager(path, make_exchange(sim.url))
    m.start()
    assert m.journal is not None
    ours = m.journal.client_id(999)  # an id of this journal the state never saw
    m.close()
    sim.core.place_order("BTC/USDT", "BUY", "LIMIT", quantity=D("0.01"), price=D("29000"), time_in_force="GTC",
                         client_order_id=ours)  # fmt: skip
    sim.core.place_order("ETH/USDT", "BUY", "LIMIT", quantity=D("0.1"), price=D("1900"), time_in_force="GTC",
                         client_order_id="web_manual_1")  # fmt: skip
    m = _manager(path, make_exchange(sim.url))
    report = m.start()
    try:
        assert report.adopted == 1 and [e["client_id"] for e in report.external] == ["web_manual_1"]
        assert m.state["orders"][ours]["status"] == "open"
        assert "web_manual_1" not in m.state["orders"]
    finally:
        m.close()


def _minute_phase_clock(phase_ms: int) -> Any:
    """An exchange clock ahead of ours so that it reads ``phase_ms`` into a minute now (Binance's weight
    429 says Retry-After: the seconds to the minute's end). Ahead by at most 60 s: sign with recvWindow 60000."""
    ahead = (phase_ms - time.time_ns() // 1_000_000 % 60_000) % 60_000
    return lambda: time.time_ns() // 1_000_000 + ahead


def test_rate_limits_during_recovery_are_waited_out_when_the_venue_says_so_briefly(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Simulator(prices=PRICES, clock_ms=_minute_phase_clock(57_000)) as sim:
        with Journal(path) as j:
            StateStore(j)
            pending_order(j, "BTC/USDT", "1", "1000")
        sim.faults.arm("GET", "/api/v3/openOrders", "http_429", times=1)  # Retry-After 2 or 3 (s)
        with Journal(path) as j:
            s = StateStore(j)
            ex = make_exchange(sim.url, options={"recvWindow": 60_000})
            rec = Reconciler(j, s, ex, settle_window_ms=0, rate_limit_backoff_s=0)
            report = rec.run()
        assert report.rate_limited == 1 and report.aborted == 1 and not report.unresolved and report.complete
        assert report.rate_limited_until_ms is None


def test_a_rate_limit_longer_than_recovery_waits_stops_it_until_then(tmp_path: Path) -> None:
    """Binance bans an IP that goes on after a 429: reconciliation stops at once and says until when."""
    path = tmp_path / "j"
    with Simulator(prices=PRICES, clock_ms=_minute_phase_clock(20_000)) as sim:
        with Journal(path) as j:
            StateStore(j)
            op = pending_order(j, "BTC/USDT", "1", "1000")
        sim.faults.arm("GET", "/api/v3/openOrders", "http_429", times=1)  # Retry-After about 40 s
        with Journal(path) as j:
            s = StateStore(j)
            ex = make_exchange(sim.url, options={"recvWindow": 60_000})
            report = Reconciler(j, s, ex, settle_window_ms=0, rate_limit_backoff_s=0).run()
            assert j.pending_ids() == [op.op_id]  # nothing decided on a partial picture
        after = [r.path for r in sim.requests()]
        assert after[-1] == "/api/v3/openOrders" and report.rate_limited == 1, after  # nothing sent after the 429
        assert not report.complete and report.rate_limited_until_ms is not None
        assert report.rate_limited_until_ms > time.time() * 1000 + 10_000
        assert all("rate limited until" in e for e in report.errors), report.errors


def test_async_manager_recovers_the_same_way(tmp_path: Path, sim: Simulator) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        StateStore(j)
        op = pending_order(j, "ETH/USDT", "0.5", "1900", sent_to=sim)

    async def scenario() -> None:
        ex = make_exchange(sim.url, async_=True)
        m = AsyncStateManager(path, ex, reconcile_settings=SETTLED, autosave_settings={"interval_s": 3600})
        try:
            report = await m.start()
            assert report.resolved == 1 and not report.unresolved
            order = await m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000")
            assert order["status"] == "open"
            assert m.state["orders"][op.client_id]["status"] == "open"
        finally:
            await m.close()
            await ex.close()

    asyncio.run(scenario())
