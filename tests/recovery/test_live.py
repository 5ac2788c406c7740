"""Issue 15.3 and 15.5: fills journaled as they happen, from real ccxt.pro over the simulator's websocket.

Every test checks the promise against the simulator's own books: each trade on the exchange is
journaled exactly once, positions equal the exchange's trades, and whatever the stream lost (a
dropped socket, a lost subscription) is repaired from REST.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from recovery import AsyncStateManager
from recovery.exchanges import make_pro_exchange
from recovery.live import LiveFeed
from recovery.sim.server import Simulator

pytestmark = pytest.mark.integration

FAST = {"reconcile_settings": {"settle_window_ms": 0}, "autosave_settings": {"interval_s": 3600}}


def _exchange_position(sim: Simulator) -> D:
    return sum((t.qty if t.is_buyer else -t.qty for t in sim.trades()), D(0))


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _run(tmp_path: Path, scenario: Callable[[AsyncStateManager, LiveFeed, Simulator], Awaitable[Any]],
         **feed: Any) -> Any:  # fmt: skip
    with Simulator(prices={"BTC/USDT": "30000"}, balances={"USDT": "1000000", "BTC": "10"}) as sim:

        async def main() -> Any:
            ex = make_pro_exchange(sim.url, sim.ws_url, options={"ws": {"keepAlive": 20000}})
            m = AsyncStateManager(tmp_path / "j", ex, **FAST)  # type: ignore[arg-type]
            try:
                await m.start()
                live = await m.start_live_feed(**{"sync_interval_s": 30.0, **feed})
                await asyncio.sleep(0.3)  # subscribed
                return await scenario(m, live, sim)
            finally:
                await m.close()
                await ex.close()

        return asyncio.run(main())


async def _caught_up(m: AsyncStateManager, sim: Simulator) -> None:
    """Orders and trades come on two streams: wait until every exchange trade has reached the state."""
    await _until(lambda: len(m.state["trades"]) >= len(sim.trades()))


def _trades_once(m: AsyncStateManager, sim: Simulator) -> None:
    exchange_ids = sorted(str(t.trade_id) for t in sim.trades())
    assert sorted(t["id"] for t in m.state["trades"].values()) == exchange_ids
    fills = [r.data["id"] for r in m.journal.records(types=["fill"])]  # type: ignore[union-attr]
    assert sorted(set(fills)) == exchange_ids  # journaled, never counted twice (the reducer dedups a repeat)
    assert m.state["positions"]["BTC/USDT"]["amount"] == _exchange_position(sim)


def test_fills_stream_into_the_journal_as_they_happen(tmp_path: Path) -> None:
    async def scenario(m: AsyncStateManager, live: LiveFeed, sim: Simulator) -> None:
        order = await m.place_order("BTC/USDT", "limit", "buy", "0.010", "29000")
        sim.fill(order["client_id"], amount="0.004")
        await _until(lambda: m.state["orders"][order["client_id"]]["filled"] == D("0.004"))
        sim.fill(order["client_id"], amount="0.006")
        await _until(lambda: m.state["orders"][order["client_id"]]["status"] == "closed")
        await _caught_up(m, sim)
        _trades_once(m, sim)
        via = {r.data.get("via") for r in m.journal.records(types=["fill"])}  # type: ignore[union-attr]
        assert via == {"websocket"} and live.gaps == 0

    _run(tmp_path, scenario)


def test_duplicated_and_reordered_events_change_nothing(tmp_path: Path) -> None:
    async def scenario(m: AsyncStateManager, live: LiveFeed, sim: Simulator) -> None:
        order = await m.place_order("BTC/USDT", "limit", "buy", "0.010", "29000")
        sim.stream.faults.arm("duplicate", times=4)
        sim.fill(order["client_id"], amount="0.004")
        sim.stream.faults.arm("reorder", times=1)
        sim.fill(order["client_id"], amount="0.006")  # FILLED then a stale PARTIALLY_FILLED on the wire
        await _until(lambda: m.state["orders"][order["client_id"]]["status"] == "closed")
        await asyncio.sleep(0.3)  # let the stale report arrive: it must not move the order back
        assert m.state["orders"][order["client_id"]]["status"] == "closed"
        await _caught_up(m, sim)
        _trades_once(m, sim)

    _run(tmp_path, scenario)


def test_a_fill_lost_to_a_dropped_socket_is_repaired_from_rest(tmp_path: Path) -> None:
    async def scenario(m: AsyncStateManager, live: LiveFeed, sim: Simulator) -> None:
        order = await m.place_order("BTC/USDT", "limit", "buy", "0.010", "29000")
        sim.stream.faults.arm("drop_before_event", execution_type="TRADE")
        sim.fill(order["client_id"], amount="0.004")  # never reaches the bot over the stream
        await _until(lambda: live.gaps >= 1)
        await _until(lambda: m.state["orders"][order["client_id"]]["filled"] == D("0.004"))
        await _caught_up(m, sim)
        _trades_once(m, sim)
        sources = {r.source for r in m.journal.records(types=["fill"])}  # type: ignore[union-attr]
        assert sources == {"recovery"}  # REST taught it, and the journal says so
        sim.fill(order["client_id"], amount="0.006")  # the stream is back
        await _until(lambda: m.state["orders"][order["client_id"]]["status"] == "closed")
        await _caught_up(m, sim)
        _trades_once(m, sim)

    _run(tmp_path, scenario)


def test_a_refused_subscription_is_a_gap_not_a_silent_stall(tmp_path: Path) -> None:
    async def scenario(m: AsyncStateManager, live: LiveFeed, sim: Simulator) -> None:
        order = await m.place_order("BTC/USDT", "limit", "buy", "0.010", "29000")
        sim.stream.faults.arm("subscribe_reject", code=-1022)  # ccxt raises KeyError and wedges the connection
        sim.stream.drop("close")
        await _until(lambda: live.gaps >= 2)  # the drop, then the refused resubscription
        sim.fill(order["client_id"], amount="0.010")
        await _until(lambda: m.state["orders"][order["client_id"]]["status"] == "closed")
        await _caught_up(m, sim)
        _trades_once(m, sim)

    _run(tmp_path, scenario)


def test_a_silently_terminated_subscription_is_caught_by_the_backstop_sync(tmp_path: Path) -> None:
    async def scenario(m: AsyncStateManager, live: LiveFeed, sim: Simulator) -> None:
        order = await m.place_order("BTC/USDT", "limit", "buy", "0.010", "29000")
        sim.stream.terminate()  # ccxt.pro wakes nobody; the stream just goes quiet
        await asyncio.sleep(0.1)
        sim.fill(order["client_id"], amount="0.010")
        await _until(lambda: m.state["orders"][order["client_id"]]["status"] == "closed", timeout=10)
        await _caught_up(m, sim)
        _trades_once(m, sim)

    _run(tmp_path, scenario, sync_interval_s=0.5)
