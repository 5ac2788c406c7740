"""The fault campaign: nothing lost, nothing duplicated, nothing leaked -- with figures.

``python -m tests.system.campaign [--size N] [--seed S] [--families crash,settle,...]``

Each family prints one summary line: runs, faults injected, invariant
violations (must be 0; a violation a known library bug explains is counted
all the same, and named in :data:`KNOWN_BUGS` with its reproduction); the exit
status is non-zero on any violation. The default suite runs a short version
(``tests/system/test_campaign.py``); the README gives the long command and
its last figures.

After every restart of a trading family the campaign checks, in process
(:mod:`tests.helpers.invariants`): the manager is in safe mode exactly when it
should be -- after an incomplete reconciliation, or while an operation is
unresolved for a reason that holds (inside its settle window on the exchange's
clock) -- health() and the journal's ``safe_mode`` events agree, it leaves safe
mode once the reason is gone; then the state against the simulator's books,
orders keyed by (symbol, order id): every exchange order known once with its
status and fill, no open order the exchange lacks, no client id ever sent
twice, positions equal the exchange's trades, balances its balances, nothing
pending, ``verify()`` clean, a second reconcile changes nothing.

Families:

- ``crash``: a bot process (tests/helpers/bot_child.py) trades against the
  simulator on three symbols -- places, market orders, cancels, edits -- while
  the simulator fills resting orders; it is killed with SIGKILL at a named
  crash point or at a random moment; settle windows 0.
- ``settle``: the same with a real settle window (recvWindow 2000 ms, so the
  windows are 3 s): an operation whose order is not on the exchange is
  unresolved, in safe mode, until its window has passed on the exchange's clock.
- ``recvwindow``: the same with recvWindow 60000 (ccxt options): the settle
  window follows it (61 s). The exchange's clock is moved forward while the
  bot is down, to show that an operation 46 s old is still inside its window
  and one 61.5 s old is settled.
- ``exchange``: the bot with simulator faults armed during trading and during
  recovery (timeouts after commit, dropped connections, 429/418, 503, 502, the
  exchange down for the whole startup).
- ``startup``: the exchange down (dropped connections, 503) or the credentials
  wrong (API key, secret) when the bot starts after a crash: safe mode with the
  reason, new orders refused and not sent, cancels not refused; the manager
  leaves safe mode by itself once the exchange is back.
- ``lag``: accepted but invisible -- the simulator's lagging database
  (``lag_ms`` 300 to 2000 on random sets of queries) during trading, crashes
  and restarts, real settle windows (3 s); checked once the lag has passed.
- ``applied``: 5XX answers to requests that were carried out (faults armed
  with ``applied=True``: 502 HTML, 503/-1007, the gateway down) on places,
  cancels and cancel-replaces, with crashes, real settle windows.
- ``restore``: a backup (``journal backup``) taken at a random moment while
  the bot trades; the bot trades on, then the backup is restored and the bot
  restarted: no client id sent twice, every order adopted or known.
- ``storage``: bytes flipped at random offsets of a journal's data file; each
  damaged copy is opened in a subprocess, which must either report the damage
  or load exactly the original state (or an exact earlier state, when a flip
  in an LMDB meta page rolls the file back to the previous transaction --
  counted separately: LMDB 0.9 meta pages carry no checksum); then truncated,
  emptied and foreign directories (tests/helpers/damage.py ``CASES``, the
  truncation at a random fraction): each refused with its error class, the
  directory left as it was.
- ``powercut``: crash images of a bot's journal on a FUSE layer that keeps
  only fsynced data (tests/helpers/powercut.py); skipped where FUSE is not
  available.
- ``load``: threads placing operations while snapshots, compaction and a
  ``dump --follow`` reader run; latency percentiles reported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.helpers.invariants import (
    exchange_failures,
    manager_for,
    recovered,
    safe_mode_failures,
    settle_window_of,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
CRASH_POINTS = ["intent_durable", "outcome_durable", "order_acknowledged", "snapshot_durable", "event_durable"]

#: Violations the campaign finds that a known library bug explains: (families, pattern, the regression
#: test reproducing it, marked xfail(strict=True) until the library is fixed). They count as violations in
#: the figures all the same; tests/system/test_campaign.py lets only these through, in those families.
_TESTS = "tests/system/test_campaign.py::"
KNOWN_BUGS: list[tuple[frozenset[str] | None, str, str]] = [
]  # fmt: skip


def known_bug(family: str, violation: str) -> str | None:
    """The regression test of the library bug that explains ``violation`` in ``family``, or None."""
    text = violation.split(": ", 1)[-1] if violation.startswith("run ") else violation
    for families, pattern, test in KNOWN_BUGS:
        if (families is None or family in families) and re.search(pattern, text):
            return test
    return None


@dataclass
class Family:
    name: str
    runs: int = 0
    faults: int = 0
    violations: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def note(self, key: str, by: int = 1) -> None:
        self.notes[key] = self.notes.get(key, 0) + by

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        known = sum(1 for v in self.violations if known_bug(self.name, v))
        known_text = f" (known library bugs: {known})" if known else ""
        return (f"{self.name:10s} runs={self.runs} faults={self.faults} violations={len(self.violations)}{known_text} "
                f"{extra}").rstrip()  # fmt: skip


def _env(crash_at: str | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TRADEJOURNAL_CRASH_AT", None)
    if crash_at:
        env["TRADEJOURNAL_CRASH_AT"] = crash_at
    return env


def _bot_argv(path: Path, url: str, seed: int, ops: int, mode: str, cfg: dict[str, Any] | None) -> list[str]:
    return [str(path), url, str(seed), str(ops), mode, json.dumps(cfg or {})]


def _bot(path: Path, url: str, seed: int, ops: int, mode: str, crash_at: str | None = None,
         kill_after_s: float | None = None, cfg: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """One bot run (tests/helpers/bot_child.py, forked by tests/helpers/botpool.py): its exit and its lines."""
    from tests.helpers.botpool import BotRun

    argv = _bot_argv(path, url, seed, ops, mode, cfg)
    bot = BotRun(argv, crash_at)
    if kill_after_s is not None:
        bot.proc.join(kill_after_s)
    code = bot.finish(kill=kill_after_s is not None and bot.proc.is_alive())
    return subprocess.CompletedProcess(argv, code, "\n".join(bot.lines), bot.errors())


class Filler(threading.Thread):
    """Fills resting orders on the exchange now and then (partly or fully), as a market would.

    Every ``pause_s`` (a fixed pause, or a ``(low, high)`` range drawn each time) it picks a resting
    order with probability ``chance`` and fills it whole with probability ``whole``, else half of it.
    """

    def __init__(self, sim: Any, seed: int, *, pause_s: float | tuple[float, float] = 0.05, chance: float = 0.5,
                 whole: float = 0.5) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.sim, self.rnd, self.stop = sim, random.Random(seed), threading.Event()
        self.pause_s, self.chance, self.whole = pause_s, chance, whole
        self.fills = 0

    def _pause(self) -> float:
        return self.rnd.uniform(*self.pause_s) if isinstance(self.pause_s, tuple) else self.pause_s

    def run(self) -> None:
        while not self.stop.wait(self._pause()):
            open_orders = [o for o in self.sim.orders() if o.status in ("NEW", "PARTIALLY_FILLED")]
            if not open_orders or (self.chance < 1 and self.rnd.random() < 1 - self.chance):
                continue
            o = self.rnd.choice(open_orders)
            remaining = o.orig_qty - o.executed_qty
            amount = remaining if self.rnd.random() < self.whole else (remaining / 2).quantize(Decimal("0.001"))
            try:
                if amount > 0:
                    self.sim.fill(o.order_id, amount, symbol=o.symbol)
                    self.fills += 1
            except Exception:
                pass  # the order closed meanwhile: fine

    def finish(self) -> int:
        self.stop.set()
        self.join()
        return self.fills


class _Clock:
    """The simulated exchange's clock: real time plus an offset a family may move (``recvwindow``)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


