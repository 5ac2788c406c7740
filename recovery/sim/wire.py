"""Binance spot wire format for the simulator: parameter parsing and JSON shapes.

Parsing helpers raise :class:`~recovery.sim.core.ExchangeRejected` with the
code and message Binance uses (-1100 illegal characters, -1102 mandatory
parameter, -1104 unread parameters). Serialisers turn core objects into the
exact response shapes of ``/api/v3/exchangeInfo``, ``order`` (ACK / RESULT /
FULL / query / cancel), ``myTrades`` and ``account``, and the user data
stream's events (``executionReport``, ``outboundAccountPosition``,
``balanceUpdate``, user-data-stream.md); amounts are strings with 8 decimals,
as Binance sends them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, localcontext
from typing import Any

from recovery.sim.core import CLIENT_ID_PATTERN, ExchangeCore, ExchangeRejected, Market, Order, Trade
from recovery.sim.events import AccountEvent, BalanceEvent, OrderEvent, UserEvent

__all__ = [
    "ENDPOINT_PARAMS",
    "account_json",
    "account_position_json",
    "balance_update_json",
    "cancel_json",
    "check_params",
    "client_id_param",
    "decimal_param",
    "exchange_info_json",
    "execution_report_json",
    "fmt",
    "int_param",
    "mandatory",
    "order_json",
    "query_order_json",
    "trade_json",
    "user_event_json",
]

_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_INT_RE = re.compile(r"^-?[0-9]{1,20}$")
_EIGHT = Decimal("0.00000001")
_STP = "EXPIRE_MAKER"
_SIGNED = frozenset({"recvWindow", "timestamp"})
_NEW_ORDER = frozenset(
    {
        "symbol",
        "side",
        "type",
        "timeInForce",
        "quantity",
        "quoteOrderQty",
        "price",
        "newClientOrderId",
        "strategyId",
        "strategyType",
        "stopPrice",
        "trailingDelta",
        "icebergQty",
        "newOrderRespType",
        "selfTradePreventionMode",
        "pegPriceType",
        "pegOffsetValue",
        "pegOffsetType",
    }
)

#: Parameters Binance documents for each simulated endpoint; anything else is -1104.
ENDPOINT_PARAMS: Mapping[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/v3/ping"): frozenset(),
    ("GET", "/api/v3/time"): frozenset(),
    ("GET", "/api/v3/exchangeInfo"): frozenset(
        {"symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"}
    ),
    ("POST", "/api/v3/order"): _NEW_ORDER | _SIGNED,
    ("GET", "/api/v3/order"): frozenset({"symbol", "orderId", "origClientOrderId"}) | _SIGNED,
    ("DELETE", "/api/v3/order"): frozenset(
        {"symbol", "orderId", "origClientOrderId", "newClientOrderId", "cancelRestrictions"}
    )
    | _SIGNED,
    ("POST", "/api/v3/order/cancelReplace"): _NEW_ORDER
    | _SIGNED
    | frozenset(
        {
            "cancelReplaceMode",
            "cancelNewClientOrderId",
            "cancelOrigClientOrderId",
            "cancelOrderId",
            "cancelRestrictions",
            "orderRateLimitExceededMode",
        }
    ),
    ("GET", "/api/v3/openOrders"): frozenset({"symbol"}) | _SIGNED,
    ("DELETE", "/api/v3/openOrders"): frozenset({"symbol"}) | _SIGNED,
    ("GET", "/api/v3/allOrders"): frozenset({"symbol", "orderId", "startTime", "endTime", "limit"}) | _SIGNED,
    ("GET", "/api/v3/myTrades"): frozenset({"symbol", "orderId", "startTime", "endTime", "fromId", "limit"}) | _SIGNED,
    ("GET", "/api/v3/account"): frozenset({"omitZeroBalances"}) | _SIGNED,
    ("GET", "/api/v3/rateLimit/order"): _SIGNED,
}


def fmt(value: Decimal) -> str:
    """Binance's amount format: a plain decimal string with 8 decimals."""
    with localcontext() as ctx:
        ctx.prec = 60
        return f"{value.quantize(_EIGHT):f}"


def check_params(method: str, path: str, params: Mapping[str, str]) -> None:
    allowed = ENDPOINT_PARAMS[(method, path)]
    unread = [name for name in params if name not in allowed]
    if unread:
        raise ExchangeRejected(
            -1104,
            f"Not all sent parameters were read; read '{len(params) - len(unread)}' parameter(s) but was sent "
            f"'{len(params)}'.",
        )


