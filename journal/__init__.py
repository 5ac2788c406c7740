"""tradejournal's write-ahead journal: an order is never lost nor sent twice.

The lifecycle, in one screen
----------------------------

**Intent first.** Before a bot sends an order it calls ``journal.begin(type,
data)``. The intent record is appended to the ``log`` database of an LMDB
environment and synced to disk before ``begin`` returns. Its sequence number
is the operation's id (``op_id``), and the client order id sent to the
exchange, ``op.client_id``, is derived from the journal id, the writer's
*incarnation* (drawn fresh at every writer open) and that number
(:mod:`journal.log.clientid`), so the exchange can later be asked about this
very operation, and no client id is ever sent twice -- not even by a restored
backup or a cloned template.

**Outcome after.** When the exchange answers, ``op.commit(result)`` or
``op.abort(reason)`` appends a marker that names the op id. An exception whose
outcome is unknown (a timeout, a dropped connection) leaves the operation
*pending*: the journal never guesses. In the default ``INTENT`` durability mode
markers ride on the next synced transaction, so an operation costs one synced
transaction, and a marker lost to a crash only means the operation is
reconciled again on restart (:class:`Durability` says what each mode may lose).
Facts that need no outcome (a fill seen on a websocket) are single ``record()``
events.

**Framing and chaining.** A record is a small fixed header and a CBOR body
(:mod:`journal.log.record`, the one module that knows the layout, and
:mod:`journal.log.codec`). It is checksummed on its exact
stored bytes with xxh3, and chained: each record's chain value is a hash seeded
with the previous record's, so a record altered, deleted, reordered or spliced
in is detected -- with the exact sequence number -- by :meth:`Journal.verify`,
and on open for the records since the last checkpoint. LMDB commits are atomic,
so a mismatch is damage, never a torn write: the journal stops and reports.

**Indexes in the same transaction.** The ``pending`` database holds the op ids
without an outcome, so startup lists them in O(pending), not O(history); the
``ops`` database maps each op id to its records (its timeline). Both are
updated in the same LMDB transaction as the log, so they never disagree.

**Group commit.** Many threads may write at once: the first becomes the leader
and writes everything queued in one synced transaction; ``begin_many`` puts a
grid of intents in one transaction explicitly.

**Layers.** :mod:`journal.log` is the log; :mod:`journal.state` the state and
its snapshots, built on the log's public surface only; :mod:`journal.cli` the
``journal`` command, built on both.

**Snapshots and compaction** (:mod:`journal.state`) store the state with the
sequence number and chain value they cover; compaction deletes the records a
snapshot covers and restarts the chain from the stored value, so ``verify``
still passes.

**One writer.** A journal directory has one writer process (``writer.lock``,
naming the holder's pid); readers open it read-only beside it, from any
process. A journal is never used across ``fork()``.

Quick start::

    from journal import Journal

    with Journal("bot.journal") as journal:
        with journal.operation("place_order", {"symbol": "BTC/USDT", "side": "buy"}) as op:
            order = exchange.create_order(..., params={"clientOrderId": op.client_id})
            op.commit(order)
        for intent in journal.pending():
            ...  # operations whose outcome is unknown after a crash
"""

from __future__ import annotations

from .errors import (
    AlreadyOpenError,
    CodecError,
    CorruptionError,
    DecodeError,
    ForeignEnvironmentError,
    ForkError,
    FormatVersionError,
    JournalClosedError,
    JournalError,
    JournalLockedError,
    NotAJournalError,
    OperationStateError,
    ReadOnlyError,
    StorageAccessError,
    TruncatedJournalError,
    UnknownOperationError,
)
from .log import (
    CLIENT_ID_PREFIX,
    DEFAULT_SETTINGS,
    FORMAT_VERSION,
    Durability,
    Journal,
    JournalSettings,
    Operation,
    Record,
    VerifyReport,
    make_client_id,
    parse_client_id,
    settings_from,
)
from .state import (
    SCHEMA_VERSION,
    AutoSaver,
    AutoSaveSettings,
    Migrations,
    Reducers,
    SchemaVersionError,
    State,
    StateStore,
    StoreSettings,
    Violation,
    diff_states,
)

__all__ = [
    "CLIENT_ID_PREFIX",
    "DEFAULT_SETTINGS",
    "FORMAT_VERSION",
    "SCHEMA_VERSION",
    "AlreadyOpenError",
    "AutoSaveSettings",
    "AutoSaver",
    "CodecError",
    "CorruptionError",
    "DecodeError",
    "Durability",
    "ForeignEnvironmentError",
    "ForkError",
    "FormatVersionError",
    "Journal",
    "JournalClosedError",
    "JournalError",
    "JournalLockedError",
    "JournalSettings",
    "Migrations",
    "NotAJournalError",
    "Operation",
    "OperationStateError",
    "ReadOnlyError",
    "Record",
    "Reducers",
    "SchemaVersionError",
    "State",
    "StateStore",
    "StorageAccessError",
    "StoreSettings",
    "TruncatedJournalError",
    "UnknownOperationError",
    "VerifyReport",
    "Violation",
    "diff_states",
    "make_client_id",
    "parse_client_id",
    "settings_from",
]