def _prices() -> dict[str, str]:
    return {"BTC/USDT": "30000", "ETH/USDT": "2000", "SOL/USDT": "100"}


def _simulator(clock: _Clock | None = None, **kw: Any) -> Any:
    from recovery.sim.server import Simulator

    # The campaign restarts and reconciles back to back, far more often than a bot would: its exchange allows
    # 10x Binance's request weight, so that the faults are the ones armed (the real limit's 429 is
    # test_bug_reconciliation_backs_off_as_long_as_a_429_says).
    return Simulator(prices=_prices(), balances={"USDT": "1000000", "BTC": "10", "ETH": "100", "SOL": "1000"},
                     clock_ms=clock, settings={"weight_limit_1m": 60_000}, **kw)  # fmt: skip


#: ``advance(manager, pending, window_ms)``: bring every pending operation past its settle window on the
#: exchange's clock, and check on the way whatever the family promises about the window.
Advance = Callable[[Any, list[dict[str, Any]], int, Family, str], None]


def _sleep_past_window(manager: Any, pending: list[dict[str, Any]], window_ms: int, fam: Family, what: str) -> None:
    sim_now = manager.exchange.fetch_time()
    youngest = max(p["ts_ms"] for p in pending)
    wait_ms = youngest + window_ms + 300 - sim_now
    if wait_ms > 0:
        time.sleep(wait_ms / 1000)