def mandatory(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise ExchangeRejected(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def decimal_param(params: Mapping[str, str], name: str) -> Decimal | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not _DECIMAL_RE.match(value):
        raise ExchangeRejected(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '{_DECIMAL_RE.pattern}'."
        )
    return Decimal(value)


def client_id_param(params: Mapping[str, str], name: str) -> str | None:
    """A client order id parameter (``newClientOrderId``, ``origClientOrderId``, ...), or ``None`` if empty.

    Binance spot accepts ``^[a-zA-Z0-9-_]{1,36}$`` (fix-api.md "Client order ID
    fields must conform to the regex"); anything else is -1100.
    """
    value = params.get(name)
    if not value:
        return None
    if not CLIENT_ID_PATTERN.match(value):
        raise ExchangeRejected(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '{CLIENT_ID_PATTERN.pattern}'."
        )
    return value


def int_param(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not _INT_RE.match(value):
        raise ExchangeRejected(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(value)


def _filters(market: Market, max_num_orders: int) -> list[dict[str, Any]]:
    return [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": fmt(market.tick_size),
            "maxPrice": fmt(market.max_price),
            "tickSize": fmt(market.tick_size),
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": fmt(market.step_size),
            "maxQty": fmt(market.max_qty),
            "stepSize": fmt(market.step_size),
        },
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": fmt(Decimal(0)),
            "maxQty": fmt(market.max_qty),
            "stepSize": fmt(Decimal(0)),
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": fmt(market.min_notional),
            "applyMinToMarket": True,
            "maxNotional": fmt(market.max_notional),
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": max_num_orders},
    ]


def exchange_info_json(core: ExchangeCore) -> dict[str, Any]:
    """``exchangeInfo``: the markets and their filters, and the rate limits in force (unlimited ones left out)."""
    settings = core.settings
    limits = [
        ("REQUEST_WEIGHT", "MINUTE", 1, settings.weight_limit_1m),
        ("ORDERS", "SECOND", 10, settings.order_limit_10s),
        ("ORDERS", "DAY", 1, settings.order_limit_1d),
        ("RAW_REQUESTS", "MINUTE", 5, 61000),
    ]
    symbols = [
        {
            "symbol": m.id,
            "status": "TRADING",
            "baseAsset": m.base,
            "baseAssetPrecision": 8,
            "quoteAsset": m.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            # Only what the simulator matches: ccxt then refuses stop orders client-side.
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": True,
            "amendAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": _filters(m, core.settings.max_num_orders),
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": _STP,
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }
        for m in core.markets.values()
    ]
    return {
        "timezone": "UTC",
        "serverTime": core.now_ms(),
        "rateLimits": [
            {"rateLimitType": kind, "interval": interval, "intervalNum": number, "limit": limit}
            for kind, interval, number, limit in limits
            if limit is not None
        ],
        "exchangeFilters": [],
        "symbols": symbols,
    }


def _labels(order: Order) -> dict[str, Any]:
    """``strategyId``/``strategyType``, only for an order sent with them (rest-api.md "Conditional fields")."""
    labels: dict[str, Any] = {}
    if order.strategy_id is not None:
        labels["strategyId"] = order.strategy_id
    if order.strategy_type is not None:
        labels["strategyType"] = order.strategy_type
    return labels


def _core_fields(order: Order) -> dict[str, Any]:
    return {
        "price": fmt(order.price),
        "origQty": fmt(order.orig_qty),
        "executedQty": fmt(order.executed_qty),
        "origQuoteOrderQty": fmt(order.orig_quote_order_qty),
        "cummulativeQuoteQty": fmt(order.cummulative_quote_qty),
        "status": order.status,
        "timeInForce": order.time_in_force or "GTC",
        "type": order.type,
        "side": order.side,
    }


def order_json(order: Order, trades: list[Trade], resp_type: str) -> dict[str, Any]:
    """The answer to a new order: ``ACK``, ``RESULT`` or ``FULL`` (with ``fills``)."""
    body: dict[str, Any] = {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": order.time_ms,
    }
    if resp_type == "ACK":
        return body
    body.update(_core_fields(order))
    body["workingTime"] = order.time_ms
    body["selfTradePreventionMode"] = _STP
    body.update(_labels(order))
    if resp_type == "FULL":
        body["fills"] = [
            {
                "price": fmt(t.price),
                "qty": fmt(t.qty),
                "commission": fmt(t.commission),
                "commissionAsset": t.commission_asset,
                "tradeId": t.trade_id,
            }
            for t in trades
        ]
    return body


def query_order_json(order: Order) -> dict[str, Any]:
    """The shape of ``GET order``, ``openOrders`` and ``allOrders`` rows."""
    body: dict[str, Any] = {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
    }
    body.update(_core_fields(order))
    body.update(
        {
            "stopPrice": fmt(Decimal(0)),
            "icebergQty": fmt(Decimal(0)),
            "time": order.time_ms,
            "updateTime": order.update_time_ms,
            "isWorking": True,
            "workingTime": order.time_ms,
            "selfTradePreventionMode": _STP,
            **_labels(order),
        }
    )
    return body


def cancel_json(order: Order, cancel_client_id: str, transact_time: int) -> dict[str, Any]:
    """A cancel's answer: ``clientOrderId`` is the cancel's own new id, ``origClientOrderId`` the order's."""
    body: dict[str, Any] = {
        "symbol": order.symbol,
        "origClientOrderId": order.client_order_id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": cancel_client_id,
        "transactTime": transact_time,
    }
    body.update(_core_fields(order))
    body["selfTradePreventionMode"] = _STP
    body.update(_labels(order))
    return body


def trade_json(trade: Trade) -> dict[str, Any]:
    return {
        "symbol": trade.symbol,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "orderListId": -1,
        "price": fmt(trade.price),
        "qty": fmt(trade.qty),
        "quoteQty": fmt(trade.quote_qty),
        "commission": fmt(trade.commission),
        "commissionAsset": trade.commission_asset,
        "time": trade.time_ms,
        "isBuyer": trade.is_buyer,
        "isMaker": trade.is_maker,
        "isBestMatch": True,
    }


def account_json(core: ExchangeCore, omit_zero: bool) -> dict[str, Any]:
    rate = fmt(core.fee_rate)
    bps = int(core.fee_rate * 10000)
    balances = [
        {"asset": asset, "free": fmt(b.free), "locked": fmt(b.locked)}
        for asset, b in core.balances().items()
        if not (omit_zero and b.total == 0)
    ]
    return {
        "makerCommission": bps,
        "takerCommission": bps,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {"maker": rate, "taker": rate, "buyer": fmt(Decimal(0)), "seller": fmt(Decimal(0))},
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": core.now_ms(),
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": 354937868,
    }


def execution_report_json(event: OrderEvent) -> dict[str, Any]:
    """``executionReport`` (user-data-stream.md "Order Update"), fields in the documented order.

    ``C`` (the original client order id) is ``""`` except on a cancel, where it
    is the order's own id and ``c`` the cancel request's (ccxt reports ``C``
    when it is not empty, else ``c``). ``N`` is ``null`` and ``n`` ``"0"``
    without a trade; ``t`` is ``-1``. Conditional fields: ``W`` while the order
    is working on the book, ``j``/``J`` for an order sent with
    ``strategyId``/``strategyType``, ``eR`` on expiry.
    """
    order, trade = event.order, event.trade
    zero = fmt(Decimal(0))
    cancel = event.execution_type == "CANCELED"
    working = order.is_open and order.type != "MARKET"
    body: dict[str, Any] = {
        "e": "executionReport",
        "E": event.time_ms,
        "s": order.symbol,
        "c": event.cancel_client_id if cancel and event.cancel_client_id else order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force or "GTC",
        "q": fmt(order.orig_qty),
        "p": fmt(order.price),
        "P": zero,
        "F": zero,
        "g": -1,
        "C": order.client_order_id if cancel else "",
        "x": event.execution_type,
        "X": order.status,
        "r": event.reject_reason,
        "i": order.order_id,
        "l": fmt(trade.qty) if trade else zero,
        "z": fmt(order.executed_qty),
        "L": fmt(trade.price) if trade else zero,
        "n": fmt(trade.commission) if trade else "0",
        "N": trade.commission_asset if trade else None,
        "T": trade.time_ms if trade else order.update_time_ms,
        "t": trade.trade_id if trade else -1,
        "I": event.execution_id,
        "w": working,
        "m": trade.is_maker if trade else False,
        "M": False,
        "O": order.time_ms,
        "Z": fmt(order.cummulative_quote_qty),
        "Y": fmt(trade.quote_qty) if trade else zero,
        "Q": fmt(order.orig_quote_order_qty),
    }
    if working:
        body["W"] = order.time_ms
    body["V"] = _STP
    if order.strategy_id is not None:
        body["j"] = order.strategy_id
    if order.strategy_type is not None:
        body["J"] = order.strategy_type
    if event.expiry_reason is not None:
        body["eR"] = event.expiry_reason
    return body


def account_position_json(event: AccountEvent) -> dict[str, Any]:
    """``outboundAccountPosition`` (user-data-stream.md "Account Update"): the assets the change touched."""
    return {
        "e": "outboundAccountPosition",
        "E": event.time_ms,
        "u": event.update_ms,
        "B": [{"a": asset, "f": fmt(b.free), "l": fmt(b.locked)} for asset, b in event.balances],
    }


def balance_update_json(event: BalanceEvent) -> dict[str, Any]:
    """``balanceUpdate`` (user-data-stream.md "Balance Update"): a deposit (``d`` > 0) or withdrawal."""
    return {"e": "balanceUpdate", "E": event.time_ms, "a": event.asset, "d": fmt(event.delta), "T": event.clear_ms}


def user_event_json(event: UserEvent) -> dict[str, Any]:
    """The ``event`` object of one user data stream frame."""
    if isinstance(event, OrderEvent):
        return execution_report_json(event)
    if isinstance(event, AccountEvent):
        return account_position_json(event)
    return balance_update_json(event)
