"""The fault campaign, short: every family runs and finds no invariant violation but known library bugs.

The long version: ``python -m tests.system.campaign --size 30`` (see README).
Size here: TRADEJOURNAL_CAMPAIGN_SIZE scales every family (default 1: the
families below run their default-suite sizes).

A violation that a known library bug explains (tests/system/campaign.py
``KNOWN_BUGS``) does not fail a family here; the bug's minimal reproduction
below does, as ``xfail(strict=True)``: once the library is fixed it passes,
strict xfail turns that into a failure, and the integrator removes the mark
and the ``KNOWN_BUGS`` entry together.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from journal import Journal, StateStore
from recovery.sim.server import Simulator
from recovery.testing import make_exchange, pending_order
from tests.helpers.invariants import exchange_failures, manager_for, recovered, safe_mode_failures, wait_until
from tests.system import campaign

SCALE = int(os.environ.get("TRADEJOURNAL_CAMPAIGN_SIZE", "1"))

pytestmark = [pytest.mark.crash, pytest.mark.integration]

#: family -> runs in the default suite (times TRADEJOURNAL_CAMPAIGN_SIZE)
SIZES = {
    "crash": 3,
    "settle": 1,
    "recvwindow": 1,
    "exchange": 2,
    "startup": 1,
    "lag": 1,
    "applied": 1,
    "restore": 1,
    "storage": 15,
    "powercut": 1,
    "load": 20,
}


@pytest.mark.parametrize("family", list(campaign.FAMILIES))
def test_family_has_no_violation_but_known_library_bugs(family: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fam = campaign.FAMILIES[family](SIZES[family] * SCALE, 11, Path(tmp))
    if "skipped" in fam.notes:
        pytest.skip(f"{family}: {fam.notes['skipped']}")
    assert fam.runs > 0
    unexplained = [v for v in fam.violations if campaign.known_bug(family, v) is None]
    assert unexplained == [], "\n".join(unexplained[:10])
    if family != "load":
        assert fam.faults > 0


def test_every_family_is_in_the_default_suite() -> None:
    assert set(SIZES) == set(campaign.FAMILIES)


# -- the checks themselves can fail ------------------------------------------------


def _result(orders: dict[str, Any], **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"orders": orders, "positions": {}, "balances": {}, "pending": [], "verify": "ok"}
    out.update(kw)
    return out


def test_the_exchange_check_keys_orders_by_symbol_and_id() -> None:
    """Two symbols' orders share id 1: knowing the ETH one does not make the BTC one known."""
    with Simulator(prices={"BTC/USDT": "30000", "ETH/USDT": "2000"}, settings={"order_id_offset_per_symbol": 0}) as sim:
        btc, _ = sim.core.place_order("BTC/USDT", "BUY", "LIMIT", quantity=Decimal("0.01"), price=Decimal("29000"),
                                   time_in_force="GTC", client_order_id="someoneElse1")  # fmt: skip
        eth, _ = sim.core.place_order("ETH/USDT", "BUY", "LIMIT", quantity=Decimal("0.1"), price=Decimal("1900"),
                                   time_in_force="GTC", client_order_id="mine1")  # fmt: skip
        assert btc.order_id == eth.order_id == 1
        known = {"mine1": {"status": "open", "filled": "0", "id": "1", "symbol": "ETH/USDT"}}
        balances = {a: str(b.free + b.locked) for a, b in sim.balances().items()}
        failures = exchange_failures(sim, _result(known, balances=balances))
        assert failures == ["exchange order BTC/USDT 1 (someoneElse1, NEW) unknown to the state"]
        both = dict(known, someoneElse1={"status": "open", "filled": "0", "id": "1", "symbol": "BTC/USDT"})
        assert exchange_failures(sim, _result(both, balances=balances)) == []


