"""The log layer: the LMDB write-ahead log, its record framing, codec and storage.

Nothing here knows about state, snapshots or the command line; the state layer
(:mod:`journal.state`) and the tools (:mod:`journal.cli`) use this layer only
through the public names below.
"""

from __future__ import annotations

from .clientid import CLIENT_ID_PREFIX, make_client_id, parse_client_id
from .journal import DEFAULT_SETTINGS, Durability, Journal, Operation
from .record import Record
from .storage import FORMAT_VERSION
from .verify import VerifyReport

__all__ = [
    "CLIENT_ID_PREFIX",
    "DEFAULT_SETTINGS",
    "FORMAT_VERSION",
    "Durability",
    "Journal",
    "Operation",
    "Record",
    "VerifyReport",
    "make_client_id",
    "parse_client_id",
]