def check_restart(
    sim: Any,
    path: Path,
    fam: Family,
    what: str,
    cfg: dict[str, Any],
    *,
    exchange_up: bool = True,
    lag_ms: int = 0,
    advance: Advance = _sleep_past_window,
) -> None:
    """Restart the bot in process and check every invariant (see the module docstring)."""
    window = settle_window_of(cfg)
    manager = manager_for(str(path), sim.url, cfg)
    try:
        report = manager.start()
        now = sim.core.now_ms()
        first = recovered(manager, report, second=False)
        fam.violations += [f"{what}: {f}" for f in safe_mode_failures(first, exchange_up=exchange_up, window_ms=window,
                                                                       exchange_now_ms=now)]  # fmt: skip
        if first["safe_mode"]:
            fam.note("restarts_in_safe_mode")
        if report.complete and report.unresolved:
            fam.note("unresolved_inside_window", len(report.unresolved))
            advance(manager, first["pending"], window, fam, what)
            # nothing is left to wait for: the manager should notice by itself (its retry loop runs every 0.1 s)
            if not wait_until(lambda: not manager.safe_mode, timeout_s=float(cfg.get("retry_max_s", 0.5)) + 0.5):
                fam.violations.append(f"{what}: safe mode outlasted the settle window of {window} ms by "
                                      f"{cfg.get('retry_max_s', 0.5)} s with no reconcile: "
                                      f"{manager.safe_mode_reasons()}")  # fmt: skip
        if lag_ms:
            time.sleep(lag_ms / 1000 + 0.05)  # the lagging database catches up: now the truth is visible
        if manager.safe_mode or lag_ms:
            report = manager.reconcile()
            if manager.safe_mode:
                fam.violations.append(f"{what}: still in safe mode after a reconciliation past every window: "
                                      f"{manager.safe_mode_reasons()} ({report})")  # fmt: skip
            events = [r.data for r in manager.journal.records(types=["safe_mode"])]
            if events and events[-1].get("active") and not manager.safe_mode:
                fam.violations.append(f"{what}: safe mode left but not journaled: last event {events[-1]}")
        final = recovered(manager, report)
        fam.violations += [f"{what}: {f}" for f in exchange_failures(sim, final)]
    except Exception as exc:  # a restart that raises is a violation, not a crash of the campaign
        fam.violations.append(f"{what}: restart failed: {type(exc).__name__}: {exc}")
    finally:
        manager.close()


def _trade_run(sim: Any, path: Path, fam: Family, run: int, rnd: random.Random, seed: int, ops: int,
               cfg: dict[str, Any]) -> str:  # fmt: skip
    """One bot run killed at a named crash point (three runs in four, cycling) or at a random moment."""
    if run % 4 != 3:
        point = f"{CRASH_POINTS[(run - run // 4) % len(CRASH_POINTS)]}:{rnd.randint(1, 6)}"
        proc = _bot(path, sim.url, seed + run, ops, "trade", crash_at=point, cfg=cfg)
    else:
        point = "random"
        proc = _bot(path, sim.url, seed + run, ops, "trade", kill_after_s=rnd.uniform(0.5, 1.5), cfg=cfg)
    fam.runs += 1
    if proc.returncode == -signal.SIGKILL:
        fam.faults += 1
    elif proc.returncode != 0:
        fam.violations.append(f"run {run} ({point}): bot failed {proc.returncode}: {proc.stderr[-500:]}")
    return point


def _crash_family(name: str, size: int, seed: int, root: Path, cfg: dict[str, Any],
                  clock: _Clock | None = None, advance: Advance = _sleep_past_window) -> Family:  # fmt: skip
    fam = Family(name)
    rnd = random.Random(seed)
    with _simulator(clock) as sim:
        path = root / f"{name}.journal"
        fills = 0
        for run in range(size):
            filler = Filler(sim, seed + run)
            filler.start()
            point = _trade_run(sim, path, fam, run, rnd, seed, 30, cfg)
            fills += filler.finish()
            check_restart(sim, path, fam, f"run {run} ({point})", cfg, advance=advance)
        fam.notes["exchange_fills"] = fills
        fam.notes["orders_on_exchange"] = len(sim.orders())
    return fam


def family_crash(size: int, seed: int, root: Path) -> Family:
    return _crash_family("crash", size, seed, root, {"settle": "zero"})


SETTLE_CFG = {"settle": "exchange", "recv_window_ms": 2000}


def family_settle(size: int, seed: int, root: Path) -> Family:
    return _crash_family("settle", size, seed, root, SETTLE_CFG)


