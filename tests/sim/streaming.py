"""Helpers of the user data stream tests: real ccxt.pro consumers that keep what they saw, and raw clients."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from recovery.exchanges import make_pro_exchange
from recovery.sim.server import TEST_API_KEY, TEST_SECRET, Simulator

__all__ = ["ProRunner", "RawClient", "Watch", "eventually", "pending", "signed_subscribe"]

T = TypeVar("T")


async def eventually(check: Callable[[], Any], what: str, timeout_s: float = 5.0) -> Any:
    """Poll ``check()`` until it is truthy (yielding to the loop between tries); its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def pending(exchange: Any, url: str, *hashes: str) -> None:
    """Wait until ccxt has a future waiting for each message hash (the watch_* calls are armed)."""

    def armed() -> bool:
        client = exchange.clients.get(url)
        return client is not None and all(h in client.futures and not client.futures[h].done() for h in hashes)

    await eventually(armed, f"ccxt.pro to wait on {hashes}")


class Watch:
    """A consumer that calls ``exchange.<method>(*args)`` again at once after each return, as a live feed must
    (ccxt.pro hands an event that arrives while no watch is pending only with the next one), and keeps a deep
    copy of everything returned in ``seen`` (ccxt updates its cached dicts in place)."""

    def __init__(self, exchange: Any, method: str, *args: Any) -> None:
        self.exchange, self.method, self.args = exchange, method, args
        self.seen: list[Any] = []
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                result = await getattr(self.exchange, self.method)(*self.args)
            except Exception as exc:  # what ccxt raised is what the test looks at
                self.error = exc
                self._changed.set()
                return
            self.seen.extend(copy.deepcopy(result) if isinstance(result, list) else [copy.deepcopy(result)])
            self._changed.set()

    async def until(self, predicate: Callable[[list[Any]], bool], what: str, timeout_s: float = 5.0) -> list[Any]:
        """Wait until ``predicate(seen)`` holds; ``seen``. Fails at once if the watch raised."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self.seen):
            if self.error is not None:
                raise AssertionError(f"{self.method} raised {self.error!r} while waiting for {what}")
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; {self.method} saw {self.seen}")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass
        return self.seen

    async def raised(self, timeout_s: float = 5.0) -> BaseException:
        """Wait until the watch raises; the exception."""
        await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        assert self.error is not None
        return self.error

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def signed_subscribe(request_id: Any = "1", *, timestamp_ms: int | None = None, secret: str = TEST_SECRET,
                     api_key: str = TEST_API_KEY, **extra: Any) -> dict[str, Any]:  # fmt: skip
    """A ``userDataStream.subscribe.signature`` request signed as web-socket-api.md "SIGNED request example
    (HMAC)" says: every parameter but ``signature``, sorted by name, ``k=v`` joined by ``&``."""
    params: dict[str, Any] = {"apiKey": api_key, "timestamp": timestamp_ms or time.time_ns() // 1_000_000, **extra}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["signature"] = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}


class RawClient:
    """A plain aiohttp websocket client, for what ccxt.pro hides (the exact frames, pings left unanswered)."""

    def __init__(self, sim: Simulator, *, autoping: bool = True) -> None:
        self.sim, self.autoping = sim, autoping
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> RawClient:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.sim.ws_url, autoping=self.autoping)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

    async def send(self, request: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(request))

    async def receive(self, timeout_s: float = 5.0) -> Any:
        """The next text frame, decoded."""
        assert self.ws is not None
        message = await self.ws.receive(timeout_s)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return json.loads(message.data)

    async def call(self, request: dict[str, Any]) -> Any:
        await self.send(request)
        return await self.receive()

    async def events(self, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The next ``count`` event frames (``{"subscriptionId", "event"}``)."""
        return [await self.receive(timeout_s) for _ in range(count)]


class ProRunner:
    """The ``pro`` fixture: ``pro.run(scenario)`` runs ``scenario(exchange)`` under ``asyncio.run`` with a real
    ccxt.pro ``binance`` on the simulator (markets loaded), closed in that loop afterwards."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def run(self, scenario: Callable[[Any], Awaitable[T]], **config: Any) -> T:
        async def main() -> T:
            exchange = make_pro_exchange(self.sim.url, self.sim.ws_url, **config)
            try:
                await exchange.load_markets()
                return await scenario(exchange)
            finally:
                await exchange.close()

        return asyncio.run(main())
