"""An async trading bot with the live feed on, for the live crash campaign (tests/system/campaign_live.py).

The bot is a real process (forked by :class:`LiveBot` from the fork server of
tests/helpers/botpool.py, with ccxt.pro already imported): an
:class:`recovery.AsyncStateManager` on a real ccxt.pro ``binance``
(:func:`recovery.exchanges.make_pro_exchange`) pointed at the simulator's REST
and user data stream. It starts (reconciles), sends ``("started", result)``
-- :func:`tests.helpers.invariants.recovered` plus a second reconciliation and
the journal's fill records -- then starts the live feed, sends
``("live", {})``, and runs the commands the parent sends (``place``,
``cancel``, ``view``, ``close``) as concurrent tasks, each answered with
``("reply", number, answer)``, while fills stream in. The parent kills it with
SIGKILL at random moments.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["BotGone", "LiveBot", "everything", "fill_records", "run"]

#: The manager's settings: settle windows 0, snapshots twice a second, no compaction (the check reads every
#: fill record the journal holds), the backstop sync rare (what reaches the state before a restart came
#: from the stream, its gap repairs or the bot's own calls).
SETTINGS: dict[str, Any] = {
    "reconcile_settings": {"settle_window_ms": 0},
    "order_settings": {"settle_window_ms": 0, "backoff_s": 0.01},
    "autosave_settings": {"interval_s": 0.5, "compact_every": 0},
    "retry_backoff_s": 0.1,
    "retry_max_s": 0.5,
}
FEED: dict[str, Any] = {"sync_interval_s": 30.0, "first_event_timeout_s": 5.0}


def fill_records(manager: Any) -> list[dict[str, Any]]:
    """The journal's fill records: symbol, trade id, order id, and who taught it (``via``, ``source``)."""
    return [
        {"symbol": r.data.get("symbol"), "id": r.data.get("id"), "order_id": r.data.get("order_id"),
         "via": r.data.get("via"), "source": r.source, "seq": r.seq}
        for r in manager.journal.records(types=["fill"])
    ]  # fmt: skip


def everything(manager: Any, section: str) -> dict[str, Any]:
    """``section`` whole: the working set over what the journal's archive holds.

    Iterating a state section yields the working set only: settled orders and old trades move to the
    archive once they are ``archive_after_records`` records old (journal/state/archive.py), and a check
    that enumerates the state would call them lost.
    """
    state = manager.view()
    out = dict(state.archive.items(section)) if state.archive is not None else {}
    out.update(state[section].items())
    return out


async def _started(manager: Any, report: Any) -> dict[str, Any]:
    from tests.helpers.invariants import recovered

    result = recovered(manager, report, second=False)
    result["second"] = (await manager.reconcile()).as_dict()
    for cid, o in everything(manager, "orders").items():  # recovered() lists the working set only
        if cid not in result["orders"]:
            result["orders"][cid] = {"status": o.get("status"), "filled": str(o.get("filled")), "id": o.get("id"),
                                     "symbol": o.get("symbol")}  # fmt: skip
    result["fills"] = fill_records(manager)
    result["trades"] = sorted(everything(manager, "trades"))
    return result


async def _command(manager: Any, name: str, kw: dict[str, Any]) -> Any:
    from recovery import OrderAbortedError, OrderInDoubtError, OrderRefusedLocally, SafeModeError

    try:
        if name == "place":
            return {"order": await manager.place_order(**kw)}
        if name == "cancel":
            return {"order": await manager.cancel_order(**kw)}
        if name == "view":
            return {"trades": sorted(everything(manager, "trades")), "live": manager.live_feed.status()}
        raise ValueError(f"unknown command {name!r}")
    except (OrderInDoubtError, OrderAbortedError, OrderRefusedLocally, SafeModeError) as exc:
        return {"error": type(exc).__name__, "message": str(exc)[:300]}
    except Exception as exc:
        import ccxt

        kind = "ccxt" if isinstance(exc, ccxt.BaseError) else "unexpected"
        return {"error": type(exc).__name__, "kind": kind, "message": str(exc)[:300],
                "traceback": traceback.format_exc() if kind == "unexpected" else ""}  # fmt: skip


