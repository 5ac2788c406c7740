"""journal.log.codec: round trips, determinism, every rejection with its path, hostile input."""

from __future__ import annotations

import collections
import datetime
import enum
import fractions
import math
import struct
import threading
import time
import types
from decimal import Decimal
from typing import Any, NamedTuple

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal.errors import CodecError, DecodeError
from journal.log.codec import MAX_BIGNUM_BYTES, MAX_DECIMAL_DIGITS, MAX_DEPTH, decode, encode, warm_up

# -- helpers -----------------------------------------------------------------


def head(major: int, n: int) -> bytes:
    """A CBOR item head: major type and argument, shortest form."""
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt, limit in ((24, ">B", 2**8), (25, ">H", 2**16), (26, ">I", 2**32), (27, ">Q", 2**64)):
        if n < limit:
            return bytes([major << 5 | info]) + struct.pack(fmt, n)
    raise ValueError(n)


def tag(number: int, payload: bytes) -> bytes:
    return head(6, number) + payload


def same(a: object, b: object) -> bool:
    """Equality that also checks types, Decimal exponents and the sign of float zeros.

    Tuples compare as lists; a Decimal zero's sign is not kept (tag 4 cannot carry it).
    """
    if isinstance(a, tuple):
        a = list(a)
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal):
        assert isinstance(b, Decimal)
        ta, tb = a.as_tuple(), b.as_tuple()
        sign = 0 if a.is_zero() else ta.sign
        return (sign, ta.digits, ta.exponent) == (tb.sign, tb.digits, tb.exponent)
    if isinstance(a, float):
        assert isinstance(b, float)
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def assert_journal_data(value: object, depth: int = 0) -> None:
    """What decode may return: plain data the encoder would accept."""
    assert depth <= MAX_DEPTH
    if isinstance(value, dict):
        assert type(value) is dict
        for key, item in value.items():
            assert type(key) is str
            assert_journal_data(item, depth + 1)
    elif isinstance(value, list):
        assert type(value) is list
        for item in value:
            assert_journal_data(item, depth + 1)
    elif isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, Decimal):
        assert value.is_finite()
    else:
        assert type(value) in (str, bytes, int, bool, type(None)), type(value)


def nested_list(depth: int, leaf: object = 0) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# -- strategies ----------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64) - 5, max_value=2**64 + 5)
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.text()
    | st.binary(max_size=40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.builds(Decimal, st.from_regex(r"-?[0-9]{1,40}(\.[0-9]{0,30})?(E[-+]?[0-9]{1,6})?", fullmatch=True))
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=5)
    )


values = st.recursive(scalars, containers, max_leaves=25)
tuple_free_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- round trips and determinism -------------------------------------------------


@FAST
@given(values)
def test_round_trip_keeps_types_and_decimal_exponents(value: object) -> None:
    assert same(value, decode(encode(value)))


@FAST
@given(tuple_free_values)
def test_encoding_is_deterministic(value: object) -> None:
    data = encode(value)
    assert encode(value) == data
    assert encode(decode(data)) == data


@pytest.mark.parametrize(
    "text",
    [
        "1.20",
        "-1.20",
        "0.00000001",
        "43210.57000",
        "1E+3",
        "100",
        "0",
        "0E+5",
        "0.000",
        "12345678901234567890.123456789012345678901234567890",  # bignum mantissa
        "-98765432109876543210987654321E-40",
        "1E+999999999999999999",  # largest exponent decimal accepts
        "9.99E+999999999999999999",
        "1E-999999999999999999",
        "1E-1999999999999999997",  # smallest exponent decimal accepts
        "9" * MAX_DECIMAL_DIGITS,
        "-" + "9" * MAX_DECIMAL_DIGITS + "E-5000",
    ],
)
def test_decimal_exponent_and_digits_are_preserved(text: str) -> None:
    value = Decimal(text)
    back = decode(encode(value))
    assert isinstance(back, Decimal)
    assert back.as_tuple() == value.as_tuple()
    assert str(back) == str(value)


@pytest.mark.parametrize("text", ["-0", "-0.00", "-0E+7"])
def test_negative_decimal_zero_comes_back_positive_with_its_exponent(text: str) -> None:
    # CBOR tag 4 holds an integer mantissa, which has no negative zero.
    back = decode(encode(Decimal(text)))
    assert isinstance(back, Decimal)
    assert back == Decimal(text)
    assert back.as_tuple() == Decimal(text.lstrip("-")).as_tuple()


