"""Regressions found in review (recovery): each test reproduces one bug and asserts the fixed behaviour."""

from __future__ import annotations

import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import ccxt
import pytest

from journal import Journal
from journal.state.store import StateStore
from recovery import StateManager
from recovery.reconcile import Reconciler

SYM = "BTC/USDT"


def _order(cid: str, ts: int, status: str = "open", oid: str | None = None) -> dict[str, Any]:
    return {"id": oid or cid, "clientOrderId": cid, "symbol": SYM, "side": "buy", "type": "limit",
            "status": status, "price": 1, "amount": 1, "filled": 0, "remaining": 1, "timestamp": ts}  # fmt: skip


class FakeExchange:
    """A venue with the given orders; allOrders capped at `cap` rows per page (oldest first)."""

    options: dict[str, Any] = {}

    def __init__(self, orders=(), cap: int = 1000, slow_balance_s: float = 0.0, open_orders=None) -> None:
        self.orders = list(orders)
        self.cap = cap
        self.slow_balance_s = slow_balance_s
        self.open_orders = open_orders
        self.calls: list[str] = []

    # ccxt's local helpers, as the order helpers call them before journaling an intent
    def market(self, symbol):
        return {"symbol": symbol, "limits": {}}

    def amount_to_precision(self, symbol, amount):
        return str(amount)

    def price_to_precision(self, symbol, price):
        return str(price)

    def fetch_open_orders(self, *a, **k):
        self.calls.append("fetch_open_orders")
        if self.open_orders is not None:
            return list(self.open_orders)
        return [o for o in self.orders if o["status"] == "open"]

    def fetch_order(self, id, symbol, params=None):
        self.calls.append("fetch_order")
        cid = (params or {}).get("clientOrderId")
        for o in self.orders:
            if o["clientOrderId"] == cid:
                return o
        raise ccxt.OrderNotFound("-2013 Order does not exist.")

    def fetch_orders(self, symbol, since=None, limit=None, params=None):
        self.calls.append("fetch_orders")
        rows = sorted((o for o in self.orders if o["timestamp"] >= (since or 0)), key=lambda o: o["timestamp"])
        return rows[: min(limit or 500, self.cap)]

    def fetch_my_trades(self, symbol, since=None, limit=None, params=None):
        self.calls.append("fetch_my_trades")
        return []

    def fetch_balance(self):
        self.calls.append("fetch_balance")
        time.sleep(self.slow_balance_s)
        return {"total": {}, "free": {}, "used": {}}


def _place(j: Journal, n: int = 1) -> list:
    return [j.begin("place_order", {"symbol": SYM, "side": "buy", "type": "limit", "amount": D(1), "price": D(1),
                                    "params": {}}) for _ in range(n)]  # fmt: skip


def test_venue_page_cap_makes_history_look_complete_and_aborts_an_order_that_exists(tmp_path: Path) -> None:
    """reconcile.py:162 `len(rows) < limit` => complete, though the venue capped the page (100 < 500)."""
    with Journal(tmp_path / "j") as j:
        store = StateStore(j)
        ops = _place(j, 3)  # 3 pending > lookup_threshold 2: one fetch_orders history
        old_ts = ops[0].journal.get(ops[0].op_id).ts_ns // 1_000_000
        # 150 other (filled) orders of ours right before, then our 3 orders, which DID reach the venue
        filler = [_order(f"x{i:04d}", old_ts - 30_000 + i, status="closed") for i in range(150)]
        mine = [_order(op.client_id, old_ts + 1, status="open") for op in ops]
        ex = FakeExchange(filler + mine, cap=100, open_orders=[])  # open-orders call failed-over to empty page
        # make the open-orders answer not contain them (e.g. they were filled meanwhile -> status closed)
        for o in mine:
            o["status"] = "closed"
        report = Reconciler(j, store, ex, settle_window_ms=0).run()
        states = {op.client_id: store.state["orders"][op.client_id]["status"] for op in ops}
        assert report.aborted == 0, f"orders that exist on the venue were aborted: {states}, calls={ex.calls}"


def test_settle_window_checked_at_decision_time_not_observation_time(tmp_path: Path) -> None:
    """reconcile.py:246 now_ns=time.time_ns() at decide time; the lookup that said 'not found' was earlier."""
    with Journal(tmp_path / "j") as j:
        store = StateStore(j)
        (op,) = _place(j, 1)
        ex = FakeExchange([], slow_balance_s=1.5)  # lookup says OrderNotFound at t~0, inside the 1 s window
        report = Reconciler(j, store, ex, settle_window_ms=1000).run()
        # at the time the exchange was asked, the order could still have been executed: must be unresolved
        assert report.aborted == 0 and len(report.unresolved) == 1, report


def test_in_doubt_order_at_runtime_does_not_enter_safe_mode(tmp_path: Path) -> None:
    """manager.py: place_order raising OrderInDoubtError leaves safe_mode False; a 2nd order is sent."""

    class Timeouts(FakeExchange):
        markets = {SYM: {}}
        sent = 0

        def load_markets(self, *a, **k):
            return self.markets

        def create_order(self, *a, **k):
            Timeouts.sent += 1
            raise ccxt.RequestTimeout("timed out")

        def fetch_order(self, *a, **k):
            raise ccxt.NetworkError("down")

    ex = Timeouts([])
    ex.options = {"recvWindow": 0}
    m = StateManager(tmp_path / "j", ex, autosave_settings={"interval_s": 3600},
                     order_settings={"settle_window_ms": 0, "lookup_retries": 0, "backoff_s": 0})  # fmt: skip
    m.start()
    try:
        with pytest.raises(Exception) as info:
            m.place_order(SYM, "limit", "buy", "1", "1")
        assert "Doubt" in type(info.value).__name__, info.value
        assert m.journal.pending_ids(), "the in-doubt op is pending"
        assert m.safe_mode, "an operation is unresolved but the manager is not in safe mode"
    finally:
        m.close()


def test_external_adopt_without_client_id_is_not_idempotent(tmp_path: Path) -> None:
    """reconcile.py:271 + reducers.py:231: order_update without client_id changes nothing, so every run re-adopts."""
    with Journal(tmp_path / "j") as j:
        store = StateStore(j)
        ext = dict(_order("x", 1), clientOrderId=None)
        ex = FakeExchange([ext])
        r = Reconciler(j, store, ex, settle_window_ms=0, external_policy="adopt")
        r.run()
        before = j.last_seq
        r.run()
        written = [rec.type for rec in j.records(before + 1) if rec.type != "reconcile_report"]
        assert written == [], f"second run wrote {written}"


def test_wrongly_aborted_order_is_never_recovered(tmp_path: Path) -> None:
    """matching.py:214: an open order whose client id the state knows (as rejected) is skipped forever."""
    with Journal(tmp_path / "j") as j:
        store = StateStore(j)
        (op,) = _place(j, 1)
        Reconciler(j, store, FakeExchange([]), settle_window_ms=0).run()  # absent -> aborted
        ts = j.get(op.op_id).ts_ns // 1_000_000
        ex = FakeExchange([_order(op.client_id, ts + 5)])  # ... but it landed late: it is open on the venue
        Reconciler(j, store, ex, settle_window_ms=0).run()
        assert store.state["orders"][op.client_id]["status"] == "open", store.state["orders"][op.client_id]
