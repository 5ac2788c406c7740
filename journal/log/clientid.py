"""Client order ids derived from the journal id and the intent's sequence number.

Format: ``"tj" + journal_id + base62(seq)``

- ``tj`` is the fixed prefix that marks an id as written by tradejournal;
- ``journal_id`` is 8 characters of ``[A-Za-z0-9]`` chosen at random when the
  journal is created and stored in its meta data;
- ``base62(seq)`` is the intent's sequence number in base 62 (digits, then
  ``A-Z``, then ``a-z``), 1 to 11 characters for any 64-bit sequence number.

So an id is at most 2 + 8 + 11 = 21 characters of ``[A-Za-z0-9]``: valid on
Binance (``^[.A-Z:/a-z0-9_-]{1,36}$``), OKX (alphanumeric, 1-32, case
sensitive), Bybit (36), Kucoin (40) and most other venues. The id is a pure
function of the journal id and the sequence number, so recovery can tell from
an order found on the exchange which intent of which journal sent it
(:func:`parse_client_id`). Because a sequence number is never reused, a client
id is never sent twice (Binance keeps client ids unique only among *open*
orders, so re-sending one could create a duplicate order).
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "CLIENT_ID_PREFIX",
    "JOURNAL_ID_LENGTH",
    "MAX_CLIENT_ID_LENGTH",
    "make_client_id",
    "new_journal_id",
    "parse_client_id",
]

CLIENT_ID_PREFIX = "tj"
JOURNAL_ID_LENGTH = 8
MAX_CLIENT_ID_LENGTH = 32

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_JOURNAL_ID_RE = re.compile(rf"^[A-Za-z0-9]{{{JOURNAL_ID_LENGTH}}}$")


def new_journal_id() -> str:
    """Return a fresh random journal id (8 characters of ``[A-Za-z0-9]``)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(JOURNAL_ID_LENGTH))


def _base62(n: int) -> str:
    if n < 0:
        raise ValueError(f"sequence number must be >= 0, got {n}")
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def make_client_id(journal_id: str, seq: int) -> str:
    """Return the client order id of the intent ``seq`` in journal ``journal_id``."""
    if not _JOURNAL_ID_RE.match(journal_id):
        raise ValueError(f"journal id must be {JOURNAL_ID_LENGTH} characters of [A-Za-z0-9], got {journal_id!r}")
    return CLIENT_ID_PREFIX + journal_id + _base62(seq)


def parse_client_id(client_id: str, journal_id: str | None = None) -> tuple[str, int] | None:
    """Return ``(journal_id, seq)`` for an id made by :func:`make_client_id`.

    Returns ``None`` when ``client_id`` was not made by tradejournal, or, when
    ``journal_id`` is given, not by that journal.
    """
    head = len(CLIENT_ID_PREFIX) + JOURNAL_ID_LENGTH
    if not isinstance(client_id, str) or len(client_id) <= head or len(client_id) > head + 11:
        return None
    if not client_id.startswith(CLIENT_ID_PREFIX):
        return None
    jid = client_id[len(CLIENT_ID_PREFIX) : head]
    if journal_id is not None and jid != journal_id:
        return None
    if not _JOURNAL_ID_RE.match(jid):
        return None
    seq = 0
    for c in client_id[head:]:
        digit = _INDEX.get(c)
        if digit is None:
            return None
        seq = seq * 62 + digit
    if seq >= 1 << 64 or _base62(seq) != client_id[head:]:
        return None  # leading zeros or overflow: not one of ours
    return jid, seq
