"""Control endpoints of the exchange simulator, for tests and bots in other processes.

Unsigned JSON over HTTP under ``/_sim/`` on the simulator's own 127.0.0.1 port;
never faulted, never in the request log. Orders and trades come back in
Binance's wire shapes (``allOrders`` / ``myTrades`` rows); amounts go in and
out as strings. An order is named by its exchange id (a JSON integer; with
``"symbol"`` when that id exists on several symbols, since Binance numbers
orders per symbol) or its client id (a JSON string; the open order with that
id first, else the newest).

====== ==================== ============================================================
method path                 body / answer
====== ==================== ============================================================
GET    /_sim/orders         all orders, oldest first
GET    /_sim/trades         all trades, oldest first
GET    /_sim/balances       ``{"USDT": {"free": "...", "locked": "..."}, ...}``
GET    /_sim/requests       the request log; query ``method=`` and ``path=`` filter it
DELETE /_sim/requests       clear the request log
GET    /_sim/faults         the armed faults
GET    /_sim/settings       the knobs in force (:mod:`recovery.sim.settings`)
POST   /_sim/settings       ``{"weight_limit_1m": 1200, ...}``: change some knobs -> all of them
POST   /_sim/fill           ``{"order": 12 | "cid", "symbol"?, "amount"?: "0.1", "price"?: "29000"}`` -> trade
POST   /_sim/cancel         ``{"order": ..., "symbol"?}`` -> the canceled order
POST   /_sim/price          ``{"symbol": "BTC/USDT", "price": "31000", "match"?: true}`` -> trades
POST   /_sim/balance        ``{"asset": "USDT", "free": "1000"}`` -> balances
POST   /_sim/fault          ``{"action": "arm", "method", "path", "kind", "times"?, ...options}``,
                            ``{"action": "disarm", "method"?, "path"?, "kind"?}``,
                            ``{"action": "down", "mode"?, "applied"?}`` or ``{"action": "up"}``
GET    /_sim/stream         the user data stream: ``{"url", "connections": [...],
                            "subscribe_requests", "faults": [...]}``
POST   /_sim/stream         ``{"action": "arm", "kind", "times"?, ...options}`` (kinds:
                            :mod:`recovery.sim.wsfaults`), ``{"action": "disarm", "kind"?}``,
                            ``{"action": "drop", "mode"?: "close" | "abort"}``,
                            ``{"action": "terminate"}``,
                            ``{"action": "server_shutdown", "close_after_ms"?}``
GET    /_sim/stream/frames  frames read and written; query ``connection=``, ``direction=``
GET    /_sim/stream/events  the events the core emitted, each with ``seq``
DELETE /_sim/stream/frames  forget the logged frames and events
====== ==================== ============================================================

Errors answer 400 ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from recovery.sim import wire
from recovery.sim.core import SimulatorError
from recovery.sim.http import BinanceApp, Reply
from recovery.sim.ws import UserDataStream

__all__ = ["control_handler"]


def _amount(body: dict[str, Any], name: str) -> Decimal | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, (float, bool)):
        raise ValueError(f"{name} must be a JSON string or integer (exact), not {value!r}")
    return Decimal(str(value))


def _order_ref(body: dict[str, Any]) -> int | str:
    ref = body.get("order")
    if not isinstance(ref, (int, str)) or isinstance(ref, bool):
        raise ValueError("'order' must be an exchange order id (integer) or a client order id (string)")
    return ref


def _symbol(body: dict[str, Any]) -> str | None:
    symbol = body.get("symbol")
    if symbol is not None and not isinstance(symbol, str):
        raise ValueError(f"'symbol' must be a string such as \"BTC/USDT\", not {symbol!r}")
    return symbol


def _stream_action(stream: UserDataStream, body: dict[str, Any]) -> Any:
    action = body.pop("action", "arm")
    if action == "arm":
        kind = body.pop("kind")
        times = body.pop("times", 1)
        return stream.faults.arm(kind, times=times, **body).to_json()
    if action == "disarm":
        return {"removed": stream.faults.disarm(body.get("kind"))}
    if action == "drop":
        return {"dropped": stream.drop(body.get("mode", "close"))}
    if action == "terminate":
        return {"terminated": stream.terminate()}
    if action == "server_shutdown":
        return {"told": stream.server_shutdown(body.get("close_after_ms"))}
    raise ValueError(f"unknown stream action {action!r}; use arm, disarm, drop, terminate or server_shutdown")


def _stream_status(stream: UserDataStream) -> dict[str, Any]:
    return {
        "url": stream.url,
        "connections": [c.to_json() for c in stream.connections()],
        "subscribe_requests": stream.subscribe_requests,
        "faults": [f.to_json() for f in stream.faults.armed()],
    }


def control_handler(app: BinanceApp, stream: UserDataStream | None = None) -> Callable[[str, str, str, bytes], Reply]:
    """The ``/_sim/`` request handler for ``app`` (and its user data stream, if it has one)."""
    core = app.core

    def balances() -> dict[str, dict[str, str]]:
        return {a: {"free": wire.fmt(b.free), "locked": wire.fmt(b.locked)} for a, b in core.balances().items()}

    def fault(body: dict[str, Any]) -> Any:
        action = body.pop("action", "arm")
        if action == "down":
            return {
                "armed": [f.kind for f in app.faults.armed()],
                "fault": app.faults.down(body.get("mode", "drop"), applied=body.get("applied", False)).kind,
            }
        if action == "up":
            app.faults.up()
            return {"armed": [f.kind for f in app.faults.armed()]}
        if action == "disarm":
            return {"removed": app.faults.disarm(body.get("method"), body.get("path"), body.get("kind"))}
        if action != "arm":
            raise ValueError(f"unknown fault action {action!r}; use arm, disarm, down or up")
        method, path, kind = body.pop("method"), body.pop("path"), body.pop("kind")
        times = body.pop("times", 1)
        armed = app.faults.arm(method, path, kind, times=times, **body)
        return {
            "method": armed.method,
            "path": armed.path,
            "kind": armed.kind,
            "times": armed.remaining,
            "options": armed.options,
        }

    def handle(method: str, path: str, raw_query: str, raw_body: bytes) -> Reply:
        try:
            body: dict[str, Any] = json.loads(raw_body) if raw_body else {}
            query = dict(parse_qsl(raw_query))
            key = (method, path)
            result: Any
            if key == ("GET", "/_sim/orders"):
                result = [wire.query_order_json(o) for o in core.orders()]
            elif key == ("GET", "/_sim/trades"):
                result = [wire.trade_json(t) for t in core.trades()]
            elif key == ("GET", "/_sim/balances"):
                result = balances()
            elif key == ("GET", "/_sim/requests"):
                result = [e.to_json() for e in app.log.requests(query.get("method"), query.get("path"))]
            elif key == ("DELETE", "/_sim/requests"):
                app.log.clear()
                result = {}
            elif key == ("GET", "/_sim/faults"):
                result = [
                    {"method": f.method, "path": f.path, "kind": f.kind, "times": f.remaining, "options": f.options}
                    for f in app.faults.armed()
                ]
            elif key == ("POST", "/_sim/fill"):
                trade = core.fill(
                    _order_ref(body), _amount(body, "amount"), _amount(body, "price"), symbol=_symbol(body)
                )
                result = wire.trade_json(trade)
            elif key == ("POST", "/_sim/cancel"):
                result = wire.query_order_json(core.cancel(_order_ref(body), symbol=_symbol(body)))
            elif key == ("POST", "/_sim/price"):
                price = _amount(body, "price")
                if price is None:
                    raise ValueError("'price' is required")
                trades = core.set_price(str(body["symbol"]), price, match=bool(body.get("match", True)))
                result = [wire.trade_json(t) for t in trades]
            elif key == ("POST", "/_sim/balance"):
                free = _amount(body, "free")
                if free is None:
                    raise ValueError("'free' is required")
                core.set_balance(str(body["asset"]), free)
                result = balances()
            elif key == ("POST", "/_sim/fault"):
                result = fault(body)
            elif key == ("GET", "/_sim/settings"):
                result = core.settings.to_json()
            elif key == ("POST", "/_sim/settings"):
                result = core.configure(**body).to_json()
            elif path.startswith("/_sim/stream") and stream is not None:
                if key == ("GET", "/_sim/stream"):
                    result = _stream_status(stream)
                elif key == ("POST", "/_sim/stream"):
                    result = _stream_action(stream, body)
                elif key == ("GET", "/_sim/stream/frames"):
                    connection = int(query["connection"]) if "connection" in query else None
                    result = [f.to_json() for f in stream.frames(connection, query.get("direction"))]
                elif key == ("GET", "/_sim/stream/events"):
                    result = [e.to_json() for e in stream.events()]
                elif key == ("DELETE", "/_sim/stream/frames"):
                    stream.clear_log()
                    result = {}
                else:
                    return Reply(404, json.dumps({"error": f"no control endpoint {method} {path}"}).encode())
            else:
                return Reply(404, json.dumps({"error": f"no control endpoint {method} {path}"}).encode())
        except (SimulatorError, ValueError, KeyError, TypeError) as exc:
            return Reply.json(400, {"error": f"{type(exc).__name__}: {exc}"})
        return Reply.json(200, result)

    return handle