def test_float_negative_zero_and_extremes_are_preserved() -> None:
    for value in (-0.0, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308):
        assert same(value, decode(encode(value)))


@pytest.mark.parametrize(
    "value",
    [2**63, 2**64 - 1, 2**64, -(2**64), -(2**64) - 1, 2**100, -(2**100), 2 ** (8 * MAX_BIGNUM_BYTES) - 1],
)
def test_large_integers_round_trip(value: int) -> None:
    back = decode(encode(value))
    assert type(back) is int and back == value


def test_integer_limit_is_symmetric_with_the_bignum_limit() -> None:
    limit = 2 ** (8 * MAX_BIGNUM_BYTES)
    assert decode(encode(-limit)) == -limit  # tag 3 payload -1 - n fits exactly
    # Every accepted Decimal coefficient fits in a bignum the decoder accepts.
    assert 10**MAX_DECIMAL_DIGITS - 1 < limit


def test_maps_keep_insertion_order() -> None:
    value = {"z": 1, "a": 2, "m": {"y": 1, "b": 2}}
    data = encode(value)
    assert list(decode(data)) == ["z", "a", "m"]  # type: ignore[call-overload]
    assert data == cbor2.dumps(value)


class Side(enum.StrEnum):
    BUY = "buy"


class Level(enum.IntEnum):
    HIGH = 7


class Price(float):
    pass


class Point(NamedTuple):
    x: int
    y: int


def test_str_int_float_subclasses_are_encoded_as_their_base_value() -> None:
    assert encode(Side.BUY) == encode("buy")
    assert encode(Level.HIGH) == encode(7)
    assert encode(Price(1.5)) == encode(1.5)
    assert encode({Side.BUY: Level.HIGH}) == encode({"buy": 7})
    assert type(decode(encode(Side.BUY))) is str


def test_container_subclasses_are_encoded_as_plain_maps_and_arrays() -> None:
    counts: collections.defaultdict[str, int] = collections.defaultdict(int, {"a": 1})
    assert encode(counts) == encode({"a": 1})
    assert encode(collections.OrderedDict(b=1, a=2)) == encode({"b": 1, "a": 2})
    assert encode(Point(1, 2)) == encode([1, 2])
    assert encode((1, (2, 3))) == encode([1, [2, 3]])


def test_depth_limit_is_inclusive_and_counts_lists_and_maps() -> None:
    deepest = nested_list(MAX_DEPTH - 1, {"price": Decimal("1.5"), "big": 2**80})
    assert same(deepest, decode(encode(deepest)))
    with pytest.raises(CodecError, match=f"nesting deeper than {MAX_DEPTH}") as info:
        encode(nested_list(MAX_DEPTH + 1))
    assert info.value.path == "$" + "[0]" * MAX_DEPTH


def test_very_deep_value_is_rejected_not_crashed() -> None:
    # cbor2 6.3 itself segfaults encoding ~100k nested lists; the walk stops first.
    with pytest.raises(CodecError, match="flatten"):
        encode(nested_list(100_000))


# -- rejections, each with its path and its fix -------------------------------------


class Colour(enum.Enum):
    RED = 1


class MyDecimal(Decimal):
    pass


NAN = float("nan")


