"""Fitting a table into the terminal's width.

A table is a list of :class:`Column` and rows of cell strings. When the
natural widths fit, nothing changes. When they do not, in this order:

1. the *flex* column (the one that holds free text: ``DATA``, ``RESULT``)
   takes what is left, down to ``FLEX_MIN`` columns, and is cut with ``…``
   (or wrapped onto continuation lines with ``--wrap``);
2. lowest ``priority`` first, a column that can be shortened
   (``shorten="middle"`` for ids, keeping both ends: ``tjAbC…y4F``;
   ``shorten="end"`` for names) gives up width down to its ``min_width``, and
   one that cannot is dropped -- until the line fits; the table says which
   columns it dropped (``--line`` shows every field).

Widths are counted in characters; colour is applied after padding, so it
never counts.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FLEX_MIN", "GAP", "Column", "Fitted", "fit", "shorten"]

GAP = 2
FLEX_MIN = 16


@dataclass(frozen=True)
class Column:
    """One column of a table: its header, the row key it shows, and how it gives way when space is short."""

    header: str
    key: str
    #: ``"<"`` left or ``">"`` right aligned.
    align: str = "<"
    #: Lower gives way first (shortened, then dropped); the flex column is never dropped.
    priority: int = 5
    #: Takes the width left over and is cut (or wrapped) to it.
    flex: bool = False
    #: ``"end"``, ``"middle"`` (ids: both ends matter) or ``""`` (never shortened).
    shorten: str = ""
    #: Width below which a shortened column is dropped instead.
    min_width: int = 4
    #: Colour role of a cell from its row (``None``: plain).
    paint: Callable[[dict[str, Any]], str | None] | None = None


def as_column(c: Column | tuple[str, str]) -> Column:
    if isinstance(c, Column):
        return c
    header, key = c
    return Column(header, key)


def shorten(text: str, width: int, how: str = "end", ellipsis: str = "…") -> str:
    """``text`` cut to ``width`` characters, marked with ``ellipsis`` (at the end, or in the middle)."""
    if len(text) <= width:
        return text
    if width <= len(ellipsis):
        return text[:width]
    keep = width - len(ellipsis)
    if how == "middle":
        head = (keep + 1) // 2
        return text[:head] + ellipsis + text[len(text) - (keep - head) :]
    return text[:keep] + ellipsis


@dataclass
class Fitted:
    """The outcome of :func:`fit`: the columns kept (indexes), their widths, and the headers dropped."""

    keep: list[int]
    widths: dict[int, int]
    dropped: list[str]


def fit(columns: Sequence[Column], natural: Sequence[int], width: int, gap: int = GAP) -> Fitted:
    """Choose widths for ``columns`` (natural widths given) so a line fits ``width``."""
    keep = list(range(len(columns)))
    widths = dict(enumerate(natural))

    def total() -> int:
        return sum(widths[i] for i in keep) + gap * (len(keep) - 1)

    if total() <= width:
        return Fitted(keep, widths, [])
    flex = next((i for i, c in enumerate(columns) if c.flex), None)
    order = sorted((i for i in keep if i != flex), key=lambda i: (columns[i].priority, -i))

    def squeeze_flex() -> bool:
        if flex is None:
            return total() <= width
        others = total() - widths[flex]
        room = width - others
        if room >= min(natural[flex], FLEX_MIN):
            widths[flex] = min(natural[flex], room)
            return True
        widths[flex] = min(natural[flex], FLEX_MIN)
        return False

    if squeeze_flex():
        return Fitted(keep, widths, [])
    dropped: list[str] = []
    for i in order:  # least important first: shorten what can be shortened, drop the rest
        c = columns[i]
        if c.shorten and widths[i] > c.min_width:
            widths[i] = max(c.min_width, widths[i] - (total() - width))
        else:
            keep.remove(i)
            dropped.append(c.header)
        if squeeze_flex():
            break
    return Fitted(keep, widths, dropped)


def wrap(text: str, width: int) -> list[str]:
    """``text`` broken into lines of at most ``width`` (long words are split)."""
    if width <= 0:
        return [text]
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False, drop_whitespace=True) or [""]
