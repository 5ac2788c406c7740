"""The columnar encoding of snapshot chunks: values stored field by field, decimals as text.

A chunk of a section is up to ``chunk_items`` keys with their values. Stored
as one CBOR map per value (snapshot manifest version 1), it cost about a third
of a second each way for 10,000 ccxt-shaped orders: cbor2 builds every
``Decimal`` (tag 4) through a Python call and every map item by item (issue
14). Here the values of a chunk are laid out by field instead, so that almost
all the work is done by C loops (``map``, ``zip``, ``dict.fromkeys``, cbor2
arrays of small integers and strings) rather than by Python code per value:

- maps with the same keys (every order of a chunk, say) are stored as one
  group: the key tuple once, then one *column* per key;
- every distinct ``Decimal`` of the chunk is written once, as its exact text
  (``str(d)``, which ``Decimal()`` reads back with the same sign, digits and
  exponent -- ``Decimal("-0.00")`` included), and a decimal column is a packed
  array of small indices into that table;
- a column of strings with repeats (``symbol``, ``side``, ``status``) stores
  each distinct string once and a packed array of indices; a column of ints
  (``op``, ``last_seq``, ``timestamp``) or of floats is one packed array; the
  column that repeats the chunk's own keys (an order's ``client_id``) is not
  stored at all.

A packed array is a CBOR byte string of little-endian fixed-width numbers,
written and read by :mod:`struct` in one C call: of the ~16 fields of an
order, only the strings cost cbor2 an item each.

Layout of a chunk (a CBOR array)::

    [keys, decimals, column, deleted]

``keys`` the section's keys, sorted; ``decimals`` the distinct decimals of the
chunk as text joined by single spaces (``""`` when none); ``column`` the
values, one per key, as below; ``deleted`` the keys a delta chunk deletes
(``[]`` in a base chunk). A column holding ``n`` values is one of::

    [0, values]              str, int, bool, None, float, bytes only, as they are
    [1, width, packed]       Decimal or None: indices of ``width`` bytes (1, 2, 4),
                             0 is None, i > 0 is decimals[i - 1]; width 0: every
                             value is the one ``packed`` (an int) indexes
    [2, groups]              maps (or None), grouped by their keys:
                             [[shape, count, positions, columns], ...] -- shape the
                             keys in their order (None for the None values),
                             positions where those values sit (None when one group
                             holds every value), one column per key
    [3, blob]                anything else (lists, mixed types): a CBOR array of
                             the values, decoded on its own (decimals as tag 4)
    [4]                      the chunk's keys themselves
    [5, distinct, width, packed]  str or None with repeats: each distinct value
                             once, then the values' indices (width 0, ``packed``
                             empty: one distinct value, repeated)
    [6, base, width, packed]  int only, spanning less than 2**64: each value minus
                             ``base`` as an unsigned number of ``width`` bytes (1, 2, 4, 8)
    [7, packed]              float only: IEEE 754 doubles

Maps nest as groups up to :data:`MAP_LEVELS` deep; deeper values go into a
``[3, blob]`` column, whose blob is decoded from depth 1 again, so a state
value nested as deep as the codec allows (:data:`journal.log.codec.MAX_DEPTH`)
still decodes.

The same values always give the same bytes: the table and the groups follow
the order in which values are met. Decoding checks the structure as it goes (lengths,
kinds, key types, finite decimals within the codec's digit limit) and raises
:class:`ChunkError` for anything this module would not have written.
"""

from __future__ import annotations

import decimal
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from itertools import chain
from typing import Any

import cbor2

from ..errors import DecodeError
from ..log.codec import MAX_DECIMAL_DIGITS, decode

__all__ = ["MAP_LEVELS", "ChunkError", "decode_chunk", "encode_chunk"]

#: How deep maps inside maps are laid out as groups; deeper ones are stored whole.
MAP_LEVELS = 4