def _rejections() -> list[Any]:
    orders = {"orders": {"tj-1": {"trades": [{}, {}, {}, {"price": Decimal("NaN")}]}}}
    cases: list[tuple[str, object, str, str]] = [
        ("nan nested", {"a": [0, 1, {"b": NAN}]}, "$.a[2].b", "use None"),
        ("inf", [float("inf")], "$[0]", "finite"),
        ("-inf", {"x": -float("inf")}, "$.x", "finite"),
        ("nan subclass", [Price("nan")], "$[0]", "finite"),
        ("Decimal NaN in orders", orders, '$.orders["tj-1"].trades[3].price', "use None"),
        ("Decimal sNaN", {"p": Decimal("sNaN")}, "$.p", "use None"),
        ("Decimal -sNaN", {"p": Decimal("-sNaN")}, "$.p", "use None"),
        ("Decimal inf", {"p": Decimal("Infinity")}, "$.p", "use None"),
        ("Decimal -inf", {"p": Decimal("-Infinity")}, "$.p", "use None"),
        ("top-level nan", NAN, "$", "use None"),
        ("set", {"tags": {1, 2}}, "$.tags", "sorted list"),
        ("frozenset", {"tags": frozenset()}, "$.tags", "sorted list"),
        ("datetime", {"ts": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)}, "$.ts", "integer nanoseconds"),
        ("naive datetime", [datetime.datetime(2024, 1, 1)], "$[0]", "integer nanoseconds"),
        ("date", {"d": datetime.date(2024, 1, 1)}, "$.d", "integer nanoseconds"),
        ("time", {"t": datetime.time(12, 0)}, "$.t", "integer nanoseconds"),
        ("timedelta", {"timeout": datetime.timedelta(seconds=1)}, "$.timeout", "integer nanoseconds"),
        ("bytearray", {"raw": bytearray(b"x")}, "$.raw", "bytes(value)"),
        ("memoryview", {"raw": memoryview(b"x")}, "$.raw", "bytes(value)"),
        ("object", {"o": object()}, "$.o", "plain data"),
        ("fraction", [fractions.Fraction(1, 3)], "$[0]", "Decimal or str"),
        ("complex", [1j], "$[0]", "real and imaginary"),
        ("plain enum", {"c": Colour.RED}, "$.c", "value.value"),
        ("Decimal subclass", {"p": MyDecimal("1")}, "$.p", "decimal.Decimal(value)"),
        ("mappingproxy", {"m": types.MappingProxyType({})}, "$.m", "dict(value)"),
        ("cbor2 frozendict", {"m": cbor2.frozendict(a=1)}, "$.m", "dict(value)"),
        ("range", {"r": range(3)}, "$.r", "list(value)"),
        ("generator", {"g": (i for i in range(3))}, "$.g", "list(value)"),
        ("CBORTag", [cbor2.CBORTag(1, 0)], "$[0]", "plain data"),
        ("simple value", [cbor2.CBORSimpleValue(99)], "$[0]", "plain data"),
        ("undefined", [cbor2.undefined], "$[0]", "plain data"),
        ("int key", {"a": {1: "x"}}, "$.a", "str()"),
        ("bytes key", {b"k": 1}, "$", "str()"),
        ("None key", {"a": [{None: 1}]}, "$.a[0]", "str()"),
        ("tuple key", {(1, 2): 1}, "$", "str()"),
        ("huge int", {"n": 2 ** (8 * MAX_BIGNUM_BYTES)}, "$.n", "store it as str"),
        ("huge negative int", {"n": -(2 ** (8 * MAX_BIGNUM_BYTES)) - 1}, "$.n", "store it as str"),
        ("huge IntEnum-like int", [Level.HIGH, 2**9000], "$[1]", "store it as str"),
        ("long Decimal", {"p": Decimal("1" * (MAX_DECIMAL_DIGITS + 1))}, "$.p", "quantize()"),
        ("odd keys", {"a b": {'q"uote': {"ключ": [NAN]}}}, '$["a b"]["q\\"uote"].ключ[0]', "use None"),
        ("in tuple", (1, (2, NAN)), "$[1][1]", "use None"),
        ("in dict subclass", collections.OrderedDict(a=[NAN]), "$.a[0]", "use None"),
    ]
    return [pytest.param(value, path, hint, id=name) for name, value, path, hint in cases]


@pytest.mark.parametrize(("value", "path", "hint"), _rejections())
def test_unsupported_value_is_rejected_with_path_type_and_fix(value: object, path: str, hint: str) -> None:
    with pytest.raises(CodecError) as info:
        encode(value)
    assert info.value.path == path
    message = str(info.value)
    assert f" {path}: " in message
    assert hint in message
    assert isinstance(info.value, ValueError)


def test_message_names_the_type_and_a_short_repr() -> None:
    with pytest.raises(CodecError) as info:
        encode({"orders": [{"price": NAN}]})
    assert str(info.value).startswith("cannot encode float nan at $.orders[0].price: ")
    with pytest.raises(CodecError) as info:
        encode({"k": {7: 1}})
    assert str(info.value).startswith("cannot encode map key int 7 in the map at $.k: map keys must be str")
    with pytest.raises(CodecError) as info:
        encode(["x" * 10_000, {"x" * 10_000}])
    assert len(str(info.value)) < 300