def family_recvwindow(size: int, seed: int, root: Path) -> Family:
    clock = _Clock()

    def advance(manager: Any, pending: list[dict[str, Any]], window_ms: int, fam: Family, what: str) -> None:
        """Move the exchange's clock so the youngest operation is 46 s, then 61.5 s old on it.

        Requests stay signed by the local clock, so the jump must stay under the recvWindow (60 s):
        the second jump waits until the operation is locally old enough.
        """
        youngest = max(p["ts_ms"] for p in pending)
        try:
            local_age = time.time_ns() // 1_000_000 - youngest
            clock.offset_ms = max(0, window_ms - 15_000 - local_age)
            report = manager.reconcile()
            whys = {u.get("why") for u in report.unresolved}
            if not report.complete or not whys <= {"inside the settle window",
                                                   "cancel outcome unknown: inside the settle window"}:  # fmt: skip
                fam.violations.append(f"{what}: {window_ms - 15_000} ms into a {window_ms} ms settle window "
                                      f"(recvWindow 60000) the operation was settled: {report}")  # fmt: skip
            else:
                fam.note("inside_window_at_46s")
            needed = window_ms + 500 - 58_500  # the local age at which a 58.5 s jump is past the window
            while time.time_ns() // 1_000_000 - youngest < needed:
                time.sleep(0.05)
            clock.offset_ms = 58_500
        except BaseException:
            clock.offset_ms = 0
            raise

    cfg = {"settle": "exchange", "recv_window_ms": 60_000}
    try:
        return _crash_family("recvwindow", size, seed, root, cfg, clock=clock, advance=advance)
    finally:
        clock.offset_ms = 0


#: (method, path, fault kind, options)
Fault = tuple[str, str, str, dict[str, Any]]
EXCHANGE_FAULTS: list[Fault] = [
    ("POST", "/api/v3/order", "commit_then_delay", {}),
    ("POST", "/api/v3/order", "commit_then_drop", {}),
    ("POST", "/api/v3/order", "http_503_1007", {}),
    ("POST", "/api/v3/order", "http_429", {}),
    ("POST", "/api/v3/order", "http_418", {}),
    ("POST", "/api/v3/order", "http_502_html", {}),
    ("DELETE", "/api/v3/order", "commit_then_drop", {}),
    ("DELETE", "/api/v3/order", "http_503_1007", {}),
    ("POST", "/api/v3/order/cancelReplace", "commit_then_drop", {}),
    ("GET", "/api/v3/order", "commit_then_drop", {}),
    ("GET", "/api/v3/openOrders", "http_429", {}),
    ("GET", "/api/v3/allOrders", "http_502_html", {}),
]


def family_exchange(size: int, seed: int, root: Path) -> Family:
    fam = Family("exchange")
    rnd = random.Random(seed)
    cfg = {"settle": "zero"}
    with _simulator(fault_delay_s=2.0) as sim:
        path = root / "exchange.journal"
        for run in range(size):
            burst = rnd.sample(EXCHANGE_FAULTS, k=rnd.randint(1, 3))
            for method, p, kind, opts in burst:
                sim.faults.arm(method, p, kind, times=rnd.randint(1, 2), **opts)
                fam.faults += 1
            proc = _bot(path, sim.url, seed + run, 12, "trade", cfg=cfg)
            fam.runs += 1
            if proc.returncode != 0:
                fam.violations.append(f"run {run}: bot failed {proc.returncode}: {proc.stderr[-500:]}")
            sim.faults.disarm()
            if run % 3 == 2:  # the exchange down for the whole startup, then back
                sim.faults.down()
                fam.faults += 1
                proc = _bot(path, sim.url, seed, 0, "trade", cfg=cfg)
                if proc.returncode != 0:
                    fam.violations.append(f"run {run}: start with the exchange down failed: {proc.stderr[-300:]}")
                sim.faults.up()
            check_restart(sim, path, fam, f"run {run} ({[b[2] for b in burst]})", cfg)
    return fam


#: Conditions at startup: (name, what the safe-mode reason must say, bot configuration changes, down mode).
STARTUP_CONDITIONS: list[tuple[str, str, dict[str, Any], str | None]] = [
    ("down_drop", "exchange unreachable", {}, "drop"),
    ("wrong_api_key", "refused the credentials", {"api_key": "Wrong" + "0" * 59}, None),
    ("down_503", "exchange unreachable", {}, "503"),
    ("wrong_secret", "refused the credentials", {"secret": "Wrong" + "1" * 59}, None),
]


