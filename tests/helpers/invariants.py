"""What a recovered bot must satisfy, checked against the exchange simulator's own books.

Shared by the fault campaign (tests/system/campaign.py), its bot child and the
stateful property test. Three groups:

- :func:`recovered` -- what a freshly started manager knows (state, pending
  operations, safe mode, its ``safe_mode`` journal events, a second
  reconciliation), as JSON-able data, so a subprocess can report it too;
- :func:`safe_mode_failures` -- the manager is in safe mode exactly when it
  should be (issue 12.1): after an incomplete reconciliation, or while an
  operation is unresolved, and then for a reason that holds (an unresolved
  operation is inside its settle window on the exchange's clock); health() and
  the journal's ``safe_mode`` events agree with it;
- :func:`exchange_failures` -- the state agrees with the exchange: every
  exchange order is known exactly once, keyed by ``(symbol, order id)`` (order
  ids are numbered per symbol, so an id alone may name two orders), with the
  exchange's status and fill; no open order the exchange lacks; no client id
  ever sent twice; positions equal the exchange's trades (issue 12.3) and
  balances its balances; nothing pending; ``verify()`` clean; a second
  reconciliation changes nothing.

:func:`manager_for` builds the bot's manager from one JSON-able configuration,
so the bot child and the checks run the same settings.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "STATUS",
    "exchange_failures",
    "manager_for",
    "recovered",
    "safe_mode_failures",
    "settle_window_of",
    "unified",
    "wait_until",
]

#: Binance order status -> the state's (ccxt's unified) status.
STATUS = {
    "NEW": "open",
    "PARTIALLY_FILLED": "open",
    "FILLED": "closed",
    "CANCELED": "canceled",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",
    "REJECTED": "rejected",
}

#: Reasons decide() gives an operation it leaves unresolved although the exchange answered in full.
INSIDE_WINDOW = ("inside the settle window", "cancel outcome unknown: inside the settle window")


def settle_window_of(cfg: Mapping[str, Any]) -> int:
    """The settle window (ms) the bot of ``cfg`` works with: 0, or its recvWindow + 1 s."""
    from recovery.venue import CLOCK_SKEW_MS, DEFAULT_RECV_WINDOW_MS

    if cfg.get("settle", "zero") == "zero":
        return 0
    return int(cfg.get("recv_window_ms") or DEFAULT_RECV_WINDOW_MS) + CLOCK_SKEW_MS


def manager_for(path: str, url: str, cfg: Mapping[str, Any]) -> Any:
    """The bot's StateManager on the simulator at ``url``, configured by ``cfg``.

    ``cfg`` keys (all optional): ``settle`` ``"zero"`` (settle windows 0, the old
    campaign) or ``"exchange"`` (the windows follow the exchange's recvWindow);
    ``recv_window_ms`` (ccxt ``options['recvWindow']``); ``api_key``/``secret``
    (wrong credentials); ``venue`` ``"testnet"`` (Binance's spot testnet, tests/helpers/testnet.py;
    ``url`` is then ignored); ``timeout_ms``; ``retry_backoff_s`` and ``retry_max_s`` (the manager's own
    reconcile retries); ``rate_limit_backoff_s`` (reconciliation's); ``autosave_s``.
    """
    from recovery import StateManager
    from recovery.exchanges import make_exchange

    config: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if cfg.get("recv_window_ms") is not None:
        options["recvWindow"] = int(cfg["recv_window_ms"])
    if options:
        config["options"] = options
    for key, name in (("api_key", "apiKey"), ("secret", "secret")):
        if cfg.get(key):
            config[name] = cfg[key]
    if cfg.get("venue") == "testnet":  # tests/helpers/testnet.py: the opt-in, credentials from the environment
        from tests.helpers.testnet import credentials, make_testnet_exchange

        keys = credentials()
        if keys is None:
            raise RuntimeError("venue testnet without TRADEJOURNAL_TESTNET_KEY and TRADEJOURNAL_TESTNET_SECRET")
        exchange = make_testnet_exchange(*keys, timeout_ms=int(cfg.get("timeout_ms", 10_000)), **options)
    else:
        exchange = make_exchange(url, timeout_ms=int(cfg.get("timeout_ms", 1500)), **config)
    zero = cfg.get("settle", "zero") == "zero"
    reconcile: dict[str, Any] = {"settle_window_ms": 0} if zero else {}
    if "rate_limit_backoff_s" in cfg:
        reconcile["rate_limit_backoff_s"] = float(cfg["rate_limit_backoff_s"])
    return StateManager(
        path,
        exchange,
        reconcile_settings=reconcile,
        order_settings={"settle_window_ms": 0 if zero else None, "backoff_s": 0.01},
        autosave_settings={"interval_s": float(cfg.get("autosave_s", 0.2))},
        retry_backoff_s=float(cfg.get("retry_backoff_s", 0.1)),
        retry_max_s=float(cfg.get("retry_max_s", 0.5)),
    )


def unified(sim: Any, exchange_symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC/USDT`` (the simulator's books use exchange ids)."""
    market = sim.core.market(exchange_symbol)
    return f"{market.base}/{market.quote}"


def recovered(manager: Any, report: Any, *, second: bool = True) -> dict[str, Any]:
    """What a freshly started manager knows, as JSON-able data (then, with ``second``, a second reconcile)."""
    journal = manager.journal
    state = manager.view()
    health = manager.health()
    pending = [
        {
            "op": r.op,
            "type": r.type,
            "client_id": r.client_id,
            "target": (r.data or {}).get("client_id"),
            "symbol": (r.data or {}).get("symbol"),
            "ts_ms": r.ts_ns // 1_000_000,
        }
        for r in journal.pending()
    ]
    events = [dict(r.data) for r in journal.records(types=["safe_mode"])]
    out = {
        "report": report.as_dict(),
        "safe_mode": manager.safe_mode,
        "safe_mode_reasons": manager.safe_mode_reasons(),
        "health_safe_mode": health.get("safe_mode"),
        "health_reasons": health.get("safe_mode_reasons"),
        "unresolved": [dict(u) for u in manager.unresolved],
        "safe_mode_events": [{"active": e.get("active"), "reasons": e.get("reasons")} for e in events],
        "pending": pending,
        "orders": {
            k: {"status": v.get("status"), "filled": str(v.get("filled")), "id": v.get("id"), "symbol": v.get("symbol")}
            for k, v in {**dict(state.archived_items("orders")), **dict(state["orders"].items())}.items()
        },  # fmt: skip  # settled orders move to the archive: the check must see them too
        "positions": {k: str(v.get("amount")) for k, v in state["positions"].items()},
        "balances": {k: str(v.get("total")) for k, v in state["balances"].items()},
        "verify": str(journal.verify()),
    }
    if second:
        out["second"] = manager.reconcile().as_dict()
    return out


def safe_mode_failures(
    result: Mapping[str, Any],
    *,
    exchange_up: bool,
    window_ms: int,
    exchange_now_ms: int | None = None,
    slack_ms: int = 1500,
) -> list[str]:
    """Safe mode exactly when it should be, right after ``start()`` (see the module docstring).

    ``exchange_up``: the exchange answered normally during the start (so an
    incomplete reconciliation is itself a failure). ``exchange_now_ms``: the
    exchange's clock when the start was done (for the settle window's age).
    """
    failures = []
    report = result["report"]
    safe = result["safe_mode"]
    expected = (not report["complete"]) or bool(report["unresolved"])
    if safe != expected:
        failures.append(f"safe mode is {safe} after a reconciliation that was complete={report['complete']} "
                        f"with {len(report['unresolved'])} unresolved")  # fmt: skip
    if result["health_safe_mode"] != safe or result["health_reasons"] != result["safe_mode_reasons"]:
        failures.append(f"health() says safe mode {result['health_safe_mode']} {result['health_reasons']}, "
                        f"the manager {safe} {result['safe_mode_reasons']}")  # fmt: skip
    if bool(result["safe_mode_reasons"]) != safe:
        failures.append(f"safe mode {safe} with reasons {result['safe_mode_reasons']}")
    events = result["safe_mode_events"]
    last = events[-1]["active"] if events else False
    if last != safe:
        failures.append(f"the journal's last safe_mode event says active={last}, the manager is in safe mode={safe}")
    if exchange_up and not report["complete"]:
        failures.append(f"reconciliation incomplete although the exchange was up: {report['errors'][:3]}")
    pending_ops = sorted(p["op"] for p in result["pending"])
    unresolved_ops = sorted(u["op"] for u in report["unresolved"])
    if pending_ops != unresolved_ops:
        failures.append(f"pending operations {pending_ops} but unresolved {unresolved_ops}")
    if report["complete"]:
        by_op = {p["op"]: p for p in result["pending"]}
        for u in report["unresolved"]:
            if u.get("why") not in INSIDE_WINDOW:
                failures.append(f"op {u['op']} unresolved after a complete reconciliation: {u.get('why')}")
                continue
            p = by_op.get(u["op"])
            if p is not None and exchange_now_ms is not None:
                age = exchange_now_ms - p["ts_ms"]
                if age > window_ms + slack_ms:
                    failures.append(f"op {u['op']} said inside a settle window of {window_ms} ms at age {age} ms")
    return failures


def exchange_failures(sim: Any, result: Mapping[str, Any], *, check_second: bool = True) -> list[str]:
    """The state against the simulator's books, orders keyed by ``(symbol, order id)``."""
    failures = []
    orders: Mapping[str, Mapping[str, Any]] = result["orders"]
    by_key: dict[tuple[str | None, str], list[str]] = {}
    for cid, o in orders.items():
        if o.get("id"):
            by_key.setdefault((o.get("symbol"), str(o["id"])), []).append(cid)
    exchange_cids = set()
    exchange_keys = set()
    for o in sim.orders():
        symbol = unified(sim, o.symbol)
        key = (symbol, str(o.order_id))
        exchange_cids.add(o.client_order_id)
        exchange_keys.add(key)
        mine = orders.get(o.client_order_id)
        if mine is None:
            known = by_key.get(key, [])
            if len(known) != 1:
                failures.append(f"exchange order {symbol} {o.order_id} ({o.client_order_id}, {o.status}) "
                                f"unknown to the state")  # fmt: skip
                continue
            mine = orders[known[0]]
        elif mine.get("symbol") != symbol or str(mine.get("id")) != str(o.order_id):
            failures.append(f"order {o.client_order_id}: state has {mine.get('symbol')} id {mine.get('id')}, "
                            f"the exchange {symbol} {o.order_id}")  # fmt: skip
        status = STATUS.get(o.status, o.status.lower())
        filled = mine.get("filled")
        if mine.get("status") != status or filled in (None, "None") or Decimal(str(filled)) != o.executed_qty:
            failures.append(f"order {symbol} {o.order_id} ({o.client_order_id}): state {mine.get('status')}/"
                            f"{filled}, exchange {status}/{o.executed_qty}")  # fmt: skip
    for known_key, cids in by_key.items():
        if len(cids) > 1:
            failures.append(f"exchange order {known_key} known {len(cids)} times: {sorted(cids)}")
    for cid, o in orders.items():
        if o.get("status") in ("open", "pending") and cid not in exchange_cids:
            if not o.get("id") or (o.get("symbol"), str(o["id"])) not in exchange_keys:
                failures.append(f"state order {cid} is {o.get('status')} but the exchange does not have it")
    sent = [r.params.get("newClientOrderId") for r in sim.requests("POST") if r.params.get("newClientOrderId")]
    twice = sorted({c for c in sent if sent.count(c) > 1})
    if twice:
        failures.append(f"client ids sent twice: {twice[:5]}")
    positions: dict[str, Decimal] = {}
    for t in sim.trades():
        symbol = unified(sim, t.symbol)
        positions[symbol] = positions.get(symbol, Decimal(0)) + (t.qty if t.is_buyer else -t.qty)
    for symbol in sorted(set(positions) | set(result["positions"])):
        mine_amount = Decimal(result["positions"].get(symbol) or "0")
        if mine_amount != positions.get(symbol, Decimal(0)):
            failures.append(f"position {symbol}: state {mine_amount}, exchange trades {positions.get(symbol, 0)}")
    for asset, bal in sim.balances().items():
        total = bal.free + bal.locked
        if total and Decimal(result["balances"].get(asset) or "0") != total:
            failures.append(f"balance {asset}: state {result['balances'].get(asset)}, exchange {total}")
    if result["pending"]:
        failures.append(f"operations still pending: {[p['op'] for p in result['pending']]}")
    if not str(result["verify"]).startswith("ok"):
        failures.append(f"verify: {result['verify']}")
    second = result.get("second")
    if check_second and second is not None:
        changed = {k: second[k] for k in ("resolved", "aborted", "adopted", "order_updates", "fills_applied",
                                          "balance_corrections") if second[k]}  # fmt: skip
        if changed or second["unresolved"] or second["errors"]:
            failures.append(f"a second reconcile changed something: {changed} unresolved {second['unresolved']} "
                            f"errors {second['errors'][:2]}")  # fmt: skip
    return failures


def wait_until(cond: Any, timeout_s: float, step_s: float = 0.05) -> bool:
    """Poll ``cond()`` until true or ``timeout_s`` passed; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if cond():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step_s)
