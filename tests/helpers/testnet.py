"""Binance's spot testnet as an opt-in venue for the integration and crash tests (issue 12.11).

The tests run against the project's simulator on 127.0.0.1. Given a testnet
API key in the environment -- ``TRADEJOURNAL_TESTNET_KEY`` and
``TRADEJOURNAL_TESTNET_SECRET`` (made at https://testnet.binance.vision) --
the tests in tests/system/test_testnet.py also run against the testnet,
through ccxt's sandbox mode (:func:`make_testnet_exchange`); without them
they are skipped with :data:`SKIP_REASON`, and the loopback guard
(tests/conftest.py, :mod:`tests.helpers.netguard`) refuses every address but
127.0.0.1. The testnet hosts are read from ccxt itself (``urls['test']``), so
they are exactly the ones its sandbox mode uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "KEY_VAR",
    "SECRET_VAR",
    "SKIP_REASON",
    "SPOT_KEYS",
    "credentials",
    "make_testnet_exchange",
    "sandbox_hosts",
    "sandbox_urls",
]

KEY_VAR = "TRADEJOURNAL_TESTNET_KEY"
SECRET_VAR = "TRADEJOURNAL_TESTNET_SECRET"
#: The ccxt ``urls['api']`` keys of Binance's spot REST API (the only ones the tests use).
SPOT_KEYS = ("public", "private", "v1")
SKIP_REASON = (
    f"Binance spot testnet: set {KEY_VAR} and {SECRET_VAR} (an API key from https://testnet.binance.vision) to "
    "run this test against the testnet as well; without them no test leaves 127.0.0.1 (README: Reliability)"
)


def credentials(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The testnet key and secret from ``env`` (default ``os.environ``), or None unless both are set."""
    env = os.environ if env is None else env
    key, secret = env.get(KEY_VAR, "").strip(), env.get(SECRET_VAR, "").strip()
    return (key, secret) if key and secret else None


def sandbox_urls() -> dict[str, str]:
    """The spot REST URLs of ccxt's binance sandbox mode (``urls['test']``)."""
    import ccxt

    test = ccxt.binance().urls["test"]
    return {key: test[key] for key in SPOT_KEYS}


def sandbox_hosts() -> frozenset[str]:
    """The host names those URLs name (what the loopback guard lets through with the opt-in)."""
    return frozenset(str(urlsplit(url).hostname) for url in sandbox_urls().values())


def make_testnet_exchange(key: str, secret: str, *, timeout_ms: int = 10_000, **options: Any) -> Any:
    """A real ccxt ``binance`` in sandbox mode, limited to spot, as the project's managers expect it.

    Same options as :func:`recovery.exchanges.make_exchange` (spot markets only,
    ``maxRetriesOnFailure=0``), but ccxt's rate limiter stays on: the testnet
    enforces Binance's limits.
    """
    import ccxt

    exchange = ccxt.binance(
        {
            "apiKey": key,
            "secret": secret,
            "timeout": timeout_ms,
            "enableRateLimit": True,
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "adjustForTimeDifference": False,
                "fetchOpenOrders": {"warnWithoutSymbol": False},
                "maxRetriesOnFailure": 0,
                **options,
            },
        }
    )
    exchange.set_sandbox_mode(True)
    return exchange