def _leaves_safe_mode_once_back(manager: Any, fam: Family, what: str, cfg: dict[str, Any]) -> None:
    """The exchange is back: the manager's own retry completes a reconciliation, and safe mode ends with
    its reasons (an operation still inside its settle window holds it until the window has passed)."""
    if not wait_until(lambda: manager.last_report is not None and manager.last_report.complete, timeout_s=10):
        fam.violations.append(f"{what}: no complete reconciliation 10 s after the exchange came back: "
                              f"{manager.safe_mode_reasons()}")  # fmt: skip
        return
    report = manager.last_report
    if report.unresolved:
        pending = [{"ts_ms": r.ts_ns // 1_000_000} for r in manager.journal.pending()]
        if pending:
            _sleep_past_window(manager, pending, settle_window_of(cfg), fam, what)
    if not wait_until(lambda: not manager.safe_mode, timeout_s=float(cfg.get("retry_max_s", 0.5)) + 0.5):
        fam.violations.append(f"{what}: safe mode outlasted the settle window of {settle_window_of(cfg)} ms by "
                              f"{cfg.get('retry_max_s', 0.5)} s with no reconcile (the exchange is back): "
                              f"{manager.safe_mode_reasons()}")  # fmt: skip
        manager.reconcile()
        if manager.safe_mode:
            fam.violations.append(f"{what}: still in safe mode after a reconciliation past every window: "
                                  f"{manager.safe_mode_reasons()}")  # fmt: skip
            return
    events = [r.data for r in manager.journal.records(types=["safe_mode"])]
    if not events or events[-1].get("active"):
        fam.violations.append(f"{what}: leaving safe mode was not journaled: {events[-1:]}")


def _start_under(sim: Any, path: Path, fam: Family, what: str, cfg: dict[str, Any],
                 condition: tuple[str, str, dict[str, Any], str | None]) -> None:  # fmt: skip
    """Start the bot under one startup condition and check what safe mode promises, then lift it."""
    from recovery import SafeModeError

    name, reason, changes, down = condition
    fam.faults += 1
    if down:
        sim.faults.down(mode=down)
    manager = manager_for(str(path), sim.url, {**cfg, **changes})
    try:
        report = manager.start()
        first = recovered(manager, report, second=False)
        fam.violations += [f"{what}: {f}" for f in safe_mode_failures(first, exchange_up=False,
                                                                       window_ms=settle_window_of(cfg))]  # fmt: skip
        reasons = " ".join(manager.safe_mode_reasons())
        if report.complete or not manager.safe_mode or reason not in reasons:
            fam.violations.append(f"{what}: expected safe mode saying {reason!r}, got {manager.safe_mode} "
                                  f"{manager.safe_mode_reasons()}")  # fmt: skip
        posts = len(sim.requests("POST"))
        try:
            manager.place_order("BTC/USDT", "limit", "buy", "0.001", "25000")
            fam.violations.append(f"{what}: a new order was accepted in safe mode")
        except SafeModeError:
            pass
        if len(sim.requests("POST")) != posts:
            fam.violations.append(f"{what}: an order refused in safe mode reached the exchange")
        targets = [o for o in manager.open_orders() if o.get("status") == "open" and o.get("id")]
        if targets:  # a cancel only reduces risk: safe mode never refuses it (the exchange may)
            fam.note("cancels_in_safe_mode")
            try:
                manager.cancel_order(targets[0]["client_id"], targets[0]["symbol"])
            except SafeModeError as exc:
                fam.violations.append(f"{what}: a cancel was refused in safe mode: {exc}")
            except Exception:
                pass  # the exchange is down or refuses the key: the cancel is in doubt or aborted
        if down:
            sim.faults.up()
            _leaves_safe_mode_once_back(manager, fam, what, cfg)
        else:
            time.sleep(0.5)  # the manager retries by itself: the credentials stay wrong
            if not manager.safe_mode:
                fam.violations.append(f"{what}: safe mode left with the credentials still wrong")
    except Exception as exc:
        fam.violations.append(f"{what}: start failed: {type(exc).__name__}: {exc}")
    finally:
        sim.faults.up()
        manager.close()


def family_startup(size: int, seed: int, root: Path) -> Family:
    fam = Family("startup")
    rnd = random.Random(seed)
    cfg = dict(SETTLE_CFG)
    with _simulator() as sim:
        path = root / "startup.journal"
        for run in range(size):
            point = _trade_run(sim, path, fam, run, rnd, seed, 12, cfg)
            # an exchange outage, then wrong credentials, at the restarts after one crash (cycling)
            down = STARTUP_CONDITIONS[(2 * run) % len(STARTUP_CONDITIONS)]
            credentials = STARTUP_CONDITIONS[(2 * run + 1) % len(STARTUP_CONDITIONS)]
            for condition in (down, credentials):
                _start_under(sim, path, fam, f"run {run} ({point}, then {condition[0]})", cfg, condition)
            check_restart(sim, path, fam, f"run {run} ({point}, then {down[0]} and {credentials[0]})", cfg)
    return fam


def family_lag(size: int, seed: int, root: Path) -> Family:
    from recovery.sim.settings import LAGGABLE_QUERIES

    fam = Family("lag")
    rnd = random.Random(seed)
    cfg = dict(SETTLE_CFG)
    queries = sorted(LAGGABLE_QUERIES)
    with _simulator() as sim:
        path = root / "lag.journal"
        fills = 0
        for run in range(size):
            lag_ms = rnd.choice([300, 1000, 2000])
            lagging = rnd.sample(queries, k=rnd.randint(1, len(queries)))
            sim.configure(lag_ms=lag_ms, lagging_queries=lagging)
            fam.faults += 1
            if run % 2:
                burst = rnd.sample(EXCHANGE_FAULTS[:3] + EXCHANGE_FAULTS[6:9], k=1)
                for method, p, kind, opts in burst:
                    sim.faults.arm(method, p, kind, times=1, **({"delay_s": 2.0} if kind == "commit_then_delay"
                                                               else opts))  # fmt: skip
                    fam.faults += 1
            filler = Filler(sim, seed + run)
            filler.start()
            point = _trade_run(sim, path, fam, run, rnd, seed, 20, cfg)
            fills += filler.finish()
            sim.faults.disarm()
            check_restart(sim, path, fam, f"run {run} ({point}, lag {lag_ms} ms on {lagging})", cfg, lag_ms=lag_ms)
        sim.configure(lag_ms=0)
        fam.notes["exchange_fills"] = fills
    return fam


APPLIED_FAULTS: list[Fault] = [
    ("POST", "/api/v3/order", "http_502_html", {"applied": True}),
    ("POST", "/api/v3/order", "http_503_1007", {"applied": True}),
    ("POST", "/api/v3/order", "down", {"applied": True, "mode": "503"}),
    ("POST", "/api/v3/order", "down", {"applied": True, "mode": "drop"}),
    ("DELETE", "/api/v3/order", "http_502_html", {"applied": True}),
    ("DELETE", "/api/v3/order", "http_503_1007", {"applied": True}),
    ("DELETE", "/api/v3/order", "down", {"applied": True, "mode": "drop"}),
    ("POST", "/api/v3/order/cancelReplace", "http_502_html", {"applied": True}),
    ("POST", "/api/v3/order/cancelReplace", "http_503_1007", {"applied": True}),
    ("POST", "/api/v3/order/cancelReplace", "down", {"applied": True, "mode": "503"}),
    ("GET", "/api/v3/order", "http_502_html", {"applied": True}),
]


def family_applied(size: int, seed: int, root: Path) -> Family:
    fam = Family("applied")
    rnd = random.Random(seed)
    cfg = dict(SETTLE_CFG)
    with _simulator() as sim:
        path = root / "applied.journal"
        for run in range(size):
            burst = rnd.sample(APPLIED_FAULTS, k=rnd.randint(1, 3))
            for method, p, kind, opts in burst:
                sim.faults.arm(method, p, kind, times=rnd.randint(1, 3), **opts)
                fam.faults += 1
            filler = Filler(sim, seed + run)
            filler.start()
            point = _trade_run(sim, path, fam, run, rnd, seed, 20, cfg)
            filler.finish()
            fam.notes["faults_left_unused"] = fam.notes.get("faults_left_unused", 0) + len(sim.faults.armed())
            sim.faults.disarm()
            check_restart(sim, path, fam, f"run {run} ({point}, {[(b[0], b[2]) for b in burst]})", cfg)
    return fam


def family_restore(size: int, seed: int, root: Path) -> Family:
    from journal import Journal, JournalError
    from tests.helpers.botpool import BotRun

    fam = Family("restore")
    rnd = random.Random(seed)
    cfg = {"settle": "zero"}
    with _simulator() as sim:
        path = root / "restore.journal"
        for run in range(size):
            backup = root / f"backup-{run}"
            filler = Filler(sim, seed + run)
            filler.start()
            bot = BotRun(_bot_argv(path, sim.url, seed + run, 30, "trade", cfg))
            at = rnd.randint(0, 20)
            try:
                bot.wait_ops(at)
                try:  # what `journal backup` does, in process: the bot trades on meanwhile
                    with Journal(path, readonly=True, verify_on_open="none") as reader:
                        reader.backup(backup)
                        fam.note("backups")
                except JournalError as exc:
                    fam.violations.append(f"run {run}: a backup beside the bot failed: {exc}")
            finally:
                kill = rnd.random() < 0.5
                if kill:
                    bot.wait_ops(at + rnd.randint(1, 9))
                code = bot.finish(kill=kill)
            filler.finish()
            fam.runs += 1
            fam.faults += 1
            if code not in (0, -signal.SIGKILL):
                fam.violations.append(f"run {run}: bot failed {code}: {bot.errors()[-500:]}")
            if not backup.is_dir():
                continue
            shutil.rmtree(path)
            shutil.copytree(backup, path)  # the disk is lost: restore last night's backup
            shutil.rmtree(backup)
            check_restart(sim, path, fam, f"run {run} (backup after {at} ops, {'killed' if kill else 'done'})", cfg)
        fam.notes["orders_on_exchange"] = len(sim.orders())
    return fam


def family_powercut(size: int, seed: int, root: Path) -> Family:
    from tests.helpers.fuselayer import FuseLayer, FuseUnavailable, fuse_unavailable_reason
    from tests.helpers.powercut import power_cut_runs

    fam = Family("powercut")
    reason = fuse_unavailable_reason()
    if reason is not None:
        fam.notes["skipped"] = reason
        return fam
    try:
        layer = FuseLayer(root / "backing", root / "mnt").__enter__()
    except FuseUnavailable as exc:
        fam.notes["skipped"] = str(exc)
        return fam
    try:
        result = power_cut_runs(layer, root / "images", size, random.Random(seed))
    finally:
        errors = layer.errors()
        layer.close()
    fam.runs, fam.faults = result.runs, result.images
    fam.violations += result.violations
    if "Traceback" in errors:
        fam.violations.append(f"the FUSE layer failed requests: {errors[-500:]}")
    fam.notes["acknowledged_intents_checked"] = result.acknowledged
    return fam


def _pristine(root: Path) -> tuple[Path, str, dict[int, str]]:
    """A journal with state and snapshots, its fingerprint, and the fingerprint at every seq."""
    from journal import Journal
    from journal.state.store import StateStore
    from tests.helpers.fingerprint import fingerprint

    path = root / "pristine.journal"
    with Journal(path) as j:
        s = StateStore(j, chunk_items=16)
        rnd = random.Random(5)
        for i in range(300):
            s.set("custom", f"k{rnd.randint(0, 80)}", {"i": i, "v": Decimal(i) / 3})
            if i % 97 == 96:
                s.save()
        final = fingerprint(s.view())
        history = {seq: fingerprint(s.state_at(seq)) for seq in range(max(1, j.last_seq - 5), j.last_seq + 1)}
    return path, final, history


def family_storage(size: int, seed: int, root: Path) -> Family:
    fam = Family("storage")
    rnd = random.Random(seed)
    pristine, final, history = _pristine(root)
    data = (pristine / "data.mdb").read_bytes()
    outcomes = {"exact": 0, "reported": 0, "earlier_prefix": 0}
    for trial in range(size):
        target = root / f"flip-{trial}"
        shutil.copytree(pristine, target)
        offset = rnd.randrange(len(data))
        with open(target / "data.mdb", "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ (1 << rnd.randrange(8))]))
        fam.runs += 1
        fam.faults += 1
        proc = subprocess.run([sys.executable, "-m", "tests.helpers.open_child", str(target)], cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        out = proc.stdout.strip()
        if proc.returncode == 0 and out == f"STATE {final}":
            outcomes["exact"] += 1
        elif proc.returncode == 0 and out.startswith("REPORTED"):
            outcomes["reported"] += 1
        elif proc.returncode == 0 and out.startswith("STATE ") and out[6:] in history.values():
            outcomes["earlier_prefix"] += 1
        else:
            fam.violations.append(f"flip at offset {offset}: exit {proc.returncode}: {out[:200]} {proc.stderr[-300:]}")
        shutil.rmtree(target, ignore_errors=True)
    fam.notes.update(outcomes)
    _damage_trials(fam, size // 3, rnd, root)
    return fam


def _tree(path: Path) -> dict[str, bytes | None]:
    """Names in a directory and data.mdb's bytes: what a refused open must leave alone."""
    if not path.is_dir():
        return {"<file>": path.read_bytes()} if path.exists() else {}
    out: dict[str, bytes | None] = {name: None for name in os.listdir(path)}
    if (path / "data.mdb").is_file():
        out["data.mdb"] = (path / "data.mdb").read_bytes()
    return out


def _damage_trials(fam: Family, trials: int, rnd: random.Random, root: Path) -> None:
    """Truncated, emptied and foreign directories (tests/helpers/damage.py): each refused with its error class."""
    from tests.helpers.damage import CASES, make_journal, truncate_data_file

    healthy = make_journal(root / "healthy.journal")
    refused = 0
    for trial in range(max(trials, len(CASES))):
        case = CASES[trial % len(CASES)]
        target = root / f"damage-{trial}"
        shutil.copytree(healthy, target)
        what = case.name
        if case.name == "truncated_half":  # a random cut instead of the half
            keep = round(rnd.uniform(0.05, 0.95), 3)
            truncate_data_file(target, keep=keep)
            what = f"truncated to {keep:.1%}"
        else:
            case.make(target)
        fam.runs += 1
        fam.faults += 1
        before = _tree(target)
        proc = subprocess.run([sys.executable, "-m", "tests.helpers.damage_child", str(target)], cwd=ROOT,
                              env=_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
        seen = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
        if proc.returncode != 0:
            fam.violations.append(f"damage {what}: exit {proc.returncode} (-7 is SIGBUS): {proc.stderr[-300:]}")
            continue
        for mode, expected in (("writer", case.writer_error), ("reader", case.reader_error)):
            words = seen.get(mode, "missing").split(":")[0].split()
            if not (words[-1] == expected or (expected == "OK" and words[0] == "OK")):
                fam.violations.append(f"damage {what}: {mode} expected {expected}, got {seen.get(mode)}")
            elif expected != "OK":
                refused += 1
        after = _tree(target)
        if "writer.lock" not in before and after.get("writer.lock", b"") is None:
            if (target / "writer.lock").is_file() and (target / "writer.lock").stat().st_size == 0:
                after.pop("writer.lock")  # an empty lock file: no trace of a journal
        if after != before:
            fam.violations.append(f"damage {what}: the refused opens changed the directory: "
                                  f"{sorted(before)} -> {sorted(after)}")  # fmt: skip
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    fam.notes["damage_refused_opens"] = refused


def family_load(size: int, seed: int, root: Path) -> Family:
    from journal import Journal
    from journal.state.store import StateStore

    fam = Family("load")
    path = root / "load.journal"
    threads_n, per_thread = 8, max(10, size)
    errors: list[BaseException] = []
    with Journal(path) as j:
        store = StateStore(j)
        # the follower writes to a file, not a pipe: nobody reads a pipe while the load runs, and a
        # full pipe would block the follower (that is the pipe, not the follower)
        follower_out = tempfile.TemporaryFile(mode="w+")
        follower = subprocess.Popen([sys.executable, "-m", "journal", "dump", "--follow", "--json", str(path)],
                                    cwd=ROOT, env=_env(), stdout=follower_out, stderr=subprocess.PIPE,
                                    text=True)  # fmt: skip
        stop = threading.Event()

        def maintain() -> None:
            while not stop.wait(0.05):
                try:
                    store.save()
                    store.compact(retention_s=0)
                except BaseException as exc:
                    errors.append(exc)

        def work(t: int) -> None:
            try:
                for i in range(per_thread):
                    op = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "type": "limit",
                                                 "amount": Decimal("0.001"), "price": Decimal(20000 + i)})  # fmt: skip
                    op.commit({"id": f"{t}-{i}", "client_id": op.client_id, "symbol": "BTC/USDT", "status": "open"})
            except BaseException as exc:
                errors.append(exc)

        m = threading.Thread(target=maintain)
        m.start()
        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        stop.set()
        m.join()
        stats = j.stats()
        last = j.last_seq
        verify = j.verify()
        time.sleep(1.5)
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
        follower_out.seek(0)
        out = follower_out.read()
        follower_out.close()
    fam.runs = threads_n * per_thread
    seen = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        try:
            seen.append(json.loads(line)["seq"])
        except (ValueError, KeyError):
            if i != len(lines) - 1:  # only a line cut by Ctrl-C may be partial
                fam.violations.append(f"load: follower printed a line that is not a record: {line[:200]!r}")
    if errors:
        fam.violations.extend(f"load: {type(e).__name__}: {e}" for e in errors[:5])
    if not verify.ok:
        fam.violations.append(f"load: verify: {verify}")
    if not seen or seen[-1] != last or seen != sorted(set(seen)):
        fam.violations.append(f"load: follower saw {len(seen)} records ending at {seen[-1] if seen else None}, "
                              f"last seq {last}; follower stderr: {err[-500:]}")  # fmt: skip
    fam.notes.update(
        ops_per_s=round(fam.runs / elapsed),
        append_p50_us=stats["append_latency"]["p50_us"],
        append_p99_us=stats["append_latency"]["p99_us"],
        follower_records=len(seen),
    )
    return fam


FAMILIES: dict[str, Callable[[int, int, Path], Family]] = {
    "crash": family_crash,
    "settle": family_settle,
    "recvwindow": family_recvwindow,
    "exchange": family_exchange,
    "startup": family_startup,
    "lag": family_lag,
    "applied": family_applied,
    "restore": family_restore,
    "storage": family_storage,
    "powercut": family_powercut,
    "load": family_load,
}


def run(size: int, seed: int, families: list[str]) -> list[Family]:
    out = []
    with tempfile.TemporaryDirectory(prefix="tj-campaign-") as tmp:
        for name in families:
            fam_root = Path(tmp) / name
            fam_root.mkdir()
            t0 = time.perf_counter()
            fam = FAMILIES[name](size, seed, fam_root)
            fam.notes["seconds"] = round(time.perf_counter() - t0, 1)
            print(fam.line(), flush=True)
            for v in fam.violations[:20]:
                print(f"  VIOLATION {v}", flush=True)
            out.append(fam)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.system.campaign", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=int(os.environ.get("TRADEJOURNAL_CAMPAIGN_SIZE", "20")))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)  # the managers checked in process warn about what they find
    families = [f for f in args.families.split(",") if f]
    unknown = set(families) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown families {sorted(unknown)}; known: {sorted(FAMILIES)}")
    results = run(args.size, args.seed, families)
    return 1 if any(f.violations for f in results) else 0


if __name__ == "__main__":
    sys.exit(main())
