"""Client order ids: the journal id, the writer's incarnation and the intent's sequence number.

Format (journal format 2)::

    "tj" + journal_id + "0" + incarnation + base62(seq)

- ``tj`` is the fixed prefix that marks an id as written by tradejournal;
- ``journal_id`` is 8 characters of ``[A-Za-z0-9]`` chosen at random when the
  journal is created and stored in its meta data;
- ``0`` marks the format: a format-1 id (below) has its sequence number right
  after the journal id, and a base62 sequence number never starts with ``0``;
- ``incarnation`` is 6 characters of ``[A-Za-z0-9]`` drawn at random every time
  a writer opens the journal, and recorded in the meta data (``incarnations``:
  which incarnation wrote which sequence numbers) before anything is written;
- ``base62(seq)`` is the intent's sequence number in base 62 (digits, then
  ``A-Z``, then ``a-z``), 1 to 11 characters for any 64-bit sequence number.

So an id is at most 2 + 8 + 1 + 6 + 11 = 28 characters of ``[A-Za-z0-9]``:
valid on Binance spot (``^[a-zA-Z0-9-_]{1,36}$``), OKX (alphanumeric, 1-32),
Bybit (36), Kucoin (40) and most other venues.

**Why an incarnation.** A sequence number is unique within one history, but a
journal directory can be copied: backed up and restored, or used as a template
for several bots. A restored backup continues with sequence numbers the live
journal already used; without the incarnation its next intent would get exactly
the client id of an order the live journal sent, and Binance keeps client ids
unique only among *open* orders, so that id could create a second order or a
lookup could match the wrong one. Every writer open draws a fresh incarnation,
so no two copies ever issue the same id (the chance that two opens draw the same
6 characters is 1 in 62**6, about 5.7e10). Recovery still recognises every id
of this journal, whichever copy sent it, by its ``tj`` + journal id prefix
(:func:`parse_client_id`), and reconciliation adopts the orders a lost copy
placed after the backup was taken.

Format-1 ids (``"tj" + journal_id + base62(seq)``, written before incarnations
existed) still parse; a format-1 journal opened by this version keeps its old
ids for its old records.
"""

from __future__ import annotations

import bisect
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

__all__ = [
    "CLIENT_ID_PREFIX",
    "INCARNATION_LENGTH",
    "JOURNAL_ID_LENGTH",
    "MAX_CLIENT_ID_LENGTH",
    "ClientId",
    "Incarnations",
    "base62",
    "client_id_prefix",
    "make_client_id",
    "new_incarnation",
    "new_journal_id",
    "parse_client_id",
]

CLIENT_ID_PREFIX = "tj"
JOURNAL_ID_LENGTH = 8
INCARNATION_LENGTH = 6
MAX_CLIENT_ID_LENGTH = 32
_MARK = "0"  # after the journal id: a format-2 id (a base62 seq never starts with 0)
_MAX_SEQ_DIGITS = 11

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_JOURNAL_ID_RE = re.compile(rf"^[A-Za-z0-9]{{{JOURNAL_ID_LENGTH}}}$")
_INCARNATION_RE = re.compile(rf"^[A-Za-z0-9]{{{INCARNATION_LENGTH}}}$")


class ClientId(NamedTuple):
    """A parsed client order id: ``incarnation`` is ``""`` for a format-1 id."""

    journal_id: str
    seq: int
    incarnation: str


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_journal_id() -> str:
    """Return a fresh random journal id (8 characters of ``[A-Za-z0-9]``)."""
    return _random(JOURNAL_ID_LENGTH)


def new_incarnation() -> str:
    """Return a fresh random writer incarnation (6 characters of ``[A-Za-z0-9]``)."""
    return _random(INCARNATION_LENGTH)