def test_cycles_are_reported_where_they_close() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(CodecError, match=r"cyclic structure.*same object as its ancestor at \$;") as info:
        encode(loop)
    assert info.value.path == "$[1]"

    state: dict[str, Any] = {"orders": {"a": {}}}
    state["orders"]["a"]["self"] = state["orders"]
    with pytest.raises(CodecError, match=r"ancestor at \$\.orders;") as info:
        encode(state)
    assert info.value.path == "$.orders.a.self"


def test_shared_but_acyclic_references_are_fine() -> None:
    shared = {"cost": Decimal("1.5")}
    assert decode(encode({"a": shared, "b": [shared, shared]})) == {"a": shared, "b": [shared, shared]}


def test_rejection_happens_before_any_output() -> None:
    # The bad value sits after a large valid prefix; nothing is produced either way.
    value = {"big": ["x" * 1000] * 100, "bad": {1, 2}}
    with pytest.raises(CodecError):
        encode(value)


# -- hostile input -------------------------------------------------------------------

# Payloads that cbor2 6.3 would decode into an object for each tag it knows.
FOREIGN_TAGS = {
    0: head(3, 20) + b"2024-01-01T00:00:00Z",  # datetime
    1: b"\x00",  # epoch datetime
    5: b"\x82\x01\x02",  # bigfloat -> Decimal
    25: b"\x00",  # string reference
    28: b"\x00",  # shareable
    29: b"\x00",  # shared reference
    30: b"\x82\x01\x02",  # rational -> Fraction
    35: b"\x61a",  # regex
    36: b"\x61a",  # MIME message
    37: b"\x50" + bytes(16),  # UUID
    52: b"\x44\x7f\x00\x00\x01",  # IPv4
    54: b"\x50" + bytes(16),  # IPv6
    100: b"\x00",  # epoch date
    256: b"\x61a",  # string namespace
    258: b"\x82\x01\x02",  # set
    260: b"\x44\x7f\x00\x00\x01",  # IP address
    261: b"\xa1\x44\x7f\x00\x00\x01\x08",  # IP network
    1004: b"\x6a2024-01-01",  # date string
    55799: b"\x82\x01\x02",  # self-described CBOR
}


@pytest.mark.parametrize("number", sorted(FOREIGN_TAGS))
def test_every_tag_cbor2_decodes_natively_is_refused(number: int) -> None:
    data = tag(number, FOREIGN_TAGS[number])
    with pytest.raises(DecodeError, match=f"CBOR tag {number} .*is not journal data") as info:
        decode(data)
    assert info.value.__cause__ is not None
    with pytest.raises(DecodeError, match=f"CBOR tag {number} "):
        decode(b"\xa1\x61k\x81" + data)  # also when nested


def test_every_other_tag_is_refused() -> None:
    for number in [*range(0, 1100), 55800, 55801, 2**16, 2**32 + 7, 2**64 - 1]:
        if number in (2, 3, 4):
            continue
        with pytest.raises(DecodeError, match="tag"):
            decode(tag(number, b"\x00"))


