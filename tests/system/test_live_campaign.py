"""The live crash campaign, short (issue 15, item 5): an async bot with the live feed on, SIGKILLed while fills stream.

The long version: ``python -m tests.system.campaign_live --size 20``. Size here:
TRADEJOURNAL_LIVE_CAMPAIGN_SIZE (default 3 runs, each ended by SIGKILL).

A violation a known library bug explains (:data:`tests.system.campaign_live.KNOWN_BUGS`) does not fail
the family here; the bug's minimal reproduction below does, as ``xfail(strict=True)``: once the library is
fixed it passes, strict xfail turns that into a failure, and the integrator removes the mark and the
``KNOWN_BUGS`` entry together.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from recovery import AsyncStateManager
from recovery.exchanges import make_exchange, make_pro_exchange
from recovery.sim.server import Simulator
from tests.helpers.live_child import FEED, SETTINGS, fill_records
from tests.system import campaign_live

SIZE = int(os.environ.get("TRADEJOURNAL_LIVE_CAMPAIGN_SIZE", "3"))

pytestmark = [pytest.mark.crash, pytest.mark.integration]


def test_live_family_has_no_violation_but_known_library_bugs() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fam = campaign_live.family_live(SIZE, 11, Path(tmp))
    assert fam.runs == SIZE and fam.faults >= SIZE  # every run ended by SIGKILL
    assert fam.notes["exchange_trades"] > 0  # fills did stream in
    unexplained = [v for v in fam.violations if campaign_live.known_bug(v) is None]
    assert unexplained == [], "\n".join(unexplained[:10])


# -- the checks themselves can fail ------------------------------------------------


def test_the_trade_check_finds_a_lost_an_invented_and_a_twice_journaled_trade(monkeypatch: pytest.MonkeyPatch) -> None:
    with Simulator(prices={"BTC/USDT": "30000"}, balances={"USDT": "100000"}) as sim:
        order = make_exchange(sim.url).create_order("BTC/USDT", "limit", "buy", 0.002, 29000)
        a = sim.fill(int(order["id"]), "0.001", symbol="BTCUSDT")
        b = sim.fill(int(order["id"]), "0.001", symbol="BTCUSDT")
        key_a, key_b = f"BTC/USDT:{a.trade_id}", f"BTC/USDT:{b.trade_id}"
        fill = {"symbol": "BTC/USDT", "id": str(a.trade_id), "order_id": order["id"], "via": None,
                "source": "bot", "seq": 1}  # fmt: skip
        assert campaign_live.trade_failures(sim, [key_a, key_b], [fill]) == []
        failures = campaign_live.trade_failures(sim, [key_a, "BTC/USDT:999999"], [fill, {**fill, "seq": 2}])
    assert len(failures) == 3, failures
    assert key_b in failures[0] and "999999" in failures[1] and "journaled 2 times" in failures[2]
    # both bugs found are fixed: every repeat is a violation again ...
    assert all(campaign_live.known_bug(f) is None for f in failures)
    # ... and the matcher still excuses a known shape only, for the next one found
    streamed_twice = failures[2].replace("(None, 'bot', 2)", "('websocket', 'bot', 2)")
    monkeypatch.setattr(campaign_live, "KNOWN_BUGS", {(None, "bot"): "tests/x.py::test_x"})
    assert campaign_live.known_bug(failures[2]) == "tests/x.py::test_x"
    assert streamed_twice != failures[2] and campaign_live.known_bug(streamed_twice) is None
    assert campaign_live.known_bug(failures[0]) is None and campaign_live.known_bug(failures[1]) is None


# -- library bugs the campaign found -------------------------------------------------


def _live(tmp: Path, scenario: Callable[[AsyncStateManager, Simulator], Awaitable[None]]) -> None:
    with Simulator(prices={"BTC/USDT": "30000"}, balances={"USDT": "1000000", "BTC": "10"}) as sim:

        async def main() -> None:
            ex = make_pro_exchange(sim.url, sim.ws_url, options={"ws": {"keepAlive": 20000}})
            m = AsyncStateManager(tmp / "j", ex, **SETTINGS)
            try:
                await m.start()
                await m.start_live_feed(**FEED)
                await asyncio.sleep(0.3)  # subscribed
                await scenario(m, sim)
            finally:
                await m.close()
                await ex.close()

        asyncio.run(main())


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_regression_a_cancel_journals_again_the_fill_the_live_feed_journaled(tmp_path: Path) -> None:
    async def scenario(m: AsyncStateManager, sim: Simulator) -> None:
        order = await m.place_order("BTC/USDT", "limit", "buy", "0.010", "29000")
        sim.fill(order["client_id"], amount="0.004")  # a partial fill, streamed
        await _until(lambda: len(m.state["trades"]) == 1)
        await m.cancel_order(order["client_id"], "BTC/USDT")  # the answer: executedQty 0.004, no fills
        assert m.state["positions"]["BTC/USDT"]["amount"] == Decimal("0.004")  # the state counts it once
        fills = fill_records(m)
        assert len(fills) == 1, f"one trade on the exchange, {len(fills)} fill records: {fills}"

    _live(tmp_path, scenario)


def test_regression_a_reconciliation_journals_again_the_fill_the_live_feed_journaled_meanwhile(tmp_path: Path) -> None:
    async def scenario(m: AsyncStateManager, sim: Simulator) -> None:
        order = await m.place_order("BTC/USDT", "limit", "buy", "0.010", "29000")
        sim.stream.faults.arm("delay", delay_ms=400, execution_type="TRADE")  # the stream brings it at 0.4 s
        sim.faults.arm("GET", "/api/v3/myTrades", "commit_then_delay", delay_s=1.2)  # REST answers at 1.2 s
        sim.fill(order["client_id"], amount="0.004")
        report = await m.reconcile()  # a gap repair or the backstop sync, while the stream runs
        assert m.state["positions"]["BTC/USDT"]["amount"] == Decimal("0.004")  # the state counts it once
        fills = fill_records(m)
        assert [f["via"] for f in fills] == ["websocket"], f"one trade on the exchange, fill records: {fills}"
        assert report.fills_applied == 0

    _live(tmp_path, scenario)