async def _main(path: str, url: str, ws_url: str, conn: Connection) -> None:
    from recovery import AsyncStateManager
    from recovery.exchanges import make_pro_exchange

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    def read() -> None:  # the pipe is read in a thread: the event loop never blocks on it
        while True:
            try:
                item = conn.recv()
            except (EOFError, OSError):
                item = None
            loop.call_soon_threadsafe(inbox.put_nowait, item)
            if item is None:
                return

    ex = make_pro_exchange(url, ws_url, options={"ws": {"keepAlive": 20000}})
    manager = AsyncStateManager(path, ex, **SETTINGS)
    tasks: set[asyncio.Task[None]] = set()
    try:
        report = await manager.start()
        conn.send(("started", await _started(manager, report)))
        await manager.start_live_feed(**FEED)
        conn.send(("live", {}))
        threading.Thread(target=read, daemon=True).start()
        while True:
            item = await inbox.get()
            if item is None or item[1] == "close":
                break
            number, name, kw = item

            async def answer(number: int = number, name: str = name, kw: dict[str, Any] = kw) -> None:
                conn.send(("reply", number, await _command(manager, name, kw)))

            task = loop.create_task(answer())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await manager.close()
        await ex.close()
    conn.send(("closed", {}))


def run(path: str, url: str, ws_url: str, conn: Connection) -> None:
    """The child's entry point (a ``multiprocessing`` target)."""
    import logging

    logging.basicConfig(level=logging.CRITICAL)
    try:
        asyncio.run(_main(path, url, ws_url, conn))
        code = 0
    except BaseException:
        try:
            conn.send(("traceback", traceback.format_exc()))
        except OSError:
            pass
        code = 1
    conn.close()
    os._exit(code)


class BotGone(Exception):
    """The bot process ended (killed) before it answered."""


class LiveBot:
    """The parent's handle on one live bot process: start, commands, SIGKILL."""

    def __init__(self, path: str, url: str, ws_url: str) -> None:
        from tests.helpers.botpool import context

        ctx = context()
        self._conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=run, args=(path, url, ws_url, child))
        self.proc.start()
        child.close()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._messages: dict[str, Any] = {}  # "started", "live", "closed", "traceback" -> payload
        self._replies: dict[int, Any] = {}
        self._number = 0
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                with self._changed:
                    self._ended = True
                    self._changed.notify_all()
                return
            with self._changed:
                if msg[0] == "reply":
                    self._replies[msg[1]] = msg[2]
                else:
                    self._messages[msg[0]] = msg[1]
                self._changed.notify_all()

    def wait(self, what: str, timeout_s: float = 60) -> Any:
        """The ``what`` message's payload; :class:`BotGone` if the bot ended first."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while what not in self._messages:
                if self._ended:
                    raise BotGone(f"the bot ended before {what!r}: {self._messages.get('traceback', '')[-800:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the bot sent no {what!r} in {timeout_s} s")
                self._changed.wait(left)
            return self._messages[what]

    def call(self, name: str, timeout_s: float = 60, **kw: Any) -> Any:
        """Run one command in the bot (concurrently with the others); :class:`BotGone` if it dies meanwhile."""
        with self._changed:
            self._number += 1
            number = self._number
        try:
            with self._send_lock:
                self._conn.send((number, name, kw))
        except OSError as exc:
            raise BotGone(f"{name}: the bot is gone") from exc
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while number not in self._replies:
                if self._ended:
                    raise BotGone(f"{name}: the bot died before answering")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"bot command {name} {kw} did not answer in {timeout_s} s")
                self._changed.wait(left)
            return self._replies.pop(number)

    def kill(self) -> int | None:
        """SIGKILL; returns the exit code (-9)."""
        self.proc.kill()
        return self.finish()

    def close(self) -> int | None:
        """Graceful: the manager closes (feed stopped, final snapshot), then the process ends."""
        try:
            with self._send_lock:
                self._conn.send((0, "close", {}))
        except OSError:
            pass
        return self.finish()

    def finish(self, timeout_s: float = 60) -> int | None:
        self.proc.join(timeout_s)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()
        self._reader.join(10)
        self._conn.close()
        return self.proc.exitcode

    def traceback(self) -> str:
        with self._lock:
            return str(self._messages.get("traceback", ""))
