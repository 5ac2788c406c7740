"""The columnar chunk codec: exact round trips, deterministic bytes, refusal of what it never writes."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journal.log.codec import MAX_DEPTH, encode
from journal.state.columns import ChunkError, decode_chunk, encode_chunk


def same(a: Any, b: Any) -> bool:
    """Equal with the same types, key order and Decimal digits (exponent and sign of zero too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, D):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, float):
        return a.hex() == b.hex()
    return bool(a == b)


def roundtrip(items: dict[str, Any], deleted: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    blob = encode_chunk(items, sorted(items), deleted)
    return decode_chunk(blob)


def order(i: int) -> dict[str, Any]:
    return {"client_id": f"tj{i:04d}", "op": i, "id": str(5000 + i), "symbol": ("BTC/USDT", "ETH/USDT")[i % 2],
            "side": "buy", "type": "limit", "status": ("open", "closed")[i % 3 == 0],
            "price": D("30000.10") + i, "amount": D("0.00100000"), "filled": D("0.0"), "last_seq": 2 * i,
            "remaining": D("0.00100000"), "average": None if i % 2 else D("29999.5"), "cost": D("0E-8"),
            "fee": None if i % 4 else {"cost": D("-0.00"), "currency": "BNB"}, "timestamp": 1_700_000_000_000 + i}  # fmt: skip


def test_orders_round_trip_exactly() -> None:
    items = {f"tj{i:04d}": order(i) for i in range(300)}
    items["tj0007"] = dict(items["tj0007"], replaced_by="tj0008", cancel_pending=None)  # another shape
    back, deleted = roundtrip(items)
    assert deleted == []
    assert same(back, {k: items[k] for k in sorted(items)})
    assert back["tj0000"]["fee"]["cost"].as_tuple() == D("-0.00").as_tuple()  # the sign of a zero survives


def test_same_values_give_same_bytes_whatever_the_objects() -> None:
    a = {f"k{i}": {"p": D("1.50"), "q": D(f"{i}.0")} for i in range(50)}
    shared = D("1.50")
    b = {f"k{i}": {"p": shared, "q": D(f"{i}.0")} for i in range(50)}
    assert encode_chunk(a, sorted(a)) == encode_chunk(b, sorted(b))


def test_delta_chunk_carries_deletions() -> None:
    back, deleted = roundtrip({"a": 1, "b": {"x": [1, D("2.5")]}}, ("c", "d"))
    assert same(back, {"a": 1, "b": {"x": [1, D("2.5")]}}) and deleted == ["c", "d"]


def test_packed_columns_keep_ints_floats_and_categories() -> None:
    items = {f"k{i:03d}": {"n": i - 2**62 if i % 2 else 2**62 + i, "f": -0.0 if i == 3 else i / 7,
                           "s": ("open", "closed", None)[i % 3], "big": 2**70 if i == 5 else i,
                           "small": -i, "wide": 2**63 - i, "ms": 1_700_000_000_000 + 7 * i}
             for i in range(300)}  # fmt: skip
    back, _ = roundtrip(items)
    assert same(back, items)


def test_values_nested_as_deep_as_the_codec_allows() -> None:
    value: Any = D("1.5")
    for _ in range(MAX_DEPTH - 1):
        value = {"n": value}
    encode(value)  # the codec accepts it as a state value
    back, _ = roundtrip({"deep": value, "other": {"n": {"n": 1}}})
    assert same(back["deep"], value)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: len(d.as_tuple().digits) < 60),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from("abcde"), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=6), values, max_size=12))
def test_any_state_values_round_trip_exactly(items: dict[str, Any]) -> None:
    back, _ = roundtrip(items)
    assert same(back, {k: items[k] for k in sorted(items)})


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([None, {"a": D("1.0")}, {"a": D("1.0"), "b": "x"}, {}, {"b": "x"}]), max_size=30))
def test_mixed_shapes_keep_their_places(rows: list[Any]) -> None:
    items = {f"k{i:03d}": {"v": row} for i, row in enumerate(rows)}
    back, _ = roundtrip(items)
    assert same(back, items)


def _bad(top: Any) -> bytes:
    return cbor2.dumps(top)


@pytest.mark.parametrize(
    "blob",
    [
        b"\xff\x00",
        _bad({"a": 1}),
        _bad([["a"], "", [0, [1, 2]], []]),  # 2 values for 1 key
        _bad([["a"], "", [1, 1, b"\x05"], []]),  # decimal index outside the table
        _bad([["a"], "1.5", [1, 1, b"\x01\x01"], []]),  # two indices for one value
        _bad([["a"], "1.5", [1, 3, b"\x01\x00\x00"], []]),  # no such width
        _bad([["a"], "NaN", [1, 1, b"\x01"], []]),
        _bad([["a"], "Infinity", [1, 1, b"\x01"], []]),
        _bad([["a"], "1.5 zz", [1, 1, b"\x01"], []]),
        _bad([["a"], "1.5  2", [1, 1, b"\x01"], []]),
        _bad([["a"], "", [5, ["x"], 1, b"\x01"], []]),  # category index outside its table
        _bad([["a"], "", [5, [1], 1, b"\x00"], []]),  # a category that is not text
        _bad([["a"], "", [6, 0, 8, b"\x00" * 7], []]),  # ints: not 8 bytes each
        _bad([["a"], "", [6, 0, 3, b"\x00" * 3], []]),  # ints: no such width
        _bad([["a"], "", [7, b"\x00\x00\x00\x00\x00\x00\xf8\x7f"], []]),  # a NaN float
        _bad([["a"], "", [9, [1]], []]),  # unknown kind
        _bad([["a", "b"], "", [2, [[["x", "x"], 2, None, [[0, [1, 2]], [0, [1, 2]]]]]], []]),  # duplicate keys
        _bad([["a", "b"], "", [2, [[["x"], 1, [0], [[0, [1]]]], [["y"], 1, [0], [[0, [2]]]]]], []]),  # same place
        _bad([["a"], "", [4], [1]]),  # deleted keys not str
        _bad([[1], "", [0, [1]], []]),
        _bad([["a"], "", [3, b"\xd8\x1e\x82\x01\x02"], []]),  # a foreign tag inside a blob column
        _bad([["a", "a"], "", [0, [1, 2]], []]),
    ],
)
def test_malformed_chunks_are_refused(blob: bytes) -> None:
    with pytest.raises(ChunkError):
        decode_chunk(blob)
