"""The simulator refuses what Binance refuses, as Binance documents it, seen through real ccxt.

Every test cites the section of Binance's spot API documentation
(github.com/binance/binance-spot-api-docs: rest-api.md, errors.md,
filters.md, enums.md, CHANGELOG.md, faqs/) whose behaviour it checks; where
ccxt hides the wire (HTTP status, headers) the test also sends raw signed HTTP.
"""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from recovery.sim.server import Simulator
from tests.sim.signed import Signed

pytestmark = pytest.mark.integration

D = Decimal


@pytest.mark.parametrize("bad", ["tj.1", "tj:1", "tj/1", "x" * 37, "sp ace"])
def test_client_ids_outside_binance_alphabet_are_refused(
    simulator: Simulator, exchange: ccxt.binance, signed: Signed, bad: str
) -> None:
    """fix-api.md "Client order ID fields must conform to the regex ``^[a-zA-Z0-9-_]{1,36}$``";
    errors.md "-1100 ILLEGAL_CHARS": "Illegal characters found in parameter '%s'; legal range is '%s'."

    Every client id parameter is checked: the new order's, the looked-up one's,
    the cancel's own, and cancelReplace's (before it cancels anything).
    """
    with pytest.raises(ccxt.BadRequest, match=r"-1100.*newClientOrderId"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": bad})
    with pytest.raises(ccxt.BadRequest, match=r"-1100.*origClientOrderId"):
        exchange.fetch_order(None, "BTC/USDT", params={"clientOrderId": bad})
    with pytest.raises(ccxt.BadRequest, match=r"-1100.*origClientOrderId"):
        exchange.cancel_order(None, "BTC/USDT", params={"clientOrderId": bad})
    live = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "tj-ok_1"})
    with pytest.raises(ccxt.BadRequest, match=r"-1100.*newClientOrderId"):
        exchange.edit_order(live["id"], "BTC/USDT", "limit", "buy", 0.01, 28000, params={"clientOrderId": bad})
    assert simulator.core.order("tj-ok_1").status == "NEW"  # the refused replace cancelled nothing
    answer = signed("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=live["id"], newClientOrderId=bad)
    assert (answer.status, answer.code) == (400, -1100)
    assert "legal range is '^[a-zA-Z0-9-_]{1,36}$'" in answer.body["msg"]
    assert simulator.core.order("tj-ok_1").status == "NEW"


def test_strategy_labels_are_echoed_and_ccxt_takes_strategy_id_as_the_order_id(
    simulator: Simulator, exchange: ccxt.binance
) -> None:
    """rest-api.md "New order (TRADE)": ``strategyId`` LONG, ``strategyType`` INT "cannot be less than 1000000";
    "Conditional fields in Order Responses": both "appear if the parameter was populated in the request";
    CHANGELOG.md 2022-08-08: they appear in GET order, openOrders, allOrders and cancel answers;
    errors.md "-1134 BAD_STRATEGY_TYPE".

    ccxt's ``parse_order`` reads ``strategyId`` before ``orderId`` as the order's
    id, so a bot that labels its orders gets the label back as the id.
    """
    labels = {"clientOrderId": "lab1", "strategyId": 77, "strategyType": 1000000}
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params=labels)
    real_id = str(simulator.core.order("lab1").order_id)
    assert placed["id"] == "77" and placed["info"]["orderId"] == int(real_id)
    assert (placed["info"]["strategyId"], placed["info"]["strategyType"]) == (77, 1000000)
    fetched = exchange.fetch_order(real_id, "BTC/USDT")
    assert fetched["id"] == "77" and fetched["info"]["strategyType"] == 1000000
    assert [o["id"] for o in exchange.fetch_open_orders("BTC/USDT")] == ["77"]
    assert [o["id"] for o in exchange.fetch_orders("BTC/USDT")] == ["77"]
    canceled = exchange.cancel_order(real_id, "BTC/USDT")
    assert canceled["id"] == "77" and canceled["info"]["orderId"] == int(real_id)
    plain = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"clientOrderId": "lab2"})
    assert "strategyId" not in plain["info"] and "strategyType" not in plain["info"]
    with pytest.raises(ccxt.BadRequest, match="-1134"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000, params={"strategyType": 999999})