_PLAIN, _DECIMAL, _MAPS, _ANY, _KEYS, _CATEGORIES, _INTS, _FLOATS = range(8)

_NONE = type(None)
_PLAIN_TYPES = frozenset({str, int, bool, _NONE, float, bytes})
_DECIMAL_TYPES = frozenset({Decimal, _NONE})
_MAP_TYPES = frozenset({dict, _NONE})
_TEXT_TYPES = frozenset({str, _NONE})
# The longest exact text of a Decimal the codec accepts: its digits, a sign, a
# point and an exponent ("E-999999999999999999" at most).
_MAX_TEXT = MAX_DECIMAL_DIGITS + 24
# What the text of a finite Decimal is made of (str() never writes NaN or Infinity).
_DECIMAL_TEXT = re.compile(r"[0-9.+\-E ]*")
#: struct codes of packed widths (width in bytes -> code): indices, int offsets; floats.
_INDEX_CODES = {1: "B", 2: "H", 4: "I"}
_OFFSET_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_FLOAT_CODE = "d"
_STRUCTS: dict[tuple[str, int], struct.Struct] = {}
#: A text column is stored as categories when its first values already repeat this much.
_SAMPLE = 64


def _struct(code: str, n: int) -> struct.Struct:
    st = _STRUCTS.get((code, n))
    if st is None:
        if len(_STRUCTS) > 256:
            _STRUCTS.clear()
        st = _STRUCTS[(code, n)] = struct.Struct(f"<{n}{code}")
    return st


def _pack(code: str, values: Sequence[Any]) -> bytes:
    return _struct(code, len(values)).pack(*values)


def _unpack(code: str, blob: Any, n: int) -> tuple[Any, ...]:
    st = _struct(code, n)
    if type(blob) is not bytes or len(blob) != st.size:
        raise ChunkError(f"a packed column of {len(blob) if type(blob) is bytes else '?'} bytes for {n} values")
    return st.unpack(blob)


def _width(size: int) -> int:
    """The bytes an index into ``size`` entries needs."""
    return 1 if size <= 0x100 else 2 if size <= 0x10000 else 4


class ChunkError(ValueError):
    """A chunk that this module did not write (damaged, or from a newer version)."""


# -- encode ------------------------------------------------------------------


