"""Test helpers: a ccxt ``binance`` client pointed at the simulator, and pytest fixtures.

:func:`make_exchange` builds a real ccxt ``binance`` (sync, or async with
``async_=True``) that talks only to the simulator:

- ``urls['api']`` keys ``public`` and ``private`` point at ``<url>/api/v3``,
  ``v1`` at ``<url>/api/v1``; every other API (sapi*, fapi*, dapi*, eapi*,
  papi*) at ``http://127.0.0.1:9/not-simulated/<name>``, so a call to one fails
  at once with a ccxt ``NetworkError`` naming that URL.
- options ``fetchMarkets={'types': ['spot']}``, ``fetchCurrencies=False``,
  ``fetchMargins=False``, ``adjustForTimeDifference=False``,
  ``fetchOpenOrders={'warnWithoutSymbol': False}``, ``maxRetriesOnFailure=0``
  (ccxt never re-sends a request by itself), and ``enableRateLimit=False``
  (ccxt's throttle would add up to a second per heavy call; pass
  ``enableRateLimit=True`` to keep it).
- ccxt picks Binance's spot error table only when the URL is
  ``https://api.binance.com/...``, so the spot ``exact``/``broad`` tables are
  merged over the generic ones: errors map exactly as in production.
- async clients get ``timeout_on_exit = 0`` (else ``close()`` sleeps 250 ms).

Fixtures (this module is a pytest plugin: ``pytest_plugins = ["recovery.testing"]``):
``simulator`` (a started :class:`~recovery.sim.server.Simulator`, stopped after
the test), ``exchange`` (sync client on it) and ``async_exchange`` (an
:class:`AsyncExchanges`: ``async_exchange.run(scenario)`` runs
``scenario(client)`` under ``asyncio.run`` with a fresh async client and closes
it in that loop; no pytest-asyncio needed).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from journal import Journal, Operation
from recovery.exchanges import NOT_SIMULATED, SPOT_API_KEYS, make_exchange
from recovery.sim.server import Simulator

if TYPE_CHECKING:
    import ccxt
    import ccxt.async_support

__all__ = [
    "NOT_SIMULATED",
    "AsyncExchanges",
    "SPOT_API_KEYS",
    "async_exchange",
    "exchange",
    "make_exchange",
    "pending_order",
    "simulator",
]

T = TypeVar("T")


def pending_order(
    journal: Journal, symbol: str, amount: str, price: str, *, sent_to: Simulator | None = None, side: str = "buy"
) -> Operation:
    """A ``place_order`` intent left pending, as a bot killed mid-order leaves it.

    With ``sent_to``, the simulator also holds the order under the intent's
    client id (the crash came after the exchange accepted it); without, the
    order never reached the exchange. Reconciliation tests start from here.
    """
    op = journal.begin("place_order", {"symbol": symbol, "side": side, "type": "limit", "amount": Decimal(amount),
                                       "price": Decimal(price)})  # fmt: skip
    if sent_to is not None:
        sent_to.core.place_order(symbol, side.upper(), "LIMIT", quantity=Decimal(amount), price=Decimal(price),
                                 time_in_force="GTC", client_order_id=op.client_id)  # fmt: skip
    return op


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A simulator on a free 127.0.0.1 port, stopped after the test."""
    with Simulator() as sim:
        yield sim


@pytest.fixture
def exchange(simulator: Simulator) -> Iterator[ccxt.binance]:
    """A sync ccxt ``binance`` on the ``simulator`` fixture (its HTTP session closed after the test)."""
    client = make_exchange(simulator.url)
    yield client
    client.session.close()


class AsyncExchanges:
    """The ``async_exchange`` fixture: makes async ccxt clients on one simulator and closes them.

    An async ccxt client binds to the event loop of its first request and must
    be closed in that loop, so :meth:`run` does both::

        def test_balance(async_exchange):
            async def scenario(ex):
                return await ex.fetch_balance()
            balance = async_exchange.run(scenario)

    Clients made with ``async_exchange(**config)`` inside your own coroutine are
    closed by :meth:`close_all` (await it before your ``asyncio.run`` returns);
    any still open at teardown are closed then, with a ``ResourceWarning``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._made: list[ccxt.async_support.binance] = []

    def __call__(self, **config: Any) -> ccxt.async_support.binance:
        client = make_exchange(self.url, async_=True, **config)
        self._made.append(client)
        return client

    def run(self, scenario: Callable[[ccxt.async_support.binance], Awaitable[T]], **config: Any) -> T:
        """``asyncio.run(scenario(client))`` with a fresh client, closed in the same loop."""

        async def main() -> T:
            client = self(**config)
            try:
                return await scenario(client)
            finally:
                await client.close()

        return asyncio.run(main())

    async def close_all(self) -> None:
        for client in self._made:
            if client.session is not None:
                await client.close()

    def _teardown(self) -> None:
        leftovers = [c for c in self._made if c.session is not None]
        if leftovers:
            warnings.warn(
                f"{len(leftovers)} async ccxt client(s) left open by the test; close them in their loop",
                ResourceWarning,
                stacklevel=1,
            )
            asyncio.run(self.close_all())


@pytest.fixture
def async_exchange(simulator: Simulator) -> Iterator[AsyncExchanges]:
    """Async ccxt clients on ``simulator`` (see :class:`AsyncExchanges`), closed after the test."""
    factory = AsyncExchanges(simulator.url)
    yield factory
    factory._teardown()
