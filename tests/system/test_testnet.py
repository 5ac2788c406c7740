"""Integration and crash tests that run against the simulator, and against Binance's spot testnet on request.

Each venue test runs twice: on the simulator (always), and on the Binance spot
testnet through ccxt's sandbox mode when ``TRADEJOURNAL_TESTNET_KEY`` and
``TRADEJOURNAL_TESTNET_SECRET`` are set -- otherwise that half is skipped with
:data:`tests.helpers.testnet.SKIP_REASON` (issue 12.11). The checks only use
what a real venue answers through ccxt (no simulator books), so the simulator
run proves the test itself. Run them against the testnet with::

    TRADEJOURNAL_TESTNET_KEY=... TRADEJOURNAL_TESTNET_SECRET=... .venv/bin/python -m pytest tests/system/test_testnet.py

The rest of this file needs no network: the sandbox URLs are ccxt's own, the
skip reason says what to set, and the session's guard lets no test reach a
non-loopback address (nor resolve a name) unless the opt-in is given -- and
then only the testnet's hosts.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from recovery.sim.server import Simulator
from tests.helpers.botpool import BotCrashed, BotServer
from tests.helpers.invariants import manager_for
from tests.helpers.netguard import NetGuard
from tests.helpers.testnet import (
    KEY_VAR,
    SECRET_VAR,
    SKIP_REASON,
    SPOT_KEYS,
    credentials,
    make_testnet_exchange,
    sandbox_hosts,
    sandbox_urls,
)

pytestmark = pytest.mark.integration

SYMBOL = "BTC/USDT"
OPT_IN = {KEY_VAR: "k" * 64, SECRET_VAR: "s" * 64}


# -- no network: what the opt-in is made of ----------------------------------------------


def test_the_sandbox_urls_are_the_ones_ccxt_uses() -> None:
    import ccxt

    test_urls = ccxt.binance().urls["test"]
    exchange = make_testnet_exchange("key", "secret")
    assert exchange.isSandboxModeEnabled
    for key in SPOT_KEYS:
        assert exchange.urls["api"][key] == test_urls[key] == sandbox_urls()[key]
        assert exchange.urls["api"][key].startswith("https://testnet.binance.vision/api/")
    assert sandbox_hosts() == {"testnet.binance.vision"}
    assert exchange.options["maxRetriesOnFailure"] == 0 and exchange.options["fetchMarkets"]["types"] == ["spot"]


def test_the_opt_in_needs_both_variables_and_the_skip_reason_names_them() -> None:
    assert credentials({}) is None
    assert credentials({KEY_VAR: "k"}) is None
    assert credentials({KEY_VAR: "k", SECRET_VAR: "  "}) is None
    assert credentials({KEY_VAR: " k ", SECRET_VAR: "s"}) == ("k", "s")
    assert KEY_VAR in SKIP_REASON and SECRET_VAR in SKIP_REASON and "testnet.binance.vision" in SKIP_REASON


def test_without_the_opt_in_only_loopback_is_reachable() -> None:
    guard = NetGuard({})
    guard.check_connect(socket.AF_INET, ("127.0.0.1", 80))
    guard.check_connect(socket.AF_INET6, ("::1", 80, 0, 0))
    guard.check_resolve("localhost")
    guard.check_resolve("127.0.0.1")
    for host in ("testnet.binance.vision", "api.binance.com", "example.com"):
        with pytest.raises(AssertionError, match=f"resolve '{host}'.*{KEY_VAR}"):
            guard.check_resolve(host)
    guard.learned("testnet.binance.vision", [(2, 1, 6, "", ("203.0.113.7", 443))])  # ignored without the opt-in
    with pytest.raises(AssertionError, match="connect to '203.0.113.7'"):
        guard.check_connect(socket.AF_INET, ("203.0.113.7", 443))


def test_with_the_opt_in_only_the_sandbox_hosts_are_let_through() -> None:
    guard = NetGuard(OPT_IN)
    guard.check_resolve("testnet.binance.vision")
    for host in ("api.binance.com", "testnet.binancefuture.com", "example.com"):
        with pytest.raises(AssertionError, match=f"resolve '{host}'"):
            guard.check_resolve(host)
    with pytest.raises(AssertionError):
        guard.check_connect(socket.AF_INET, ("203.0.113.7", 443))  # not learned from a testnet host
    guard.learned("example.com", [(2, 1, 6, "", ("203.0.113.8", 443))])
    guard.learned("testnet.binance.vision", [(2, 1, 6, "", ("203.0.113.7", 443))])
    guard.check_connect(socket.AF_INET, ("203.0.113.7", 443))
    with pytest.raises(AssertionError):
        guard.check_connect(socket.AF_INET, ("203.0.113.8", 443))


def test_the_session_guard_is_installed() -> None:
    """A socket to a documentation address (TEST-NET-3) is refused before it leaves; so is a name."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(AssertionError, match="203.0.113.1"):
            sock.connect(("203.0.113.1", 9))
        with pytest.raises(AssertionError, match="203.0.113.1"):
            sock.connect_ex(("203.0.113.1", 9))
    finally:
        sock.close()
    with pytest.raises(AssertionError, match="example.com"):
        socket.getaddrinfo("example.com", 443)


