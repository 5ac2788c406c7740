"""Client order ids: deterministic per incarnation, short, valid on the venues we target."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journal.log.clientid import (
    INCARNATION_LENGTH,
    MAX_CLIENT_ID_LENGTH,
    ClientId,
    Incarnations,
    make_client_id,
    new_incarnation,
    new_journal_id,
    parse_client_id,
)

# Published formats: Binance spot newClientOrderId (rest-api.md: ^[a-zA-Z0-9-_]{1,36}$), OKX clOrdId.
BINANCE = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")
OKX = re.compile(r"^[A-Za-z0-9]{1,32}$")
ALNUM = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=6, max_size=6)


@given(seq=st.integers(min_value=1, max_value=2**64 - 1), incarnation=ALNUM)
def test_ids_are_valid_on_binance_and_okx_and_parse_back(seq: int, incarnation: str) -> None:
    jid = "Ab3dE5gH"
    cid = make_client_id(jid, seq, incarnation)
    assert len(cid) <= MAX_CLIENT_ID_LENGTH
    assert BINANCE.match(cid) and OKX.match(cid)
    assert cid.startswith("tj" + jid)
    assert parse_client_id(cid) == ClientId(jid, seq, incarnation)
    assert parse_client_id(cid, jid) == ClientId(jid, seq, incarnation)
    assert parse_client_id(cid, "Zz000000") is None


@given(seq=st.integers(min_value=1, max_value=2**64 - 1))
def test_format_1_ids_still_parse(seq: int) -> None:
    jid = "Ab3dE5gH"
    cid = make_client_id(jid, seq)  # no incarnation: as format-1 journals wrote them
    assert parse_client_id(cid) == ClientId(jid, seq, "")
    assert make_client_id(jid, seq, "a1B2c3") != cid


def test_ids_are_deterministic_and_distinct() -> None:
    jid, inc = new_journal_id(), new_incarnation()
    ids = [make_client_id(jid, s, inc) for s in range(1, 5000)]
    assert len(set(ids)) == len(ids)
    assert ids == [make_client_id(jid, s, inc) for s in range(1, 5000)]
    assert len(inc) == INCARNATION_LENGTH


def test_two_incarnations_never_share_an_id() -> None:
    jid = new_journal_id()
    a, b = "AAAAAA", "AAAAAB"
    assert not {make_client_id(jid, s, a) for s in range(1, 3000)} & {make_client_id(jid, s, b) for s in range(1, 3000)}


@pytest.mark.parametrize(
    "foreign",
    ["", "x", "web_123456", "tjAb3dE5gH", "tjAb3dE5gH00", "tjAb3dE5gH-1", "tjAb3dE5gH" + "z" * 12, 12345,
     "tjAb3dE5gH0abc", "tjAb3dE5gH0abcdef", "tjAb3dE5gH0abcdef0", "tjAb3dE5gH0abc-ef1"],
)  # fmt: skip
def test_foreign_ids_are_not_ours(foreign: object) -> None:
    assert parse_client_id(foreign) is None  # type: ignore[arg-type]


def test_bad_journal_id_or_incarnation_is_refused() -> None:
    with pytest.raises(ValueError, match="8 characters"):
        make_client_id("short", 1)
    with pytest.raises(ValueError, match="6 characters"):
        make_client_id("Ab3dE5gH", 1, "toolong1")


def test_incarnation_history_names_the_writer_of_each_seq() -> None:
    h = Incarnations([[1, ""], [40, "aaaaaa"], [90, "bbbbbb"]])
    assert [h.at(s) for s in (1, 39, 40, 89, 90, 10**9)] == ["", "", "aaaaaa", "aaaaaa", "bbbbbb", "bbbbbb"]
    assert h.current == "bbbbbb"
    # a restored copy whose history ended at 60 starts a new incarnation there: 90+ is forgotten
    restored = Incarnations([[1, ""], [40, "aaaaaa"]]).starting(61, "cccccc")
    assert [restored.at(s) for s in (50, 61, 95)] == ["aaaaaa", "cccccc", "cccccc"]
    with pytest.raises(ValueError, match="sequence order"):
        Incarnations([[5, "a"], [3, "b"]])
