"""The fleet: every bot's journal shipped to one NATS JetStream hub, and seen in one place.

A bot is one process with one embedded journal, and the local journal stays the
truth: trading never waits on the network. This package copies journals
*off* their hosts, for the questions that span bots (which are in safe mode,
what is pending where, the exposure per symbol) and for disaster recovery:

- :mod:`~journal.fleet.shipper` -- :class:`Shipper` streams a journal's records,
  in order, byte for byte, to a JetStream stream (``journal ship``), with
  deduplication ids and a durable cursor beside the journal that is also the
  journal's retention floor (:mod:`journal.log.cursors`);
- :mod:`~journal.fleet.wire` -- the message format and the names on the hub;
- :mod:`~journal.fleet.server` -- finding and running ``nats-server``.

Importing this package does not import ``nats``: only connecting does
(:class:`~journal.fleet.errors.FleetExtraMissingError` when nats-py is missing).
"""

from __future__ import annotations

from .errors import (
    ArchiveConflictError,
    FleetError,
    FleetExtraMissingError,
    HubUnreachableError,
    NatsServerNotFoundError,
    ShipDamageError,
    ShipGapError,
)
from .server import NatsServer, find_nats_server, free_port
from .shipper import DEFAULT_SHIP_SETTINGS, Shipper, ShipSettings
from .wire import Shipped

__all__ = [
    "DEFAULT_SHIP_SETTINGS",
    "ArchiveConflictError",
    "FleetError",
    "FleetExtraMissingError",
    "HubUnreachableError",
    "NatsServerNotFoundError",
    "NatsServer",
    "ShipDamageError",
    "ShipGapError",
    "ShipSettings",
    "Shipped",
    "Shipper",
    "find_nats_server",
    "free_port",
]
