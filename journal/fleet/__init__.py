"""The fleet: every bot's journal shipped to one NATS JetStream hub, and seen in one place.

A bot is one process with one embedded journal, and the local journal stays the
truth: trading never waits on the network. This package copies journals *off*
their hosts, for the questions that span bots (which are in safe mode, what is
pending where, the exposure per symbol) and for disaster recovery.

The lifecycle, in one screen
----------------------------

**Ship.** Beside each bot a :class:`Shipper` (``journal ship PATH --to
nats://hub:4222``, or a thread in the bot: ``Shipper(journal, url).start()``)
follows the journal through short read transactions and publishes every record,
in order, as its exact stored bytes -- checksum and chain value included -- to
``tj.<journal id>.records`` on a JetStream stream (:mod:`~journal.fleet.wire`).
Each message carries a deduplication id ``<journal id>.<incarnation>.<seq>``.

**Acknowledge.** Up to ``max_in_flight`` records are in flight; the *cursor*
(the last seq the hub acknowledged, with everything before it) is written
atomically beside the journal (``PATH/ship/TJ.cursor``,
:mod:`journal.log.cursors`). Anything that breaks -- the link, the hub, the
shipper itself, killed -- ends in the same place: a new connection resends from
the cursor, and the hub's duplicate window drops what it already had.

**Keep.** The cursor is the journal's retention floor: compaction never deletes
a record the hub has not acknowledged (it stops there, or refuses, by
``JournalSettings.retention_floor``). The journal is the buffer while the link
is down; ``journal stats`` shows the lag in records and seconds.

**Archive.** :class:`Archive` (``journal fleet archive --from URL --into DIR``)
reads the stream into one journal directory per journal id, written by
:class:`journal.log.replica.Replica`, which checks every record's checksum and
chain again and keeps the same indexes and meta data as the bot's journal, so
``journal dump``, ``show``, ``pending`` and ``verify`` work on it unchanged.
Each record lands exactly once and in order (duplicates past the window are
dropped by ``(journal, incarnation, seq)``; a record ahead of its predecessor
waits for it), and two copies of one journal that diverged -- a restored backup
-- are kept apart as a *fork*, reported.

**View.** :func:`fleet_rows` (``journal fleet status``) derives each bot's
state from its archived records -- last seq and time, pending operations, safe
mode and why, open orders per symbol -- and adds what only its shipper knows
from the status entries on the hub: the host and the shipping lag.

Importing this package does not import ``nats``; connecting does
(:class:`FleetExtraMissingError` names the extra to install when it is missing).
:mod:`~journal.fleet.server` finds and runs ``nats-server`` for tests and trials.
"""

from __future__ import annotations

from .archive import Archive, History, SyncReport
from .errors import (
    FleetError,
    FleetExtraMissingError,
    HubUnreachableError,
    NatsServerNotFoundError,
    ShipDamageError,
    ShipGapError,
)
from .server import NatsServer, find_nats_server, free_port
from .shipper import DEFAULT_SHIP_SETTINGS, Shipper, ShipSettings
from .view import fleet_rows, history_view, symbol_rows
from .wire import Shipped

__all__ = [
    "DEFAULT_SHIP_SETTINGS",
    "Archive",
    "FleetError",
    "FleetExtraMissingError",
    "History",
    "HubUnreachableError",
    "NatsServer",
    "NatsServerNotFoundError",
    "ShipDamageError",
    "ShipGapError",
    "ShipSettings",
    "Shipped",
    "Shipper",
    "SyncReport",
    "find_nats_server",
    "fleet_rows",
    "free_port",
    "history_view",
    "symbol_rows",
]