def test_journal_tags_are_accepted() -> None:
    assert decode(tag(2, b"\x41\x05")) == 5
    assert decode(tag(3, b"\x41\x05")) == -6
    assert decode(tag(4, b"\x82\x21\x19\x01\x2c")).as_tuple() == Decimal("3.00").as_tuple()  # type: ignore[attr-defined]
    assert decode(tag(4, b"\x82\x01" + tag(2, b"\x41\x05"))) == Decimal("5E+1")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(tag(2, head(2, MAX_BIGNUM_BYTES + 1) + b"\x01" * (MAX_BIGNUM_BYTES + 1)), "1024-byte", id="long"),
        pytest.param(tag(3, head(2, 10**6) + b"\xff" * 10**6), "1024-byte", id="1MB negative"),
        pytest.param(tag(4, b"\x82\x20" + tag(2, head(2, 10**6) + b"\xff" * 10**6)), "1024-byte", id="1MB mantissa"),
        pytest.param(tag(2, b"\x61a"), "byte string", id="text payload"),
        pytest.param(tag(4, b"\x83\x01\x01\x01"), "decimal fraction", id="3-element decimal"),
        pytest.param(tag(4, b"\x82\x01\xf9\x3c\x00"), "decimal fraction", id="float mantissa"),
        pytest.param(tag(4, b"\x82" + tag(2, b"\x49" + b"\x01" * 9) + b"\x01"), "decimal fraction", id="huge exponent"),
        pytest.param(tag(4, b"\x82\x1b" + struct.pack(">Q", 10**18 + 5) + b"\x01"), "decimal fraction", id="exp>Emax"),
    ],
)
def test_bad_bignums_and_decimals_are_refused_fast(data: bytes, match: str) -> None:
    start = time.perf_counter()
    with pytest.raises(DecodeError, match=match):
        decode(data)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"\x5f\x41a\xff", "indefinite", id="indefinite bytes"),
        pytest.param(b"\x7f\x61a\xff", "indefinite", id="indefinite text"),
        pytest.param(b"\x9f\x01\xff", "indefinite", id="indefinite array"),
        pytest.param(b"\xbf\x61a\x01\xff", "indefinite", id="indefinite map"),
        pytest.param(b"\xa2\x61a\x01\x61a\x02", "Duplicate", id="duplicate key"),
        pytest.param(b"\xa1\x01\x02", "map key", id="int key"),
        pytest.param(b"\xa1\x41k\x02", "map keys must be str", id="bytes key"),
        pytest.param(b"\xa1\x81\x01\x02", "map key", id="array key"),
        pytest.param(b"\xa1\xf6\x02", "map key", id="null key"),
        pytest.param(b"\xa1" + tag(4, b"\x82\x01\x01") + b"\x02", "map key", id="decimal key"),
        pytest.param(b"\xf9\x7e\x00", "finite", id="half NaN"),
        pytest.param(b"\xf9\x7c\x00", "finite", id="half inf"),
        pytest.param(b"\xf9\xfc\x00", "finite", id="half -inf"),
        pytest.param(b"\xfa\x7f\xc0\x00\x00", "finite", id="single NaN"),
        pytest.param(b"\xfb\x7f\xf0\x00\x00\x00\x00\x00\x01", "finite", id="double sNaN payload"),
        pytest.param(b"\xa1\x61p\x81\xfb\xff\xf0\x00\x00\x00\x00\x00\x00", r"at \$\.p\[0\]", id="nested -inf path"),
        pytest.param(b"\xf7", "not a type the journal writes", id="undefined"),
        pytest.param(b"\xf0", "not a type the journal writes", id="simple 16"),
        pytest.param(b"\x82\x01\xf8\xff", r"at \$\[1\]", id="simple 255"),
        pytest.param(b"\xf8\x10", "malformed", id="bad simple"),
        pytest.param(b"\xfc", "malformed", id="reserved"),
        pytest.param(b"\xff", "malformed", id="lone break"),
        pytest.param(b"\x1c", "malformed", id="reserved int"),
        pytest.param(b"\x62\xff\xfe", "malformed", id="bad utf-8"),
        pytest.param(b"\x01\x02", "1 trailing bytes", id="trailing item"),
        pytest.param(b"\x80\x00\x00\x00", "3 trailing bytes", id="trailing zeros"),
        pytest.param(encode({"a": 1}) + b"\xff", "trailing", id="trailing break"),
        pytest.param(b"", "truncated", id="empty"),
    ],
)
def test_malformed_or_foreign_input_raises_decode_error(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode(data)


def test_decode_depth_limit() -> None:
    assert decode(bytes(nested_list_bytes(MAX_DEPTH))) == nested_list(MAX_DEPTH)
    with pytest.raises(DecodeError, match="depth|deeper"):
        decode(nested_list_bytes(MAX_DEPTH + 1))
    with pytest.raises(DecodeError, match="depth|deeper"):
        decode(nested_list_bytes(MAX_DEPTH + 2))
    with pytest.raises(DecodeError, match="depth|deeper"):
        decode(b"\x81" * 1_000_000 + b"\x00")
    # A Decimal or bignum inside the deepest container is fine.
    assert decode(encode(nested_list(MAX_DEPTH, Decimal("-1.5")))) == nested_list(MAX_DEPTH, Decimal("-1.5"))
    assert decode(encode(nested_list(MAX_DEPTH, 2**100))) == nested_list(MAX_DEPTH, 2**100)


def nested_list_bytes(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(head(2, 2**62) + b"ab", id="2**62-byte bytes"),
        pytest.param(head(3, 2**62) + b"ab", id="2**62-byte text"),
        pytest.param(b"\x5b" + b"\xff" * 8 + b"a", id="2**64-1-byte bytes"),
        pytest.param(head(4, 2**32 - 1) + b"\x00" * 5, id="2**32-element array"),
        pytest.param(head(4, 2**62) + b"\x00", id="2**62-element array"),
        pytest.param(head(5, 2**32 - 1) + b"\x61a\x00", id="2**32-entry map"),
        pytest.param(tag(2, head(2, 2**62)), id="2**62-byte bignum"),
        pytest.param(tag(4, head(4, 2**62)), id="2**62-element decimal"),
    ],
)
def test_huge_declared_lengths_fail_fast(data: bytes) -> None:
    assert len(data) <= 12
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="truncated|malformed"):
        decode(data)
    assert time.perf_counter() - start < 0.5


