"""The pure reconciliation decisions, table-driven: journal + observations -> decisions."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from journal import Record
from journal.log.clientid import make_client_id
from recovery.decide import Action, Inputs, Observations, SymbolView, decide, symbols_of
from recovery.normalize import CANCEL_NOT_APPLIED, NOT_ON_EXCHANGE, TARGET_NOT_ON_EXCHANGE

JID = "Ab3dE5gH"
NOW_NS = 1_800_000_000_000 * 1_000_000  # ms -> ns
SETTLE_MS = 10_000
OLD_NS = NOW_NS - 60_000 * 1_000_000  # a minute ago: settled
FRESH_NS = NOW_NS - 1_000 * 1_000_000  # a second ago: inside the settle window


def cid(op: int) -> str:
    return make_client_id(JID, op)


def intent(op: int, type_: str = "place_order", ts_ns: int = OLD_NS, **data: Any) -> Record:
    data.setdefault("symbol", "BTC/USDT")
    return Record(seq=op, kind="intent", type=type_, ts_ns=ts_ns, data=data, op=op, client_id=cid(op))


def order(client_id: str, status: str = "open", filled: str = "0", symbol: str = "BTC/USDT", **kw: Any) -> dict:
    return {"id": kw.pop("id", "9" + client_id[-3:]), "client_id": client_id, "symbol": symbol, "status": status,
            "amount": D("1"), "filled": D(filled), **kw}  # fmt: skip


def inputs(pending=(), orders=None, trades=None, balances=None) -> Inputs:
    return Inputs(JID, list(pending), orders or {}, trades or {}, balances or {})


def obs(*, seen=(), open_ok=True, history_from_ms=None, lookups=None, trades=(), open_all=None, balances=None):
    view = SymbolView(
        orders={o["client_id"]: o for o in seen},
        open_ok=open_ok,
        history_from_ms=history_from_ms,
        trades=list(trades),
        trades_ok=True,
        lookups=lookups or {},
    )
    return Observations(symbols={"BTC/USDT": view}, open_orders_all=open_all, balances=balances)


def actions(decisions) -> list[tuple[Action, int | None, str | None]]:
    return [(d.action, d.op, d.reason) for d in decisions]


AUTH = (OLD_NS // 1_000_000) - 1  # history covering the intent

CASES = [
    # pending place
    ("place found open", inputs([intent(1)]), obs(seen=[order(cid(1))]), [(Action.COMMIT, 1, None)]),
    ("place found filled", inputs([intent(1)]), obs(seen=[order(cid(1), "closed", "1")]), [(Action.COMMIT, 1, None)]),
    ("place found canceled", inputs([intent(1)]), obs(seen=[order(cid(1), "canceled")]), [(Action.COMMIT, 1, None)]),
    ("place absent, history authoritative, settled", inputs([intent(1)]), obs(history_from_ms=AUTH),
     [(Action.ABORT, 1, NOT_ON_EXCHANGE)]),
    ("place absent, lookup authoritative, settled", inputs([intent(1)]), obs(lookups={cid(1): True}),
     [(Action.ABORT, 1, NOT_ON_EXCHANGE)]),
    ("place absent but inside settle window", inputs([intent(1, ts_ns=FRESH_NS)]), obs(lookups={cid(1): True}),
     [(Action.UNRESOLVED, 1, "inside the settle window")]),
    # issue 12.1: a fresh intent the exchange could not be asked about is not "inside the settle window"
    ("place fresh, exchange not asked", inputs([intent(1, ts_ns=FRESH_NS)]), obs(),
     [(Action.UNRESOLVED, 1, "the exchange could not be asked")]),
    ("place absent, exchange not asked (network error)", inputs([intent(1)]), obs(),
     [(Action.UNRESOLVED, 1, "the exchange could not be asked")]),
    ("place absent, history starts after the intent", inputs([intent(1)]), obs(history_from_ms=AUTH + 10**6),
     [(Action.UNRESOLVED, 1, "the exchange could not be asked")]),
    # pending cancel
    ("cancel: target canceled", inputs([intent(2, "cancel_order", client_id=cid(1))], {cid(1): order(cid(1))}),
     obs(seen=[order(cid(1), "canceled")]), [(Action.COMMIT, 2, None)]),
    ("cancel: target filled meanwhile", inputs([intent(2, "cancel_order", client_id=cid(1))], {cid(1): order(cid(1))}),
     obs(seen=[order(cid(1), "closed", "1")]), [(Action.COMMIT, 2, None)]),
    ("cancel: target still open, settled", inputs([intent(2, "cancel_order", client_id=cid(1))],
     {cid(1): order(cid(1))}), obs(seen=[order(cid(1))]), [(Action.ABORT, 2, CANCEL_NOT_APPLIED)]),
    ("cancel: target still open, fresh", inputs([intent(2, "cancel_order", ts_ns=FRESH_NS, client_id=cid(1))],
     {cid(1): order(cid(1))}), obs(seen=[order(cid(1))]), [(Action.UNRESOLVED, 2, "cancel outcome unknown: inside the settle window")]),
    ("cancel: target unknown to exchange", inputs([intent(2, "cancel_order", client_id=cid(1))],
     {cid(1): order(cid(1))}), obs(lookups={cid(1): True}), [(Action.ABORT, 2, TARGET_NOT_ON_EXCHANGE)]),
    ("cancel: exchange not asked", inputs([intent(2, "cancel_order", client_id=cid(1))], {cid(1): order(cid(1))}),
     obs(open_ok=False), [(Action.UNRESOLVED, 2, "cancel outcome unknown: the exchange could not be asked")]),
    # pending edit: the new order carries the edit's client id
    ("edit: new order found", inputs([intent(3, "edit_order", client_id=cid(1))], {cid(1): order(cid(1))}),
     obs(seen=[order(cid(3)), order(cid(1), "canceled")]), [(Action.COMMIT, 3, None)]),
    ("edit: new order absent, settled", inputs([intent(3, "edit_order", client_id=cid(1))], {cid(1): order(cid(1))}),
     obs(seen=[order(cid(1))], history_from_ms=AUTH), [(Action.ABORT, 3, NOT_ON_EXCHANGE)]),
    # unknown operation types are for a person
    ("unknown op type", inputs([intent(4, "transfer")]), obs(), [(Action.UNRESOLVED, 4, "unknown type transfer")]),
]  # fmt: skip


@pytest.mark.parametrize("name,inp,ob,expected", CASES, ids=[c[0] for c in CASES])
def test_pending_operations(name: str, inp: Inputs, ob: Observations, expected: list) -> None:
    decisions = [d for d in decide(inp, ob, now_ns=NOW_NS, settle_window_ms=SETTLE_MS) if d.op is not None]
    assert actions(decisions)[: len(expected)] == expected


def test_known_open_order_changes_become_updates() -> None:
    known = {cid(1): order(cid(1)), cid(2): order(cid(2)), cid(3): order(cid(3), filled="0.1")}
    seen = [order(cid(1), "canceled"), order(cid(2)), order(cid(3), filled="0.5")]
    out = decide(inputs([], known), obs(seen=seen), now_ns=NOW_NS, settle_window_ms=SETTLE_MS)
    assert [(d.action, d.client_id) for d in out] == [(Action.ORDER_UPDATE, cid(1)), (Action.ORDER_UPDATE, cid(3))]


def test_fills_are_deduplicated_by_trade_id() -> None:
    known = {cid(1): order(cid(1), id="91")}
    trades = [
        {"id": "t1", "order_id": "91", "client_id": None, "symbol": "BTC/USDT", "amount": D("0.1"), "timestamp": 2},
        {"id": "t2", "order_id": "91", "client_id": None, "symbol": "BTC/USDT", "amount": D("0.1"), "timestamp": 1},
        {"id": "t2", "order_id": "91", "client_id": None, "symbol": "BTC/USDT", "amount": D("0.1"), "timestamp": 1},
        {"id": "t3", "order_id": "other", "client_id": None, "symbol": "BTC/USDT", "amount": D("1"), "timestamp": 3},
    ]
    out = decide(inputs([], known, trades={"BTC/USDT:t1": {}}), obs(trades=trades), now_ns=NOW_NS,
                 settle_window_ms=SETTLE_MS)  # fmt: skip
    assert [(d.action, d.data["id"], d.client_id) for d in out] == [(Action.FILL, "t2", cid(1))]


def test_trades_are_attributed_by_symbol_and_order_id() -> None:
    """Binance numbers orders per symbol: order 91 on BTC/USDT and order 91 on ETH/USDT are different orders
    (with a global id map a fill was once recorded against the wrong order)."""
    known = {cid(1): order(cid(1), id="91"), cid(2): order(cid(2), id="91", symbol="ETH/USDT")}
    btc = SymbolView(trades=[{"id": "t1", "order_id": "91", "client_id": None, "symbol": "BTC/USDT",
                              "amount": D("0.1"), "timestamp": 1}], trades_ok=True)  # fmt: skip
    eth = SymbolView(trades=[{"id": "t1", "order_id": "91", "client_id": None, "symbol": "ETH/USDT",
                              "amount": D("2"), "timestamp": 1}], trades_ok=True)  # fmt: skip
    out = decide(inputs([], known), Observations(symbols={"BTC/USDT": btc, "ETH/USDT": eth}), now_ns=NOW_NS,
                 settle_window_ms=SETTLE_MS)  # fmt: skip
    assert sorted((d.symbol, d.client_id, d.data["amount"]) for d in out if d.action is Action.FILL) == [
        ("BTC/USDT", cid(1), D("0.1")),
        ("ETH/USDT", cid(2), D("2")),
    ]


def test_unknown_open_orders_adopted_or_external() -> None:
    ours = order(cid(50))
    foreign = order("web_123", id="77")
    other_journal = order(make_client_id("Zz000000", 5), id="78")
    out = decide(inputs(), obs(open_all=[foreign, ours, other_journal]), now_ns=NOW_NS, settle_window_ms=SETTLE_MS)
    assert sorted((d.action.value, d.client_id) for d in out) == sorted(
        [("adopt", cid(50)), ("external", "web_123"), ("external", make_client_id("Zz000000", 5))]
    )


def test_balance_differences_are_corrections() -> None:
    known = {"USDT": {"free": D("10"), "used": D("0"), "total": D("10")}, "XRP": {"free": D("1"), "used": D("0"),
             "total": D("1")}}  # fmt: skip
    seen = {"USDT": {"free": D("9"), "used": D("1"), "total": D("10")}, "BTC": {"free": D("1"), "used": D("0"),
            "total": D("1")}}  # fmt: skip
    out = decide(inputs(balances=known), obs(balances=seen), now_ns=NOW_NS, settle_window_ms=SETTLE_MS)
    assert len(out) == 1 and out[0].action is Action.BALANCES
    assert out[0].data == {"BTC": seen["BTC"], "USDT": seen["USDT"], "XRP": None}
    same = decide(inputs(balances=seen), obs(balances=seen), now_ns=NOW_NS, settle_window_ms=SETTLE_MS)
    assert same == []


def test_decisions_are_deterministic() -> None:
    pend = [intent(i) for i in range(1, 20)]
    seen = [order(cid(i)) for i in range(1, 20, 2)]
    a = decide(inputs(pend), obs(seen=seen, history_from_ms=AUTH), now_ns=NOW_NS, settle_window_ms=SETTLE_MS)
    b = decide(inputs(pend), obs(seen=list(reversed(seen)), history_from_ms=AUTH), now_ns=NOW_NS,
               settle_window_ms=SETTLE_MS)  # fmt: skip
    assert a == b


def test_symbols_of_pending_and_open_orders() -> None:
    inp = inputs(
        [intent(1, symbol="ETH/USDT"), intent(2, "cancel_order", client_id=cid(9), symbol=None)],
        {cid(9): order(cid(9), symbol="SOL/USDT"), cid(8): order(cid(8), "closed", symbol="XRP/USDT")},
    )
    assert symbols_of(inp) == ["ETH/USDT", "SOL/USDT"]


def test_an_adopted_order_gets_its_trades_in_the_same_decisions() -> None:
    """Adoption comes before the fills: the trade of an order adopted now is attributed to it, by (symbol, id)."""
    ours = order(cid(50), filled="0.5", id="777")
    trade = {"id": "t1", "order_id": "777", "client_id": None, "symbol": "BTC/USDT", "side": "buy",
             "amount": D("0.5"), "price": D("1"), "timestamp": 1}  # fmt: skip
    out = decide(inputs(), obs(seen=[ours], open_all=[ours], trades=[trade]), now_ns=NOW_NS, settle_window_ms=SETTLE_MS)
    assert [(d.action, d.client_id) for d in out] == [(Action.ADOPT, cid(50)), (Action.FILL, cid(50))]
    applied = decide(inputs(orders={cid(50): ours}, trades={"BTC/USDT:t1": {}}), obs(seen=[ours], open_all=[ours],
                     trades=[trade]), now_ns=NOW_NS, settle_window_ms=SETTLE_MS)  # fmt: skip
    assert applied == []


def test_the_settle_window_counts_from_every_timestamp_the_request_may_carry() -> None:
    """Signed with local time + 30 s (ccxt's adjustForTimeDifference): a minute-old intent is 30 s old there."""
    absent = obs(lookups={cid(1): True})
    plain = decide(inputs([intent(1)]), absent, now_ns=NOW_NS, settle_window_ms=SETTLE_MS)
    assert actions(plain) == [(Action.ABORT, 1, NOT_ON_EXCHANGE)]
    ahead = decide(inputs([intent(1)]), absent, now_ns=NOW_NS, settle_window_ms=40_000, signing_offsets_ms=(0, 30_000))
    assert actions(ahead) == [(Action.UNRESOLVED, 1, "inside the settle window")]
    assert actions(decide(inputs([intent(1)]), absent, now_ns=NOW_NS, settle_window_ms=40_000)) == [
        (Action.ABORT, 1, NOT_ON_EXCHANGE)
    ]


def test_another_copys_closed_order_in_the_history_is_adopted_not_this_copys() -> None:
    from journal.log.clientid import Incarnations

    history = Incarnations([[1, "AAAAAA"], [10, "CCCCCC"]])  # this copy: A wrote 1..9, then C (restored)
    lost = make_client_id(JID, 10, "AAAAAA")  # the lost copy went on as A past seq 9
    mine = make_client_id(JID, 5, "AAAAAA")  # issued by this history (the state no longer holds it)
    view = SymbolView(orders={lost: order(lost, "closed", "1"), mine: order(mine, "closed", "1")}, open_ok=True,
                      trades_ok=True, swept={lost, mine})  # fmt: skip
    inp = Inputs(JID, [], {}, {}, {}, incarnations=history)
    assert inp.foreign(lost) and not inp.foreign(mine) and not inp.foreign(make_client_id(JID, 12, "CCCCCC"))
    out = decide(inp, Observations(symbols={"BTC/USDT": view}), now_ns=NOW_NS, settle_window_ms=SETTLE_MS)
    assert [(d.action, d.client_id, d.data["status"]) for d in out] == [(Action.ADOPT, lost, "closed")]
