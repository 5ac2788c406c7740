"""CBOR codec for record and snapshot bodies.

Every record body and snapshot the journal stores goes through :func:`encode`
and comes back through :func:`decode`. The codec is deliberately narrow: it
stores plain data, so that a journal written today is read back identically by
any later version, and so that stored bytes can never construct objects.

Accepted by :func:`encode` (and the only things :func:`decode` returns):

- ``None``, ``bool``, ``str``, ``bytes``;
- ``int`` of any sign up to 8192 bits (``-2**8192 <= n < 2**8192``); integers
  beyond 64 bits are written as CBOR bignums (tags 2 and 3);
- finite ``float`` (always written as a 64-bit float, so ``-0.0`` survives);
- finite ``decimal.Decimal`` of at most :data:`MAX_DECIMAL_DIGITS` digits, as a
  CBOR decimal fraction (tag 4). The exponent is kept exactly:
  ``Decimal("1.20")`` comes back as ``Decimal("1.20")``. Tag 4 cannot carry the
  sign of a zero, so ``Decimal("-0.00")`` comes back as ``Decimal("0.00")``
  (equal value, same exponent);
- ``list`` and ``tuple`` (a tuple comes back as a list);
- ``dict`` whose keys are all ``str``, written in insertion order.

Subclasses of ``str``, ``int`` and ``float`` (``StrEnum``, ``IntEnum``, ...)
are written as their plain base value; subclasses of ``dict``, ``list`` and
``tuple`` (``defaultdict``, ``namedtuple``, ...) as a plain map or array. A
``dict`` subclass is written in the dict's own storage order, which for an
``OrderedDict`` after ``move_to_end()`` is not its iteration order.

Rejected by :func:`encode` with :class:`~journal.errors.CodecError`, before
any byte is produced; the message names the path inside the value (such as
``$.orders.abc.trades[3].price``; keys that are not identifiers are written
``["..."]``), the offending value's type and repr, and what to do instead:

- NaN and infinities, ``float`` or ``Decimal`` (including signalling NaN): a
  price that is NaN is a bug upstream, and NaN != NaN would break replay;
- ``datetime``, ``date``, ``time``, ``timedelta``: timestamps in this project
  are integer nanoseconds since the Unix epoch (fields named ``*_ns``);
- ``set`` and ``frozenset``: their iteration order is not deterministic, so
  the same state would not give byte-identical snapshots;
- ``bytearray`` and ``memoryview`` (cbor2 would write a memoryview as an array
  of ints); convert with ``bytes(value)``;
- map keys that are not ``str``; ``Decimal`` subclasses; integers and decimals
  beyond the size limits above; ``Fraction``, ``complex``, enums that are not
  ``int``/``str`` enums, CBOR tags and simple values, and any other object;
- nesting deeper than :data:`MAX_DEPTH` lists/maps, and cyclic structures.

:func:`decode` is hardened for hostile input. The only tags it accepts are the
three this codec writes (2, 3, 4). Every tag cbor2 would otherwise turn into an
object (datetime 0/1/100/1004, bigfloat 5, string references 25/256, shared
values 28/29, rational 30, regex 35, MIME 36, UUID 37, IP addresses 52/54/260/
261, set 258, self-described CBOR 55799) and every unknown tag raises
:class:`~journal.errors.DecodeError`. It also rejects indefinite-length items,
duplicate or non-``str`` map keys, NaN and infinities, CBOR simple values and
``undefined``, nesting deeper than :data:`MAX_DEPTH`, bignums longer than
:data:`MAX_BIGNUM_BYTES` (building a ``Decimal`` from a bignum is quadratic:
0.4 s for 64 KiB, over a minute for 1 MiB), and trailing bytes after the
single top-level item. A length that promises more bytes than the buffer holds
fails at once, without a large allocation.

Thread safety: :func:`encode` and :func:`decode` may be called from any
thread. Do not mutate a value while another thread encodes it.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import fractions
import io
import json
import math
import reprlib
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, NoReturn, cast

import cbor2

from journal.errors import CodecError, DecodeError

__all__ = [
    "MAX_BIGNUM_BYTES",
    "MAX_DECIMAL_DIGITS",
    "MAX_DEPTH",
    "decimal_text",
    "decode",
    "decode_display",
    "encode",
    "warm_up",
]

#: Deepest nesting of lists/maps accepted by :func:`encode` and :func:`decode`.
#: A top-level list or map is depth 1.
MAX_DEPTH = 64

#: Longest bignum payload (tags 2 and 3) :func:`decode` accepts; it bounds the
#: cost of turning a hostile bignum mantissa into a ``Decimal``.
MAX_BIGNUM_BYTES = 1024

#: Most digits a ``Decimal`` coefficient may have: 10**2466 < 2**8192, so the
#: coefficient of an accepted ``Decimal`` always fits in MAX_BIGNUM_BYTES.
MAX_DECIMAL_DIGITS = 2466

_INT_LIMIT = 1 << (8 * MAX_BIGNUM_BYTES)

# cbor2 counts a tag as one nesting level and the array inside tag 4 as
# another, so a Decimal at depth MAX_DEPTH is MAX_DEPTH + 2 levels deep to it.
_CBOR_MAX_DEPTH = MAX_DEPTH + 2

# Exact types that need no further look. Anything else (including subclasses)
# takes the slower checks in _check_other.
_PLAIN_ENCODE = frozenset({str, bool, bytes, type(None)})
_PLAIN_DECODE = frozenset({str, bool, bytes, type(None), int, Decimal})

# plus() under this context raises when a coefficient has more digits than
# allowed (or on exponents so small that it must round: those take the exact
# check). It is about 5x cheaper than counting as_tuple().digits.
_DIGITS_CONTEXT = decimal.Context(
    prec=MAX_DECIMAL_DIGITS,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.Rounded, decimal.InvalidOperation, decimal.Overflow, decimal.Subnormal, decimal.Clamped],
)

_NONFINITE_HINT = "NaN and infinity are not stored; use None for a missing value, or a finite number"

_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40
_repr.maxlevel = 2
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = _repr.maxfrozenset = 4


# -- encode ------------------------------------------------------------------


class _Rejected(Exception):
    """Internal: a value that cannot be stored. The path is collected on unwind."""

    def __init__(self, value: object, problem: str, hint: str, *, too_deep: bool = False, is_key: bool = False) -> None:
        super().__init__(problem)
        self.value = value
        self.problem = problem
        self.hint = hint
        self.too_deep = too_deep
        self.is_key = is_key
        # (container, item) pairs, innermost first; positions are found by
        # identity only when the error is reported, so the happy path pays nothing.
        self.steps: list[tuple[object, object]] = []


def encode(value: object, *, check: bool = True) -> bytes:
    """Encode ``value`` as CBOR; raise :class:`CodecError` if it holds anything unsupported.

    The same value always gives the same bytes (maps keep insertion order).
    See the module docstring for what is accepted. ``check=False`` skips the
    validating walk (about half the cost): only for values built entirely
    from data that already passed it, such as state produced by the built-in
    reducers from decoded records (snapshots).
    """
    if not check:
        return cbor2.dumps(value)
    kind = type(value)
    wrapped = not (kind is dict or kind is list or kind is tuple)
    try:
        if wrapped:
            # A 1-tuple lets a scalar (or a subclass, or a rejected type) go
            # through the same checks as nested values; its step is dropped
            # from the reported path.
            _check_container((value,), 0)
        else:
            _check_container(value, 1)
    except _Rejected as rejected:
        raise _codec_error(rejected, wrapped) from None
    try:
        return cbor2.dumps(value)
    except Exception as exc:  # pragma: no cover - the walk above admits only what cbor2 encodes
        raise CodecError(f"cbor2 could not encode a value the codec accepted: {exc}", path="$") from exc


def _check_container(obj: Any, depth: int) -> None:
    """Check a dict/list/tuple (or subclass) at nesting ``depth`` and everything in it."""
    if depth > MAX_DEPTH:
        raise _Rejected(
            obj,
            f"nesting deeper than {MAX_DEPTH} lists/maps",
            "flatten the structure (decode rejects deeper data)",
            too_deep=True,
        )
    if type(obj) is dict:
        # The common case, a map of plain data (an order, a record body): its keys and
        # value types are checked in C loops, and a map of only str/bool/bytes/None
        # needs nothing more.
        try:
            "".join(obj)
        except TypeError:
            _reject_bad_key(obj)
        items: Iterable[Any] = obj.values()
        if set(map(type, items)) <= _PLAIN_ENCODE:
            return
    elif isinstance(obj, dict):
        # dict.keys/values read the dict's storage, as cbor2 does, even when a
        # subclass overrides __iter__. "".join raises TypeError on a non-str
        # key at C speed; it accepts str subclasses, which cbor2 writes as str.
        try:
            "".join(dict.keys(obj))
        except TypeError:
            _reject_bad_key(obj)
        items = dict.values(obj)
    else:
        items = obj
    item: Any = None
    try:
        for item in items:
            kind = type(item)
            if kind in _PLAIN_ENCODE:
                continue
            if kind is int:
                if -_INT_LIMIT <= item < _INT_LIMIT:
                    continue
                _reject_int(item)
            elif kind is float:
                if item - item == 0.0:  # false for NaN and both infinities
                    continue
                raise _Rejected(item, "not a finite number", _NONFINITE_HINT)
            elif kind is Decimal:
                if item.is_finite():
                    try:
                        _DIGITS_CONTEXT.plus(item)
                        continue
                    except decimal.DecimalException:
                        if len(item.as_tuple().digits) <= MAX_DECIMAL_DIGITS:
                            continue
                        _reject_long_decimal(item)
                raise _Rejected(item, "not a finite number", _NONFINITE_HINT)
            elif kind is dict or kind is list or kind is tuple:
                _check_container(item, depth + 1)
            else:
                _check_other(item, depth + 1)
    except _Rejected as rejected:
        rejected.steps.append((obj, item))
        raise


def _check_other(value: Any, depth: int) -> None:
    """The slow checks: subclasses of accepted types, and every rejection."""
    if isinstance(value, str):
        return
    if isinstance(value, int):  # IntEnum, IntFlag, ... (bool is caught as a plain type)
        if -_INT_LIMIT <= int(value) < _INT_LIMIT:
            return
        _reject_int(int(value))
    if isinstance(value, float):
        if math.isfinite(value):
            return
        raise _Rejected(value, "not a finite number", _NONFINITE_HINT)
    if isinstance(value, (dict, list, tuple)):
        _check_container(value, depth)
        return
    problem, hint = _explain(value)
    raise _Rejected(value, problem, hint)


def _explain(value: object) -> tuple[str, str]:
    """(problem, what to do) for a value of an unsupported type."""
    if isinstance(value, Decimal):
        return "Decimal subclasses are not stored", "convert it with decimal.Decimal(value)"
    if isinstance(value, datetime.datetime):
        return (
            "datetimes are not stored",
            "timestamps are integer nanoseconds since the Unix epoch: use an int (e.g. time.time_ns()) "
            "in a field named *_ns",
        )
    if isinstance(value, datetime.date):
        return "dates are not stored", "use integer nanoseconds since the Unix epoch, or the string value.isoformat()"
    if isinstance(value, datetime.time):
        return "times of day are not stored", "use integer nanoseconds since midnight, or the string value.isoformat()"
    if isinstance(value, datetime.timedelta):
        return "timedeltas are not stored", "use a duration in integer nanoseconds, in a field named *_ns"
    if isinstance(value, (set, frozenset)):
        return "sets have no deterministic order", "convert it to a sorted list"
    if isinstance(value, (bytearray, memoryview)):
        return "only bytes is stored for binary data", "convert it with bytes(value)"
    if isinstance(value, fractions.Fraction):
        return "fractions are not stored", "convert it to Decimal or str"
    if isinstance(value, complex):
        return "complex numbers are not stored", "store the real and imaginary parts as two numbers"
    if isinstance(value, enum.Enum):
        return (
            "only int and str enums are stored",
            "store value.value or value.name, or derive the enum from IntEnum/StrEnum",
        )
    if isinstance(value, (cbor2.CBORTag, cbor2.CBORSimpleValue)) or value is cbor2.undefined:
        return "raw CBOR items are not stored", f"use plain data ({_PLAIN_DATA})"
    if isinstance(value, Mapping):
        return "only dict maps are stored", "convert it with dict(value)"
    if isinstance(value, Iterable):
        return "only list and tuple sequences are stored", "convert it with list(value)"
    return (
        f"{type(value).__name__} is not a journal type",
        f"convert it to plain data ({_PLAIN_DATA}), e.g. with dataclasses.asdict()",
    )


_PLAIN_DATA = "None, bool, int, str, bytes, float, Decimal, list, dict"


def _reject_bad_key(mapping: dict[Any, Any]) -> NoReturn:
    for key in dict.keys(mapping):
        if not isinstance(key, str):
            raise _Rejected(key, "map keys must be str", "convert the key with str()", is_key=True)
    raise AssertionError("unreachable: str.join refused a map of str keys")  # pragma: no cover


def _reject_int(value: int) -> NoReturn:
    raise _Rejected(
        value,
        f"an integer of {value.bit_length()} bits is beyond the {8 * MAX_BIGNUM_BYTES}-bit limit",
        "store it as str",
    )


def _reject_long_decimal(value: Decimal) -> NoReturn:
    raise _Rejected(
        value,
        f"a Decimal of {len(value.as_tuple().digits)} digits is beyond the {MAX_DECIMAL_DIGITS}-digit limit",
        "round it with quantize(), or store it as str",
    )


def _codec_error(rejected: _Rejected, wrapped: bool) -> CodecError:
    steps = list(reversed(rejected.steps))[int(wrapped) :]  # root first, without the 1-tuple
    if rejected.too_deep:
        cycle = _find_cycle([container for container, _ in steps] + [rejected.value])
        if cycle is not None:
            first, second = cycle
            path = _format_path(steps[:second])
            message = (
                f"cannot encode a cyclic structure: the {type(rejected.value).__name__} at {path} is the same "
                f"object as its ancestor at {_format_path(steps[:first])}; store an id instead of the reference"
            )
            return CodecError(message, path=path)
    path = _format_path(steps)
    value = rejected.value
    what = "map key" if rejected.is_key else ""
    where = "in the map at" if rejected.is_key else "at"
    message = (
        f"cannot encode {what}{' ' if what else ''}{type(value).__name__} {_short_repr(value)} {where} {path}: "
        f"{rejected.problem}; {rejected.hint}"
    )
    return CodecError(message, path=path)


def _find_cycle(chain: list[object]) -> tuple[int, int] | None:
    """Indices (i, j), i < j, of the first container that appears twice in ``chain``."""
    seen: dict[int, int] = {}
    for index, container in enumerate(chain):
        earlier = seen.setdefault(id(container), index)
        if earlier != index:
            return earlier, index
    return None


# -- paths and reprs (error paths only) ----------------------------------------


def _format_path(steps: list[tuple[object, object]]) -> str:
    """JSONPath-like ``$.key["odd key"][3]`` for root-first (container, item) steps."""
    parts = ["$"]
    for container, item in steps:
        if isinstance(container, dict):
            key = next((k for k, v in dict.items(container) if v is item), None)
            if key is None:
                parts.append("[?]")
            elif str.isidentifier(key):
                parts.append(f".{key}")
            else:
                parts.append(f"[{json.dumps(str(key), ensure_ascii=False)}]")
        else:
            sequence = cast("Iterable[object]", container)
            index = next((i for i, v in enumerate(sequence) if v is item), None)
            parts.append("[?]" if index is None else f"[{index}]")
    return "".join(parts)


def _short_repr(value: object) -> str:
    if isinstance(value, int) and not -(10**40) < value < 10**40:
        return f"<{value.bit_length()} bits>"  # repr() of a huge int is slow, or refused
    try:
        return _repr.repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        return f"<{type(value).__name__} object>"


# -- decode ------------------------------------------------------------------


class _Refused(Exception):
    """Internal: raised from inside cbor2 for a tag or bignum the journal never writes."""


_FOREIGN_TAGS = {
    0: "datetime string",
    1: "epoch datetime",
    5: "bigfloat",
    25: "string reference",
    28: "shareable value",
    29: "shared reference",
    30: "rational number",
    35: "regular expression",
    36: "MIME message",
    37: "UUID",
    52: "IPv4 address",
    54: "IPv6 address",
    100: "epoch date",
    256: "string reference namespace",
    258: "set",
    260: "network address",
    261: "network prefix",
    1004: "date string",
    55799: "self-described CBOR",
}


def _foreign_tag_message(tag: int, name: str = "") -> str:
    what = f"tag {tag} ({name})" if name else f"tag {tag}"
    return f"CBOR {what} is not journal data; the journal writes only tags 2, 3 (bignum) and 4 (decimal fraction)"


def _refuse_tag(tag: int, name: str) -> Callable[[object, bool], object]:
    def refuse(value: object, immutable: bool) -> object:
        raise _Refused(_foreign_tag_message(tag, name))

    return refuse


def _refuse_unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> object:
    raise _Refused(_foreign_tag_message(tag.tag))


def _bignum_payload(value: object) -> bytes:
    if type(value) is not bytes:
        raise _Refused(f"a bignum must hold a byte string, not {type(value).__name__}")
    if len(value) > MAX_BIGNUM_BYTES:
        raise _Refused(f"a bignum of {len(value)} bytes is beyond the {MAX_BIGNUM_BYTES}-byte limit")
    return value


def _positive_bignum(value: object, immutable: bool) -> int:
    return int.from_bytes(_bignum_payload(value), "big")


def _negative_bignum(value: object, immutable: bool) -> int:
    return -1 - int.from_bytes(_bignum_payload(value), "big")


_SEMANTIC_DECODERS: dict[int, Callable[[Any, bool], Any]] = {
    tag: _refuse_tag(tag, name) for tag, name in _FOREIGN_TAGS.items()
}
# Bignums are rare (beyond 64 bits), so a Python hook for them costs nothing on
# the common path; tag 4 stays native (it is on the hot path of Decimal data).
_SEMANTIC_DECODERS[2] = _positive_bignum
_SEMANTIC_DECODERS[3] = _negative_bignum

_EMPTY = io.BytesIO(b"")

# Building a CBORDecoder with these options costs about as much as decoding a
# small record, so decoders are reused: pop() and append() are atomic, which
# makes the pool safe across threads and re-entrant calls.
_DECODERS: list[cbor2.CBORDecoder] = []


def _new_decoder() -> cbor2.CBORDecoder:
    return cbor2.CBORDecoder(
        _EMPTY,
        tag_hook=_refuse_unknown_tag,
        semantic_decoders=_SEMANTIC_DECODERS,
        max_depth=_CBOR_MAX_DEPTH,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )


def decode(data: bytes | bytearray | memoryview, *, check: bool = True) -> object:
    """Decode one CBOR item written by :func:`encode`.

    Raises :class:`DecodeError` for damaged or hostile input: malformed or
    truncated CBOR, trailing bytes, and anything :func:`encode` would not have
    written (see the module docstring). Never constructs arbitrary objects.

    ``check=False`` skips the final walk over the decoded value (NaN, simple
    values, bytes map keys); tags, depth, lengths and trailing bytes are still
    enforced, so no arbitrary object is ever built. Snapshot chunks use it
    after their xxh3-128 digest has matched.
    """
    size = len(data) if type(data) is bytes else memoryview(data).nbytes
    stream = io.BytesIO(data)
    try:
        decoder = _DECODERS.pop()
    except IndexError:
        decoder = _new_decoder()
    try:
        decoder.fp = stream
        value = decoder.decode()
        end = stream.tell()
    except Exception as exc:
        # The decoder is dropped, not pooled: no state can leak from a failure.
        raise DecodeError(_decode_failure(exc, size)) from exc
    if size > 65536:  # do not keep a large snapshot's buffer alive (the setter costs ~0.2 us)
        decoder.fp = _EMPTY
    _DECODERS.append(decoder)
    if end != size:
        raise DecodeError(
            f"cannot decode {size} bytes: {size - end} trailing bytes after the single top-level item at offset {end}"
        )
    if not check:
        return value
    kind = type(value)
    wrapped = not (kind is dict or kind is list)
    try:
        if wrapped:
            _check_decoded([value], 0)
        else:
            _check_decoded(value, 1)
    except _Rejected as rejected:
        steps = list(reversed(rejected.steps))[int(wrapped) :]
        found = rejected.value
        raise DecodeError(
            f"cannot decode {size} bytes: {type(found).__name__} {_short_repr(found)} at "
            f"{_format_path(steps)}: {rejected.problem}"
        ) from None
    return value


def _decode_failure(exc: Exception, size: int) -> str:
    cause = exc.__cause__
    if isinstance(cause, _Refused):
        return f"cannot decode {size} bytes: {cause}"
    if isinstance(exc, cbor2.CBORDecodeEOF) or isinstance(cause, EOFError):
        return f"cannot decode {size} bytes: truncated ({exc})"
    detail = f"{exc}: {cause}" if cause is not None and str(cause) else str(exc)
    if isinstance(exc, cbor2.CBORDecodeError):
        return f"cannot decode {size} bytes: malformed CBOR ({detail})"
    return f"cannot decode {size} bytes: {type(exc).__name__} ({detail})"


def _check_decoded(obj: list[Any] | dict[str, Any], depth: int) -> None:
    """Reject what cbor2 decodes but the journal never writes.

    cbor2 has already refused foreign tags, indefinite lengths, duplicate keys
    and keys other than str/bytes; this catches bytes keys, NaN/infinity,
    simple values and undefined, and nesting deeper than MAX_DEPTH.
    """
    if depth > MAX_DEPTH:
        raise _Rejected(obj, f"nesting deeper than {MAX_DEPTH} lists/maps", "")
    if type(obj) is dict:
        try:
            "".join(obj)  # keys are str or bytes here; bytes raise TypeError
        except TypeError:
            key = next(key for key in obj if type(key) is not str)
            raise _Rejected(key, "map keys must be str", "", is_key=True) from None
        items: Iterable[Any] = obj.values()
    else:
        items = obj
    item: Any = None
    try:
        for item in items:
            kind = type(item)
            if kind in _PLAIN_DECODE:
                continue
            if kind is float:
                if item - item == 0.0:
                    continue
                raise _Rejected(item, "not a finite number", "")
            if kind is dict or kind is list:
                _check_decoded(item, depth + 1)
                continue
            raise _Rejected(item, "not a type the journal writes", "")
    except _Rejected as rejected:
        rejected.steps.append((obj, item))
        raise


# -- display decoding (the dump tool) ------------------------------------------


def decimal_text(mantissa: int, exponent: int) -> str:
    """The exact text of ``mantissa * 10**exponent``, plain (``"0.00100000"``).

    As ``format(Decimal, "f")``; beyond 64 places it stays scientific (exact
    too), so a hostile exponent cannot expand into gigabytes of zeros.
    """
    if exponent > 64 or exponent < -64:
        places = tuple(int(c) for c in str(abs(mantissa)))
        return str(Decimal((int(mantissa < 0), places, exponent)))
    digits = str(mantissa)
    if exponent >= 0:
        return digits + "0" * exponent if mantissa else "0"
    sign = ""
    if digits[0] == "-":
        sign, digits = "-", digits[1:]
    if len(digits) <= -exponent:
        return f"{sign}0.{'0' * (-exponent - len(digits))}{digits}"
    return f"{sign}{digits[:exponent]}.{digits[exponent:]}"


def _decimal_as_text(value: Any, immutable: bool) -> str:
    try:
        exponent, mantissa = value
    except (TypeError, ValueError):
        exponent = mantissa = None
    if type(exponent) is not int or type(mantissa) is not int:
        raise _Refused("a decimal fraction (tag 4) must hold [exponent, mantissa] integers")
    if -64 <= exponent < 0 and mantissa > 0:  # the common case, inline: a positive price or amount
        digits = str(mantissa)
        if len(digits) > -exponent:
            return f"{digits[:exponent]}.{digits[exponent:]}"
        return f"0.{'0' * (-exponent - len(digits))}{digits}"
    if exponent == 0 and mantissa == 0:
        return "0"
    return decimal_text(mantissa, exponent)


_DISPLAY_DECODERS: list[cbor2.CBORDecoder] = []
_DISPLAY_SEMANTIC = {**_SEMANTIC_DECODERS, 4: _decimal_as_text}


def _new_display_decoder() -> cbor2.CBORDecoder:
    return cbor2.CBORDecoder(
        _EMPTY,
        tag_hook=_refuse_unknown_tag,
        semantic_decoders=_DISPLAY_SEMANTIC,
        max_depth=_CBOR_MAX_DEPTH,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )


def decode_display(data: bytes | bytearray | memoryview) -> object:
    """Decode like ``decode(data, check=False)``, but every Decimal comes back as its exact text.

    For tools that print records (``journal dump``): a dump prints Decimals as
    strings anyway, and skipping the Decimal object halves the cost of a record
    holding a few prices. Same tags, limits and refusals as :func:`decode`.
    """
    size = len(data) if type(data) is bytes else memoryview(data).nbytes
    stream = io.BytesIO(data)
    try:
        decoder = _DISPLAY_DECODERS.pop()
    except IndexError:
        decoder = _new_display_decoder()
    try:
        decoder.fp = stream
        value = decoder.decode()
        end = stream.tell()
    except Exception as exc:
        raise DecodeError(_decode_failure(exc, size)) from exc
    if size > 65536:
        decoder.fp = _EMPTY
    _DISPLAY_DECODERS.append(decoder)
    if end != size:
        raise DecodeError(f"cannot decode {size} bytes: {size - end} trailing bytes at offset {end}")
    return value


# -- warm-up -----------------------------------------------------------------

_warmed_up = False


def warm_up() -> None:
    """Pay the one-time cost (~15 ms) of cbor2's first Decimal before it matters.

    Call it when the journal opens, so the first order intent is not the one
    that waits. Cheap and idempotent.
    """
    global _warmed_up
    if not _warmed_up:
        decode(encode([Decimal("1.5"), Decimal("-1E+40"), 2**70, -(2**70), 1.5]))
        _warmed_up = True
