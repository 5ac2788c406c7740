"""Talking to the hub as a reader: connecting, and the shippers' status entries.

The writers' side is :mod:`journal.fleet.shipper`; the archive
(:mod:`journal.fleet.archive`) and the fleet view (:mod:`journal.fleet.view`)
read through the helpers here. ``nats`` is imported only when they run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import wire
from .errors import HubUnreachableError
from .shipper import import_nats

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

__all__ = ["connect", "read_statuses"]

log = logging.getLogger("journal.fleet.hub")


async def connect(
    servers: str | Sequence[str], *, name: str, connect_timeout_s: float = 5.0, options: Mapping[str, Any] | None = None
) -> NatsClient:
    """A connection to the hub, or :class:`HubUnreachableError` naming the URLs tried."""
    nats = import_nats()
    urls = [servers] if isinstance(servers, str) else list(servers)

    async def quiet(exc: Exception) -> None:
        log.debug("nats: %s", exc)

    try:
        return await nats.connect(
            servers=urls,
            name=name,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.05,
            connect_timeout=connect_timeout_s,
            error_cb=quiet,
            **dict(options or {}),
        )
    except Exception as exc:
        raise HubUnreachableError(f"cannot reach {', '.join(urls)}: {type(exc).__name__}: {exc}") from exc


async def read_statuses(nc: NatsClient, bucket: str = wire.DEFAULT_STATUS_BUCKET) -> dict[str, dict[str, Any]]:
    """Every shipper's status entry in ``bucket``, by key (empty when no shipper wrote one yet)."""
    nats = import_nats()
    js = nc.jetstream()
    try:
        kv = await js.key_value(bucket)
        keys = await kv.keys()
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NoKeysError, nats.js.errors.NotFoundError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        try:
            entry = await kv.get(key)
            if entry.value:
                value = json.loads(entry.value)
                if isinstance(value, dict):
                    out[key] = value
        except (nats.js.errors.KeyNotFoundError, ValueError):
            continue  # deleted meanwhile, or not one of ours
    return out
