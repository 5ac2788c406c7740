"""Records for people: a one-line summary of a record's data, and the layout of ``journal dump``'s table.

:func:`summarize` puts first what an operator looks for -- symbol, side,
amount, price, status, fill, ids, a reason -- and the remaining fields after
as ``key=value``, so when the line is cut to the terminal's width the part
that is lost is the part that matters least::

    BTC/USDT buy 0.5 @ 30000.10 open limit filled=0.25 id=98765 params={}

:class:`DumpTable` lays out ``journal dump`` rows in fixed columns chosen from
the terminal's width up front (the dump streams: it cannot measure its rows
first). Narrow terminals get a shorter time (``11-24 09:15:02``), no
relative-time column, and the source folded into the data (``[recovery]``);
wide ones get the full time, ``AGO``, ``SOURCE`` and ``CLIENT ID``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .layout import shorten, wrap
from .terminal import Style
from .times import ago

__all__ = ["DumpTable", "summarize"]

#: Fields shown first, in this order, without their names.
_LEAD = ("symbol", "side")
#: Fields shown next, by name (after amount @ price and the status).
_NAMED = ("filled", "remaining", "average", "id", "client_id", "reason", "error")


def _text(value: Any, encode: Callable[[Any], str]) -> str:
    if isinstance(value, str):
        return value
    if type(value) is Decimal:
        text = str(value)
        return format(value, "f") if "E" in text else text
    if value is None:
        return "null"
    if type(value) is bytes:
        return encode(value).strip('"')  # base64 or hex, as --bytes says
    try:
        return encode(value)
    except (TypeError, ValueError):
        return repr(value)


def summarize(data: Any, encode: Callable[[Any], str], *, short_ids: bool = False) -> str:
    """A record's data as one line, most telling fields first."""
    if type(data) is not dict:
        return "-" if data is None else _text(data, encode)
    parts: list[str] = []
    used: set[str] = set()
    for key in _LEAD:
        value = data.get(key)
        if isinstance(value, str) and value:
            parts.append(value)
            used.add(key)
    amount, price = data.get("amount"), data.get("price")
    if amount is not None:
        parts.append(_text(amount, encode) + (f" @ {_text(price, encode)}" if price is not None else ""))
        used.update(("amount", "price"))
    for key in ("status", "type"):  # the order's status, then its type (limit, market)
        value = data.get(key)
        if isinstance(value, str) and value:
            parts.append(value)
            used.add(key)
    for key in _NAMED:
        if key in data and data[key] is not None:
            text = _text(data[key], encode)
            if short_ids and key == "client_id":
                text = shorten(text, 12, "middle")
            parts.append(text if key == "reason" else f"{key}={text}")
            used.add(key)
    for key, value in data.items():
        if key not in used and value is not None:
            parts.append(f"{key}={_text(value, encode)}")
    return " ".join(parts) if parts else "{}"


class DumpTable:
    """Fixed-width lines for ``journal dump`` rows, fitted to ``width`` columns."""

    def __init__(
        self,
        width: int,
        last_seq: int,
        encode: Callable[[Any], str],
        style: Style,
        *,
        wrap_data: bool = False,
        ellipsis: str = "…",
        now_ns: int | None = None,
    ) -> None:
        self.encode = encode
        self.style = style
        self.wrap_data = wrap_data
        self.ellipsis = ellipsis
        self.now_ns = time.time_ns() if now_ns is None else now_ns
        unlimited = width >= 1 << 20
        self.seq_w = max(3, len(str(max(last_seq, 0))))
        self.full_time = unlimited or width >= 120
        self.time_w = 23 if self.full_time else 14
        self.show_ago = not unlimited and width >= 100  # relative times only for a person at a terminal
        self.type_w = 16 if width >= 120 else 12
        self.show_source = width >= 100
        self.show_cid = unlimited or width >= 160
        fixed = [self.seq_w, self.time_w, 6, self.type_w, self.seq_w]
        if self.show_ago:
            fixed.append(4)
        if self.show_source:
            fixed.append(8)
        if self.show_cid:
            fixed.append(21)
        self.data_w = None if unlimited else max(width - sum(fixed) - len(fixed), 12)
        self.pad = " " * (sum(fixed) + len(fixed))

    def header(self) -> str:
        cols = [f"{'SEQ':>{self.seq_w}}", f"{'TIME (UTC)':<{self.time_w}}"]
        if self.show_ago:
            cols.append("AGO ")
        cols += [f"{'KIND':<6}", f"{'TYPE':<{self.type_w}}", f"{'OP':>{self.seq_w}}"]
        if self.show_source:
            cols.append(f"{'SOURCE':<8}")
        if self.show_cid:
            cols.append(f"{'CLIENT ID':<21}")
        cols.append("DATA")
        return self.style(" ".join(cols), "bold")

    def lines(self, row: tuple[Any, ...]) -> list[str]:
        seq, ts, kind, type_, op, cid, src, data, extra, problem, _raw = row
        st = self.style
        if problem is not None:
            text = f"{seq:>{self.seq_w}} DAMAGED: {problem}"
            if self.data_w is not None:
                text = shorten(text, len(self.pad) + self.data_w, ellipsis=self.ellipsis)
            return [st(text, "bad")]
        sec, frac = divmod(ts, 1_000_000_000)
        try:
            if self.full_time:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec)) + f".{frac // 1_000_000:03d}"
            else:
                when = time.strftime("%m-%d %H:%M:%S", time.gmtime(sec))
        except (OverflowError, OSError, ValueError):
            when = "?"
        cols = [f"{seq:>{self.seq_w}}", f"{when:<{self.time_w}}"]
        if self.show_ago:
            cols.append(st(f"{ago(ts, self.now_ns, compact=True):<4}", "dim"))
        cols.append(st(f"{kind or '-':<6}", kind))
        cols.append(f"{shorten(type_ or '-', self.type_w, ellipsis=self.ellipsis):<{self.type_w}}")
        cols.append(f"{'-' if op is None else op:>{self.seq_w}}")
        source = src or "bot"
        if self.show_source:
            cols.append(st(f"{source:<8}", source if source != "bot" else None))
        if self.show_cid:
            cols.append(f"{shorten(cid or '-', 21, 'middle', self.ellipsis):<21}")
        text = summarize(data, self.encode, short_ids=not self.show_cid)
        if extra:
            text += " extra=" + _text(extra, self.encode)
        if not self.show_source and source != "bot":
            text = f"[{source}] {text}"
        prefix = " ".join(cols) + " "
        if self.data_w is None:
            return [prefix + text]
        if self.wrap_data:
            chunks = wrap(text, self.data_w)
            return [prefix + chunks[0]] + [self.pad + c for c in chunks[1:]]
        return [prefix + shorten(text, self.data_w, ellipsis=self.ellipsis)]