_SHORT = [_ALPHABET[i] if i < 62 else _ALPHABET[i // 62] + _ALPHABET[i % 62] for i in range(62 * 62)]
_PAIR = [_ALPHABET[i // 62] + _ALPHABET[i % 62] for i in range(62 * 62)]


def base62(n: int) -> str:
    """``n`` in base 62 (digits, ``A-Z``, ``a-z``); ``0`` for zero. Two digits per step (a dump formats millions)."""
    if n < 3844:
        if n < 0:
            raise ValueError(f"sequence number must be >= 0, got {n}")
        return _SHORT[n]
    hi, lo = divmod(n, 3844)
    if hi < 3844:
        return _SHORT[hi] + _PAIR[lo]
    return base62(hi) + _PAIR[lo]


def client_id_prefix(journal_id: str, incarnation: str = "") -> str:
    """What every client id of ``journal_id`` written by ``incarnation`` starts with."""
    return CLIENT_ID_PREFIX + journal_id + (_MARK + incarnation if incarnation else "")


def make_client_id(journal_id: str, seq: int, incarnation: str = "") -> str:
    """The client order id of intent ``seq``, written by ``incarnation`` of journal ``journal_id``.

    ``incarnation=""`` gives a format-1 id (records written before incarnations existed).
    """
    if not _JOURNAL_ID_RE.match(journal_id):
        raise ValueError(f"journal id must be {JOURNAL_ID_LENGTH} characters of [A-Za-z0-9], got {journal_id!r}")
    if not incarnation:
        return CLIENT_ID_PREFIX + journal_id + base62(seq)
    if not _INCARNATION_RE.match(incarnation):
        raise ValueError(f"incarnation must be {INCARNATION_LENGTH} characters of [A-Za-z0-9], got {incarnation!r}")
    return CLIENT_ID_PREFIX + journal_id + _MARK + incarnation + base62(seq)


def _seq(text: str) -> int | None:
    if not text or len(text) > _MAX_SEQ_DIGITS or text[0] == "0":
        return None  # empty, too long, or a leading zero: not one of ours
    seq = 0
    for c in text:
        digit = _INDEX.get(c)
        if digit is None:
            return None
        seq = seq * 62 + digit
    return seq if seq < 1 << 64 else None


def parse_client_id(client_id: str, journal_id: str | None = None) -> ClientId | None:
    """The parts of an id made by :func:`make_client_id`, else None.

    Returns ``None`` when ``client_id`` was not made by tradejournal, or, when
    ``journal_id`` is given, not by that journal (by any of its copies).
    """
    head = len(CLIENT_ID_PREFIX) + JOURNAL_ID_LENGTH
    if not isinstance(client_id, str) or len(client_id) <= head or not client_id.startswith(CLIENT_ID_PREFIX):
        return None
    jid = client_id[len(CLIENT_ID_PREFIX) : head]
    if (journal_id is not None and jid != journal_id) or not _JOURNAL_ID_RE.match(jid):
        return None
    rest = client_id[head:]
    if rest[0] == _MARK:
        incarnation = rest[1 : 1 + INCARNATION_LENGTH]
        if not _INCARNATION_RE.match(incarnation):
            return None
        seq = _seq(rest[1 + INCARNATION_LENGTH :])
        return None if seq is None else ClientId(jid, seq, incarnation)
    seq = _seq(rest)
    return None if seq is None else ClientId(jid, seq, "")


class Incarnations:
    """Which writer incarnation wrote which sequence numbers (``meta["incarnations"]``).

    ``entries`` is ``[[first_seq, incarnation], ...]`` in ascending ``first_seq``:
    the records from ``first_seq`` on (until the next entry) were written by
    ``incarnation`` (``""``: format 1, before incarnations existed).
    """

    __slots__ = ("_firsts", "_names")

    def __init__(self, entries: Iterable[Sequence[object]] = ()) -> None:
        pairs = [(int(first), str(name)) for first, name in entries]  # type: ignore[call-overload]
        if any(b[0] < a[0] for a, b in zip(pairs, pairs[1:], strict=False)):
            raise ValueError(f"incarnation history is not in sequence order: {pairs}")
        self._firsts = [p[0] for p in pairs]
        self._names = [p[1] for p in pairs]

    def at(self, seq: int) -> str:
        """The incarnation that wrote ``seq`` (``""`` before the first entry)."""
        i = bisect.bisect_right(self._firsts, seq) - 1
        return self._names[i] if i >= 0 else ""

    @property
    def current(self) -> str:
        return self._names[-1] if self._names else ""

    def starting(self, first_seq: int, incarnation: str) -> Incarnations:
        """This history with ``incarnation`` writing from ``first_seq`` on."""
        entries = [[f, n] for f, n in zip(self._firsts, self._names, strict=True) if f < first_seq]
        return Incarnations([*entries, [first_seq, incarnation]])

    def client_ids(self, journal_id: str) -> Callable[[int], str]:
        """A fast ``seq -> client id`` function for ``journal_id`` under this history (tools format millions)."""
        firsts = list(self._firsts)
        prefixes = [client_id_prefix(journal_id, n) for n in self._names]
        legacy = client_id_prefix(journal_id)
        last_first, last_prefix = (firsts[-1], prefixes[-1]) if firsts else (0, legacy)
        short, pair = _SHORT, _PAIR

        def client_id(seq: int) -> str:
            if seq >= last_first:  # the common case, inline
                if 0 <= seq < 3844:
                    return last_prefix + short[seq]
                if 3844 <= seq < 14776336:
                    hi, lo = divmod(seq, 3844)
                    return last_prefix + short[hi] + pair[lo]
                return last_prefix + base62(seq)
            i = bisect.bisect_right(firsts, seq) - 1
            return (prefixes[i] if i >= 0 else legacy) + base62(seq)

        return client_id

    def entries(self) -> list[list[object]]:
        return [[f, n] for f, n in zip(self._firsts, self._names, strict=True)]

    def __len__(self) -> int:
        return len(self._firsts)

    def __repr__(self) -> str:
        return f"Incarnations({self.entries()!r})"
