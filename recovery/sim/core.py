"""In-memory matching core of the Binance-spot exchange simulator.

The core knows orders, trades, balances and last prices; it knows nothing of
HTTP (that is :mod:`recovery.sim.http`) and takes its data types from
:mod:`recovery.sim.model`. It is thread-safe: every public method takes one
re-entrant lock, ``core.lock``, so the HTTP threads and a test's hooks can share
it; hold ``core.lock`` yourself to make several hooks one atomic step.

Matching rules, kept deliberately simple (one infinitely deep level at the
last price):

- A ``MARKET`` order fills completely at the symbol's last price (``quantity``,
  or ``quoteOrderQty`` rounded down to the step size).
- A ``LIMIT`` order that *crosses* the last price (a buy at or above it, a sell
  at or below it) fills completely, at once, at its own limit price, as taker.
  Otherwise it rests. ``IOC``/``FOK`` orders that do not cross expire.
- ``LIMIT_MAKER`` orders that would cross are refused (-2010 "Order would
  immediately match and take.").
- :meth:`ExchangeCore.set_price` fills (as maker, at their limit price) the
  resting orders that the new price crosses, unless ``match=False``.
- :meth:`ExchangeCore.fill` fills a resting order partly or fully at any price
  not worse than its limit: the test decides when the market trades.

Balances: a limit buy locks ``price * qty`` of the quote asset (plus the fee
when fees are paid in quote), a limit sell locks ``qty`` of the base asset;
fills move base and quote and release the lock, a better fill price releases
the difference, cancels and expiries unlock the rest. Fees are ``fee_rate``
times the amount received (Binance without BNB: base on a buy, quote on a
sell; ``fee_asset="received"``) or always in the quote asset
(``fee_asset="quote"``), rounded down to 8 decimals. For every asset,
``free + locked`` only changes by trades, fees and :meth:`set_balance`.

Amounts are exact ``Decimal`` values (Binance serialises them as strings with 8
decimals, see :mod:`recovery.sim.wire`). Order and trade ids are increasing
integers. Order ids count per symbol, as on Binance, where ``orderId``
"uniquely identifies the order on a symbol" (faqs/spot_glossary.md): the
i-th market's first id is ``i * order_id_offset_per_symbol + 1`` (apart, like
Binance's unrelated ranges), and with the setting at 0 every symbol starts at
1, so the same id names different orders on different symbols (the strict test
of code that keys orders by id alone). Trade ids are account-wide. Times are milliseconds from a clock the core owns (real time unless
``clock_ms`` is given). Refusals raise :class:`ExchangeRejected` carrying the
exact Binance code, message and HTTP status.

Every change is also an event (:mod:`recovery.sim.events`) for the listeners
added with :meth:`ExchangeCore.add_listener` (the user data stream,
:mod:`recovery.sim.ws`): told under the lock, in exchange order, when the
mutating call is done: ``NEW``, then ``TRADE`` per fill (or ``EXPIRED``) for a
new order; ``CANCELED`` per cancel; the cancel before the new order of a
cancelReplace; then one ``outboundAccountPosition`` of the assets the call moved.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import ROUND_DOWN, Context, Decimal, localcontext
from typing import Any, Literal

from recovery.sim.events import AccountEvent, BalanceEvent, EventListener, OrderEvent, UserEvent
from recovery.sim.limits import UnfilledOrderCount
from recovery.sim.model import (
    CLIENT_ID_PATTERN,
    DEFAULT_BALANCES,
    DEFAULT_MARKETS,
    DEFAULT_PRICES,
    Balance,
    ExchangeRejected,
    Market,
    Number,
    Order,
    OrderRequest,
    SimulatorError,
    Trade,
    new_client_id,
)
from recovery.sim.model import to_decimal as _d
from recovery.sim.settings import Settings

__all__ = [
    "CANCEL_RESTRICTIONS",
    "CLIENT_ID_PATTERN",
    "DEFAULT_BALANCES",
    "DEFAULT_MARKETS",
    "DEFAULT_PRICES",
    "Balance",
    "ExchangeCore",
    "ExchangeRejected",
    "Market",
    "Order",
    "OrderRequest",
    "SimulatorError",
    "Trade",
    "new_client_id",
]

_CLIENT_ID_RANGE = CLIENT_ID_PATTERN.pattern
_EIGHT = Decimal("0.00000001")
_ZERO = Decimal(0)
_CTX = Context(prec=60)
_DAY_MS = 86_400_000
#: ``cancelRestrictions`` values and the status each one lets a cancel through (None: no restriction).
CANCEL_RESTRICTIONS: Mapping[str | None, str | None] = {
    None: None,
    "ONLY_NEW": "NEW",
    "ONLY_PARTIALLY_FILLED": "PARTIALLY_FILLED",
}

RefLike = int | str


def _multiple_of(value: Decimal, step: Decimal) -> bool:
    return (value % step) == 0


class ExchangeCore:
    """Orders, trades, balances and prices of one simulated Binance spot account.

    Thread-safe (one re-entrant lock). ``clock_ms`` returns the exchange's time
    in milliseconds; inject one to make times deterministic. ``settings`` are
    the knobs of :mod:`recovery.sim.settings` (a :class:`Settings` or a mapping
    of changes to the defaults); :meth:`configure` changes them later.
    """

    def __init__(
        self,
        markets: Iterable[Market] | None = None,
        *,
        prices: Mapping[str, Number] | None = None,
        balances: Mapping[str, Number] | None = None,
        fee_rate: Number = "0.001",
        fee_asset: Literal["received", "quote"] = "received",
        clock_ms: Callable[[], int] | None = None,
        settings: Settings | Mapping[str, Any] | None = None,
    ) -> None:
        if fee_asset not in ("received", "quote"):
            raise ValueError(f"fee_asset must be 'received' or 'quote', got {fee_asset!r}")
        self.lock = threading.RLock()
        self.settings = Settings.of(settings)  # replaced whole, never mutated
        self.order_count = UnfilledOrderCount()  # the account's unfilled orders per window (limits.py)
        self._markets = {m.id: m for m in (DEFAULT_MARKETS if markets is None else markets)}
        if not self._markets:
            raise ValueError("ExchangeCore needs at least one market")
        self._by_symbol = {m.symbol: m for m in self._markets.values()}
        self.fee_rate = _d(fee_rate)
        self.fee_asset = fee_asset
        self._clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._prices: dict[str, Decimal] = {}
        self._orders: dict[tuple[str, int], Order] = {}  # by (symbol id, order id), in creation order
        # every state an order went through, (time, copy), for the queries that lag (lag_ms)
        self._history: dict[tuple[str, int], list[tuple[int, Order]]] = {}
        self._trades: list[Trade] = []
        self._free: dict[str, Decimal] = {}
        self._locked: dict[str, Decimal] = {}
        self._next_order_id: dict[str, int] = {}  # per symbol, as Binance numbers them; set at its first order
        self._next_trade_id = 1
        self._listeners: list[EventListener] = []  # told every event, under the lock (add_listener)
        self._depth = 0  # nesting of the mutating calls in progress; events go out when it is back to 0
        self._pending: list[UserEvent] = []  # events of the call in progress, in order
        self._touched: set[str] = set()  # assets the call in progress moved (its outboundAccountPosition)
        self._next_seq = 1  # the next event's number
        self._next_execution_id = 1  # executionReport's I, account-wide
        for m in self._markets.values():
            self._free.setdefault(m.base, _ZERO)
            self._free.setdefault(m.quote, _ZERO)
        if prices is None:  # the defaults that fit these markets
            prices = {s: p for s, p in DEFAULT_PRICES.items() if self._lookup(s) is not None}
        for symbol, price in prices.items():
            if self._lookup(symbol) is None:
                raise ValueError(f"price given for {symbol!r}, which is not a market: {sorted(self._by_symbol)}")
            self._prices[self.market(symbol).id] = _d(price)
        for asset, free in (DEFAULT_BALANCES if balances is None else balances).items():
            self.set_balance(asset, free)

    # ----------------------------------------------------------- markets, time
    @property
    def markets(self) -> dict[str, Market]:
        """Markets by exchange id (``BTCUSDT``)."""
        return dict(self._markets)

    def _lookup(self, symbol: str) -> Market | None:
        return self._markets.get(symbol) or self._by_symbol.get(symbol)

    def market(self, symbol: str) -> Market:
        """The market for ``BTC/USDT`` or ``BTCUSDT``; -1121 if unknown."""
        found = self._lookup(symbol)
        if found is None:
            raise ExchangeRejected(-1121, "Invalid symbol.")
        return found

    def configure(self, **changes: Any) -> Settings:
        """Change some knobs (see :mod:`recovery.sim.settings`); returns the new settings."""
        with self.lock:
            self.settings = self.settings.replace(**changes)
            return self.settings

    def now_ms(self) -> int:
        return int(self._clock())

    # ---------------------------------------------------------------- events
    def add_listener(self, listener: EventListener) -> None:
        """Tell ``listener`` every event from now on (:mod:`recovery.sim.events`).

        It is called under ``core.lock``, once per event, in the order the
        changes happen, in the thread that made the change: it must not block
        (the stream server hands each event to its own event loop). What a call
        changes is told when the call is done: its order events in order, then
        one ``AccountEvent`` for the assets it moved. A listener that raises is
        a simulator bug: its traceback goes to stderr and the call still
        succeeds.
        """
        with self.lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    @contextmanager
    def _mutation(self) -> Iterator[None]:
        """Hold the lock for one mutating call; when the outermost one ends, tell the listeners."""
        with self.lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._flush()

    def _flush(self) -> None:
        touched, self._touched = self._touched, set()
        events, self._pending = self._pending, []
        if not self._listeners:
            return
        if touched:
            now = self.now_ms()
            balances = tuple(
                (a, Balance(self._free.get(a, _ZERO), self._locked.get(a, _ZERO))) for a in sorted(touched)
            )
            events.append(AccountEvent(self._seq(), now, now, balances))
        for event in events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # a listener bug must not fail the exchange's own call
                    traceback.print_exc()

    def _seq(self) -> int:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    def _emit_order(
        self,
        order: Order,
        execution_type: str,
        trade: Trade | None = None,
        *,
        cancel_client_id: str | None = None,
        reject_reason: str = "NONE",
        expiry_reason: str | None = None,
    ) -> None:
        if not self._listeners:
            return
        execution_id, self._next_execution_id = self._next_execution_id, self._next_execution_id + 1
        self._pending.append(
            OrderEvent(
                self._seq(),
                self.now_ms(),
                execution_id,
                execution_type,
                dataclasses.replace(order),
                trade,
                cancel_client_id,
                reject_reason,
                expiry_reason,
            )
        )

    def price(self, symbol: str) -> Decimal:
        with self.lock:
            market = self.market(symbol)
            if market.id not in self._prices:
                raise SimulatorError(f"no last price for {market.symbol}; call set_price({market.symbol!r}, ...) first")
            return self._prices[market.id]

    # ------------------------------------------------------------- balances
    def _move(self, asset: str, free: Decimal = _ZERO, locked: Decimal = _ZERO) -> None:
        self._touched.add(asset)
        self._free[asset] = self._free.get(asset, _ZERO) + free
        self._locked[asset] = self._locked.get(asset, _ZERO) + locked

    def balance(self, asset: str) -> Balance:
        with self.lock:
            return Balance(self._free.get(asset, _ZERO), self._locked.get(asset, _ZERO))

    def balances(self) -> dict[str, Balance]:
        with self.lock:
            assets = sorted(set(self._free) | set(self._locked))
            return {a: Balance(self._free.get(a, _ZERO), self._locked.get(a, _ZERO)) for a in assets}

    def set_balance(self, asset: str, free: Number) -> None:
        """Test hook: set the free amount of ``asset`` (locked amounts stay).

        The stream sees a deposit or withdrawal: ``balanceUpdate`` with the
        difference, then ``outboundAccountPosition`` (nothing if it is the same).
        """
        amount = _d(free)
        if amount < 0:
            raise ValueError(f"free balance of {asset} must be >= 0, got {amount}")
        with self._mutation():
            delta = amount - self._free.get(asset, _ZERO)
            self._free[asset] = amount
            self._locked.setdefault(asset, _ZERO)
            if delta:
                self._touched.add(asset)
                if self._listeners:
                    now = self.now_ms()
                    self._pending.append(BalanceEvent(self._seq(), now, asset, delta, now))

    # ---------------------------------------------------------------- orders
    def _fee_rate_in_quote_lock(self) -> Decimal:
        return self.fee_rate if self.fee_asset == "quote" else _ZERO

    def _check_filters(self, market: Market, qty: Decimal, price: Decimal, check_price: bool) -> None:
        """filters.md PRICE_FILTER, LOT_SIZE and NOTIONAL (``maxNotional`` not applied to MARKET orders)."""
        if check_price and (
            price < market.tick_size or price > market.max_price or not _multiple_of(price, market.tick_size)
        ):
            raise ExchangeRejected(-1013, "Filter failure: PRICE_FILTER")
        if qty < market.step_size or qty > market.max_qty or not _multiple_of(qty, market.step_size):
            raise ExchangeRejected(-1013, "Filter failure: LOT_SIZE")
        if qty * price < market.min_notional or (check_price and qty * price > market.max_notional):
            raise ExchangeRejected(-1013, "Filter failure: NOTIONAL")

    def _precheck(self, market: Market, request: OrderRequest, *, leaving: Order | None = None) -> Decimal:
        """What the API checks before the matching engine sees a new order; returns its quantity.

        Client id characters, strategyType, mandatory parameters, the symbol's
        filters and MAX_NUM_ORDERS (``leaving``: the open order a cancelReplace
        takes away). A cancelReplace runs this before it cancels (rest-api.md:
        "Filters and Order Count are evaluated before the processing of the
        cancellation and order placement occurs").
        """
        if request.client_order_id is not None and not CLIENT_ID_PATTERN.match(request.client_order_id):
            raise ExchangeRejected(
                -1100,
                f"Illegal characters found in parameter 'newClientOrderId'; legal range is '{_CLIENT_ID_RANGE}'.",
            )
        if request.strategy_type is not None and request.strategy_type < 1_000_000:
            raise ExchangeRejected(-1134, "strategyType was less than 1000000.")
        last = self.price(market.id)
        quantity, price = request.quantity, request.price
        if request.type == "MARKET":
            if quantity is None:
                if request.quote_order_qty is None:
                    raise ExchangeRejected(
                        -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty!"
                    )
                quantity = (request.quote_order_qty / last).quantize(market.step_size, rounding=ROUND_DOWN)
            elif request.quote_order_qty is not None:
                raise ExchangeRejected(-1106, "Parameter 'quoteOrderQty' sent when not required.")
            self._check_filters(market, quantity, last, check_price=False)
        else:
            if price is None or quantity is None:
                raise ExchangeRejected(
                    -1102,
                    "Mandatory parameter 'price' was not sent, was empty/null, or malformed."
                    if price is None
                    else "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
                )
            self._check_filters(market, quantity, price, check_price=True)
        still_open = sum(1 for o in self._orders.values() if o.is_open and o.symbol == market.id and o is not leaving)
        if still_open >= self.settings.max_num_orders:
            raise ExchangeRejected(-1013, "Filter failure: MAX_NUM_ORDERS")
        return quantity

    def place_order(
        self,
        symbol: str,
        side: str,
        type: str,
        *,
        quantity: Decimal | None = None,
        quote_order_qty: Decimal | None = None,
        price: Decimal | None = None,
        time_in_force: str | None = None,
        client_order_id: str | None = None,
        strategy_id: int | None = None,
        strategy_type: int | None = None,
        counted: bool = False,
    ) -> tuple[Order, list[Trade]]:
        """Validate, lock and match a new order; returns it and its immediate fills.

        ``strategy_id``/``strategy_type`` label the order and are echoed in every
        answer about it (rest-api.md "Conditional fields in Order Responses").
        ``counted``: the order goes through the unfilled order count (the API
        does this; a test hook placing an order directly does not): at a
        limit it is refused with 429 -1015, else it adds one
        (:mod:`recovery.sim.limits`).
        """
        request = OrderRequest(
            side, type, quantity, quote_order_qty, price, time_in_force, client_order_id, strategy_id, strategy_type
        )
        with self._mutation(), localcontext(_CTX):
            market = self.market(symbol)
            quantity = self._precheck(market, request)
            if not counted:
                return self._place(market, request, quantity)
            now = self.now_ms()
            refusal = self.order_count.refusal(now, self.settings)
            if refusal is not None:
                raise refusal
            self.order_count.add(now)  # before matching: an immediate fill takes it off again
            try:
                return self._place(market, request, quantity)
            except ExchangeRejected:
                self.order_count.undo(now)
                raise

    def _new_order_id(self, market: Market) -> int:
        """The symbol's next order id; its first is ``index * order_id_offset_per_symbol + 1``."""
        if market.id not in self._next_order_id:
            index = list(self._markets).index(market.id)
            return index * self.settings.order_id_offset_per_symbol + 1
        return self._next_order_id[market.id]

    def _place(self, market: Market, request: OrderRequest, quantity: Decimal) -> tuple[Order, list[Trade]]:
        """The matching engine's part of a new order, after :meth:`_precheck`."""
        client_order_id = request.client_order_id or new_client_id()
        if any(o.is_open and o.client_order_id == client_order_id for o in self._orders.values()):
            raise ExchangeRejected(-2010, "Duplicate order sent.")
        side, last = request.side, self.price(market.id)
        if request.type == "MARKET":
            price, crosses, lock = last, True, _ZERO
            needed = last * quantity * (1 + self._fee_rate_in_quote_lock()) if side == "BUY" else quantity
        else:
            assert request.price is not None  # _precheck made sure
            price = request.price
            crosses = price >= last if side == "BUY" else price <= last
            if request.type == "LIMIT_MAKER" and crosses:
                raise ExchangeRejected(-2010, "Order would immediately match and take.")
            lock = price * quantity * (1 + self._fee_rate_in_quote_lock()) if side == "BUY" else quantity
            needed = lock
        lock_asset = market.quote if side == "BUY" else market.base
        if self._free.get(lock_asset, _ZERO) < needed:
            raise ExchangeRejected(-2010, "Account has insufficient balance for requested action.")
        now = self.now_ms()
        is_market = request.type == "MARKET"
        order = Order(
            self._new_order_id(market),
            client_order_id,
            market.id,
            side,
            request.type,
            None if is_market else request.time_in_force,
            _ZERO if is_market else price,
            quantity,
            now,
            orig_quote_order_qty=(request.quote_order_qty or _ZERO) if is_market else _ZERO,
            update_time_ms=now,
            locked=lock,
            strategy_id=request.strategy_id,
            strategy_type=request.strategy_type,
        )
        self._next_order_id[market.id] = order.order_id + 1
        self._orders[(market.id, order.order_id)] = order
        self._move(lock_asset, free=-lock, locked=lock)
        self._emit_order(order, "NEW")
        trades: list[Trade] = []
        if crosses:
            trades.append(self._execute(order, quantity, price, is_maker=False))
        elif request.time_in_force in ("IOC", "FOK"):
            self._close(order, "EXPIRED")
            reason = "UNFILLED_IOC_QUANTITY_EXPIRED" if request.time_in_force == "IOC" else "UNFILLED_FOK_ORDER_EXPIRED"
            self._emit_order(order, "EXPIRED", expiry_reason=reason)
        self._remember(order)
        return dataclasses.replace(order), trades

    def _remember(self, order: Order) -> None:
        """Keep this state of ``order`` for the lagging queries (see :meth:`_view`)."""
        self._history.setdefault((order.symbol, order.order_id), []).append((self.now_ms(), dataclasses.replace(order)))

    def _view(self, query: str) -> dict[tuple[str, int], Order]:
        """The orders as ``query`` sees them: the truth, or the account ``lag_ms`` ago.

        rest-api.md "Data Sources": "The API system is asynchronous"; each
        endpoint reads from the Matching Engine, Memory or a Database that can
        lag it (allOrders: Database). When ``query`` is in ``lagging_queries``
        it sees each order in its latest state at least ``lag_ms`` old, and not
        at all if it is younger: accepted, yet invisible.
        """
        settings = self.settings
        if not settings.lag_ms or query not in settings.lagging_queries:
            return self._orders
        cutoff = self.now_ms() - settings.lag_ms
        view: dict[tuple[str, int], Order] = {}
        for key, versions in self._history.items():
            seen = next((version for at, version in reversed(versions) if at <= cutoff), None)
            if seen is not None:
                view[key] = seen
        return view

    def _execute(self, order: Order, qty: Decimal, price: Decimal, *, is_maker: bool) -> Trade:
        """Fill ``qty`` of ``order`` at ``price``: move balances, record the trade."""
        if order.executed_qty == 0:  # its first fill: the unfilled order count goes down
            self.order_count.filled(self.now_ms())
        market = self._markets[order.symbol]
        quote_qty = price * qty
        is_buyer = order.side == "BUY"
        fee_in_quote = self.fee_asset == "quote" or not is_buyer
        fee_base = quote_qty if fee_in_quote else qty
        commission = (fee_base * self.fee_rate).quantize(_EIGHT, rounding=ROUND_DOWN)
        fee_asset = market.quote if fee_in_quote else market.base
        resting = order.type != "MARKET"
        if is_buyer:
            spend = quote_qty + (commission if fee_in_quote else _ZERO)
            if resting:
                release = order.price * qty * (1 + self._fee_rate_in_quote_lock())
                order.locked -= release
                self._move(market.quote, free=release - spend, locked=-release)
            else:
                self._move(market.quote, free=-spend)
            self._move(market.base, free=qty - (_ZERO if fee_in_quote else commission))
        else:
            if resting:
                order.locked -= qty
                self._move(market.base, locked=-qty)
            else:
                self._move(market.base, free=-qty)
            self._move(market.quote, free=quote_qty - commission)
        order.executed_qty += qty
        order.cummulative_quote_qty += quote_qty
        order.update_time_ms = self.now_ms()
        trade = Trade(
            self._next_trade_id,
            order.order_id,
            order.symbol,
            price,
            qty,
            quote_qty,
            commission,
            fee_asset,
            order.update_time_ms,
            is_buyer,
            is_maker,
        )
        self._next_trade_id += 1
        self._trades.append(trade)
        if order.executed_qty == order.orig_qty:
            self._close(order, "FILLED")
        else:
            order.status = "PARTIALLY_FILLED"
        self._remember(order)
        self._emit_order(order, "TRADE", trade)
        return trade

    def _close(self, order: Order, status: str) -> None:
        """Set a final status and give back whatever the order still locks."""
        if order.locked:
            market = self._markets[order.symbol]
            asset = market.quote if order.side == "BUY" else market.base
            self._move(asset, free=order.locked, locked=-order.locked)
            order.locked = _ZERO
        order.status = status
        order.update_time_ms = self.now_ms()
        self._remember(order)

    def _find(
        self,
        symbol: str,
        order_id: int | None,
        client_order_id: str | None,
        orders: Mapping[tuple[str, int], Order] | None = None,
    ) -> Order | None:
        """By id (checked against the client id if both are given) or by client id (open first, then newest).

        ``orders``: where to look (a lagging view); the truth by default.
        """
        orders = self._orders if orders is None else orders
        if order_id is not None:
            order = orders.get((symbol, order_id))
            if order is None or (client_order_id is not None and order.client_order_id != client_order_id):
                return None
            return order
        return self._by_client_id(symbol, client_order_id, orders)

    def _by_client_id(
        self,
        symbol: str | None,
        client_order_id: str | None,
        orders: Mapping[tuple[str, int], Order] | None = None,
    ) -> Order | None:
        candidates = [
            o
            for o in (self._orders if orders is None else orders).values()
            if o.client_order_id == client_order_id and (symbol is None or o.symbol == symbol)
        ]
        open_ones = [o for o in candidates if o.is_open]
        pool = open_ones or candidates
        return pool[-1] if pool else None  # the newest: orders are kept in creation order

    def _archived(self, order: Order, now_ms: int) -> bool:
        """Archived: CANCELED or EXPIRED with nothing executed, longer ago than ``archive_after_ms``.

        errors.md "-2026 ORDER_ARCHIVED"; CHANGELOG.md: "an archived order (i.e.
        order with status CANCELED or EXPIRED where executedQty == 0 that
        occurred more than 90 days in the past)".
        """
        horizon = self.settings.archive_after_ms
        return (
            horizon is not None
            and order.status in ("CANCELED", "EXPIRED")
            and order.executed_qty == 0
            and now_ms - order.update_time_ms > horizon
        )

    def get_order(self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None) -> Order:
        """Binance ``GET /api/v3/order``; -2013 "Order does not exist." if unknown (or not seen yet, when
        ``order`` lags), -2026 if archived."""
        with self.lock:
            order = self._find(self.market(symbol).id, order_id, client_order_id, self._view("order"))
            if order is None:
                raise ExchangeRejected(-2013, "Order does not exist.")
            if self._archived(order, self.now_ms()):
                raise ExchangeRejected(
                    -2026, "Order was canceled or expired with no executed qty over 90 days ago and has been archived."
                )
            return dataclasses.replace(order)

    def cancel_order(
        self,
        symbol: str,
        *,
        order_id: int | None = None,
        client_order_id: str | None = None,
        restrictions: str | None = None,
        cancel_client_order_id: str | None = None,
    ) -> Order:
        """Binance ``DELETE /api/v3/order``; -2011 "Unknown order sent." if unknown or not open.

        ``restrictions`` (``cancelRestrictions``): ``ONLY_NEW`` cancels only a
        ``NEW`` order, ``ONLY_PARTIALLY_FILLED`` only a ``PARTIALLY_FILLED`` one;
        otherwise -2011 "Order was not canceled due to cancel restrictions."
        (rest-api.md "Regarding cancelRestrictions"), and the order stays.
        ``cancel_client_order_id`` is the cancel's own id (``newClientOrderId``;
        a fresh one if ``None``): the ``CANCELED`` event carries it in ``c`` and
        the order's id in ``C``.
        """
        if restrictions not in CANCEL_RESTRICTIONS:
            raise ExchangeRejected(-1145, "Invalid cancelRestrictions")
        with self._mutation():
            order = self._find(self.market(symbol).id, order_id, client_order_id)
            if order is None or not order.is_open:
                raise ExchangeRejected(-2011, "Unknown order sent.")
            if restrictions is not None and order.status != CANCEL_RESTRICTIONS[restrictions]:
                raise ExchangeRejected(-2011, "Order was not canceled due to cancel restrictions.")
            self._close(order, "CANCELED")
            self._emit_order(order, "CANCELED", cancel_client_id=cancel_client_order_id or new_client_id())
            return dataclasses.replace(order)

    def cancel_all(self, symbol: str, *, cancel_client_order_id: str | None = None) -> list[Order]:
        """Binance ``DELETE /api/v3/openOrders``: cancel every open order of ``symbol`` (oldest first).

        -2011 "Unknown order sent." when there is none (rest-api.md does not
        say; Binance answers so, e.g. binance/binance-connector-python#185).
        ``cancel_client_order_id``: the one id of the whole cancel, as in
        :meth:`cancel_order`.
        """
        with self._mutation():
            sid = self.market(symbol).id
            targets = [o for o in self._orders.values() if o.is_open and o.symbol == sid]
            if not targets:
                raise ExchangeRejected(-2011, "Unknown order sent.")
            cancel_id = cancel_client_order_id or new_client_id()
            for order in targets:
                self._close(order, "CANCELED")
                self._emit_order(order, "CANCELED", cancel_client_id=cancel_id)
            return [dataclasses.replace(o) for o in targets]

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Binance ``openOrders`` (of one symbol, or all), as of ``lag_ms`` ago when ``openOrders`` lags."""
        with self.lock:
            sid = None if symbol is None else self.market(symbol).id
            view = self._view("openOrders").values()
            return [dataclasses.replace(o) for o in view if o.is_open and sid in (None, o.symbol)]

    def all_orders(
        self,
        symbol: str,
        *,
        order_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Order]:
        """Binance ``allOrders``: ids >= ``order_id`` (oldest first), else the newest ``limit``.

        Archived orders (see :meth:`get_order`) are left out: Binance's docs do
        not say, and the simulator takes the reading that tells a client less.
        """
        with self.lock:
            sid = self.market(symbol).id
            _check_window(start_ms, end_ms)
            now = self.now_ms()
            rows = [
                o
                for o in self._view("allOrders").values()
                if o.symbol == sid
                and not self._archived(o, now)
                and (order_id is None or o.order_id >= order_id)
                and (start_ms is None or o.time_ms >= start_ms)
                and (end_ms is None or o.time_ms <= end_ms)
            ]
            rows.sort(key=lambda o: o.order_id)
            oldest_first = order_id is not None or start_ms is not None
            rows = rows[:limit] if oldest_first else rows[-limit:]
            return [dataclasses.replace(o) for o in rows]

    def my_trades(
        self,
        symbol: str,
        *,
        order_id: int | None = None,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Trade]:
        """Binance ``myTrades`` with its supported parameter combinations (else -1128).

        When ``myTrades`` lags, trades younger than ``lag_ms`` are not seen yet.
        """
        with self.lock:
            sid = self.market(symbol).id
            combo = (order_id is not None, from_id is not None, start_ms is not None, end_ms is not None)
            allowed = {
                (False, False, False, False),
                (True, False, False, False),
                (False, False, True, False),
                (False, False, False, True),
                (False, True, False, False),
                (False, False, True, True),
                (True, True, False, False),
            }
            if combo not in allowed:
                raise ExchangeRejected(-1128, "Combination of optional parameters invalid.")
            _check_window(start_ms, end_ms)
            lagging = self.settings.lag_ms and "myTrades" in self.settings.lagging_queries
            cutoff = self.now_ms() - self.settings.lag_ms if lagging else None
            rows = [
                t
                for t in self._trades
                if t.symbol == sid
                and (cutoff is None or t.time_ms <= cutoff)
                and (order_id is None or t.order_id == order_id)
                and (from_id is None or t.trade_id >= from_id)
                and (start_ms is None or t.time_ms >= start_ms)
                and (end_ms is None or t.time_ms <= end_ms)
            ]
            oldest_first = from_id is not None or start_ms is not None
            return rows[:limit] if oldest_first else rows[-limit:]

    def cancel_replace(
        self,
        symbol: str,
        *,
        cancel_order_id: int | None,
        cancel_client_order_id: str | None,
        new_order: OrderRequest,
        stop_on_failure: bool = True,
        cancel_restrictions: str | None = None,
        counted: bool = False,
        cancel_only_over_limit: bool = False,
        cancel_new_client_order_id: str | None = None,
    ) -> tuple[Order | ExchangeRejected, tuple[Order, list[Trade]] | ExchangeRejected | None, bool]:
        """Binance ``order/cancelReplace``, atomically: returns (cancel result, new order result or None).

        The new order's filters are checked first: a filter failure (-1013) or a
        malformed new order raises before anything is cancelled, so the old
        order stays (rest-api.md "Cancel an Existing Order and Send a New
        Order": "Filters and Order Count are evaluated before the processing of
        the cancellation and order placement occurs"). What only the matching
        engine knows (unknown order, duplicate client id, balance, a maker order
        that would take) fails its half and is returned.

        ``counted``: the unfilled order count applies, and is raised by one
        even when the new order is not attempted. Over a limit the call is
        refused with -1015, unless ``cancel_only_over_limit``
        (``orderRateLimitExceededMode=CANCEL_ONLY``): then the cancel is tried
        and the new order fails with -1015. Returns (cancel result, new order
        result or ``None`` if not attempted, whether it was over the limit).

        The stream sees the cancel (``CANCELED``, with
        ``cancel_new_client_order_id`` as the cancel's id) and then the new
        order (``NEW``, and ``TRADE`` if it crosses); a new order the matching
        engine refuses is a ``REJECTED`` event (enums.md "Execution types"),
        under the symbol's next order id, which no query ever shows.
        """
        with self._mutation(), localcontext(_CTX):
            market = self.market(symbol)
            target = self._find(market.id, cancel_order_id, cancel_client_order_id)
            quantity = self._precheck(market, new_order, leaving=target if target and target.is_open else None)
            now = self.now_ms()
            refusal = self.order_count.refusal(now, self.settings) if counted else None
            if refusal is not None and not cancel_only_over_limit:
                raise refusal
            if counted and refusal is None:
                self.order_count.add(now)
            cancel: Order | ExchangeRejected
            try:
                cancel = self.cancel_order(
                    symbol,
                    order_id=cancel_order_id,
                    client_order_id=cancel_client_order_id,
                    restrictions=cancel_restrictions,
                    cancel_client_order_id=cancel_new_client_order_id,
                )
            except ExchangeRejected as exc:
                cancel = exc
                if stop_on_failure:
                    return cancel, None, refusal is not None
            if refusal is not None:
                return cancel, refusal, True
            placed: tuple[Order, list[Trade]] | ExchangeRejected
            try:
                placed = self._place(market, new_order, quantity)
            except ExchangeRejected as exc:
                placed = exc
                self._reject(market, new_order, quantity, exc)
            return cancel, placed, False

    def _reject(self, market: Market, request: OrderRequest, quantity: Decimal, refusal: ExchangeRejected) -> None:
        """The ``REJECTED`` event of a new order the matching engine refused (user-data-stream.md "Order Reject
        Reason" names the reason by the error message)."""
        if not self._listeners:
            return
        now = self.now_ms()
        order = Order(
            self._new_order_id(market),
            request.client_order_id or new_client_id(),
            market.id,
            request.side,
            request.type,
            None if request.type == "MARKET" else request.time_in_force,
            request.price or _ZERO,
            quantity,
            now,
            status="REJECTED",
            update_time_ms=now,
            strategy_id=request.strategy_id,
            strategy_type=request.strategy_type,
        )
        self._next_order_id[market.id] = order.order_id + 1
        reason = {
            "Account has insufficient balance for requested action.": "INSUFFICIENT_BALANCES",
            "Order would immediately match and take.": "WOULD_MATCH_IMMEDIATELY",
        }.get(refusal.msg, "NONE")
        self._emit_order(order, "REJECTED", reject_reason=reason)

    # ------------------------------------------------------------ test hooks
    def _ref(self, order: RefLike, symbol: str | None = None) -> Order:
        sid = None if symbol is None else self.market(symbol).id
        if isinstance(order, str):
            found = self._by_client_id(sid, order)
        else:
            matches = [o for (s, oid), o in self._orders.items() if oid == order and sid in (None, s)]
            if len(matches) > 1:  # ids are per symbol: the same number on several symbols
                raise SimulatorError(
                    f"order id {order} exists on {sorted(o.symbol for o in matches)}; "
                    "order ids are per symbol on Binance: pass symbol= (or name the order by client id)"
                )
            found = matches[0] if matches else None
        if found is None:
            where = "" if symbol is None else f" on {symbol}"
            raise SimulatorError(f"no order {order!r}{where} on the simulated exchange; orders() lists the known ones")
        return found

    def order(self, order: RefLike, *, symbol: str | None = None) -> Order:
        """A copy of one order, by exchange id (int; ``symbol`` if the id is on several symbols) or client id
        (str; the open one first, else the newest)."""
        with self.lock:
            return dataclasses.replace(self._ref(order, symbol))

    def fill(
        self, order: RefLike, amount: Number | None = None, price: Number | None = None, *, symbol: str | None = None
    ) -> Trade:
        """Test hook: the market trades ``amount`` (default: all that remains) of a resting order.

        ``price`` defaults to the order's limit and may only be better than it;
        ``order`` and ``symbol`` as in :meth:`order`.
        """
        with self._mutation(), localcontext(_CTX):
            target = self._ref(order, symbol)
            if not target.is_open:
                raise SimulatorError(f"order {target.order_id} ({target.client_order_id}) is {target.status}, not open")
            qty = target.remaining if amount is None else _d(amount)
            fill_price = target.price if price is None else _d(price)
            if not _ZERO < qty <= target.remaining:
                raise SimulatorError(f"fill amount {qty} must be > 0 and <= the remaining {target.remaining}")
            worse = fill_price > target.price if target.side == "BUY" else fill_price < target.price
            if worse or fill_price <= 0:
                raise SimulatorError(
                    f"fill price {fill_price} is worse than the limit {target.price} of order "
                    f"{target.order_id}; a limit order never fills worse than its limit"
                )
            return self._execute(target, qty, fill_price, is_maker=True)

    def cancel(self, order: RefLike, *, symbol: str | None = None) -> Order:
        """Test hook: the exchange cancels an open order (e.g. while the bot is down); ``order`` as in :meth:`order`.

        The stream sees a ``CANCELED`` event, as for a cancel from another
        client (the web site): ``c`` is a fresh id, ``C`` the order's.
        """
        with self._mutation():
            target = self._ref(order, symbol)
            if not target.is_open:
                raise SimulatorError(f"order {target.order_id} ({target.client_order_id}) is {target.status}, not open")
            self._close(target, "CANCELED")
            self._emit_order(target, "CANCELED", cancel_client_id=new_client_id())
            return dataclasses.replace(target)

    def set_price(self, symbol: str, price: Number, *, match: bool = True) -> list[Trade]:
        """Test hook: set the last price; resting orders it crosses fill (unless ``match=False``)."""
        value = _d(price)
        if value <= 0:
            raise ValueError(f"price must be > 0, got {value}")
        with self._mutation(), localcontext(_CTX):
            market = self.market(symbol)
            self._prices[market.id] = value
            if not match:
                return []
            crossed = [
                o
                for o in self._orders.values()
                if o.is_open
                and o.symbol == market.id
                and o.type != "MARKET"
                and (o.price >= value if o.side == "BUY" else o.price <= value)
            ]
            return [
                self._execute(o, o.remaining, o.price, is_maker=True) for o in sorted(crossed, key=lambda o: o.order_id)
            ]

    def orders(self, symbol: str | None = None) -> list[Order]:
        """Copies of all orders (oldest first), optionally of one symbol."""
        with self.lock:
            sid = None if symbol is None else self.market(symbol).id
            return [dataclasses.replace(o) for o in self._orders.values() if sid in (None, o.symbol)]

    def trades(self, symbol: str | None = None) -> list[Trade]:
        """All trades (oldest first), optionally of one symbol."""
        with self.lock:
            sid = None if symbol is None else self.market(symbol).id
            return [t for t in self._trades if sid in (None, t.symbol)]


def _check_window(start_ms: int | None, end_ms: int | None) -> None:
    if start_ms is not None and end_ms is not None and end_ms - start_ms > _DAY_MS:
        raise ExchangeRejected(-1127, "More than 24 hours between startTime and endTime.")
