"""A trading bot for the fault campaign: random orders through the StateManager until killed.

Usage: python -m tests.helpers.bot_child PATH URL SEED OPS MODE
MODE ``trade``: start (reconcile), then OPS random operations (limit places that
rest, market places that fill, cancels, edits, on several symbols), with a
snapshot every 10 operations. Errors the manager raises by design (in doubt,
aborted, refused by the exchange, safe mode) are printed and trading goes on.
MODE ``check``: start (reconcile), print ``RESULT <json>`` (state, report and a
second reconcile), close.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from decimal import Decimal

import ccxt

from recovery import OrderAbortedError, OrderInDoubtError, SafeModeError, StateManager
from recovery.demo import recovered_result
from recovery.exchanges import make_exchange

SYMBOLS = {"BTC/USDT": Decimal("30000"), "ETH/USDT": Decimal("2000"), "SOL/USDT": Decimal("100")}


def _price(symbol: str, rnd: random.Random, below: bool = True) -> str:
    base = SYMBOLS[symbol]
    factor = Decimal(rnd.randint(80, 97)) / 100 if below else Decimal(rnd.randint(103, 120)) / 100
    return str((base * factor).quantize(Decimal("0.01")))


def _amount(symbol: str, rnd: random.Random) -> str:
    return {"BTC/USDT": "0.001", "ETH/USDT": "0.01", "SOL/USDT": "0.1"}[symbol] if rnd.random() < 0.5 else {
        "BTC/USDT": "0.002", "ETH/USDT": "0.02", "SOL/USDT": "0.2"}[symbol]  # fmt: skip


def main() -> int:
    path, url, seed, ops, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    logging.basicConfig(level=logging.ERROR)
    exchange = make_exchange(url, timeout_ms=1500)
    manager = StateManager(
        path, exchange, reconcile_settings={"settle_window_ms": 0}, autosave_settings={"interval_s": 0.2},
        order_settings={"settle_window_ms": 0, "backoff_s": 0.01},
    )  # fmt: skip
    report = manager.start()
    if mode == "check":
        print("RESULT " + json.dumps(recovered_result(manager, report)), flush=True)
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
        except (OrderInDoubtError, OrderAbortedError, SafeModeError, ccxt.BaseError) as exc:
            print(f"OP {i} {type(exc).__name__}", flush=True)
            if isinstance(exc, SafeModeError):
                manager.reconcile()
        print(f"OP {i} done", flush=True)
        if i % 10 == 9:
            manager.save()
    manager.close()
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
