"""HTTP layer of the exchange simulator: the Binance spot REST dialect over stdlib ``http.server``.

:class:`BinanceApp` turns one decoded request into a :class:`Reply` (routing,
API key / timestamp / HMAC-SHA256 checks, faults, weight, request log) without
doing I/O; :class:`SimHTTPServer` serves it on 127.0.0.1 with HTTP/1.1
keep-alive, ``TCP_NODELAY`` on every accepted socket, daemon threads, and a
stop that closes every connection at once.

Signed endpoints follow Binance: the ``X-MBX-APIKEY`` header must hold the key
(-2014 if missing, -2015 if unknown, HTTP 401), ``timestamp`` must satisfy
``timestamp < now + 1000`` and ``now - timestamp <= recvWindow`` (default 5000,
at most 60000; else -1021), and ``signature`` is the hex HMAC-SHA256, under the
secret, of the query string concatenated with the body, both without the
``signature`` parameter (else -1022). Control endpoints under ``/_sim/`` are
unsigned JSON (see :mod:`recovery.sim.control`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import selectors
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from recovery.sim import wire
from recovery.sim.core import (
    CANCEL_RESTRICTIONS,
    ExchangeCore,
    ExchangeRejected,
    OrderRequest,
    new_client_id,
)
from recovery.sim.faults import Fault, Faults, LoggedRequest, RequestLog
from recovery.sim.limits import Admission, WeightLimiter, request_weight

__all__ = ["BinanceApp", "Reply", "SimHTTPServer"]

_BINANCE_MAX_WEIGHT = 6000
_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    b"</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class Reply:
    """What to answer: a status and body, or ``drop`` (close, no answer), after ``delay_s``."""

    status: int
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay_s: float = 0.0
    code: int | None = None

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode())

    @classmethod
    def error(cls, status: int, code: int, msg: str) -> Reply:
        reply = cls.json(status, {"code": code, "msg": msg})
        reply.code = code
        return reply


Handler = Callable[[dict[str, str]], Reply]


class BinanceApp:
    """The simulated exchange's request handling, independent of sockets."""

    def __init__(
        self,
        core: ExchangeCore,
        *,
        api_key: str,
        secret: str,
        fault_delay_s: float = 2.0,
    ) -> None:
        self.core = core
        self.faults = Faults()
        self.log = RequestLog()
        self.limiter = WeightLimiter()
        self.fault_delay_s = fault_delay_s
        self.stopping = threading.Event()  # wakes delayed answers at stop
        self._api_key = api_key
        self._secret = secret.encode()
        self.control: Callable[[str, str, str, bytes], Reply] | None = None
        self._routes: dict[tuple[str, str], tuple[bool, Handler]] = {
            ("GET", "/api/v3/ping"): (False, lambda p: Reply.json(200, {})),
            ("GET", "/api/v3/time"): (False, lambda p: Reply.json(200, {"serverTime": core.now_ms()})),
            ("GET", "/api/v3/exchangeInfo"): (False, self._exchange_info),
            ("POST", "/api/v3/order"): (True, self._new_order),
            ("GET", "/api/v3/order"): (True, self._get_order),
            ("DELETE", "/api/v3/order"): (True, self._cancel_order),
            ("POST", "/api/v3/order/cancelReplace"): (True, self._cancel_replace),
            ("GET", "/api/v3/openOrders"): (True, self._open_orders),
            ("DELETE", "/api/v3/openOrders"): (True, self._cancel_all),
            ("GET", "/api/v3/allOrders"): (True, self._all_orders),
            ("GET", "/api/v3/myTrades"): (True, self._my_trades),
            ("GET", "/api/v3/account"): (True, self._account),
            ("GET", "/api/v3/rateLimit/order"): (True, self._unfilled_order_count),
        }

    # ------------------------------------------------------------------ entry
    def handle(self, method: str, target: str, body: bytes, api_key: str | None) -> Reply:
        """Answer one request; ``target`` is the request line's path and query."""
        split = urlsplit(target)
        path, raw_query, raw_body = split.path, split.query, body.decode("utf-8", "replace")
        if path.startswith("/_sim/"):
            if self.control is None:
                return Reply(404, b"no control endpoints", "text/plain")
            return self.control(method, path, raw_query, body)
        params = {
            k: v
            for k, v in parse_qsl(raw_query, keep_blank_values=True) + parse_qsl(raw_body, keep_blank_values=True)
            if k != "signature"
        }
        fault = self.faults.take(method, path)
        admission = self.limiter.admit(request_weight(method, path, params), self.core.now_ms(), self.core.settings)
        reply = self._answer(method, path, raw_query, raw_body, params, api_key, fault, admission)
        if not reply.drop:
            reply.headers["X-MBX-USED-WEIGHT-1M"] = str(admission.used)
        self.log.append(
            LoggedRequest(
                method,
                path,
                params,
                None if reply.drop else reply.status,
                reply.code,
                fault.kind if fault else None,
                self.core.now_ms(),
                bool(api_key),
            )
        )
        return reply

    def _answer(
        self,
        method: str,
        path: str,
        raw_query: str,
        raw_body: str,
        params: dict[str, str],
        api_key: str | None,
        fault: Fault | None,
        admission: Admission,
    ) -> Reply:
        kind = fault.kind if fault else None
        opts = fault.options if fault else {}
        if kind == "down":
            if opts.get("applied"):  # the gateway fails, the matching engine still acts
                self._route(method, path, raw_query, raw_body, params, api_key)
            return Reply(503, b"Service Unavailable.", "text/plain") if opts["mode"] == "503" else Reply(0, drop=True)
        if admission.status == 418:
            return self._banned(admission.banned_until_ms)
        if admission.status == 429:
            return self._too_much_weight(admission.retry_after_s)
        if kind == "reject":
            return Reply.error(int(opts["status"]), int(opts["code"]), str(opts["msg"]))
        if kind == "http_429":
            return self._too_much_weight(60 - (self.core.now_ms() // 1000) % 60)
        if kind == "http_418":
            return self._banned(int(opts.get("ban_ms", self.core.now_ms() + 120_000)))
        if kind == "rate_limit_orders":
            reply = Reply.error(
                int(opts.get("status", 429)), -1015, "Too many new orders; current limit is 100 orders per 10 SECOND."
            )
            reply.headers["Retry-After"] = str(10 - (self.core.now_ms() // 1000) % 10)
            return reply
        if kind == "http_502_html":
            if opts.get("applied"):
                self._route(method, path, raw_query, raw_body, params, api_key)
            return Reply(502, _HTML_502, "text/html")
        if kind == "http_503_1007" and not opts.get("applied", True):
            return self._backend_timeout()
        reply = self._route(method, path, raw_query, raw_body, params, api_key)
        if kind == "http_503_1007":
            return self._backend_timeout()
        if kind == "commit_then_delay":
            reply.delay_s = float(opts.get("delay_s", self.fault_delay_s))
        elif kind == "commit_then_drop":
            reply.drop = True
        return reply

    def _too_much_weight(self, retry_after_s: int) -> Reply:
        limit = self.core.settings.weight_limit_1m or _BINANCE_MAX_WEIGHT
        reply = Reply.error(
            429,
            -1003,
            f"Too much request weight used; current limit is {limit} request weight per "
            "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
        )
        reply.headers["Retry-After"] = str(retry_after_s)
        return reply

    def _banned(self, until_ms: int) -> Reply:
        reply = Reply.error(
            418,
            -1003,
            f"Way too much request weight used; IP banned until {until_ms}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
        )
        reply.headers["Retry-After"] = str(max(1, -(-(until_ms - self.core.now_ms()) // 1000)))
        return reply

    @staticmethod
    def _backend_timeout() -> Reply:
        return Reply.error(
            503,
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        )

    def _route(
        self, method: str, path: str, raw_query: str, raw_body: str, params: dict[str, str], api_key: str | None
    ) -> Reply:
        route = self._routes.get((method, path))
        if route is None:
            return Reply(404, f"not simulated: {method} {path}".encode(), "text/plain")
        signed, handler = route
        try:
            if signed:
                self._authenticate(raw_query, raw_body, params, api_key)
            wire.check_params(method, path, params)
            return handler(params)
        except ExchangeRejected as exc:
            reply = Reply.error(exc.http_status, exc.code, exc.msg)
            reply.headers.update(exc.headers)
            return reply

    def _authenticate(self, raw_query: str, raw_body: str, params: dict[str, str], api_key: str | None) -> None:
        if not api_key:
            raise ExchangeRejected(-2014, "API-key format invalid.", 401)
        if not hmac.compare_digest(api_key.encode(), self._api_key.encode()):
            raise ExchangeRejected(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        timestamp = wire.int_param(params, "timestamp")
        if timestamp is None:
            wire.mandatory(params, "timestamp")
        recv_window = wire.int_param(params, "recvWindow") or 5000
        if recv_window > 60_000:
            raise ExchangeRejected(-1131, "recvWindow must be less than 60000")
        payload = _without_signature(raw_query) + _without_signature(raw_body)
        signature = _signature_of(raw_query) or _signature_of(raw_body)
        if not signature:
            raise ExchangeRejected(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ExchangeRejected(-1022, "Signature for this request is not valid.")
        now = self.core.now_ms()
        assert timestamp is not None
        if timestamp >= now + 1000:
            raise ExchangeRejected(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - timestamp > recv_window:
            raise ExchangeRejected(-1021, "Timestamp for this request is outside of the recvWindow.")

    # -------------------------------------------------------------- endpoints
    def _exchange_info(self, params: dict[str, str]) -> Reply:
        return Reply.json(200, wire.exchange_info_json(self.core))

    def _order_request(self, params: dict[str, str], client_id_param: str) -> OrderRequest:
        side = wire.mandatory(params, "side")
        order_type = wire.mandatory(params, "type")
        if side not in ("BUY", "SELL"):
            raise ExchangeRejected(-1117, "Invalid side.")
        if order_type not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            raise ExchangeRejected(-1116, "Invalid orderType.")
        tif = params.get("timeInForce")
        if order_type == "LIMIT":
            tif = wire.mandatory(params, "timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise ExchangeRejected(-1115, "Invalid timeInForce.")
        elif tif is not None:
            raise ExchangeRejected(-1106, "Parameter 'timeInForce' sent when not required.")
        if order_type == "MARKET" and params.get("price"):
            raise ExchangeRejected(-1106, "Parameter 'price' sent when not required.")
        if order_type != "MARKET" and params.get("quoteOrderQty"):
            raise ExchangeRejected(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        return OrderRequest(
            side,
            order_type,
            quantity=wire.decimal_param(params, "quantity"),
            quote_order_qty=wire.decimal_param(params, "quoteOrderQty"),
            price=wire.decimal_param(params, "price"),
            time_in_force=tif,
            client_order_id=wire.client_id_param(params, client_id_param),
            strategy_id=wire.int_param(params, "strategyId"),
            strategy_type=wire.int_param(params, "strategyType"),
        )

    def _new_order(self, params: dict[str, str]) -> Reply:
        symbol = wire.mandatory(params, "symbol")
        self.core.market(symbol)
        request = self._order_request(params, "newClientOrderId")
        order, trades = self.core.place_order(
            symbol,
            request.side,
            request.type,
            quantity=request.quantity,
            quote_order_qty=request.quote_order_qty,
            price=request.price,
            time_in_force=request.time_in_force,
            client_order_id=request.client_order_id,
            strategy_id=request.strategy_id,
            strategy_type=request.strategy_type,
            counted=True,
        )
        default = "FULL" if request.type in ("MARKET", "LIMIT") else "ACK"
        reply = Reply.json(200, wire.order_json(order, trades, params.get("newOrderRespType", default)))
        reply.headers.update(self.core.order_count.headers(self.core.now_ms()))
        return reply

    def _order_ref(self, params: dict[str, str], id_name: str, client_name: str) -> tuple[int | None, str | None]:
        order_id = wire.int_param(params, id_name)
        client_id = wire.client_id_param(params, client_name)
        if order_id is None and client_id is None:
            raise ExchangeRejected(
                -1102, f"Param '{client_name}' or '{id_name}' must be sent, but both were empty/null!"
            )
        return order_id, client_id

    def _get_order(self, params: dict[str, str]) -> Reply:
        symbol = wire.mandatory(params, "symbol")
        order_id, client_id = self._order_ref(params, "orderId", "origClientOrderId")
        order = self.core.get_order(symbol, order_id=order_id, client_order_id=client_id)
        return Reply.json(200, wire.query_order_json(order))

    def _cancel_id(self, params: dict[str, str], name: str) -> str:
        return wire.client_id_param(params, name) or new_client_id()

    def _cancel_order(self, params: dict[str, str]) -> Reply:
        symbol = wire.mandatory(params, "symbol")
        order_id, client_id = self._order_ref(params, "orderId", "origClientOrderId")
        cancel_id = self._cancel_id(params, "newClientOrderId")
        order = self.core.cancel_order(
            symbol,
            order_id=order_id,
            client_order_id=client_id,
            restrictions=_restrictions(params),
            cancel_client_order_id=cancel_id,
        )
        return Reply.json(200, wire.cancel_json(order, cancel_id, self.core.now_ms()))

    def _cancel_replace(self, params: dict[str, str]) -> Reply:
        symbol = wire.mandatory(params, "symbol")
        self.core.market(symbol)
        mode = wire.mandatory(params, "cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise ExchangeRejected(
                -1100,
                "Illegal characters found in parameter 'cancelReplaceMode'; legal range is "
                "'STOP_ON_FAILURE, ALLOW_FAILURE'.",
            )
        order_id, client_id = self._order_ref(params, "cancelOrderId", "cancelOrigClientOrderId")
        cancel_id = self._cancel_id(params, "cancelNewClientOrderId")
        request = self._order_request(params, "newClientOrderId")
        over_mode = params.get("orderRateLimitExceededMode") or "DO_NOTHING"
        if over_mode not in ("DO_NOTHING", "CANCEL_ONLY"):
            raise ExchangeRejected(
                -1100,
                "Illegal characters found in parameter 'orderRateLimitExceededMode'; legal range is "
                "'DO_NOTHING, CANCEL_ONLY'.",
            )
        cancel, placed, over_limit = self.core.cancel_replace(
            symbol,
            cancel_order_id=order_id,
            cancel_client_order_id=client_id,
            new_order=request,
            stop_on_failure=mode == "STOP_ON_FAILURE",
            cancel_restrictions=_restrictions(params),
            counted=True,
            cancel_only_over_limit=over_mode == "CANCEL_ONLY",
            cancel_new_client_order_id=cancel_id,
        )
        resp_type = params.get("newOrderRespType", "FULL" if request.type in ("MARKET", "LIMIT") else "ACK")
        cancel_json = (
            wire.cancel_json(cancel, cancel_id, self.core.now_ms())
            if not isinstance(cancel, ExchangeRejected)
            else {"code": cancel.code, "msg": cancel.msg}
        )
        new_json: Any = (
            None
            if placed is None
            else {"code": placed.code, "msg": placed.msg}
            if isinstance(placed, ExchangeRejected)
            else wire.order_json(placed[0], placed[1], resp_type)
        )
        data = {
            "cancelResult": "FAILURE" if isinstance(cancel, ExchangeRejected) else "SUCCESS",
            "newOrderResult": "NOT_ATTEMPTED"
            if placed is None
            else "FAILURE"
            if isinstance(placed, ExchangeRejected)
            else "SUCCESS",
            "cancelResponse": cancel_json,
            "newOrderResponse": new_json,
        }
        # The status table of rest-api.md "Cancel an Existing Order and Send a New Order": over the
        # unfilled order count with CANCEL_ONLY, STOP_ON_FAILURE answers 429 whatever the cancel did.
        if isinstance(cancel, ExchangeRejected) and (placed is None or isinstance(placed, ExchangeRejected)):
            code, msg, status = -2022, "Order cancel-replace failed.", 400
        elif isinstance(cancel, ExchangeRejected) or isinstance(placed, ExchangeRejected):
            code, msg, status = -2021, "Order cancel-replace partially failed.", 409
        else:
            reply = Reply.json(200, data)
            reply.headers.update(self.core.order_count.headers(self.core.now_ms()))
            return reply
        if over_limit and mode == "STOP_ON_FAILURE":
            status = 429
        reply = Reply.json(status, {"code": code, "msg": msg, "data": data})
        reply.code = code
        return reply

    def _cancel_all(self, params: dict[str, str]) -> Reply:
        cancel_id = new_client_id()  # one id for the whole cancel, as Binance sends
        orders = self.core.cancel_all(wire.mandatory(params, "symbol"), cancel_client_order_id=cancel_id)
        now = self.core.now_ms()
        return Reply.json(200, [wire.cancel_json(o, cancel_id, now) for o in orders])

    def _open_orders(self, params: dict[str, str]) -> Reply:
        symbol = params.get("symbol") or None
        return Reply.json(200, [wire.query_order_json(o) for o in self.core.open_orders(symbol)])

    def _limit(self, params: dict[str, str]) -> int:
        limit = wire.int_param(params, "limit")
        return 500 if limit is None else max(1, min(limit, 1000))

    def _all_orders(self, params: dict[str, str]) -> Reply:
        rows = self.core.all_orders(
            wire.mandatory(params, "symbol"),
            order_id=wire.int_param(params, "orderId"),
            start_ms=wire.int_param(params, "startTime"),
            end_ms=wire.int_param(params, "endTime"),
            limit=self._limit(params),
        )
        return Reply.json(200, [wire.query_order_json(o) for o in rows])

    def _my_trades(self, params: dict[str, str]) -> Reply:
        rows = self.core.my_trades(
            wire.mandatory(params, "symbol"),
            order_id=wire.int_param(params, "orderId"),
            from_id=wire.int_param(params, "fromId"),
            start_ms=wire.int_param(params, "startTime"),
            end_ms=wire.int_param(params, "endTime"),
            limit=self._limit(params),
        )
        return Reply.json(200, [wire.trade_json(t) for t in rows])

    def _unfilled_order_count(self, params: dict[str, str]) -> Reply:
        now = self.core.now_ms()
        return Reply.json(200, self.core.order_count.report(now, self.core.settings))

    def _account(self, params: dict[str, str]) -> Reply:
        omit = params.get("omitZeroBalances", "false").lower() == "true"
        return Reply.json(200, wire.account_json(self.core, omit))


def _restrictions(params: dict[str, str]) -> str | None:
    """``cancelRestrictions``, checked before anything is done (-1145 for an unknown value)."""
    value = params.get("cancelRestrictions") or None
    if value not in CANCEL_RESTRICTIONS:
        raise ExchangeRejected(-1145, "Invalid cancelRestrictions")
    return value


def _without_signature(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


def _signature_of(raw: str) -> str | None:
    for part in raw.split("&"):
        if part.startswith("signature="):
            return part[len("signature=") :]
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimHTTPServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            reply = self.server.app.handle(self.command, self.path, body, self.headers.get("X-MBX-APIKEY"))
        except Exception as exc:  # a simulator bug: say so loudly (stderr, and a 500 ccxt shows)
            traceback.print_exc()
            reply = Reply.json(500, {"error": f"simulator bug: {type(exc).__name__}: {exc}"})
        if reply.delay_s and self.server.app.stopping.wait(reply.delay_s):
            reply.drop = True  # stopping: do not keep the answer waiting
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:  # the request log replaces stderr chatter
        return


class SimHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to 127.0.0.1 only, serving one :class:`BinanceApp`."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, app: BinanceApp) -> None:
        if host != "127.0.0.1":
            raise ValueError(f"the exchange simulator binds to 127.0.0.1 only, not {host!r}")
        self.app = app
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__((host, port), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = self.socket.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else ~40 ms per request (Nagle + delayed ACK)
        with self._conn_lock:
            self._connections.add(conn)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout fired during a delayed answer) is
        # normal here, not an error worth a traceback.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return ipaddress.ip_address(client_address[0]).is_loopback

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def serve_until_stopped(self) -> None:
        """Accept until :meth:`stop_serving`; wakes at once (no polling interval)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                self.handle_request()

    def stop_serving(self) -> None:
        """Wake the accept loop, then close the listener and every open connection."""
        self.app.stopping.set()
        self._wake_w.send(b"x")

    def close_all(self) -> None:
        self.server_close()
        with self._conn_lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._wake_r.close()
        self._wake_w.close()
