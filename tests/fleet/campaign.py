"""The fleet campaign: bots trade while their shippers, the hub and the link fail; the archive loses nothing.

``python -m tests.fleet.campaign [--size N] [--seed S] [--bots B]``

Three bot processes (tests/helpers/bot_child.py) trade against the exchange
simulator, round after round (each round a new process: a new writer
incarnation), while a ``journal ship`` process beside each bot streams its
journal to a real ``nats-server -js`` through a TCP link this campaign can
cut. A chaos thread, ``size`` times each, in random order:

- SIGKILLs a random shipper and starts it again a moment later;
- SIGKILLs the NATS server and starts it again on the same port and store;
- cuts the link (every connection dropped, new ones refused) for a second or two.

The bots never wait for any of it: every bot run must finish its operations
and exit 0. Once the bots are done and the faults over, the shippers drain
their backlog; then the stream is archived (journal.fleet.archive) and checked:

- every record of every bot is in the archive exactly once, in order, byte for
  byte, with its incarnation (one history per bot, no fork, nothing held, no
  problem), and every archived chain verifies;
- the fleet view shows each bot with no lag left.

Figures printed: records shipped, duplicates the archive dropped, faults
injected, and the lag from a record's write to the hub storing it as
p50/p99/max ms, for records written outside the fault window (``lag_calm``)
and inside it, up to 5 s after the last fault (``lag_faults``: what an outage
costs is delay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    runs: int = 0
    faults: dict[str, int] = field(default_factory=lambda: {"shipper_kill": 0, "server_kill": 0, "link_cut": 0})
    violations: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in {**self.faults, **self.notes}.items())
        return f"fleet    runs={self.runs} violations={len(self.violations)} {extra}"


class Link:
    """A TCP forwarder on 127.0.0.1 between the shippers and the hub, which can be cut and restored."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.closed = False
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.sock.close()


class _Filler(threading.Thread):
    """Fills resting orders on the simulator now and then, as a market would."""

    def __init__(self, sim: Any, seed: int) -> None:
        super().__init__(daemon=True)
        self.sim, self.rnd, self.stop = sim, random.Random(seed), threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            open_orders = [o for o in self.sim.orders() if o.status in ("NEW", "PARTIALLY_FILLED")]
            if open_orders and self.rnd.random() < 0.5:
                o = self.rnd.choice(open_orders)
                try:
                    self.sim.fill(o.order_id, (o.orig_qty - o.executed_qty) / 2 or o.orig_qty)
                except Exception:
                    pass  # closed meanwhile


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TRADEJOURNAL_CRASH_AT", None)
    return env


def _shipper(path: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "journal", "ship", str(path), "--to", url, "--json"],
                                cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def _journal_last(path: Path) -> tuple[str, int]:
    from journal import Journal

    with Journal(path, readonly=True, verify_on_open="none") as j:
        return j.journal_id, j.last_seq


def _stream(url: str) -> list[tuple[dict[str, str], bytes, float]]:
    """Every message of the records stream: headers, body, and when the hub stored it (epoch seconds)."""

    async def main() -> list[tuple[dict[str, str], bytes, float]]:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            total = (await js.stream_info("TJ")).state.messages
            sub = await js.pull_subscribe("tj.*.records", stream="TJ", config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE))  # fmt: skip
            out: list[tuple[dict[str, str], bytes, float]] = []
            while len(out) < total:
                for m in await sub.fetch(min(2000, total - len(out)), timeout=5):
                    out.append((dict(m.headers or {}), m.data, m.metadata.timestamp.timestamp()))
            return out
        finally:
            await nc.close()

    return asyncio.run(main())


_T0 = [time.monotonic()]


