"""Benchmark plumbing: a ``measured`` registry and the ratio table.

Each benchmark records its median under a name (``record_median``); pairs
declared in ``RATIOS`` (ours, peer, target) are printed at the end of the run,
so every figure comes with its peer measured in the same run on the same
machine. Run with ``pytest bench/ --benchmark-only``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

MEDIANS: dict[str, float] = {}
# (label, ours, peer, how to read it)
RATIOS: list[tuple[str, str, str, str]] = []


def ratio(label: str, ours: str, peer: str, target: str) -> None:
    """Declare a ratio to print: median(ours) / median(peer), with its target."""
    RATIOS.append((label, ours, peer, target))


@pytest.fixture
def record_median(benchmark: Any) -> Callable[[str, float], None]:
    """Call after the benchmark: stores its median (divided by ``per`` items) under ``name``."""

    def record(name: str, per: float = 1.0) -> None:
        stats = benchmark.stats.stats if benchmark.stats is not None else None
        if stats is not None:
            MEDIANS[name] = stats.median / per

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MEDIANS:
        return
    tr = terminalreporter
    tr.section("tradejournal ratios (medians, same run)")
    for name, value in sorted(MEDIANS.items()):
        tr.write_line(f"{name:55s} {value * 1e6:12.1f} us")
    seen = set()
    for label, ours, peer, target in RATIOS:
        if (label, ours, peer) in seen or ours not in MEDIANS or peer not in MEDIANS:
            continue
        seen.add((label, ours, peer))
        tr.write_line(f"{label:55s} {MEDIANS[ours] / MEDIANS[peer]:8.3f}x   target {target}")


# -- workloads: journals built through the public API, as a bot builds them ----------------------

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT")
_BASE_PRICE = {"BTC/USDT": 30000.0, "ETH/USDT": 2000.0, "SOL/USDT": 100.0, "BNB/USDT": 300.0, "XRP/USDT": 0.5}


def ccxt_order(client_id: str, i: int, rnd: Any, symbol: str, side: str) -> dict[str, Any]:
    """An open limit order as ccxt returns it: float prices and amounts (the reducers make them Decimal)."""
    price = round(_BASE_PRICE[symbol] * (0.8 + rnd.random() * 0.4), 2)
    amount = round(rnd.random() * 2 + 0.001, 4)
    return {"info": {"orderId": str(5_000_000 + i)}, "id": str(5_000_000 + i), "clientOrderId": client_id,
            "client_id": client_id, "timestamp": 1_700_000_000_000 + i, "datetime": None,
            "lastTradeTimestamp": None, "symbol": symbol, "type": "limit", "timeInForce": "GTC",
            "postOnly": False, "side": side, "price": price, "stopPrice": None, "amount": amount, "cost": 0.0,
            "average": None, "filled": 0.0, "remaining": amount, "status": "open", "fee": None, "trades": [],
            "fees": []}  # fmt: skip


def _intent(order: dict[str, Any]) -> dict[str, Any]:
    return {k: order[k] for k in ("symbol", "side", "type", "amount", "price")}


def build_open_orders(path: Any, n: int, *, seed: int = 7) -> None:
    """``n`` open orders placed and committed through the journal, and 20 balances; one snapshot at the end."""
    import random

    from journal import Journal
    from journal.state.store import StateStore

    rnd = random.Random(seed)
    with Journal(path, durability="process", map_size=1 << 30, flush_interval_ms=1000) as j:
        s = StateStore(j)
        done = 0
        while done < n:
            k = min(500, n - done)
            shapes = [(SYMBOLS[(done + i) % 5], ("buy", "sell")[(done + i) % 2]) for i in range(k)]
            ops = j.begin_many([("place_order", {"symbol": sym, "side": side, "type": "limit", "amount": 1.0,
                                                 "price": 1.0}) for sym, side in shapes])  # fmt: skip
            for i, (op, (sym, side)) in enumerate(zip(ops, shapes, strict=True)):
                op.commit(ccxt_order(op.client_id, done + i, rnd, sym, side), wait=False)
            done += k
        j.record("balances", {"balances": {f"A{i}": {"free": i * 3.25, "used": 0.0, "total": i * 3.25}
                                           for i in range(20)}})  # fmt: skip
        j.flush()
        s.save(full=True)


def build_history(path: Any, seen: int, open_: int, *, save_every: int = 10_000, seed: int = 11) -> dict[str, Any]:
    """A journal that has seen ``seen`` orders of which ``open_`` are still open, the rest canceled or filled.

    Orders are placed in batches of 500 and committed; every other settled order
    is canceled (cancel intent + commit), the others filled by one trade. The
    orders left open are spread over the whole history. A snapshot every
    ``save_every`` records, as the autosaver takes them. Returns the client ids
    of the open orders and of the settled ones.
    """
    import random

    from journal import Journal
    from journal.state.store import StateStore

    rnd = random.Random(seed)
    every = max(1, seen // max(1, open_))
    open_ids: list[str] = []
    settled_ids: list[str] = []
    with Journal(path, durability="process", map_size=1 << 31, flush_interval_ms=1000) as j:
        s = StateStore(j)
        done = 0
        last_save = 0
        while done < seen:
            k = min(500, seen - done)
            shapes = [(SYMBOLS[(done + i) % 5], ("buy", "sell")[(done + i) % 2]) for i in range(k)]
            orders = []
            ops = j.begin_many([("place_order", {"symbol": sym, "side": side, "type": "limit", "amount": 1.0,
                                                 "price": 1.0}) for sym, side in shapes])  # fmt: skip
            for i, (op, (sym, side)) in enumerate(zip(ops, shapes, strict=True)):
                order = ccxt_order(op.client_id, done + i, rnd, sym, side)
                op.commit(order, wait=False)
                orders.append((done + i, op, order))
            cancels = []
            for n, op, order in orders:
                if n % every == 0 and len(open_ids) < open_:
                    open_ids.append(op.client_id)
                elif n % 2:
                    cancels.append((op, order))
                else:
                    j.record("fill", {"id": f"T{n}", "order_id": order["id"], "client_id": op.client_id,
                                      "symbol": order["symbol"], "side": order["side"], "amount": order["amount"],
                                      "price": order["price"], "cost": None, "fee": {"cost": 0.001, "currency": "BNB"},
                                      "timestamp": order["timestamp"] + 5}, wait=False)  # fmt: skip
                    settled_ids.append(op.client_id)
            for c, (op, order) in zip(j.begin_many([("cancel_order", {"client_id": op.client_id, "id": order["id"],
                                                                      "symbol": order["symbol"]})
                                                    for op, order in cancels]), cancels, strict=True):  # fmt: skip
                c.commit(dict(order, status="canceled"), wait=False)
                settled_ids.append(op.client_id)
            done += k
            if j.last_seq - last_save >= save_every:
                j.flush()
                s.save()
                last_save = j.last_seq
        j.flush()
        s.save()
        return {"open": open_ids, "settled": settled_ids, "records": j.last_seq, "status": s.status()}