SAMPLE = {
    "id": "8389765519",
    "clientOrderId": "tjA1b2C3d4E5f6G7h8I9j0K1",
    "price": Decimal("43210.57"),
    "amount": 0.0125,
    "timestamp": 1_700_000_000_123_000_000,
    "big": -(2**70),
    "raw": b"\x00\xff",
    "ok": True,
    "none": None,
    "fee": {"cost": Decimal("-0.00021"), "currency": "USDT"},
    "trades": [1, [2.5, "ü"]],
}


def test_every_truncation_raises_decode_error() -> None:
    data = encode(SAMPLE)
    for end in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:end])


def test_every_single_byte_corruption_decodes_safely_or_raises_decode_error() -> None:
    data = encode(SAMPLE)
    for index in range(len(data)):
        for flip in (0x01, 0x20, 0x80, 0xFF):
            corrupted = bytearray(data)
            corrupted[index] ^= flip
            try:
                value = decode(bytes(corrupted))
            except DecodeError:
                continue
            assert_journal_data(value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_to_journal_data_or_raise_decode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError:
        return
    assert_journal_data(value)


CBOR_TOKENS = [
    b"\x9f", b"\xbf", b"\xff", b"\xc4", b"\xc2", b"\xc3", b"\xc1", b"\xd9\x01\x02", b"\x82", b"\xa1",
    b"\x61a", b"\x41a", b"\x00", b"\x20", b"\xf9\x7e\x00", b"\xfb", b"\x1b", b"\xd8\x1c", b"\xd8\x1d", b"\xf7",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(CBOR_TOKENS), max_size=24).map(b"".join))
def test_random_cbor_tokens_decode_to_journal_data_or_raise_decode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError:
        return
    assert_journal_data(value)


def test_accepts_bytes_bytearray_and_memoryview() -> None:
    data = encode(SAMPLE)
    framed = b"HDR" + data
    for buffer in (data, bytearray(data), memoryview(data), memoryview(framed)[3:]):
        assert same(SAMPLE, decode(buffer))
    with pytest.raises(DecodeError, match="trailing"):
        decode(memoryview(framed + b"\x00")[3:])


def test_decoder_is_clean_after_a_failure() -> None:
    good = encode(SAMPLE)
    for bad in (b"\x81\x81", b"\xc1\x00", nested_list_bytes(MAX_DEPTH + 5), b"\x9f\x01\xff", good[:-1]):
        with pytest.raises(DecodeError):
            decode(bad)
        assert same(SAMPLE, decode(good))


def test_concurrent_use_from_threads() -> None:
    values = [{"n": i, "p": Decimal(i).scaleb(-2), "l": [i] * (i % 7)} for i in range(200)]
    blobs = [encode(v) for v in values]
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                for value, blob in zip(values, blobs, strict=True):
                    assert encode(value) == blob
                    assert decode(blob) == value
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_cbor2_errors_are_wrapped_with_their_cause() -> None:
    with pytest.raises(DecodeError) as info:
        decode(b"\x62\xff\xfe")
    assert isinstance(info.value.__cause__, cbor2.CBORDecodeError)


def test_warm_up_is_idempotent_and_cheap() -> None:
    warm_up()
    start = time.perf_counter()
    for _ in range(100):
        warm_up()
    assert time.perf_counter() - start < 0.05
