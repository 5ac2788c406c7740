"""Fixtures of the simulator tests: raw signed HTTP, and a simulator on a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator

import ccxt
import pytest

from recovery.sim.server import Simulator
from recovery.testing import make_exchange
from tests.sim.helpers import Signed, SimClock
from tests.sim.streaming import ProRunner


@pytest.fixture
def signed(simulator: Simulator) -> Signed:
    """Raw signed requests to the ``simulator`` fixture."""
    return Signed(simulator)


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock()


@pytest.fixture
def clocked(sim_clock: SimClock) -> Iterator[tuple[Simulator, ccxt.binance]]:
    """A simulator on ``sim_clock`` and a sync ccxt client that signs with the same clock."""
    with Simulator(clock_ms=sim_clock) as sim:
        exchange = make_exchange(sim.url)
        exchange.nonce = sim_clock  # ccxt signs its timestamp with nonce()
        yield sim, exchange
        exchange.session.close()


@pytest.fixture
def pro(simulator: Simulator) -> ProRunner:
    """``pro.run(scenario, **config)``: a real ccxt.pro ``binance`` on the ``simulator`` fixture, in a fresh loop."""
    return ProRunner(simulator)