class _Encoder:
    """Encodes the columns of one chunk, then its decimal table."""

    __slots__ = ("keys", "decimal_columns")

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        #: (values, column) of each decimal column met: its Decimals (or None), and the
        #: column its width and indices go into once the table is known.
        self.decimal_columns: list[tuple[list[Any], list[Any]]] = []

    def column(self, values: list[Any], level: int) -> list[Any]:
        kinds = set(map(type, values))
        if kinds <= _PLAIN_TYPES:
            if not values:
                return [_PLAIN, values]
            if kinds <= _TEXT_TYPES:
                keys = self.keys
                first = values[0]
                if first == keys[0] and values == keys:
                    return [_KEYS]
                if values.count(first) == len(values):
                    return [_CATEGORIES, [first], 0, b""]
                if len(set(values[:_SAMPLE])) * 4 <= min(len(values), _SAMPLE):
                    distinct = dict.fromkeys(values)
                    if len(distinct) * 4 <= len(values):
                        index = dict(zip(distinct, range(len(distinct)), strict=True))
                        width = _width(len(distinct))
                        packed = _pack(_INDEX_CODES[width], list(map(index.__getitem__, values)))
                        return [_CATEGORIES, list(distinct), width, packed]
            elif kinds == {int}:
                base = min(values)
                span = max(values) - base
                if span < 2**64:
                    width = 1 if span < 0x100 else 2 if span < 0x10000 else 4 if span < 2**32 else 8
                    offsets = list(map(base.__rsub__, values)) if base else values
                    return [_INTS, base, width, _pack(_OFFSET_CODES[width], offsets)]
            elif kinds == {float}:
                return [_FLOATS, _pack(_FLOAT_CODE, values)]
            return [_PLAIN, values]
        if kinds <= _DECIMAL_TYPES:
            column: list[Any] = [_DECIMAL]  # width and indices appended by table()
            self.decimal_columns.append((values, column))
            return column
        if kinds <= _MAP_TYPES and level < MAP_LEVELS:
            return [_MAPS, self._maps(values, kinds, level + 1)]
        return [_ANY, cbor2.dumps(values)]

    def table(self) -> str:
        """The decimal table (distinct texts in the order met); fills in every decimal column.

        All C loops: each distinct object's text once (the reducers share equal
        decimals), then each value's index by its object's id -- only a
        shortcut, as the table and the indices follow the texts alone.
        """
        if not self.decimal_columns:
            return ""
        values = list(chain.from_iterable(v for v, _ in self.decimal_columns))
        objects = dict(zip(map(id, values), values, strict=True))  # each object once, in the order met
        texts = list(map(str, objects.values()))  # str() of a Decimal is never "None": it stands for None
        order = dict.fromkeys(texts)
        order.pop("None", None)
        by_text = dict(zip(order, range(1, len(order) + 1), strict=True))
        by_text["None"] = 0
        by_id = dict(zip(objects, map(by_text.__getitem__, texts), strict=True))
        width = _width(len(by_text))
        code = _INDEX_CODES[width]
        for column_values, column in self.decimal_columns:
            indices = list(map(by_id.__getitem__, map(id, column_values)))
            if indices.count(indices[0]) == len(indices):  # one value repeated (a zero, None)
                column += [0, indices[0]]
            else:
                column += [width, _pack(code, indices)]
        return " ".join(order)

    def _maps(self, values: list[Any], kinds: set[type], level: int) -> list[list[Any]]:
        shapes: list[tuple[str, ...] | None]
        if _NONE in kinds:
            shapes = [None if v is None else tuple(v) for v in values]
        else:
            shapes = list(map(tuple, values))
        if shapes.count(shapes[0]) == len(shapes):
            return [self._group(shapes[0], values, None, level)]
        distinct = dict.fromkeys(shapes)
        positions: dict[tuple[str, ...] | None, list[int]] = {s: [] for s in distinct}
        for i, shape in enumerate(shapes):
            positions[shape].append(i)
        return [self._group(s, [values[i] for i in where], where, level) for s, where in positions.items()]

    def _group(self, shape: tuple[str, ...] | None, rows: list[Any], where: list[int] | None, level: int) -> list[Any]:
        if shape is None or not shape:
            return [None if shape is None else [], len(rows), where, []]
        columns = [self.column(list(c), level) for c in zip(*map(dict.values, rows), strict=True)]
        return [list(shape), len(rows), where, columns]


def encode_chunk(items: Mapping[str, Any], keys: Sequence[str], deleted: Sequence[str] = ()) -> bytes:
    """The bytes of a chunk holding ``items[k]`` for each of ``keys`` (sorted), deleting ``deleted``."""
    key_list = list(keys)
    enc = _Encoder(key_list)
    column = enc.column([items[k] for k in key_list], 0)
    return cbor2.dumps([key_list, enc.table(), column, list(deleted)])


# -- decode ------------------------------------------------------------------

# A dict display compiled once per shape builds a map about 3x faster than
# dict(zip(keys, row)) (which makes a tuple per item): map(builder, *columns)
# then turns a group's columns into its maps in one C loop. The source holds
# only placeholder keys; the real keys (checked to be distinct str) replace the
# placeholder constants, so no stored text is ever compiled.
_BUILDERS: dict[tuple[str, ...], Callable[..., dict[str, Any]]] = {}
_BUILDER_MAX_KEYS = 64
_BUILDERS_KEPT = 1024