# -- the same tests on both venues ---------------------------------------------------------


class Venue:
    """Where the bot trades: the simulator, or the testnet; checks ask it through ccxt only."""

    def __init__(self, name: str, sim: Simulator | None) -> None:
        self.name = name
        self.sim = sim
        self.url = sim.url if sim is not None else "https://testnet.binance.vision"
        self.cfg: dict[str, Any] = {"settle": "exchange", "autosave_s": 3600}
        if name == "testnet":
            self.cfg.update(venue="testnet", timeout_ms=10_000)

    def manager(self, path: Path) -> Any:
        return manager_for(str(path), self.url, self.cfg)

    def order_terms(self, exchange: Any) -> tuple[str, str]:
        """An amount and a limit buy price 20% under the market: rests, and passes the venue's filters."""
        exchange.load_markets()
        if self.sim is not None:
            last = self.sim.core.price(SYMBOL)
        else:
            last = Decimal(str(exchange.fetch_ticker(SYMBOL)["last"]))
        price = Decimal(exchange.price_to_precision(SYMBOL, float(last * Decimal("0.8"))))
        limits = exchange.market(SYMBOL)["limits"]
        min_cost = Decimal(str(limits["cost"]["min"] or 10))
        min_amount = Decimal(str(limits["amount"]["min"] or 0))
        amount = max(min_amount, (min_cost * Decimal("1.5") / price).quantize(Decimal("0.00001"), ROUND_UP))
        return exchange.amount_to_precision(SYMBOL, float(amount)), str(price)


@pytest.fixture(params=["simulator", "testnet"])
def venue(request: pytest.FixtureRequest) -> Iterator[Venue]:
    if request.param == "testnet":
        if credentials() is None:
            pytest.skip(SKIP_REASON)
        yield Venue("testnet", None)
        return
    with Simulator(prices={SYMBOL: "30000"}, balances={"USDT": "100000", "BTC": "1"}) as sim:
        yield Venue("simulator", sim)


def _ours_open_on_venue(m: Any) -> set[str]:
    """Ids of the open orders on the venue that carry this journal's prefix (asked through ccxt)."""
    prefix = "tj" + m.journal.journal_id
    return {
        str(o["id"]) for o in m.exchange.fetch_open_orders(SYMBOL) if str(o.get("clientOrderId")).startswith(prefix)
    }


def _cancel_ours(m: Any) -> None:
    for o in m.open_orders(SYMBOL):
        if o.get("id"):
            m.cancel_order(o["client_id"], SYMBOL)


def test_orders_survive_a_restart_and_reconcile_cleanly(venue: Venue, tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    m = venue.manager(path)
    report = m.start()
    assert report.complete, report
    amount, price = venue.order_terms(m.exchange)
    lower = str(Decimal(price) - Decimal("100"))
    kept = m.place_order(SYMBOL, "limit", "buy", amount, price)
    gone = m.place_order(SYMBOL, "limit", "buy", amount, lower)
    m.cancel_order(gone["client_id"], SYMBOL)
    edited = m.edit_order(kept["client_id"], SYMBOL, "limit", "buy", amount, lower)
    m.close()
    m = venue.manager(path)
    try:
        report = m.start()
        assert report.clean and not m.safe_mode and m.journal.pending_ids() == [], report
        orders = m.state["orders"]
        assert orders[gone["client_id"]]["status"] == "canceled"
        assert orders[kept["client_id"]]["status"] == "canceled"  # replaced by the edit
        assert orders[edited["client_id"]]["status"] == "open"
        open_in_state = {str(o["id"]) for o in m.open_orders(SYMBOL) if o.get("id")}
        assert open_in_state == _ours_open_on_venue(m) == {str(edited["id"])}
        second = m.reconcile()
        assert (second.resolved, second.aborted, second.order_updates, second.fills_applied) == (0, 0, 0, 0)
    finally:
        _cancel_ours(m)
        m.close()


def test_a_bot_killed_after_the_venue_accepted_its_order_finds_it_on_restart(venue: Venue, tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    m = venue.manager(path)
    m.start()
    amount, price = venue.order_terms(m.exchange)
    m.close()
    bot = BotServer(str(path), venue.url, venue.cfg, crash_at="order_acknowledged:1")
    assert "error" not in bot.call("start")
    with pytest.raises(BotCrashed):
        bot.call("place", symbol=SYMBOL, type="limit", side="buy", amount=amount, price=price)
    assert bot.proc.exitcode == -9
    m = venue.manager(path)
    try:
        report = m.start()
        assert report.resolved == 1 and report.clean, report
        placed = [o for o in m.open_orders(SYMBOL) if o.get("id")]
        assert len(placed) == 1 and {str(placed[0]["id"])} == _ours_open_on_venue(m)
        fetched = m.exchange.fetch_order(placed[0]["id"], SYMBOL)
        assert fetched["status"] == "open" and fetched["clientOrderId"] == placed[0]["client_id"]
    finally:
        _cancel_ours(m)
        m.close()
