"""Errors of the exchange simulator (it imports nothing of the client side of ``recovery``).

::

    SimulatorError            a test drove the simulator wrongly
    └── ExchangeRejected      the simulated exchange refused a request, as Binance would
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ExchangeRejected", "SimulatorError"]


class SimulatorError(Exception):
    """A test drove the simulator wrongly (unknown order, impossible fill, ...)."""


class ExchangeRejected(SimulatorError):
    """The simulated exchange refused a request, exactly as Binance would.

    ``code`` and ``msg`` are the body Binance sends, ``http_status`` its status,
    ``headers`` any it adds (``Retry-After`` on -1015).
    """

    def __init__(
        self, code: int, msg: str, http_status: int = 400, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"Binance error {code}: {msg} (HTTP {http_status})")
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.headers = dict(headers or {})