def _builder(shape: tuple[str, ...]) -> Callable[..., dict[str, Any]]:
    fn = _BUILDERS.get(shape)
    if fn is not None:
        return fn
    n = len(shape)
    args = ", ".join(f"a{i}" for i in range(n))
    body = ", ".join(f"'_k{i}_': a{i}" for i in range(n))
    template: Any = eval(f"lambda {args}: {{{body}}}", {})  # placeholders only: see above
    real = {f"_k{i}_": key for i, key in enumerate(shape)}

    def swap(const: Any) -> Any:
        if type(const) is str:
            return real.get(const, const)
        if type(const) is tuple:
            return tuple(real.get(c, c) if type(c) is str else c for c in const)
        return const

    code = template.__code__.replace(co_consts=tuple(swap(c) for c in template.__code__.co_consts))
    fn = type(template)(code, {})
    if len(_BUILDERS) >= _BUILDERS_KEPT:
        _BUILDERS.clear()
    _BUILDERS[shape] = fn
    return fn


def _dictcomp_rows(shape: tuple[str, ...], columns: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(shape, row, strict=True)) for row in zip(*columns, strict=True)]


class _Decoder:
    __slots__ = ("keys", "decimals")

    def __init__(self, keys: list[str], decimals: list[Any]) -> None:
        self.keys = keys
        self.decimals = decimals

    def column(self, col: Any, n: int, level: int) -> list[Any]:
        if type(col) is not list or not col or type(col[0]) is not int:
            raise ChunkError("a column is not [kind, ...]")
        kind = col[0]
        if kind == _KEYS:
            if n != len(self.keys):
                raise ChunkError("a key column outside the chunk's top level")
            return self.keys
        if kind == _MAPS and level < MAP_LEVELS and len(col) == 2:
            return self._maps(col[1], n, level + 1)
        if kind == _ANY and len(col) == 2 and type(col[1]) is bytes:
            try:
                values = decode(col[1], check=False)
            except DecodeError as exc:
                raise ChunkError(f"a column does not decode: {exc}") from None
        elif kind == _PLAIN and len(col) == 2:
            values = col[1]
        elif kind == _DECIMAL and len(col) == 3 and (col[1] in _INDEX_CODES or col[1] == 0):
            try:
                if col[1] == 0:
                    if type(col[2]) is not int or col[2] < 0:
                        raise IndexError
                    values = [self.decimals[col[2]]] * n
                else:
                    values = list(map(self.decimals.__getitem__, _unpack(_INDEX_CODES[col[1]], col[2], n)))
            except IndexError:
                raise ChunkError("a decimal index outside the chunk's table") from None
        elif kind == _CATEGORIES and len(col) == 4 and type(col[1]) is list and (col[2] in _INDEX_CODES or col[2] == 0):
            distinct = col[1]
            if not set(map(type, distinct)) <= _TEXT_TYPES:
                raise ChunkError("a category that is not str or None")
            if col[2] == 0:
                if len(distinct) != 1 or col[3] != b"":
                    raise ChunkError("a constant column that is not one value")
                values = distinct * n
            else:
                try:
                    values = list(map(distinct.__getitem__, _unpack(_INDEX_CODES[col[2]], col[3], n)))
                except IndexError:
                    raise ChunkError("a category index outside its table") from None
        elif kind == _INTS and len(col) == 4 and type(col[1]) is int and col[2] in _OFFSET_CODES:
            offsets = _unpack(_OFFSET_CODES[col[2]], col[3], n)
            values = list(map(col[1].__add__, offsets)) if col[1] else list(offsets)
        elif kind == _FLOATS and len(col) == 2:
            values = list(_unpack(_FLOAT_CODE, col[1], n))
            if not all(map(math.isfinite, values)):  # NaN and infinities are never stored
                raise ChunkError("a float column holding NaN or an infinity")
        else:
            raise ChunkError(f"unknown column kind {kind!r}")
        if type(values) is not list or len(values) != n:
            raise ChunkError(f"a column of {len(values) if type(values) is list else '?'} values where {n} belong")
        return values

    def _maps(self, groups: Any, n: int, level: int) -> list[Any]:
        if type(groups) is not list or not groups:
            raise ChunkError("a map column without groups")
        if len(groups) == 1:
            shape, count, where, columns = self._group_parts(groups[0])
            if count != n or where is not None:
                raise ChunkError("a single map group that does not hold the whole column")
            return self._rows(shape, count, columns, level)
        missing = object()
        out: list[Any] = [missing] * n
        total = 0
        for group in groups:
            shape, count, where, columns = self._group_parts(group)
            if type(where) is not list or len(where) != count or not set(map(type, where)) <= {int}:
                raise ChunkError("map group positions are not a list of its values' places")
            total += count
            if total > n or (where and (min(where) < 0 or max(where) >= n)):
                raise ChunkError("map group positions outside the column")
            list(map(out.__setitem__, where, self._rows(shape, count, columns, level)))
        if total != n or any(v is missing for v in out):
            raise ChunkError("map groups that do not cover the column exactly once")
        return out

    @staticmethod
    def _group_parts(group: Any) -> tuple[tuple[str, ...] | None, int, Any, list[Any]]:
        if type(group) is not list or len(group) != 4:
            raise ChunkError("a map group is not [shape, count, positions, columns]")
        shape, count, where, columns = group
        if type(count) is not int or count < 0 or type(columns) is not list:
            raise ChunkError("a map group with a bad count or columns")
        if shape is None:
            if columns:
                raise ChunkError("a None group with columns")
            return None, count, where, columns
        if type(shape) is not list or not set(map(type, shape)) <= {str} or len(set(shape)) != len(shape):
            raise ChunkError("a map group whose keys are not distinct str")
        if len(columns) != len(shape):
            raise ChunkError("a map group with a column count unlike its key count")
        return tuple(shape), count, where, columns

    def _rows(self, shape: tuple[str, ...] | None, count: int, columns: list[Any], level: int) -> list[Any]:
        if shape is None:
            return [None] * count
        if not shape:
            return [{} for _ in range(count)]
        cols = [self.column(c, count, level) for c in columns]
        if len(shape) <= _BUILDER_MAX_KEYS:
            return list(map(_builder(shape), *cols))
        return _dictcomp_rows(shape, cols)


