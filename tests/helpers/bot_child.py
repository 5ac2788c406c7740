"""A trading bot for the fault campaign: random orders through the StateManager until killed.

Usage: python -m tests.helpers.bot_child PATH URL SEED OPS MODE [CONFIG_JSON]
(the campaign forks it from a pre-imported server instead: tests/helpers/botpool.py).
MODE ``trade``: start (reconcile), then OPS random operations (limit places that
rest, market places that fill, cancels, edits, on several symbols), with a
snapshot every 10 operations. Errors the manager raises by design (in doubt,
aborted, refused by the exchange, safe mode) are printed and trading goes on;
on a SafeModeError the bot reconciles, as a bot reacting to safe mode would.
MODE ``check``: start (reconcile), print ``RESULT <json>``
(:func:`tests.helpers.invariants.recovered`: state, safe mode, a second
reconcile), close.
CONFIG_JSON: the manager's configuration (:func:`tests.helpers.invariants.manager_for`:
settle windows, recvWindow, credentials); default: settle windows 0.
Prints ``STARTED <json>`` after the start: the report and whether it is in safe mode.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Callable
from decimal import Decimal

import ccxt

from recovery import OrderAbortedError, OrderInDoubtError, OrderRefusedLocally, SafeModeError
from tests.helpers.invariants import manager_for, recovered

SYMBOLS = {"BTC/USDT": Decimal("30000"), "ETH/USDT": Decimal("2000"), "SOL/USDT": Decimal("100")}


def _price(symbol: str, rnd: random.Random, below: bool = True) -> str:
    base = SYMBOLS[symbol]
    factor = Decimal(rnd.randint(80, 97)) / 100 if below else Decimal(rnd.randint(103, 120)) / 100
    return str((base * factor).quantize(Decimal("0.01")))


def _amount(symbol: str, rnd: random.Random) -> str:
    return {"BTC/USDT": "0.001", "ETH/USDT": "0.01", "SOL/USDT": "0.1"}[symbol] if rnd.random() < 0.5 else {
        "BTC/USDT": "0.002", "ETH/USDT": "0.02", "SOL/USDT": "0.2"}[symbol]  # fmt: skip


def main(argv: list[str] | None = None, emit: Callable[[str], None] | None = None) -> int:
    """Run the bot on ``argv`` (default ``sys.argv[1:]``); ``emit`` prints a line (default: stdout, flushed)."""
    args = sys.argv[1:] if argv is None else argv
    path, url, seed, ops, mode = args[0], args[1], int(args[2]), int(args[3]), args[4]
    cfg = json.loads(args[5]) if len(args) > 5 else {}
    out = emit or (lambda line: print(line, flush=True))
    logging.basicConfig(level=logging.ERROR)
    manager = manager_for(path, url, cfg)
    report = manager.start()
    out("STARTED " + json.dumps({"report": report.as_dict(), "safe_mode": manager.safe_mode}))
    if mode == "check":
        out("RESULT " + json.dumps(recovered(manager, report)))
        manager.close()
        return 0
    rnd = random.Random(seed)
    for i in range(ops):
        symbol = rnd.choice(sorted(SYMBOLS))
        roll = rnd.random()
        try:
            open_orders = [o for o in manager.open_orders() if o["status"] == "open"]
            if roll < 0.45 or not open_orders:
                manager.place_order(symbol, "limit", "buy", _amount(symbol, rnd), _price(symbol, rnd))
            elif roll < 0.6:
                manager.place_order(symbol, "market", rnd.choice(["buy", "sell"]), _amount(symbol, rnd))
            elif roll < 0.8:
                target = rnd.choice(open_orders)
                manager.cancel_order(target["client_id"], target["symbol"])
            else:
                target = rnd.choice(open_orders)
                manager.edit_order(target["client_id"], target["symbol"], "limit", "buy", target["amount"],
                                   _price(target["symbol"], rnd))  # fmt: skip
        except (OrderInDoubtError, OrderAbortedError, OrderRefusedLocally, SafeModeError, ccxt.BaseError) as exc:
            out(f"OP {i} {type(exc).__name__}")
            if isinstance(exc, SafeModeError):
                time.sleep(0.1)  # a bot waits a little before asking the exchange again
                manager.reconcile()
        out(f"OP {i} done")
        if i % 10 == 9:
            manager.save()
    manager.close()
    out("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
