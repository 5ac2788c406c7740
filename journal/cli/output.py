"""How the ``journal`` command prints: JSON lines for machines, tables for people.

Modes (one of ``--json``, ``--table``, ``--csv``, ``--line``): JSON lines
are the default when stdout is not a terminal, a table when it is. A table is
fitted to the terminal (:mod:`journal.cli.layout`); ``--line`` prints every
field of each row on a line of its own (like sqlite3's ``.mode line``), for
rows too wide for any terminal; ``--csv`` writes a header and one row per
line (nested values as JSON), for spreadsheets.

JSON output is one object per line, UTF-8. Values that JSON has no type for:

- ``Decimal`` becomes a string in plain notation, exactly (``"0.00100000"``,
  never a float and never ``1E-3``);
- ``bytes`` become a base64 string (``--bytes base64``, the default) or a
  lower-case hex string (``--bytes hex``); nothing in the output marks a
  string as having been bytes, the record type's schema says which fields are;
- times are both ``ts_ns`` (integer nanoseconds since the Unix epoch) and
  ``time`` (ISO-8601 UTC with nanoseconds, ``2026-05-09T07:35:25.123456789Z``);
- durations name their unit (``age_ms``, ``since_intent_ms``).

A dump row (:data:`Row`) is a plain tuple, because ``journal dump`` builds a
million of them: a tuple costs a fraction of a dict or a dataclass, and the
JSON line is formatted from it directly (only ``data`` goes through the
encoder). The speed of this path is measured in ``bench/bench_cli.py``.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from json import encoder as _json_encoder
from typing import Any, BinaryIO

from .layout import FLEX_MIN, Column, as_column, fit, shorten, wrap
from .summary import DumpTable
from .terminal import Style, Terminal
from .times import ago

__all__ = [
    "MODES",
    "Output",
    "ms",
    "record_dict",
    "Row",
    "iso_ns",
    "json_encoder",
    "row_dict",
]

#: One dump row: ``(seq, ts_ns, kind, type, op, client_id, source, data,
#: extra, problem, raw)``. ``problem`` is None for a sound record; for a
#: damaged one it says what is wrong, ``raw`` holds the stored bytes, and the
#: decoded fields are None.
Row = tuple[
    int, int | None, str | None, str | None, int | None, str | None, str | None, Any, Any, str | None, bytes | None
]

_NS = 1_000_000_000
_c_make_encoder = getattr(_json_encoder, "c_make_encoder", None)


@functools.lru_cache(maxsize=256)
def _iso_prefix(sec: int) -> str | None:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    except (OverflowError, OSError, ValueError):
        return None  # a time no calendar holds (only a hostile writer stores one)


def iso_ns(ts_ns: int | None) -> str | None:
    """ISO-8601 UTC with nanoseconds: ``2026-05-09T07:35:25.123456789Z``."""
    if ts_ns is None:
        return None
    sec, frac = divmod(ts_ns, _NS)
    prefix = _iso_prefix(sec)
    return None if prefix is None else f"{prefix}.{frac:09d}Z"


def _decimal_str(value: Decimal) -> str:
    text = str(value)  # plain already unless the exponent is positive or the value tiny
    if "E" not in text:
        return text
    exp = value.as_tuple().exponent
    return format(value, "f") if isinstance(exp, int) and -64 <= exp <= 64 else text


def _default_base64(value: Any) -> Any:
    if type(value) is Decimal:
        return _decimal_str(value)
    if type(value) is bytes:
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _default_hex(value: Any) -> Any:
    if type(value) is Decimal:
        return _decimal_str(value)
    if type(value) is bytes:
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def json_encoder(bytes_mode: str = "base64") -> Callable[[Any], str]:
    """A compact JSON encoder (Decimal as string, bytes as base64 or hex, no NaN).

    Calls the C encoder directly: ``json.dumps`` builds a new encoder object
    per call, which costs as much as encoding a small record.
    """
    default = _default_hex if bytes_mode == "hex" else _default_base64
    if _c_make_encoder is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False, default=default
        ).encode
    # (markers, default, encoder, indent, key_sep, item_sep, sort_keys, skipkeys, allow_nan)
    make = _c_make_encoder(None, default, _json_encoder.encode_basestring, None, ":", ",", False, False, False)

    def encode(value: Any) -> str:
        return "".join(make(value, 0))

    return encode


# -- rows -----------------------------------------------------------------------------


def row_dict(row: Row, bytes_mode: str = "base64") -> dict[str, Any]:
    """A dump row as the dict its JSON line holds."""
    seq, ts, kind, type_, op, cid, src, data, extra, problem, raw = row
    out: dict[str, Any] = {
        "seq": seq,
        "time": iso_ns(ts),
        "ts_ns": ts,
        "kind": kind,
        "type": type_,
        "op": op,
        "client_id": cid,
        "source": src,
        "data": data,
        "checksum": "ok" if problem is None else problem,
    }
    if extra:
        out["extra"] = extra
    if raw is not None:
        out["raw"] = raw.hex() if bytes_mode == "hex" else base64.b64encode(raw).decode("ascii")
    return out


def record_dict(rec: Any) -> dict[str, Any]:
    """A decoded :class:`~journal.record.Record` as the dict a dump line holds."""
    out: dict[str, Any] = {"seq": rec.seq, "time": iso_ns(rec.ts_ns)}
    out.update(rec.as_dict())
    out["checksum"] = "ok"
    return out


def ms(ns: int) -> float:
    """Nanoseconds as milliseconds, to the microsecond."""
    return round(ns / 1e6, 3)


MODES = ("json", "table", "csv", "line")


class Output:
    """Where a command prints, in the mode the user chose (``json``, ``table``, ``csv`` or ``line``).

    Writes go to the binary stdout in as few calls as possible. ``terminal``
    says how wide a table may be and whether it is coloured; without one
    (tests, a file) nothing is cut and nothing coloured.
    """

    def __init__(
        self,
        mode: str | bool = "json",
        bytes_mode: str = "base64",
        stream: BinaryIO | None = None,
        *,
        terminal: Terminal | None = None,
        wrap: bool = False,
    ) -> None:
        if isinstance(mode, bool):  # the old Output(as_json) form
            mode = "json" if mode else "table"
        if mode not in MODES:
            raise ValueError(f"output mode {mode!r} is not one of {MODES}")
        self.mode = mode
        #: JSON lines (the machine form); ``people`` is its opposite for table and line modes.
        self.json = mode == "json"
        self.people = mode in ("table", "line")
        self.bytes_mode = bytes_mode
        self.encode = json_encoder(bytes_mode)
        self.stream: BinaryIO = stream if stream is not None else sys.stdout.buffer
        self.terminal = terminal
        # Fit tables to the terminal's width; never when writing to a file or pipe.
        self.width = terminal.width if terminal is not None else 1 << 30
        self.style = terminal.style if terminal is not None else Style(False)
        self.ellipsis = "…" if terminal is None or terminal.unicode else "~"
        self.wrap = wrap
        self._strings: dict[str | None, str] = {}
        self._dump_table: DumpTable | None = None
        self._csv_header_done = False
        self._header_pending = False
        #: Rows whose data JSON cannot express, printed as damaged (counts as damage).
        self.unprintable = 0
        #: Rows printed by :meth:`dump_rows` (0: a filter matched nothing).
        self.dumped = 0

    # -- plain writing -------------------------------------------------------

    def write_lines(self, lines: Sequence[str]) -> None:
        if lines:
            self.write(("\n".join(lines) + "\n").encode("utf-8", "backslashreplace"))

    def write(self, data: bytes) -> None:
        # BufferedWriter.write may return a short count without raising when a
        # signal interrupts a large write to a pipe (SIGPIPE, SIGWINCH...): loop.
        view = memoryview(data)
        while view:
            n = self.stream.write(view)
            view = view[n if n else 0 :]

    def flush(self) -> None:
        self.stream.flush()

    def text(self, lines: Sequence[str]) -> None:
        """Lines for people only (a title, a picture); nothing in JSON or CSV."""
        if self.people:
            self.write_lines(lines)

    def prose(self, text: str, role: str | None = None, indent: str = "") -> list[str]:
        """``text`` wrapped to the terminal's width (painted as ``role``), as lines."""
        width = min(self.width, 1 << 16) - len(indent)
        return [indent + self.style(line, role) for line in wrap(text, width)]

    # -- objects and tables --------------------------------------------------------

    def objects(self, objs: Iterable[dict[str, Any]]) -> None:
        """JSON: one line per object. CSV: a header and a row each. Else ``key  value`` blocks, one per object."""
        objs = list(objs)
        if self.json:
            self.write_lines([self.encode(o) for o in objs])
            return
        if self.mode == "csv":
            keys = list(dict.fromkeys(k for o in objs for k in o))
            self._csv(keys, [[o.get(k) for k in keys] for o in objs])
            return
        lines: list[str] = []
        for o in objs:
            if lines:
                lines.append("")
            lines += self._block(o)
        self.write_lines(lines)

    def _block(self, o: dict[str, Any], align: str = "<") -> list[str]:
        """``key  value`` lines (``--line``: right-aligned ``key = value``, as sqlite3's line mode); long values wrap."""
        keyw = max((len(k) for k in o), default=0)
        sep = " = " if align == ">" else "  "
        room = self.width - keyw - len(sep)
        lines = []
        for k, v in o.items():
            text = self.cell(v)
            if k == "time" and isinstance(o.get("ts_ns"), int):
                text += f" ({ago(o['ts_ns'])})"
            name = f"{k:{align}{keyw}}"
            chunks = wrap(text, room) if len(text) > room and room >= FLEX_MIN else [text]
            lines.append(f"{self.style(name, 'dim')}{sep}{chunks[0]}")
            lines += [" " * (keyw + len(sep)) + c for c in chunks[1:]]
        return lines

    def table(self, columns: Sequence[Column | tuple[str, str]], rows: Sequence[dict[str, Any]]) -> None:
        """JSON: each row dict on a line. CSV: the columns' keys. Line: every field. Table: fitted ``columns``."""
        if self.json:
            self.write_lines([self.encode(r) for r in rows])
            return
        cols = [as_column(c) for c in columns]
        if self.mode == "csv":
            keys = [c.key for c in cols]
            self._csv(keys, [[r.get(k) for k in keys] for r in rows])
            return
        if self.mode == "line":
            lines: list[str] = []
            for r in rows:
                if lines:
                    lines.append("")
                lines += self._block(r, ">")
            self.write_lines(lines)
            return
        cells = [[self.cell(r.get(c.key)) for c in cols] for r in rows]
        natural = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        fitted = fit(cols, natural, self.width)
        keep, widths = fitted.keep, fitted.widths
        st, ell = self.style, self.ellipsis

        def pad(i: int, text: str) -> str:
            c = cols[i]
            w = widths[i]
            if len(text) > w:
                text = shorten(text, w, c.shorten or "end", ell)
            return f"{text:{c.align}{w}}"

        last = keep[-1]
        flex = next((i for i in keep if cols[i].flex), None)
        indent = 0 if flex is None else sum(widths[i] + 2 for i in keep[: keep.index(flex)])
        lines = [st("  ".join(pad(i, cols[i].header) if i != last else cols[i].header for i in keep), "bold")]
        for r, row in zip(rows, cells, strict=True):
            parts = []
            more: list[str] = []
            for i in keep:
                text = row[i]
                if i == flex and self.wrap and len(text) > widths[i]:
                    text, *more = wrap(text, widths[i])
                cell = pad(i, text) if (i != last or len(text) > widths[i]) else text
                paint = cols[i].paint
                parts.append(st(cell, paint(r) if paint else None))
            lines.append("  ".join(parts).rstrip())
            lines += [" " * indent + m for m in more]
        if fitted.dropped:
            hidden = ", ".join(fitted.dropped)
            lines += self.prose(f"({hidden} hidden to fit {self.width} columns; --line shows every field)", "dim")
        self.write_lines(lines)

    def _csv(self, keys: Sequence[str], rows: Sequence[Sequence[Any]], header: bool = True) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header:
            w.writerow(keys)
        for row in rows:
            w.writerow(["" if v is None else self.cell(v) for v in row])
        self.write(buf.getvalue().encode("utf-8", "backslashreplace"))

    def cell(self, value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, str):
            return value
        if type(value) is Decimal:
            return _decimal_str(value)
        try:
            return self.encode(value)
        except (TypeError, ValueError):
            return repr(value)

    # -- dump rows -------------------------------------------------------------

    def dump_header(self, last_seq: int = 0) -> None:
        """Prepare the dump's output; the header line is printed with the first row (none if nothing matches)."""
        if self.mode == "table":
            self._dump_table = DumpTable(
                self.width, last_seq, self.encode, self.style, wrap_data=self.wrap, ellipsis=self.ellipsis
            )
            self._header_pending = True
        elif self.mode == "csv":
            self._header_pending = True

    def dump_rows(self, rows: Sequence[Row], prefix: str = "") -> None:
        """Print dump rows (``prefix`` is unused; rows carry their client ids)."""
        self.dumped += len(rows)
        if self.json:
            self.write_lines(self._json_lines(rows))
            return
        if self.mode == "csv":
            self._csv(_DUMP_KEYS, [self._dump_csv_row(r) for r in rows], header=self._header_pending)
            self._header_pending = False
            return
        if self.mode == "line":
            lines: list[str] = []
            for r in rows:
                lines.append("")
                lines += self._block(_flat(row_dict(r, self.bytes_mode)), ">")
            self.write_lines(lines[1:] if self.dumped == len(rows) else lines)
            return
        table = self._dump_table
        if table is None:
            self.dump_header()
            table = self._dump_table
            assert table is not None
        table.now_ns = time.time_ns()  # relative times stay right while --follow runs for hours
        out = [table.header()] if self._header_pending and rows else []
        self._header_pending = self._header_pending and not rows
        for r in rows:
            out += table.lines(r)
        self.write_lines(out)

    def _dump_csv_row(self, row: Row) -> list[Any]:
        d = row_dict(row, self.bytes_mode)
        return [d.get(k) for k in _DUMP_KEYS]

    def _json_lines(self, rows: Sequence[Row]) -> list[str]:
        # The hot path of `journal dump --json`: fixed fields by f-string, only
        # `data` (and a rare `extra`) through the encoder. Keep it flat.
        enc = self.encode
        strings = self._strings
        out: list[str] = []
        append = out.append
        last_sec = -1
        last_prefix: str | None = None
        for row in rows:
            seq, ts, kind, type_, op, cid, src, data, extra, problem, _raw = row
            if problem is not None or ts is None:
                append(enc(row_dict(row, self.bytes_mode)))
                continue
            sec, frac = divmod(ts, _NS)
            if sec != last_sec:
                last_sec, last_prefix = sec, _iso_prefix(sec)
            when = "null" if last_prefix is None else f'"{last_prefix}.{frac:09d}Z"'
            type_json = strings.get(type_)
            if type_json is None:
                type_json = strings[type_] = enc(type_)
            src_json = strings.get(src)
            if src_json is None:
                src_json = strings[src] = enc(src)
            try:
                data_json = enc(data)
                if extra:
                    data_json += ',"extra":' + enc(extra)
            except (TypeError, ValueError, RecursionError) as exc:
                # Checksum-valid bytes a hostile or buggy writer stored (NaN, bytes keys):
                # report the record as damaged rather than print invalid JSON.
                self.unprintable += 1
                bad = (seq, ts, kind, type_, op, cid, src, None, None, f"data cannot be shown as JSON: {exc}", None)
                append(enc(row_dict(bad, self.bytes_mode)))
                continue
            op_json = "null" if op is None else op
            cid_json = "null" if cid is None else f'"{cid}"'
            append(
                f'{{"seq":{seq},"time":{when},"ts_ns":{ts},"kind":"{kind}","type":{type_json},"op":{op_json},'
                f'"client_id":{cid_json},"source":{src_json},"data":{data_json},"checksum":"ok"}}'
            )
        return out


#: The columns of ``journal dump --csv`` (``data`` and ``extra`` as JSON).
_DUMP_KEYS = ("seq", "time", "ts_ns", "kind", "type", "op", "client_id", "source", "data", "extra", "checksum", "raw")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """A dump row for ``--line``: ``data``'s fields one level up (``data.symbol``), the rest as they are."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k == "data" and type(v) is dict and v:
            for dk, dv in v.items():
                out[f"data.{dk}"] = dv
        else:
            out[k] = v
    return out
