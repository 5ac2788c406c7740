"""How the ``journal`` command prints: JSON lines for machines, tables for people.

JSON output (``--json``, the default when stdout is not a terminal) is one
object per line, UTF-8. Values that JSON has no type for:

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
import functools
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from json import encoder as _json_encoder
from typing import Any, BinaryIO

__all__ = [
    "Output",
    "age_text",
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


def age_text(age_ms: float) -> str:
    """``"42.0s"``, ``"3.5m"``, ``"2.0h"``, ``"3.1d"``."""
    s = age_ms / 1000
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


class Output:
    """Where a command prints, in the mode the user chose.

    ``json``: one object per line. Otherwise a table for people. Writes go to
    the binary stdout in as few calls as possible.
    """

    def __init__(self, as_json: bool, bytes_mode: str = "base64", stream: BinaryIO | None = None) -> None:
        self.json = as_json
        self.bytes_mode = bytes_mode
        self.encode = json_encoder(bytes_mode)
        self.stream: BinaryIO = stream if stream is not None else sys.stdout.buffer
        # Truncate table lines to the terminal's width; never when writing to a file or pipe.
        self.width = shutil.get_terminal_size().columns if self.stream.isatty() else 1 << 30
        self._strings: dict[str | None, str] = {}
        #: Rows whose data JSON cannot express, printed as damaged (counts as damage).
        self.unprintable = 0

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

    def objects(self, objs: Iterable[dict[str, Any]]) -> None:
        """JSON: one line per object. Table: ``key  value`` blocks, one per object."""
        if self.json:
            self.write_lines([self.encode(o) for o in objs])
            return
        lines: list[str] = []
        for o in objs:
            if lines:
                lines.append("")
            keyw = max((len(k) for k in o), default=0)
            for k, v in o.items():
                lines.append(f"{k:<{keyw}}  {self.cell(v)}")
        self.write_lines(lines)

    def table(self, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]) -> None:
        """JSON: each row dict on a line. Table: aligned ``columns`` (header, key); the last is not padded."""
        if self.json:
            self.write_lines([self.encode(r) for r in rows])
            return
        cells = [[self.cell(r.get(key)) for _, key in columns] for r in rows]
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _) in enumerate(columns)]
        lines = ["  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)).rstrip()]
        for c in cells:
            lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        self.write_lines([self._fit(line) for line in lines])

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

    def _fit(self, line: str) -> str:
        return line if len(line) <= self.width else line[: max(self.width - 1, 20)] + "…"

    # -- dump rows -------------------------------------------------------------

    TABLE_HEADER = f"{'SEQ':>9}  {'TIME (UTC)':<23}  {'KIND':<7} {'TYPE':<16} {'OP':>9}  {'SOURCE':<8} DATA"

    def dump_header(self) -> None:
        if not self.json:
            self.write_lines([self.TABLE_HEADER])

    def dump_rows(self, rows: Sequence[Row], prefix: str = "") -> None:
        """Print dump rows (``prefix`` is unused; rows carry their client ids)."""
        self.write_lines(self._json_lines(rows) if self.json else [self._table_line(r) for r in rows])

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

    def _table_line(self, row: Row) -> str:
        seq, ts, kind, type_, op, _cid, src, data, extra, problem, _raw = row
        if problem is not None:
            return self._fit(f"{seq:>9}  DAMAGED: {problem}")
        when = (iso_ns(ts) or "")[:23].replace("T", " ")
        text = self.cell(data)
        if extra:
            text += " extra=" + self.cell(extra)
        return self._fit(
            f"{seq:>9}  {when:<23}  {kind or '-':<7} {type_ or '-':<16} {'-' if op is None else op:>9}  "
            f"{src or '-':<8} {text}"
        )
