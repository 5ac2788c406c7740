"""The state manager, sync and async: one suite, run against both drivers (the same flows bound twice).

Each test gets a ``drive`` fixture: ``drive.manager(path, **kw)`` builds a
:class:`StateManager` on a sync ccxt client or an :class:`AsyncStateManager` on
an async one, and ``drive(x)`` returns ``x`` -- or, for a coroutine, runs it on
the test's one event loop (async ccxt clients are bound to the loop of their
first request).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from journal import Journal
from journal.state.store import StateStore
from recovery import AsyncStateManager, ManagerStateError, SafeModeError, StateManager
from recovery.sim.server import Simulator
from recovery.testing import make_exchange, pending_order

pytestmark = pytest.mark.integration

PRICES = {"BTC/USDT": "30000", "ETH/USDT": "2000"}
FAST = {"reconcile_settings": {"settle_window_ms": 0, "rate_limit_backoff_s": 0},
        "autosave_settings": {"interval_s": 3600}, "order_settings": {"settle_window_ms": 0, "backoff_s": 0.01}}  # fmt: skip


class Drive:
    """Builds managers of one kind and runs their calls."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.runner = asyncio.Runner() if kind == "async" else None
        self.managers: list[StateManager | AsyncStateManager] = []
        self.clients: list[Any] = []

    def exchange(self, **config: Any) -> Any:
        client = make_exchange(self.url, async_=self.kind == "async", **config)
        self.clients.append(client)
        return client

    def manager(self, path: Path, exchange: Any = "default", **kw: Any) -> Any:
        for key, value in FAST.items():
            kw.setdefault(key, value)
        ex = self.exchange() if exchange == "default" else exchange
        cls = AsyncStateManager if self.kind == "async" else StateManager
        m = cls(path, ex, **kw)
        self.managers.append(m)
        return m

    def __call__(self, value: Any) -> Any:
        if asyncio.iscoroutine(value):
            assert self.runner is not None, "a coroutine from a sync manager"
            return self.runner.run(value)
        return value

    def close(self) -> None:
        for m in self.managers:
            self(m.close())
        for c in self.clients:
            if self.kind == "async":
                self(c.close())
            else:
                c.session.close()
        if self.runner is not None:
            self.runner.close()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(prices=PRICES, balances={"USDT": "1000000", "BTC": "10"}) as s:
        yield s


@pytest.fixture(params=["sync", "async"])
def drive(request: pytest.FixtureRequest, sim: Simulator) -> Iterator[Drive]:
    d = Drive(request.param, sim.url)
    yield d
    d.close()