def _mark(what: str) -> None:
    if os.environ.get("TRADEJOURNAL_CAMPAIGN_TRACE"):
        print(f"  {time.monotonic() - _T0[0]:6.1f}s {what}", file=sys.stderr)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def run_campaign(size: int, seed: int, root: Path, bots: int = 3, ops: int = 40, rounds: int = 1) -> Result:
    from journal import Journal
    from journal.fleet import NatsServer
    from journal.fleet.archive import Archive
    from journal.fleet.view import fleet_rows
    from recovery.sim.server import Simulator

    res = Result()
    _T0[0] = time.monotonic()
    rnd = random.Random(seed)
    paths = [root / f"bot{i}.journal" for i in range(bots)]
    server = NatsServer(root / "hub")
    server.start()
    link = Link(server.port)
    shippers: list[subprocess.Popen[bytes] | None] = [None] * bots
    ship_lock = threading.Lock()
    prices = {"BTC/USDT": "30000", "ETH/USDT": "2000", "SOL/USDT": "100"}
    balances = {"USDT": "1000000", "BTC": "10", "ETH": "100", "SOL": "1000"}
    try:
        with Simulator(prices=prices, balances=balances) as sim:
            filler = _Filler(sim, seed)
            filler.start()
            for i, p in enumerate(paths):  # the journals exist before their shippers start
                Journal(p).close()
                shippers[i] = _shipper(p, link.url, root / f"ship{i}.log")
            deadline = time.monotonic() + 60  # ...and the shippers are connected before the bots start
            while len(_statuses(server.url)) < bots and time.monotonic() < deadline:
                time.sleep(0.2)
            chaos_done = threading.Event()
            bot_errors: list[str] = []

            def trade(i: int) -> None:
                done = 0
                while done < rounds or not chaos_done.is_set():  # faults only ever happen while bots trade
                    cmd = [sys.executable, "-m", "tests.helpers.bot_child", str(paths[i]), sim.url,
                           str(seed * 100 + i * 10 + done), str(ops), "trade"]  # fmt: skip
                    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180)
                    res.runs += 1
                    _mark(f"bot {i} run {done + 1} ends")
                    done += 1
                    if proc.returncode != 0 or "DONE" not in proc.stdout:
                        bot_errors.append(f"bot {i} round {done}: exit {proc.returncode}: {proc.stderr[-400:]}")

            traders = [threading.Thread(target=trade, args=(i,)) for i in range(bots)]
            for t in traders:
                t.start()
            events = [kind for kind in res.faults for _ in range(size)]
            rnd.shuffle(events)
            started = time.monotonic()  # the faults begin once every bot is past its start-up and trading
            while time.monotonic() - started < 60 and min(_journal_last(p)[1] for p in paths) < 4:
                time.sleep(0.1)
            _mark("chaos starts")
            chaos_window = [time.time(), 0.0]
            for kind in events:
                time.sleep(rnd.uniform(0.2, 0.6))
                if kind == "shipper_kill":
                    i = rnd.randrange(bots)
                    with ship_lock:
                        proc = shippers[i]
                        if proc is not None:
                            proc.send_signal(signal.SIGKILL)
                            proc.wait()
                    time.sleep(rnd.uniform(0.1, 0.4))
                    with ship_lock:
                        shippers[i] = _shipper(paths[i], link.url, root / f"ship{i}.log")
                elif kind == "server_kill":
                    server.kill()
                    time.sleep(rnd.uniform(0.2, 0.6))
                    server.start()
                else:
                    link.cut()
                    time.sleep(rnd.uniform(0.5, 1.5))
                    link.restore()
                res.faults[kind] += 1
                _mark(kind)
            chaos_done.set()
            chaos_window[1] = time.time() + 5.0  # and the backlog drains: a shipper killed last restarts
            _mark("chaos done")
            for t in traders:
                t.join()
            filler.stop.set()
            res.violations += bot_errors
        _mark("bots done")
        # the backlog drains: every shipper's cursor reaches its journal's last record
        targets = [_journal_last(p) for p in paths]
        deadline = time.monotonic() + 120
        pending = set(range(bots))
        while pending and time.monotonic() < deadline:
            for i in sorted(pending):
                cursor = paths[i] / "ship" / "TJ.cursor"
                if cursor.exists() and json.loads(cursor.read_text())["seq"] >= targets[i][1]:
                    pending.discard(i)
            time.sleep(0.2)
        for i in sorted(pending):
            res.violations.append(f"bot {i}: shipping did not catch up with seq {targets[i][1]} within 120 s")
        with ship_lock:
            for proc in shippers:
                if proc is not None:
                    proc.send_signal(signal.SIGTERM)
            for proc in shippers:
                if proc is not None and proc.wait(timeout=30) != 0:
                    res.violations.append(f"a shipper exited {proc.returncode} on SIGTERM (see {root}/ship*.log)")
        _mark("drained")
        # the archive: every record once, in order, byte for byte
        with Archive(root / "archive") as archive:
            report = archive.sync(server.url)
            for what in ("forks", "held", "problems"):
                if getattr(report, what):
                    res.violations.append(f"archive {what}: {getattr(report, what)[:3]}")
            for row in archive.verify():
                if not row["ok"]:
                    res.violations.append(f"archive {row['name']}: {row['problem']}")
            names = archive.names()
            statuses = _statuses(server.url)
            rows = fleet_rows(archive, statuses)
        for (jid, last), p in zip(targets, paths, strict=True):
            if jid not in names:
                res.violations.append(f"{p}: journal {jid} not in the archive")
                continue
            with Journal(p, readonly=True) as src, Journal(root / "archive" / jid, readonly=True) as copy:
                mine = [(r.seq, r.value) for c in src.scan_raw(0) for r in c]
                theirs = [(r.seq, r.value) for c in copy.scan_raw(0) for r in c]
                if not mine or mine[-1][0] != last or [s for s, _ in mine] != list(range(1, last + 1)):
                    res.violations.append(f"{p}: the journal itself is not seq 1..{last}")
                if mine != theirs:
                    res.violations.append(
                        f"{p}: archive differs ({len(theirs)} records archived, {len(mine)} in the journal)"
                    )  # noqa: E501
                if [src.incarnations.at(s) for s, _ in mine] != [copy.incarnations.at(s) for s, _ in mine]:
                    res.violations.append(f"{p}: incarnations differ in the archive")
        for row in rows:
            if row.get("lag_records") not in (0, None) or row.get("history") is None:
                res.violations.append(
                    f"fleet view: {row['journal_id']} lag {row.get('lag_records')} ({row.get('state')})"
                )
        _mark("archived")
        # figures
        msgs = _stream(server.url)
        stored: dict[tuple[str, str, int], tuple[float, float]] = {}
        for headers, body, ts in msgs:
            key = (headers["Tj-Journal"], headers["Tj-Incarnation"], int(headers["Tj-Seq"]))
            if key not in stored:
                written = int.from_bytes(body[16:24], "big") / 1e9
                stored[key] = (written, ts - written)
        calm = [lag for written, lag in stored.values() if not chaos_window[0] <= written <= chaos_window[1]]
        faulty = [lag for written, lag in stored.values() if chaos_window[0] <= written <= chaos_window[1]]
        shipped = sum(last for _, last in targets)
        res.notes.update({"records": shipped, "stream_messages": len(msgs), "archive_duplicates": report.duplicates})
        for name, lags in (("calm", calm), ("faults", faulty)):  # written outside / inside the fault window
            res.notes[f"lag_{name}_ms"] = (f"{_pct(lags, 0.5) * 1000:.0f}/{_pct(lags, 0.99) * 1000:.0f}/"
                                           f"{max(lags, default=0) * 1000:.0f}(n={len(lags)})")  # fmt: skip
        if len(stored) != shipped:
            res.violations.append(f"the stream holds {len(stored)} distinct records, the journals {shipped}")
    finally:
        with ship_lock:
            for proc in shippers:
                if proc is not None and proc.poll() is None:
                    proc.kill()
        link.close()
        server.kill()
    return res


def _statuses(url: str) -> dict[str, dict[str, Any]]:
    from journal.fleet.hub import connect, read_statuses

    async def main() -> dict[str, dict[str, Any]]:
        nc = await connect(url, name="campaign")
        try:
            return await read_statuses(nc)
        finally:
            await nc.close()

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fleet.campaign", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=5, help="faults of each kind (default 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bots", type=int, default=3)
    parser.add_argument("--ops", type=int, default=40, help="operations per bot run")
    parser.add_argument("--rounds", type=int, default=3, help="bot runs (writer incarnations) per bot, at least")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tj-fleet-campaign-") as tmp:
        t0 = time.monotonic()
        res = run_campaign(args.size, args.seed, Path(tmp), args.bots, args.ops, args.rounds)
        print(res.line() + f" elapsed_s={time.monotonic() - t0:.1f}")
        for v in res.violations[:20]:
            print("  VIOLATION", v)
    return 1 if res.violations else 0


if __name__ == "__main__":
    sys.exit(main())
