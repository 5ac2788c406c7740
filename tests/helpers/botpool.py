"""Bot processes forked from a server that has already imported ccxt: a restart costs milliseconds, not a second.

Importing ccxt takes about a second and a half here; the fault campaign and the
stateful test restart bots hundreds of times. A ``multiprocessing`` fork
server (started once per process, with ccxt, the journal and recovery
imported, and no journal open -- never carry an open LMDB environment across
``fork()``) forks each bot. Each is a real process of its own: killed with
SIGKILL, it loses what a killed bot loses; crash points are armed through
``TRADEJOURNAL_CRASH_AT`` in the child before anything reaches one.

- :class:`BotRun` runs :func:`tests.helpers.bot_child.main` (the campaign's
  trading bot); its printed lines come back through a pipe as they are printed.
- :class:`BotServer` runs a bot that takes commands (start, place, cancel,
  edit, reconcile, health, recovered, close) one at a time: the stateful test
  drives it step by step and kills it between or inside steps.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["BotCrashed", "BotRun", "BotServer", "context"]

# ccxt.pro: the live bot (tests/helpers/live_child.py) would import it for ~1.5 s at every restart
_PRELOAD = [
    "ccxt",
    "ccxt.pro",
    "journal",
    "recovery",
    "recovery.exchanges",
    "tests.helpers.invariants",
    "tests.helpers.bot_child",
]
_context: Any = None
_lock = threading.Lock()


def context() -> Any:
    """The fork-server context (started on first use)."""
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(_PRELOAD)
            _context = ctx
        return _context


def _arm(crash_at: str | None) -> None:
    os.environ.pop("TRADEJOURNAL_CRASH_AT", None)
    if crash_at:
        os.environ["TRADEJOURNAL_CRASH_AT"] = crash_at


def _run_bot(argv: list[str], crash_at: str | None, conn: Connection) -> None:
    _arm(crash_at)
    from tests.helpers import bot_child

    try:
        code = bot_child.main(argv, emit=conn.send)
    except BaseException:
        conn.send("TRACEBACK " + traceback.format_exc())
        code = 1
    conn.close()
    os._exit(code)


class BotRun:
    """One run of the trading bot (``bot_child.main(argv)``) in a forked process; lines arrive as printed."""

    def __init__(self, argv: list[str], crash_at: str | None = None) -> None:
        ctx = context()
        self._conn, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_run_bot, args=(argv, crash_at, child))
        self.proc.start()
        child.close()
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                self.lines.append(self._conn.recv())
            except (EOFError, OSError):
                return

    def ops_done(self) -> int:
        return sum(1 for line in list(self.lines) if line.endswith(" done"))

    def wait_ops(self, n: int, timeout_s: float = 60) -> None:
        """Until the bot has done ``n`` operations (or ended)."""
        deadline = time.monotonic() + timeout_s
        while self.ops_done() < n and self.proc.is_alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"bot stalled after {self.lines[-3:]}")
            time.sleep(0.005)

    def finish(self, *, kill: bool = False, timeout_s: float = 180) -> int:
        """Kill it (SIGKILL) or wait for it; returns the exit code (-9 when killed)."""
        if kill:
            self.proc.kill()
        self.proc.join(timeout_s)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()
        self._reader.join(10)
        self._conn.close()
        code = self.proc.exitcode
        assert code is not None
        return code

    def errors(self) -> str:
        return "\n".join(line for line in self.lines if line.startswith("TRACEBACK "))


class BotCrashed(Exception):
    """The bot process died while a command ran (a crash point fired, or it was killed)."""


def _serve(path: str, url: str, cfg: dict[str, Any], crash_at: str | None, conn: Connection) -> None:
    _arm(crash_at)
    import logging

    from recovery import OrderAbortedError, OrderInDoubtError, OrderRefusedLocally, SafeModeError
    from tests.helpers.invariants import manager_for, recovered

    logging.basicConfig(level=logging.CRITICAL)
    manager = manager_for(path, url, cfg)
    expected = (OrderInDoubtError, OrderAbortedError, OrderRefusedLocally, SafeModeError)
    while True:
        try:
            name, kw = conn.recv()
        except EOFError:
            os._exit(0)
        try:
            if name == "start":
                report = manager.start()
                reply: Any = recovered(manager, report, second=False)
            elif name == "place":
                reply = {"order": manager.place_order(**kw)}
            elif name == "cancel":
                reply = {"order": manager.cancel_order(**kw)}
            elif name == "edit":
                reply = {"order": manager.edit_order(**kw)}
            elif name == "reconcile":
                reply = {"report": manager.reconcile().as_dict()}
            elif name == "recovered":
                reply = recovered(manager, manager.last_report, second=kw.get("second", True))
            elif name == "state":
                reply = {"safe_mode": manager.safe_mode, "open": manager.open_orders(),
                         "reasons": manager.safe_mode_reasons()}  # fmt: skip
            elif name == "close":
                manager.close()
                conn.send({"closed": True})
                os._exit(0)
            else:
                raise ValueError(f"unknown command {name!r}")
        except expected as exc:
            reply = {"error": type(exc).__name__, "message": str(exc)[:500]}
        except Exception as exc:
            import ccxt

            kind = "ccxt" if isinstance(exc, ccxt.BaseError) else "unexpected"
            reply = {"error": type(exc).__name__, "kind": kind, "message": str(exc)[:500],
                     "traceback": traceback.format_exc() if kind == "unexpected" else ""}  # fmt: skip
        conn.send(reply)


class BotServer:
    """A bot that runs one command at a time (see the module docstring); killed with :meth:`kill`."""

    def __init__(self, path: str, url: str, cfg: dict[str, Any], crash_at: str | None = None) -> None:
        ctx = context()
        self._conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_serve, args=(path, url, dict(cfg), crash_at, child))
        self.proc.start()
        child.close()

    def call(self, name: str, timeout_s: float = 120, **kw: Any) -> Any:
        """Run one command; raises :class:`BotCrashed` if the process died meanwhile."""
        try:
            self._conn.send((name, kw))
            if not self._conn.poll(timeout_s):
                raise TimeoutError(f"bot command {name} {kw} did not answer in {timeout_s} s")
            return self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
            self.proc.join(10)
            raise BotCrashed(f"{name}: the bot died (exit {self.proc.exitcode})") from exc

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> int | None:
        """SIGKILL, as a power cut of the process; returns the exit code."""
        self.proc.kill()
        self.proc.join(10)
        self._conn.close()
        return self.proc.exitcode

    def close(self) -> None:
        """Graceful: the manager closes (final snapshot), then the process ends."""
        if self.proc.is_alive():
            try:
                self.call("close", timeout_s=60)
            except BotCrashed:
                pass
        self.proc.join(10)
        self._conn.close()
