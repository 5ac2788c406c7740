"""Client order ids: deterministic, short, valid on the venues we target."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journal.log.clientid import MAX_CLIENT_ID_LENGTH, make_client_id, new_journal_id, parse_client_id

# Published formats: Binance newClientOrderId, OKX clOrdId.
BINANCE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
OKX = re.compile(r"^[A-Za-z0-9]{1,32}$")


@given(seq=st.integers(min_value=0, max_value=2**64 - 1))
def test_ids_are_valid_on_binance_and_okx_and_parse_back(seq: int) -> None:
    jid = "Ab3dE5gH"
    cid = make_client_id(jid, seq)
    assert len(cid) <= MAX_CLIENT_ID_LENGTH
    assert BINANCE.match(cid) and OKX.match(cid)
    assert cid.startswith("tj" + jid)
    assert parse_client_id(cid) == (jid, seq)
    assert parse_client_id(cid, jid) == (jid, seq)
    assert parse_client_id(cid, "Zz000000") is None


def test_ids_are_deterministic_and_distinct() -> None:
    jid = new_journal_id()
    ids = [make_client_id(jid, s) for s in range(1, 5000)]
    assert len(set(ids)) == len(ids)
    assert ids == [make_client_id(jid, s) for s in range(1, 5000)]


@pytest.mark.parametrize(
    "foreign",
    ["", "x", "web_123456", "tjAb3dE5gH", "tjAb3dE5gH00", "tjAb3dE5gH-1", "tjAb3dE5gH" + "z" * 12, 12345],
)
def test_foreign_ids_are_not_ours(foreign: object) -> None:
    assert parse_client_id(foreign) is None  # type: ignore[arg-type]


def test_bad_journal_id_is_refused() -> None:
    with pytest.raises(ValueError, match="8 characters"):
        make_client_id("short", 1)