def _wait_for(cond: Callable[[], bool], drive: Drive, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        if drive.runner is not None:
            drive.runner.run(asyncio.sleep(0.05))  # let the retry task run
        else:
            time.sleep(0.05)


def test_start_trade_and_close(tmp_path: Path, drive: Drive) -> None:
    m = drive.manager(tmp_path / "j")
    report = drive(m.start())
    assert report.clean and not m.safe_mode
    order = drive(m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000"))
    assert order["status"] == "open" and m.state["orders"][order["client_id"]]["status"] == "open"
    assert m.open_orders("BTC/USDT")[0]["client_id"] == order["client_id"]
    canceled = drive(m.cancel_order(order["client_id"], "BTC/USDT"))
    assert canceled["status"] == "canceled"
    assert drive(m.set_strategy("grid", active=True, params={"step": D("5")})) > 0
    assert m.state["strategies"]["grid"]["active"] is True
    assert drive(m.save()) is True
    drive(m.close())
    drive(m.close())  # idempotent
    with pytest.raises(ManagerStateError, match="closed"):
        drive(m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000"))


def test_a_settings_typo_fails_when_the_manager_is_built(tmp_path: Path, drive: Drive) -> None:
    """Issue 10: order_settings={"retries": 3} surfaced at start() as a TypeError from an internal constructor."""
    with pytest.raises(ValueError, match=r"unknown order helper setting\(s\) \['retries'\]; known: .*lookup_retries"):
        drive.manager(tmp_path / "j", order_settings={"retries": 3})
    with pytest.raises(ValueError, match=r"unknown Journal setting\(s\) \['durabilty'\]"):
        drive.manager(tmp_path / "j", journal_settings={"durabilty": "full"})


def test_exchange_unreachable_at_start_is_safe_mode_with_the_reason(
    tmp_path: Path, drive: Drive, sim: Simulator
) -> None:
    """Issue 12.1: nothing pending, exchange down: start() must not report clean, and must refuse new orders."""
    sim.faults.down()
    events: list[tuple[bool, list[str]]] = []
    m = drive.manager(tmp_path / "j", drive.exchange(timeout_ms=400), retry_backoff_s=0.2, retry_max_s=0.4)
    m.on_safe_mode(lambda active, reasons: events.append((active, reasons)))
    report = drive(m.start())
    assert not report.complete and not report.clean and report.errors
    assert "INCOMPLETE" in str(report) and report.errors[0] in str(report)
    assert m.safe_mode and "exchange unreachable" in m.safe_mode_reasons()[0]
    assert "inside the settle window" not in " ".join(m.safe_mode_reasons())
    health = m.health()
    assert health["safe_mode"] and health["errors"] >= 1 and health["reconcile_errors"] == report.errors
    with pytest.raises(SafeModeError, match="exchange unreachable"):
        drive(m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000"))
    assert events and events[0][0] is True and "exchange unreachable" in events[0][1][0]
    sim.faults.up()
    _wait_for(lambda: not m.safe_mode, drive)  # the manager retried by itself
    assert events[-1] == (False, [])
    assert m.last_report is not None and m.last_report.complete
    assert drive(m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000"))["status"] == "open"
    journaled = [r.data for r in m.journal.records(types=["safe_mode"])]
    assert [d["active"] for d in journaled] == [True, False] and journaled[0]["reasons"]


def test_wrong_api_key_is_safe_mode_naming_the_credentials(tmp_path: Path, drive: Drive) -> None:
    """Issue 12.1: a refused key is not "inside the settle window" and not clean."""
    m = drive.manager(tmp_path / "j", drive.exchange(apiKey="W" * 64), retry_backoff_s=30, retry_max_s=60)
    report = drive(m.start())
    assert not report.clean and m.safe_mode
    assert "refused the credentials" in m.safe_mode_reasons()[0]
    assert "AuthenticationError" in m.safe_mode_reasons()[0] or "PermissionDenied" in m.safe_mode_reasons()[0]


def test_an_operation_pending_from_before_keeps_safe_mode_until_settled(
    tmp_path: Path, drive: Drive, sim: Simulator
) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        StateStore(j)
        op = pending_order(j, "BTC/USDT", "0.01", "29000", sent_to=sim)
    m = drive.manager(path)
    report = drive(m.start())
    assert report.resolved == 1 and report.clean and not m.safe_mode
    assert m.state["orders"][op.client_id]["status"] == "open"


def test_allow_unsafe_is_explicit(tmp_path: Path, drive: Drive, sim: Simulator) -> None:
    sim.faults.down()
    m = drive.manager(tmp_path / "j", drive.exchange(timeout_ms=400), retry_backoff_s=30, retry_max_s=60)
    drive(m.start())
    sim.faults.up()
    assert m.safe_mode
    order = drive(m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000", allow_unsafe=True))
    assert order["status"] == "open"


def test_async_manager_is_an_async_context_manager(tmp_path: Path, sim: Simulator) -> None:
    async def scenario() -> str:
        ex = make_exchange(sim.url, async_=True)
        try:
            async with AsyncStateManager(tmp_path / "j", ex, **FAST) as m:  # type: ignore[arg-type]
                order = await m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000")
                assert m.journal is not None
            assert m.health()["closed"] is True
            return str(order["client_id"])
        finally:
            await ex.close()

    client_id = asyncio.run(scenario())
    with Journal(tmp_path / "j", readonly=True) as j:
        assert j.op_id_of(client_id) is not None and not j.pending_ids()


def test_async_journal_writes_never_run_on_the_event_loop_thread(tmp_path: Path, sim: Simulator) -> None:
    """Issue 15.1: an intent's fsync runs in the manager's journal-io thread, not on the loop."""
    threads: set[str] = set()

    async def scenario() -> None:
        ex = make_exchange(sim.url, async_=True)
        m = AsyncStateManager(tmp_path / "j", ex, **FAST)  # type: ignore[arg-type]
        try:
            await m.start()
            assert m.journal is not None
            real_begin = m.journal.begin_many

            def spy(items: Any) -> Any:
                threads.add(threading.current_thread().name)
                return real_begin(items)

            m.journal.begin_many = spy  # type: ignore[method-assign]
            await asyncio.gather(*(m.place_order("BTC/USDT", "limit", "buy", "0.01", str(29000 - i)) for i in range(5)))
        finally:
            await m.close()
            await ex.close()

    asyncio.run(scenario())
    assert threads and all(name.startswith("journal-io") for name in threads), threads


def test_sync_and_async_methods_share_their_documentation() -> None:
    for name in ("place_order", "cancel_order", "edit_order", "reconcile", "start", "save", "set_strategy", "set",
                 "record_fill", "record_order_update", "ingest_orders", "ingest_trades"):  # fmt: skip
        sync_doc = getattr(StateManager, name).__doc__
        assert sync_doc and sync_doc == getattr(AsyncStateManager, name).__doc__, name
        assert asyncio.iscoroutinefunction(getattr(AsyncStateManager, name)), name


ASYNC_BOT = """
import asyncio, sys
from recovery import AsyncStateManager
from recovery.exchanges import make_exchange

async def main():
    ex = make_exchange(sys.argv[2], async_=True)
    m = AsyncStateManager(sys.argv[1], ex, signal_handlers=True, reconcile_settings={"settle_window_ms": 0},
                          autosave_settings={"interval_s": 3600})
    await m.start()
    i = 0
    try:
        while True:
            await m.place_order("BTC/USDT", "limit", "buy", "0.01", str(20000 + i))
            i += 1
            if i == 3:
                print("trading", flush=True)
    finally:
        await ex.close()

asyncio.run(main())
"""


def test_async_sigterm_lets_orders_in_flight_finish_then_saves_and_closes(tmp_path: Path, sim: Simulator) -> None:
    """Issue 15.2: loop.add_signal_handler, not a sync handler closing the journal under the loop's feet."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "j"
    proc = subprocess.Popen([sys.executable, "-c", ASYNC_BOT, str(path), sim.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "trading"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM  # the signal still ends the process as it would have
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert "Traceback" not in stderr, stderr
    with Journal(path, readonly=True) as j:
        assert j.pending_ids() == [], "an order in flight was cut off instead of finishing its journaling"
        store = StateStore(j)
        assert store.loaded_from == j.last_seq  # the final snapshot covers everything
        placed = [o for o in store.state["orders"].values() if o["status"] == "open"]
    on_exchange = {o.client_order_id for o in sim.orders() if o.status == "NEW"}
    assert {o["client_id"] for o in placed} == on_exchange


def test_fills_learned_from_a_cancel_answer_become_trades_and_positions(
    tmp_path: Path, drive: Drive, sim: Simulator
) -> None:
    """Issue 12.3: the cancel answer carries executedQty, not the fills; positions must still see them."""
    m = drive.manager(tmp_path / "j")
    drive(m.start())
    order = drive(m.place_order("BTC/USDT", "limit", "buy", "0.010", "29000"))
    sim.fill(order["client_id"], amount="0.004")
    canceled = drive(m.cancel_order(order["client_id"], "BTC/USDT"))
    assert canceled["filled"] == D("0.004")
    exchange_trades = sim.core.my_trades("BTC/USDT")
    assert sum(t.qty for t in exchange_trades) == D("0.004")
    assert m.state["positions"]["BTC/USDT"]["amount"] == D("0.004")
    assert {t["id"] for t in m.state["trades"].values()} == {str(t.trade_id) for t in exchange_trades}
    assert m.store is not None and m.store.validate() == []


def test_restart_fetches_the_trades_an_order_fill_does_not_explain(
    tmp_path: Path, drive: Drive, sim: Simulator
) -> None:
    """Issue 12.3: a journal whose order says filled but has no trades gets them at the next reconciliation,
    even when the order is no longer open (trade history used to be fetched only for open orders)."""
    path = tmp_path / "j"
    with Journal(path) as j:
        StateStore(j)
        op = pending_order(j, "BTC/USDT", "0.010", "29000", sent_to=sim)
        sim.fill(op.client_id, amount="0.010")
        on_exchange = next(o for o in sim.orders() if o.client_order_id == op.client_id)
        j.commit(op, {"id": str(on_exchange.order_id), "client_id": op.client_id, "symbol": "BTC/USDT",
                      "side": "buy", "status": "closed", "amount": D("0.010"), "filled": D("0.010"),
                      "trades": [], "timestamp": on_exchange.time_ms}, wait=True)  # fmt: skip
    m = drive.manager(path)
    report = drive(m.start())
    assert report.fills_applied == 1 and report.clean
    assert m.state["positions"]["BTC/USDT"]["amount"] == D("0.010")


def test_a_reconcile_that_finds_nothing_new_writes_nothing(tmp_path: Path, drive: Drive) -> None:
    """Issue 12.8: every reconcile() used to write a report (and a balances record and a snapshot)."""
    m = drive.manager(tmp_path / "j")
    drive(m.start())
    drive(m.place_order("BTC/USDT", "limit", "buy", "0.01", "29000"))
    drive(m.reconcile())  # may record the balances the order locked
    assert m.journal is not None
    before = m.journal.last_seq
    for _ in range(3):
        report = drive(m.reconcile())
        assert report.clean
    assert m.journal.last_seq == before


def _ccxt_trade(order: dict[str, Any], tid: str, amount: str) -> dict[str, Any]:
    return {"id": tid, "order": order["id"], "symbol": "BTC/USDT", "side": "buy", "amount": float(amount),
            "price": 29000.0, "cost": float(amount) * 29000, "timestamp": int(time.time() * 1000),
            "fee": {"cost": 0.0, "currency": "BTC"}}  # fmt: skip


def test_stream_events_are_journaled_once_and_never_backwards(tmp_path: Path, drive: Drive, sim: Simulator) -> None:
    """Issue 15.3: a replayed or duplicated event changes nothing; a stale report cannot undo a fill."""
    m = drive.manager(tmp_path / "j")
    drive(m.start())
    order = drive(m.place_order("BTC/USDT", "limit", "buy", "0.010", "29000"))
    trade = _ccxt_trade(order, "t-1", "0.004")
    assert drive(m.ingest_trades([trade, trade])) == 1  # a duplicated frame
    assert drive(m.ingest_trades([trade])) == 0  # replayed after a reconnect
    assert m.state["positions"]["BTC/USDT"]["amount"] == D("0.004")
    partial = {"id": order["id"], "clientOrderId": order["client_id"], "symbol": "BTC/USDT", "status": "open",
               "amount": 0.01, "filled": 0.004, "side": "buy", "type": "limit", "price": 29000.0}  # fmt: skip
    closed = dict(partial, status="closed", filled=0.01)
    assert drive(m.ingest_orders([closed])) == 1
    assert drive(m.ingest_orders([partial, closed])) == 0  # late and repeated reports
    assert m.state["orders"][order["client_id"]]["status"] == "closed"
    journaled = list(m.journal.records(types=["order_update", "fill"]))
    assert all(r.data["via"] == "websocket" for r in journaled) and len(journaled) == 2
    unknown = dict(closed, id="999", clientOrderId="web_1")
    assert drive(m.ingest_orders([unknown])) == 0  # not ours: reconciliation's business
