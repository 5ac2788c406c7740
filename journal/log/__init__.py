"""The log layer: the LMDB write-ahead log, its record framing, codec and storage.

Nothing here knows about state, snapshots or the command line. The state layer
(:mod:`journal.state`) and the tools (:mod:`journal.cli`) use this layer only
through public names: :class:`Journal` (writes, reads, :meth:`Journal.capture`,
:meth:`Journal.add_observer`, :meth:`Journal.read_tables` /
:meth:`Journal.write_tables`, :meth:`Journal.scan_raw`, :meth:`Journal.backup`)
and the record layout's accessors in :mod:`journal.log.record`.
"""

from __future__ import annotations

from .clientid import CLIENT_ID_PREFIX, ClientId, Incarnations, make_client_id, parse_client_id
from .journal import Journal, Operation
from .record import RawRecord, Record
from .settings import DEFAULT_SETTINGS, Durability, JournalSettings, settings_from
from .storage import FORMAT_VERSION
from .tables import Tables
from .verify import VerifyReport
from .writer import LogPoint

__all__ = [
    "CLIENT_ID_PREFIX",
    "DEFAULT_SETTINGS",
    "FORMAT_VERSION",
    "ClientId",
    "Durability",
    "Incarnations",
    "Journal",
    "JournalSettings",
    "LogPoint",
    "Operation",
    "RawRecord",
    "Record",
    "Tables",
    "VerifyReport",
    "make_client_id",
    "parse_client_id",
    "settings_from",
]
