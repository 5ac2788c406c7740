"""A local Binance-spot exchange that the real ccxt library talks to on 127.0.0.1.

It is as strict as Binance's spot API documentation: what Binance refuses, it
refuses, with the documented code, HTTP status and headers; where Binance is
eventually consistent (a lagging database, a 5XX after the order was placed)
the simulator can be too, by turning a knob (:mod:`recovery.sim.settings`).

The simulator is its own layer: it imports nothing of the client side of
``recovery`` (orders, reconciliation, the manager) and has its own errors
(:mod:`recovery.sim.errors`). Its pieces:

- :mod:`recovery.sim.server` -- :class:`Simulator` (serve in process) and
  :class:`SimulatorClient` (drive one running elsewhere); ``python -m recovery.sim``;
- :mod:`recovery.sim.core` -- the matching engine, balances and test hooks;
- :mod:`recovery.sim.model` -- markets, orders, trades, balances;
- :mod:`recovery.sim.http` -- the Binance spot REST dialect and signatures;
- :mod:`recovery.sim.wire` -- JSON shapes as Binance sends them;
- :mod:`recovery.sim.faults` -- fault kinds and the request log;
- :mod:`recovery.sim.limits` -- request weight, IP bans, the unfilled order count;
- :mod:`recovery.sim.settings` -- the knobs (:class:`Settings`): limits, lag, archive, stream;
- :mod:`recovery.sim.control` -- the ``/_sim/`` control endpoints;
- :mod:`recovery.sim.events` -- what the core tells its listeners, in exchange order;
- :mod:`recovery.sim.ws` -- the user data stream (Binance's WebSocket API,
  ``userDataStream.subscribe.signature``) on 127.0.0.1, served by aiohttp;
- :mod:`recovery.sim.wsfaults` -- the stream's faults, and what ccxt.pro does under each.
"""

from __future__ import annotations

from .core import Balance, ExchangeCore, Market, Order, Trade
from .errors import ExchangeRejected, SimulatorError
from .events import AccountEvent, BalanceEvent, OrderEvent
from .faults import Faults, LoggedRequest, RequestLog
from .server import TEST_API_KEY, TEST_SECRET, Simulator, SimulatorClient
from .settings import DEFAULT_SETTINGS, Settings
from .ws import StreamFrame, UserDataStream
from .wsfaults import StreamFaults

__all__ = [
    "DEFAULT_SETTINGS",
    "TEST_API_KEY",
    "TEST_SECRET",
    "AccountEvent",
    "Balance",
    "BalanceEvent",
    "ExchangeCore",
    "ExchangeRejected",
    "Faults",
    "LoggedRequest",
    "Market",
    "Order",
    "OrderEvent",
    "RequestLog",
    "Settings",
    "Simulator",
    "SimulatorClient",
    "SimulatorError",
    "StreamFaults",
    "StreamFrame",
    "Trade",
    "UserDataStream",
]