def test_the_safe_mode_check_fails_on_each_disagreement() -> None:
    report = {"complete": True, "unresolved": [], "errors": []}
    calm = {"report": report, "safe_mode": False, "safe_mode_reasons": [], "health_safe_mode": False,
            "health_reasons": [], "safe_mode_events": [], "pending": []}  # fmt: skip
    assert safe_mode_failures(calm, exchange_up=True, window_ms=0) == []
    stale = dict(calm, safe_mode_events=[{"active": True, "reasons": ["x"]}])
    assert "last safe_mode event says active=True" in safe_mode_failures(stale, exchange_up=True, window_ms=0)[0]
    unsafe = dict(calm, safe_mode=True, safe_mode_reasons=["why"], health_safe_mode=True, health_reasons=["why"])
    assert any("safe mode is True" in f for f in safe_mode_failures(unsafe, exchange_up=True, window_ms=0))
    incomplete = dict(calm, report=dict(report, complete=False, errors=["fetch_balance: NetworkError"]))
    assert any("incomplete although the exchange was up" in f
               for f in safe_mode_failures(incomplete, exchange_up=True, window_ms=0))  # fmt: skip
    old = dict(unsafe, report=dict(report, unresolved=[{"op": 3, "why": "inside the settle window"}]),
               pending=[{"op": 3, "ts_ms": 0}], safe_mode_events=[{"active": True, "reasons": ["why"]}])  # fmt: skip
    assert safe_mode_failures(old, exchange_up=True, window_ms=3000, exchange_now_ms=1000) == []
    aged = safe_mode_failures(old, exchange_up=True, window_ms=3000, exchange_now_ms=9000)
    assert aged == ["op 3 said inside a settle window of 3000 ms at age 9000 ms"]


def test_known_bugs_are_matched_by_family(monkeypatch: pytest.MonkeyPatch) -> None:
    stale = "run 2 (random): the journal's last safe_mode event says active=True, the manager is in safe mode=False"
    lost = "run 0 (x): exchange order BTC/USDT 4 (tjAbCdEfGh0abcdefP, FILLED) unknown to the state"
    # every bug the campaign found is fixed: each of these is a violation again, in every family
    for family in ("crash", "restore"):
        assert campaign.known_bug(family, stale) is None and campaign.known_bug(family, lost) is None
    for _, _, test in campaign.KNOWN_BUGS:
        name = test.split("::")[1]
        assert name in globals(), f"KNOWN_BUGS names {test}, which does not exist"
    # the mechanism, for the next one found: an entry excuses its pattern in its families only
    entry = (frozenset({"restore"}), r"\(tj\w+, FILLED\) unknown to the state", _TESTS_SELF + "x")
    monkeypatch.setattr(campaign, "KNOWN_BUGS", [entry])
    assert campaign.known_bug("restore", lost) == _TESTS_SELF + "x"
    assert campaign.known_bug("crash", lost) is None and campaign.known_bug("restore", stale) is None


_TESTS_SELF = "tests/system/test_campaign.py::"


# -- library bugs the campaign found: minimal reproductions ----------------------------
#
# Each is xfail(strict=True) until the library is fixed (the integrator owns recovery/ and journal/).

_QUIET = {"autosave_s": 3600}


