"""The fault campaign: nothing lost, nothing duplicated, nothing leaked -- with figures.

``python -m tests.system.campaign [--size N] [--seed S] [--families crash,exchange,storage,load]``

Each family prints one summary line: runs, faults injected, invariant
violations (must be 0); the exit status is non-zero on any violation. The
default suite runs a short version (``tests/test_campaign.py``); the README
gives the long command and its last figures.

Families:

- ``crash``: a bot process (tests/helpers/bot_child.py) trades against the
  simulator on three symbols -- places, market orders, cancels, edits -- while
  the simulator fills resting orders; it is killed with SIGKILL at a named
  crash point or at a random moment; each restart reconciles, and the
  invariants are checked against the simulator's books and request log
  (:func:`recovery.demo.check_against_exchange`: every exchange order known
  once with its status and fill, no client id sent twice, positions and
  balances equal the exchange's, nothing pending, ``verify()`` clean, a second
  reconcile changes nothing).
- ``exchange``: the same bot with simulator faults armed during trading and
  during recovery (timeouts after commit, dropped connections, 429/418, 503,
  502, the exchange down for the whole startup).
- ``storage``: bytes flipped at random offsets of a journal's data file; each
  damaged copy is opened in a subprocess, which must either report the damage
  or load exactly the original state (or an exact earlier state, when a flip
  in an LMDB meta page rolls the file back to the previous transaction --
  counted separately: LMDB 0.9 meta pages carry no checksum).
- ``load``: threads placing operations while snapshots, compaction and a
  ``dump --follow`` reader run; latency percentiles reported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CRASH_POINTS = ["intent_durable", "outcome_durable", "order_acknowledged", "snapshot_durable", "event_durable"]


@dataclass
class Family:
    name: str
    runs: int = 0
    faults: int = 0
    violations: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"{self.name:8s} runs={self.runs} faults={self.faults} violations={len(self.violations)} {extra}".rstrip()
        )


def _env(crash_at: str | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TRADEJOURNAL_CRASH_AT", None)
    if crash_at:
        env["TRADEJOURNAL_CRASH_AT"] = crash_at
    return env


def _bot(path: Path, url: str, seed: int, ops: int, mode: str, crash_at: str | None = None,
         kill_after_s: float | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = [sys.executable, "-m", "tests.helpers.bot_child", str(path), url, str(seed), str(ops), mode]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(crash_at), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=kill_after_s if kill_after_s is not None else 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


class _Filler(threading.Thread):
    """Fills resting orders on the exchange now and then (partly or fully), as a market would."""

    def __init__(self, sim: Any, seed: int) -> None:
        super().__init__(daemon=True)
        self.sim, self.rnd, self.stop = sim, random.Random(seed), threading.Event()
        self.fills = 0

    def run(self) -> None:
        while not self.stop.wait(0.05):
            open_orders = [o for o in self.sim.orders() if o.status in ("NEW", "PARTIALLY_FILLED")]
            if not open_orders or self.rnd.random() < 0.5:
                continue
            o = self.rnd.choice(open_orders)
            remaining = o.orig_qty - o.executed_qty
            amount = remaining if self.rnd.random() < 0.5 else (remaining / 2).quantize(Decimal("0.001"))
            try:
                if amount > 0:
                    self.sim.fill(o.order_id, amount)
                    self.fills += 1
            except Exception:
                pass  # the order closed meanwhile: fine


def _check(sim: Any, path: Path, fam: Family, what: str) -> None:
    from recovery.demo import check_against_exchange

    proc = _bot(path, sim.url, 0, 0, "check")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        fam.violations.append(f"{what}: restart failed ({proc.returncode}): {proc.stderr[-500:]}")
        return
    result = json.loads(line[len("RESULT ") :])
    if not result["verify"].startswith("ok"):
        fam.violations.append(f"{what}: verify: {result['verify']}")
    for failure in check_against_exchange(sim, result):
        fam.violations.append(f"{what}: {failure}")


def _prices() -> dict[str, str]:
    return {"BTC/USDT": "30000", "ETH/USDT": "2000", "SOL/USDT": "100"}


def family_crash(size: int, seed: int, root: Path) -> Family:
    from recovery.sim.server import Simulator

    fam = Family("crash")
    rnd = random.Random(seed)
    with Simulator(prices=_prices(), balances={"USDT": "1000000", "BTC": "10", "ETH": "100", "SOL": "1000"}) as sim:
        filler = _Filler(sim, seed)
        filler.start()
        fills = 0
        path = root / "crash.journal"
        for run in range(size):
            if run % 4 != 3:  # three runs in four at a named crash point, cycling through them
                point = f"{CRASH_POINTS[(run - run // 4) % len(CRASH_POINTS)]}:{rnd.randint(1, 6)}"
                proc = _bot(path, sim.url, seed + run, 30, "trade", crash_at=point)
            else:
                point = "random"
                proc = _bot(path, sim.url, seed + run, 30, "trade", kill_after_s=rnd.uniform(0.5, 1.5))
            fam.runs += 1
            if proc.returncode == -signal.SIGKILL:
                fam.faults += 1
            elif proc.returncode != 0:
                fam.violations.append(f"run {run} ({point}): bot failed {proc.returncode}: {proc.stderr[-500:]}")
            filler.stop.set()
            filler.join()
            fills += filler.fills
            _check(sim, path, fam, f"run {run} ({point})")
            filler = _Filler(sim, seed + run + 1)
            filler.start()
        filler.stop.set()
        filler.join()
        fam.notes["exchange_fills"] = fills + filler.fills
        fam.notes["orders_on_exchange"] = len(sim.orders())
    return fam


EXCHANGE_FAULTS = [
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
    from recovery.sim.server import Simulator

    fam = Family("exchange")
    rnd = random.Random(seed)
    with Simulator(prices=_prices(), balances={"USDT": "1000000", "BTC": "10", "ETH": "100", "SOL": "1000"},
                   fault_delay_s=2.0) as sim:  # fmt: skip
        path = root / "exchange.journal"
        for run in range(size):
            burst = rnd.sample(EXCHANGE_FAULTS, k=rnd.randint(1, 3))
            for method, p, kind, opts in burst:
                sim.faults.arm(method, p, kind, times=rnd.randint(1, 2), **opts)
                fam.faults += 1
            proc = _bot(path, sim.url, seed + run, 12, "trade")
            fam.runs += 1
            if proc.returncode != 0:
                fam.violations.append(f"run {run}: bot failed {proc.returncode}: {proc.stderr[-500:]}")
            sim.faults.disarm()
            if run % 3 == 2:  # the exchange down for the whole startup, then back
                sim.faults.down()
                fam.faults += 1
                proc = _bot(path, sim.url, seed, 0, "trade")
                if proc.returncode != 0:
                    fam.violations.append(f"run {run}: start with the exchange down failed: {proc.stderr[-300:]}")
                sim.faults.up()
            _check(sim, path, fam, f"run {run} ({[b[2] for b in burst]})")
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
    return fam


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


FAMILIES = {"crash": family_crash, "exchange": family_exchange, "storage": family_storage, "load": family_load}


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
    parser.add_argument("--families", default="crash,exchange,storage,load")
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = set(families) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown families {sorted(unknown)}; known: {sorted(FAMILIES)}")
    results = run(args.size, args.seed, families)
    return 1 if any(f.violations for f in results) else 0


if __name__ == "__main__":
    sys.exit(main())
