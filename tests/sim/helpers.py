"""Helpers of the simulator tests: raw signed HTTP (for what ccxt hides on the wire), a clock the test moves."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from recovery.sim.server import TEST_API_KEY, TEST_SECRET, Simulator

__all__ = ["Answer", "SimClock", "Signed"]


@dataclass(frozen=True)
class Answer:
    """One raw answer: HTTP status, headers, decoded JSON body (``None`` if not JSON)."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def code(self) -> int | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


class Signed:
    """``signed("DELETE", "/api/v3/openOrders", symbol="BTCUSDT")``: a signed request as Binance wants it.

    The timestamp comes from the simulator's own clock, so fake clocks work.
    """

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __call__(self, method: str, path: str, **params: Any) -> Answer:
        params.setdefault("timestamp", self.sim.core.now_ms())
        query = urlencode({k: str(v) for k, v in params.items()})
        signature = hmac.new(TEST_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"{self.sim.url}{path}?{query}&signature={signature}", method=method, headers={"X-MBX-APIKEY": TEST_API_KEY}
        )
        try:
            with self._opener.open(request, timeout=5) as response:
                return Answer(response.status, dict(response.headers), _json(response.read()))
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, dict(exc.headers), _json(exc.read()))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


class SimClock:
    """Milliseconds that move only when the test says so (``clock.now += 90 * DAY_MS``)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now
