"""Issue 12.4: wall-clock steps neither stall recovery nor let it abort an order that may still execute.

The settle window is judged on the exchange's clock (reconciliation asks ``fetch_time``), and
record times are the true wall clock (a step back is noted in the journal, never clamped to a
future time). The steps are simulated by shifting the clock the journal's writer and the
reconciler read, never the system clock.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from journal import Journal, StateStore
from journal.log import writer as writer_module
from recovery import StateManager
from recovery import reconcile as reconcile_module
from recovery.sim.server import Simulator
from recovery.testing import make_exchange, pending_order

pytestmark = pytest.mark.integration

STEP_NS = 600 * 10**9


def _shifted(by_ns: int) -> Any:
    return SimpleNamespace(time_ns=lambda: time.time_ns() + by_ns, monotonic=time.monotonic,
                           perf_counter=time.perf_counter, perf_counter_ns=time.perf_counter_ns)  # fmt: skip


def _manager(path: Path, sim: Simulator) -> StateManager:
    # the default settle window (recvWindow 10 s + 1 s): the real path, not 0
    return StateManager(path, make_exchange(sim.url), autosave_settings={"interval_s": 3600})


def test_a_clock_that_was_ahead_then_stepped_back_does_not_hold_safe_mode_for_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j"
    with Simulator(prices={"BTC/USDT": "30000"}) as sim:
        with Journal(path) as j:
            StateStore(j)
            monkeypatch.setattr(writer_module, "time", _shifted(STEP_NS))  # the bot's clock is 10 min ahead
            op = pending_order(j, "BTC/USDT", "0.01", "29000")  # crashed before the exchange answered
            monkeypatch.undo()  # NTP steps the clock back
            later = j.begin("place_order", {"symbol": "BTC/USDT"})
            j.abort(later, "test")
            assert j.get(later.op_id).ts_ns < j.get(op.op_id).ts_ns  # true times, not clamped to the future
            assert j.clock_steps() and j.clock_steps()[0][0] == later.op_id
        m = _manager(path, sim)
        report = m.start()
        try:
            assert report.aborted == 1 and not report.unresolved and not m.safe_mode, report
        finally:
            m.close()


def test_a_clock_that_steps_forward_after_an_intent_does_not_abort_an_order_still_able_to_execute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j"
    with Simulator(prices={"BTC/USDT": "30000"}) as sim:
        with Journal(path) as j:
            StateStore(j)
            pending_order(j, "BTC/USDT", "0.01", "29000")  # maybe on its way to the exchange
        monkeypatch.setattr(reconcile_module, "time", _shifted(STEP_NS))  # the clock jumps 10 min ahead
        m = _manager(path, sim)
        report = m.start()
        try:
            # by the local clock the settle window is long past; by the exchange's it is not
            assert report.aborted == 0 and [u["why"] for u in report.unresolved] == ["inside the settle window"]
        finally:
            m.close()