def test_regression_a_start_out_of_safe_mode_journals_that_safe_mode_ended(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    with Simulator(prices={"BTC/USDT": "30000"}) as sim:
        sim.faults.down()
        m = manager_for(str(path), sim.url, _QUIET)
        m.start()
        assert m.safe_mode
        m.close()  # a crash leaves the same journal
        sim.faults.up()
        m = manager_for(str(path), sim.url, _QUIET)
        try:
            assert m.start().clean and not m.safe_mode
            assert m.journal is not None
            events = [r.data for r in m.journal.records(types=["safe_mode"])]
            assert events[-1]["active"] is False, events
        finally:
            m.close()


def test_regression_safe_mode_for_an_operation_inside_its_settle_window_ends_with_the_window(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    cfg = {"settle": "exchange", "recv_window_ms": 500, **_QUIET}  # a settle window of 1.5 s
    with Simulator(prices={"BTC/USDT": "30000"}) as sim:
        with Journal(path) as j:
            StateStore(j)
            pending_order(j, "BTC/USDT", "0.01", "29000")  # the bot died before sending it
        m = manager_for(str(path), sim.url, cfg)
        try:
            report = m.start()
            assert [u["why"] for u in report.unresolved] == ["inside the settle window"] and m.safe_mode
            assert wait_until(lambda: not m.safe_mode, timeout_s=1.5 + 0.5 + 1.0), m.safe_mode_reasons()
        finally:
            m.close()


def _restore(path: Path, backup: Path) -> None:
    shutil.rmtree(path)
    shutil.copytree(backup, path)


def test_bug_a_restored_backup_learns_the_orders_the_lost_copy_closed(tmp_path: Path) -> None:
    path, backup = tmp_path / "bot.journal", tmp_path / "backup"
    with Simulator(prices={"BTC/USDT": "30000"}, balances={"USDT": "1000000", "BTC": "10"}) as sim:
        m = manager_for(str(path), sim.url, _QUIET)
        m.start()
        assert m.journal is not None
        m.journal.backup(backup)
        filled = m.place_order("BTC/USDT", "market", "buy", "0.01")
        canceled = m.place_order("BTC/USDT", "limit", "buy", "0.01", "28000")
        m.cancel_order(canceled["client_id"], "BTC/USDT")
        m.close()
        _restore(path, backup)
        m = manager_for(str(path), sim.url, _QUIET)
        try:
            report = m.start()
            failures = exchange_failures(sim, recovered(m, report))
            assert m.state["orders"].get(filled["client_id"], {}).get("status") == "closed", failures
            assert m.state["orders"].get(canceled["client_id"], {}).get("status") == "canceled", failures
            assert failures == []
        finally:
            m.close()


def test_bug_an_adopted_order_gets_its_fills_in_the_reconciliation_that_adopts_it(tmp_path: Path) -> None:
    path, backup = tmp_path / "bot.journal", tmp_path / "backup"
    with Simulator(prices={"BTC/USDT": "30000"}, balances={"USDT": "1000000", "BTC": "10"}) as sim:
        m = manager_for(str(path), sim.url, _QUIET)
        m.start()
        assert m.journal is not None
        m.journal.backup(backup)
        order = m.place_order("BTC/USDT", "limit", "buy", "0.02", "29000")
        m.close()
        sim.fill(int(order["id"]), "0.01", symbol="BTCUSDT")
        _restore(path, backup)
        m = manager_for(str(path), sim.url, _QUIET)
        try:
            report = m.start()
            assert report.adopted == 1
            assert m.state["positions"].get("BTC/USDT", {}).get("amount") == Decimal("0.01"), m.state["positions"]
            assert m.reconcile().fills_applied == 0
        finally:
            m.close()


def test_regression_the_demo_check_keys_exchange_orders_by_id_alone() -> None:
    from recovery.demo import check_against_exchange

    with Simulator(prices={"BTC/USDT": "30000", "ETH/USDT": "2000"}, settings={"order_id_offset_per_symbol": 0}) as sim:
        sim.core.place_order("BTC/USDT", "BUY", "LIMIT", quantity=Decimal("0.01"), price=Decimal("29000"),
                             time_in_force="GTC", client_order_id="someoneElse1")  # fmt: skip
        sim.core.place_order("ETH/USDT", "BUY", "LIMIT", quantity=Decimal("0.1"), price=Decimal("1900"),
                             time_in_force="GTC", client_order_id="mine1")  # fmt: skip
        result = {
            "orders": {"mine1": {"status": "open", "filled": "0", "id": "1", "symbol": "ETH/USDT"}},
            "positions": {},
            "balances": {a: str(b.free + b.locked) for a, b in sim.balances().items()},
            "pending": [],
            "second": dict.fromkeys(
                ("resolved", "aborted", "adopted", "order_updates", "fills_applied", "balance_corrections"), 0
            )
            | {"unresolved": []},  # fmt: skip
        }
        failures = check_against_exchange(sim, result)
        assert any("someoneElse1" in f for f in failures), failures


def test_bug_the_settle_window_counts_from_the_signed_timestamp_not_the_local_intent_time(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    ahead_ms = 30_000
    with Simulator(prices={"BTC/USDT": "30000"}, clock_ms=lambda: time.time_ns() // 1_000_000 + ahead_ms) as sim:
        with Journal(path) as j:
            StateStore(j)
            op = pending_order(j, "BTC/USDT", "0.01", "29000")  # the bot died after the intent, maybe after sending
        exchange = make_exchange(sim.url, options={"adjustForTimeDifference": True})  # what ccxt users turn on
        from recovery import StateManager

        m = StateManager(path, exchange, autosave_settings={"interval_s": 3600})
        try:
            report = m.start()
            # the dead bot's request carried timestamp intent + 30 s: Binance executes it for 10 s more
            assert report.aborted == 0, f"op {op.op_id} aborted while its request could still execute: {report}"
            assert [u["why"] for u in report.unresolved] == ["inside the settle window"]
        finally:
            m.close()


def test_bug_reconciliation_backs_off_as_long_as_a_429_says(tmp_path: Path) -> None:
    phase = time.time_ns() // 1_000_000 % 60_000
    ahead = 61_000 - phase if phase > 40_000 else 0  # at most 21 s: the whole test runs inside one minute

    def clock() -> int:
        return time.time_ns() // 1_000_000 + ahead

    with Simulator(prices={"BTC/USDT": "30000"}, settings={"weight_limit_1m": 100}, clock_ms=clock) as sim:
        m = manager_for(str(tmp_path / "bot.journal"), sim.url, {**_QUIET, "recv_window_ms": 60_000, "rate_limit_backoff_s": 0.1, "retry_backoff_s": 1.0,
                                                                 "retry_max_s": 60})  # fmt: skip
        try:
            report = m.start()  # exchangeInfo (20) and openOrders (80) fit the minute; the account query does not
            time.sleep(1.5)  # the manager's own retry, too, must wait for the minute to end
            answers = [(r.path, r.status) for r in sim.requests()]
            assert not [a for a in answers if a[1] == 418], f"the exchange banned the IP: {answers}"
            # it stopped at the first 429 and said so: incomplete, safe mode, until when
            assert [a for a in answers if a[1] == 429] == [("/api/v3/account", 429)], answers
            assert not report.complete and report.rate_limited_until_ms is not None
            assert m.safe_mode and any("rate limited until" in r for r in m.safe_mode_reasons()), m.safe_mode_reasons()
        finally:
            m.close()


def test_bug_an_order_hidden_by_a_lag_longer_than_the_settle_window_is_recovered_once_visible(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    cfg = {"settle": "exchange", "recv_window_ms": 500, **_QUIET}  # a settle window of 1.5 s
    settings = {"lag_ms": 4000, "lagging_queries": ["order", "openOrders", "allOrders", "myTrades"]}
    with Simulator(prices={"BTC/USDT": "30000"}, balances={"USDT": "1000000", "BTC": "10"}, settings=settings) as sim:
        with Journal(path) as j:
            StateStore(j)
            op = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "type": "market",
                                         "amount": Decimal("0.01"), "price": None})  # fmt: skip
            sim.core.place_order("BTC/USDT", "BUY", "MARKET", quantity=Decimal("0.01"), client_order_id=op.client_id)
        time.sleep(1.6)  # the bot died after sending; it restarts once the window has passed, inside the lag
        m = manager_for(str(path), sim.url, cfg)
        try:
            m.start()
            time.sleep(2.5)  # the database catches up
            m.reconcile()
            assert m.state["orders"][op.client_id]["status"] == "closed", m.state["orders"][op.client_id]
            assert m.state["positions"].get("BTC/USDT", {}).get("amount") == Decimal("0.01")
            again = m.reconcile()  # corrected once: nothing more to apply
            assert (again.order_updates, again.fills_applied) == (0, 0), again
        finally:
            m.close()
