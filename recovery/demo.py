"""The demo: a bot journals orders against the local exchange simulator, crashes, recovers.

``python -m recovery.demo`` (console script ``tradejournal-demo``):

1. starts the Binance-spot simulator on 127.0.0.1 (in this process);
2. runs a small bot in a child process: it starts a :class:`StateManager`,
   places limit orders on two symbols, cancels one, edits one -- and is killed
   with SIGKILL at the ``order_acknowledged`` crash point: the exchange has
   accepted its next order, the journal has the intent but not the commit;
3. while the bot is down, the exchange fills one of its orders (partly) and
   another order fully;
4. restarts the bot: it reconciles (the pending order is found on the
   exchange and committed, fills are journaled, balances corrected), prints
   the report and its state, and reconciles a second time (nothing changes);
5. checks, from the simulator's own books and request log: every order on the
   exchange is known to the state exactly once with the exchange's status and
   fill; no client id was ever sent twice; positions equal the exchange's
   trades; balances equal the exchange's. Exit status 0 only if all hold.

Runs in a few seconds. The journal lives in a temporary directory deleted at
the end; ``--keep DIR`` writes it to ``DIR/bot.journal`` instead, keeps it, and
prints the commands to look inside (``journal dump``, ``journal show`` of the
order the crash left pending, ``journal stats``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from decimal import Decimal
from typing import Any

__all__ = ["check_against_exchange", "main", "recovered_result"]


def _child(path: str, url: str, phase: str) -> int:
    """The bot. ``phase`` is ``trade`` (until the crash point fires) or ``recover``."""
    import logging

    from .exchanges import make_exchange
    from .manager import StateManager

    logging.basicConfig(level=logging.WARNING, format="  bot: %(levelname)s %(name)s: %(message)s")
    exchange = make_exchange(url)
    manager = StateManager(path, exchange, reconcile_settings={"settle_window_ms": 0})
    report = manager.start()
    if phase == "trade":
        a = manager.place_order("BTC/USDT", "limit", "buy", "0.010", "29000")
        b = manager.place_order("ETH/USDT", "limit", "buy", "0.50", "1900")
        c = manager.place_order("BTC/USDT", "limit", "sell", "0.005", "31000")
        manager.cancel_order(b["client_id"], "ETH/USDT")
        manager.edit_order(c["client_id"], "BTC/USDT", "limit", "sell", "0.005", "30500")
        manager.set_strategy("grid", active=True, params={"step": Decimal("250")})
        print(f"  bot: placed {a['client_id']} and others; placing one more, the crash point is armed", flush=True)
        manager.place_order("ETH/USDT", "limit", "buy", "0.25", "1950")
        print("  bot: unreachable: the crash point should have fired", flush=True)
        return 3
    out = recovered_result(manager, report)
    manager.close()
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def recovered_result(manager: Any, report: Any) -> dict[str, Any]:
    """What a freshly recovered bot knows, as JSON-able data (then a second reconcile)."""
    state = manager.view()
    second = manager.reconcile()
    return {
        "report": report.as_dict(),
        "second": second.as_dict(),
        "orders": {
            k: {"status": v.get("status"), "filled": str(v.get("filled")), "id": v.get("id"), "symbol": v.get("symbol")}
            for k, v in state["orders"].items()
        },  # fmt: skip
        "positions": {k: str(v.get("amount")) for k, v in state["positions"].items()},
        "balances": {k: str(v.get("total")) for k, v in state["balances"].items()},
        "pending": manager.journal.pending_ids() if manager.journal else [],
        "verify": str(manager.journal.verify()) if manager.journal else "",
    }


def _run_child(path: str, url: str, phase: str, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("TRADEJOURNAL_CRASH_AT", None)
    if crash_at:
        env["TRADEJOURNAL_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "recovery.demo", "--child", phase, "--journal", path, "--url", url],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=120,
    )


def check_against_exchange(sim: Any, result: dict[str, Any]) -> list[str]:
    """Every invariant the demo (and the fault campaign) promises, checked against the simulator's books.

    ``result`` is what a recovered bot reports: its orders, positions, balances,
    pending op ids, and its second reconciliation's report. Returns the failures.
    """
    failures = []
    orders = result["orders"]
    exchange_orders = sim.orders()

    def unified(exchange_symbol: str) -> str:
        market = sim.core.market(exchange_symbol)
        return f"{market.base}/{market.quote}"

    for o in exchange_orders:  # order ids are unique per symbol only: match by (symbol, id)
        mine = orders.get(o.client_order_id) or next(
            (v for v in orders.values() if v["id"] == str(o.order_id) and v["symbol"] == unified(o.symbol)), None
        )
        if mine is None:
            failures.append(f"exchange order {o.order_id} ({o.client_order_id}) unknown to the state")
            continue
        status = {"NEW": "open", "PARTIALLY_FILLED": "open", "FILLED": "closed", "CANCELED": "canceled"}.get(
            o.status, o.status.lower()
        )
        if mine["status"] != status or Decimal(mine["filled"]) != o.executed_qty:
            failures.append(f"order {o.client_order_id}: state {mine['status']}/{mine['filled']}, "
                            f"exchange {status}/{o.executed_qty}")  # fmt: skip
    ids = [(unified(o.symbol), str(o.order_id)) for o in exchange_orders]
    known_ids = [(v["symbol"], v["id"]) for v in orders.values() if v["id"]]
    if len(known_ids) != len(set(known_ids)) or not set(ids) <= set(known_ids):
        failures.append("an exchange order is known twice, or not at all")
    sent = [r.params.get("newClientOrderId") for r in sim.requests("POST") if r.params.get("newClientOrderId")]
    if len(sent) != len(set(sent)):
        failures.append(f"a client id was sent twice: {sorted(sent)}")
    positions: dict[str, Decimal] = {}
    for t in sim.trades():
        market = sim.core.market(t.symbol)
        symbol = f"{market.base}/{market.quote}"
        positions[symbol] = positions.get(symbol, Decimal(0)) + (t.qty if t.is_buyer else -t.qty)
    for symbol, amount in positions.items():
        if Decimal(result["positions"].get(symbol, "0")) != amount:
            failures.append(f"position {symbol}: state {result['positions'].get(symbol)}, exchange {amount}")
    for asset, bal in sim.balances().items():
        total = bal.free + bal.locked
        if total and Decimal(result["balances"].get(asset, "0")) != total:
            failures.append(f"balance {asset}: state {result['balances'].get(asset)}, exchange {total}")
    if result["pending"]:
        failures.append(f"operations still pending: {result['pending']}")
    second = result["second"]
    if any(second[k] for k in ("resolved", "aborted", "adopted", "order_updates", "fills_applied",
                               "balance_corrections")) or second["unresolved"]:  # fmt: skip
        failures.append(f"a second reconcile changed something: {second}")
    return failures


def _journal_command() -> str:
    """How to run the ``journal`` command of this install, as a person would type it here."""
    import shutil
    from pathlib import Path

    script = Path(sys.executable).with_name("journal")
    found = shutil.which("journal")
    if found and script.exists() and os.path.samefile(found, script):
        return "journal"
    if script.exists():
        rel = os.path.relpath(script)
        return rel if not rel.startswith("..") else str(script)
    return f"{sys.executable} -m journal"


def _settled_by_recovery(path: str) -> int | None:
    """The op id of the order the crash left pending, which reconciliation committed."""
    from journal import Journal

    with Journal(path, readonly=True) as journal:
        for rec in journal.records(kinds=["commit"], source="recovery"):
            return rec.op
    return None


def _next_steps(path: str) -> list[str]:
    journal = _journal_command()
    shown = path if " " not in path else f"'{path}'"
    op = _settled_by_recovery(path)
    steps = [(f"{journal} dump {shown}", "every record: intents, commits, what recovery decided")]
    if op is not None:
        steps.append((f"{journal} show {shown} {op}", "the order the crash left pending, settled by recovery"))
    steps.append((f"{journal} stats {shown}", "sizes, counts, the intent-to-commit latency"))
    width = max(len(cmd) for cmd, _ in steps)
    return [f"journal kept in {path}; look inside:"] + [f"  {cmd:<{width}}  # {why}" for cmd, why in steps]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recovery.demo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--keep", metavar="DIR", help="write the journal to DIR/bot.journal and keep it (DIR is created if missing)"
    )
    parser.add_argument("--child", choices=("trade", "recover"), help=argparse.SUPPRESS)
    parser.add_argument("--journal", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.journal, args.url, args.child)

    from .sim.server import Simulator

    if args.keep:
        kept = os.path.join(args.keep, "bot.journal")
        if os.path.exists(kept):
            parser.error(f"{kept} exists (an earlier run's?): remove it, or give another --keep DIR")
        os.makedirs(args.keep, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tradejournal-demo-") as tmp:
        path = os.path.join(args.keep or tmp, "bot.journal")
        with Simulator(prices={"BTC/USDT": "30000", "ETH/USDT": "2000"}) as sim:
            print(f"exchange simulator on {sim.url}; journal at {path}")
            print("1. the bot trades; it will be killed with SIGKILL right after the exchange accepts an order")
            proc = _run_child(path, sim.url, "trade", "order_acknowledged:6")
            print(proc.stdout, end="")
            if proc.returncode != -signal.SIGKILL:
                print(f"demo FAILED: the bot was not killed at the crash point (exit {proc.returncode})")
                return 1
            print(f"   bot killed (exit {proc.returncode}); the exchange holds {len(sim.orders())} orders")
            open_btc = [o for o in sim.orders() if o.status == "NEW" and o.symbol == "BTCUSDT"]
            print("2. while the bot is down, the exchange fills orders")
            for o in open_btc[:1]:
                sim.fill(o.order_id, o.orig_qty / 2)
                print(f"   filled half of {o.client_order_id}")
            open_eth = [o for o in sim.orders() if o.status == "NEW" and o.symbol == "ETHUSDT"]
            for o in open_eth[:1]:
                sim.fill(o.order_id)
                print(f"   filled all of {o.client_order_id}")
            print("3. the bot restarts and reconciles")
            proc = _run_child(path, sim.url, "recover", None)
            lines = proc.stdout.splitlines()
            result_line = next((line for line in lines if line.startswith("RESULT ")), None)
            if proc.returncode != 0 or result_line is None:
                print(proc.stdout)
                print(f"demo FAILED: the restarted bot exited {proc.returncode}")
                return 1
            result = json.loads(result_line[len("RESULT ") :])
            report = result["report"]
            print(f"   reconciliation: resolved {report['resolved']}, aborted {report['aborted']}, "
                  f"unresolved {len(report['unresolved'])}, order updates {report['order_updates']}, "
                  f"fills {report['fills_applied']}, balance corrections {report['balance_corrections']}, "
                  f"{report['requests']} requests, {report['duration_ms']:.0f} ms")  # fmt: skip
            print("   state after recovery:")
            for cid, o in sorted(result["orders"].items()):
                print(f"     {cid}  {o['symbol']:9s} {o['status']:9s} filled {o['filled']}")
            print(f"     positions: {result['positions']}")
            failures = check_against_exchange(sim, result)
        print("4. checks: every exchange order known once, no client id sent twice, positions and balances "
              "match the exchange, nothing pending, a second reconcile changes nothing")  # fmt: skip
        for f in failures:
            print(f"   FAILED: {f}")
        print("demo OK" if not failures else "demo FAILED")
        if args.keep:
            print("\n".join(_next_steps(path)))
        else:
            print("(its journal was in a temporary directory, now deleted: --keep DIR keeps it to look inside)")
        return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