def _decimal_table(text: Any) -> list[Any]:
    if type(text) is not str:
        raise ChunkError("the decimal table is not text")
    if not text:
        return [None]
    if _DECIMAL_TEXT.fullmatch(text) is None:  # no NaN, no Infinity, no spaces but separators
        raise ChunkError("a decimal table entry that is not the text of a finite Decimal")
    parts = text.split(" ")
    if max(map(len, parts)) > _MAX_TEXT:
        raise ChunkError("a decimal longer than the codec's digit limit")
    try:
        return [None, *map(Decimal, parts)]
    except (decimal.InvalidOperation, ValueError):
        raise ChunkError("a decimal table entry that is not a number") from None


def decode_chunk(blob: bytes | memoryview) -> tuple[dict[str, Any], list[str]]:
    """``(items, deleted)`` of a chunk written by :func:`encode_chunk`; ChunkError if it is not one.

    Call it only on bytes whose digest matched (snapshot chunks are content-addressed).
    """
    try:
        top = decode(blob, check=False)
    except DecodeError as exc:
        raise ChunkError(f"does not decode: {exc}") from None
    if type(top) is not list or len(top) != 4:
        raise ChunkError("not a columnar chunk [keys, decimals, column, deleted]")
    keys, text, column, deleted = top
    if type(keys) is not list or not set(map(type, keys)) <= {str}:
        raise ChunkError("chunk keys are not a list of str")
    if type(deleted) is not list or not set(map(type, deleted)) <= {str}:
        raise ChunkError("deleted keys are not a list of str")
    values = _Decoder(keys, _decimal_table(text)).column(column, len(keys), 0)
    items = dict(zip(keys, values, strict=True))
    if len(items) != len(keys):
        raise ChunkError("a key appears twice in the chunk")
    return items, deleted
