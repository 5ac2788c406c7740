"""Issue 12.7: venues forget orders; past the horizon recovery resolves from history or keeps the op pending.

Proven against the strict simulator (its archive knob answers -2026 as Binance does) through real ccxt.
"""

from __future__ import annotations

import time
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace

import pytest

from journal import Journal, StateStore
from journal.log import writer as writer_module
from recovery import StateManager
from recovery.normalize import FORGOTTEN_UNFILLED, NOT_ON_EXCHANGE
from recovery.sim.server import Simulator
from recovery.testing import make_exchange, pending_order
from recovery.venue import BINANCE_SPOT, PROFILES, VenueProfile, profile_for

pytestmark = pytest.mark.integration

FAST = {"reconcile_settings": {"settle_window_ms": 0}, "autosave_settings": {"interval_s": 3600}}
HOUR_NS = 3600 * 10**9


def test_profiles_are_data_per_venue() -> None:
    assert profile_for(make_exchange("http://127.0.0.1:9")) is BINANCE_SPOT
    assert {"binance", "okx", "bybit", "gate"} <= set(PROFILES)
    assert "90 days" in BINANCE_SPOT.horizon_text() and "2 h" in PROFILES["okx"].horizon_text()
    assert "500 most recent" in PROFILES["bybit"].horizon_text()


def test_an_archived_order_is_committed_as_canceled_unfilled_not_read_as_never_placed(tmp_path: Path) -> None:
    """Binance errors.md -2026 ORDER_ARCHIVED (ccxt raises InvalidOrder, not OrderNotFound)."""
    path = tmp_path / "j"
    with Simulator(prices={"BTC/USDT": "30000"}, settings={"archive_after_ms": 0}) as sim:
        with Journal(path) as j:
            StateStore(j)
            op = pending_order(j, "BTC/USDT", "0.01", "29000", sent_to=sim)  # sent, then the bot died
        sim.cancel(op.client_id, symbol="BTC/USDT")  # canceled with nothing filled, then archived at once
        time.sleep(0.01)
        m = StateManager(path, make_exchange(sim.url), **FAST)  # type: ignore[arg-type]
        report = m.start()
        try:
            assert report.resolved == 1 and report.aborted == 0 and report.clean, report
            order = m.state["orders"][op.client_id]
            assert (order["status"], order["filled"]) == ("canceled", D("0"))
        finally:
            m.close()


def _aged_intent(path: Path, monkeypatch: pytest.MonkeyPatch, sim: Simulator | None = None) -> str:
    with Journal(path) as j:
        StateStore(j)
        monkeypatch.setattr(writer_module, "time", SimpleNamespace(
            time_ns=lambda: time.time_ns() - 3 * HOUR_NS, monotonic=time.monotonic,
            perf_counter=time.perf_counter, perf_counter_ns=time.perf_counter_ns))  # fmt: skip
        op = pending_order(j, "BTC/USDT", "0.01", "29000", sent_to=sim)
        monkeypatch.undo()
        return op.client_id


VENUE_2H = VenueProfile(name="okx-like", unfilled_lookup_horizon_ms=2 * 3_600_000)


def test_past_the_horizon_with_no_possible_fill_the_intent_is_settled_as_unfilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j"
    client_id = _aged_intent(path, monkeypatch)  # 3 h old; the venue forgets unfilled orders after 2 h
    with Simulator(prices={"BTC/USDT": "30000"}) as sim:
        m = StateManager(path, make_exchange(sim.url), venue=VENUE_2H, **FAST)  # type: ignore[arg-type]
        report = m.start()
        try:
            assert report.aborted == 1 and report.clean
            assert m.state["orders"][client_id]["reason"] == FORGOTTEN_UNFILLED != NOT_ON_EXCHANGE
        finally:
            m.close()


def test_past_the_horizon_with_an_unexplained_trade_the_intent_stays_pending_naming_the_horizon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j"
    _aged_intent(path, monkeypatch)
    with Simulator(prices={"BTC/USDT": "30000"}, balances={"USDT": "100000", "BTC": "1"}) as sim:
        # a trade on the symbol that no known order explains: it could be our forgotten order's
        sim.core.place_order("BTC/USDT", "SELL", "MARKET", quantity=D("0.01"), client_order_id="someone-else")
        m = StateManager(path, make_exchange(sim.url), venue=VENUE_2H, **FAST)  # type: ignore[arg-type]
        report = m.start()
        try:
            assert report.aborted == 0 and len(report.unresolved) == 1 and m.safe_mode
            assert "okx-like forgets canceled or expired orders with no fill after 2 h" in report.unresolved[0]["why"]
        finally:
            m.close()
