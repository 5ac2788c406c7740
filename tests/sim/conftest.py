"""Fixtures of the simulator tests."""

from __future__ import annotations

import pytest

from recovery.sim.server import Simulator
from tests.sim.signed import Signed


@pytest.fixture
def signed(simulator: Simulator) -> Signed:
    """Raw signed requests to the ``simulator`` fixture."""
    return Signed(simulator)
