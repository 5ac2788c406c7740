"""A real ccxt ``binance`` client pointed at the exchange simulator (no test dependencies).

:func:`make_exchange` builds a real ccxt ``binance`` (sync, or async with
``async_=True``) that talks only to the simulator at ``url`` (127.0.0.1):

- ``urls['api']`` keys ``public`` and ``private`` point at ``<url>/api/v3``,
  ``v1`` at ``<url>/api/v1``; every other API (sapi*, fapi*, dapi*, eapi*,
  papi*) at ``http://127.0.0.1:9/not-simulated/<name>``, so a call to one fails
  at once with a ccxt ``NetworkError`` naming that URL.
- options ``fetchMarkets={'types': ['spot']}``, ``fetchCurrencies=False``,
  ``fetchMargins=False``, ``adjustForTimeDifference=False``,
  ``fetchOpenOrders={'warnWithoutSymbol': False}``, ``maxRetriesOnFailure=0``
  and ``enableRateLimit=False`` (pass ``enableRateLimit=True`` to keep ccxt's throttle).
- Binance's spot error tables are merged over the generic ones, so errors map
  exactly as in production.

:func:`make_pro_exchange` builds a real ccxt.pro ``binance`` on the same REST
URLs whose Binance spot user data stream (the WebSocket API,
``urls['api']['ws']['ws-api']['spot']``) is the simulator's ``ws_url``; every
other websocket URL points at ``ws://127.0.0.1:9/not-simulated/...``.
``urls['api']['ws']`` stays a dict, as ccxt.pro reads it.

The demo and bots under test import it from here; the pytest fixtures built on
it live in :mod:`recovery.testing` (which needs pytest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    import ccxt
    import ccxt.async_support
    import ccxt.pro

__all__ = ["NOT_SIMULATED", "NOT_SIMULATED_WS", "SPOT_API_KEYS", "make_exchange", "make_pro_exchange"]

#: ``urls['api']`` keys that are Binance spot REST endpoints, and the path each gets.
SPOT_API_KEYS = {"public": "/api/v3", "private": "/api/v3", "v1": "/api/v1"}
#: Where every other API points: refused at once, and the URL says why.
NOT_SIMULATED = "http://127.0.0.1:9/not-simulated"
#: Where every websocket URL but the spot user data stream points.
NOT_SIMULATED_WS = "ws://127.0.0.1:9/not-simulated"


@overload
def make_exchange(
    url: str, *, async_: Literal[False] = False, timeout_ms: int = 5000, **config: Any
) -> ccxt.binance: ...
@overload
def make_exchange(
    url: str, *, async_: Literal[True], timeout_ms: int = 5000, **config: Any
) -> ccxt.async_support.binance: ...
def make_exchange(
    url: str, *, async_: bool = False, timeout_ms: int = 5000, **config: Any
) -> ccxt.binance | ccxt.async_support.binance:
    """A real ccxt ``binance`` client that talks to the simulator at ``url`` only.

    ``config`` is passed to the ccxt constructor (``apiKey``/``secret`` default to
    the simulator's test credentials; ``options`` are merged over the defaults).
    """
    import ccxt
    import ccxt.async_support

    cls = ccxt.async_support.binance if async_ else ccxt.binance
    return _pointed(cls, url, async_=async_, timeout_ms=timeout_ms, **config)


def make_pro_exchange(url: str, ws_url: str, *, timeout_ms: int = 5000, **config: Any) -> ccxt.pro.binance:
    """A real ccxt.pro ``binance`` on the simulator: REST at ``url``, the spot user data stream at ``ws_url``.

    ``ws_url`` is the simulator's ``ws_url`` (``ws://127.0.0.1:<port>/ws-api/v3``;
    ``SimulatorClient(url).ws_url`` for one in another process). ``config`` as
    in :func:`make_exchange`; ccxt.pro's websocket options go in
    ``options={"ws": {...}}`` (e.g. ``{"keepAlive": 20000}``, the ping interval
    in milliseconds: its default, 180 s, takes 6 minutes to notice a dead
    connection).
    """
    import ccxt.pro

    if not ws_url.startswith("ws://127.0.0.1:"):
        raise ValueError(
            f"make_pro_exchange points ccxt.pro at a local simulator (ws://127.0.0.1:<port>), not {ws_url!r}"
        )
    return _pointed(ccxt.pro.binance, url, async_=True, timeout_ms=timeout_ms, ws_url=ws_url, **config)


def _ws_urls(value: Any, path: str, ws_url: str) -> Any:
    """``urls['api']['ws']`` with the spot WebSocket API at ``ws_url`` and the rest not simulated (dicts kept)."""
    if isinstance(value, dict):
        return {key: _ws_urls(item, f"{path}/{key}", ws_url) for key, item in value.items()}
    return ws_url if path == "/ws-api/spot" else f"{NOT_SIMULATED_WS}/ws{path}"


def _pointed(cls: Any, url: str, *, async_: bool, timeout_ms: int, ws_url: str | None = None, **config: Any) -> Any:
    from recovery.sim.server import TEST_API_KEY, TEST_SECRET

    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"make_exchange points ccxt at a local simulator (http://127.0.0.1:<port>), not {url!r}")
    base = url.rstrip("/")
    options = {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "adjustForTimeDifference": False,
        "fetchOpenOrders": {"warnWithoutSymbol": False},
        "maxRetriesOnFailure": 0,
    }
    options.update(config.pop("options", {}))
    settings: dict[str, Any] = {
        "apiKey": TEST_API_KEY,
        "secret": TEST_SECRET,
        "timeout": timeout_ms,
        "enableRateLimit": False,
        "options": options,
    }
    settings.update(config)
    exchange = cls(settings)
    exchange.urls["api"] = {
        name: (
            _ws_urls(value, "", ws_url)
            if name == "ws" and ws_url is not None and isinstance(value, dict)
            else base + SPOT_API_KEYS[name]
            if name in SPOT_API_KEYS
            else f"{NOT_SIMULATED}/{name}"
        )
        for name, value in exchange.urls["api"].items()
    }
    exceptions = dict(exchange.exceptions)
    spot = exceptions.get("spot", {})
    for table in ("exact", "broad"):
        exceptions[table] = {**exceptions.get(table, {}), **spot.get(table, {})}
    exchange.exceptions = exceptions
    if async_ and hasattr(exchange, "timeout_on_exit"):
        exchange.timeout_on_exit = 0
    return exchange
