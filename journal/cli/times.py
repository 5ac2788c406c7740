"""Times as people type and read them: ``--since 2h``, ``"2026-12-01 03:00"``, ``3 min ago``.

Parsing (:func:`parse_time_ns`), always to integer nanoseconds since the epoch:

- integer nanoseconds: ``1732442102120000000``;
- ISO-8601, UTC unless an offset is given: ``2026-12-01``, ``2026-12-01 03:00``,
  ``2026-12-01T03:00:00.5Z``, ``2026-12-01T05:00+02:00``;
- a duration back from now: ``90s``, ``15m``, ``2h``, ``2h30m``, ``3d``, ``1w``,
  optionally followed by ``ago`` (``"2 h ago"``); units ``ms s m min h d w``;
- ``now``, ``today`` (00:00 UTC), ``yesterday`` (00:00 UTC the day before).

Reading: :func:`ago` says how long ago a time was (``"3 min ago"``, compact
``"3m"``), :func:`duration` how long something took (``"13.5 ms"``,
``"2 min 3 s"``). Both name their unit; tables print them beside the exact
UTC time, never instead of it.
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime, timedelta

__all__ = ["ago", "duration", "parse_duration_ns", "parse_time_ns"]

_NS = 1_000_000_000
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": _NS,
    "sec": _NS,
    "secs": _NS,
    "second": _NS,
    "seconds": _NS,
    "m": 60 * _NS,
    "min": 60 * _NS,
    "mins": 60 * _NS,
    "minute": 60 * _NS,
    "minutes": 60 * _NS,
    "h": 3600 * _NS,
    "hr": 3600 * _NS,
    "hrs": 3600 * _NS,
    "hour": 3600 * _NS,
    "hours": 3600 * _NS,
    "d": 86400 * _NS,
    "day": 86400 * _NS,
    "days": 86400 * _NS,
    "w": 7 * 86400 * _NS,
    "week": 7 * 86400 * _NS,
    "weeks": 7 * 86400 * _NS,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?\s*[a-z]+\s*)+$")
_TIME_RE = re.compile(r"^(?P<main>[^.]*)(?:\.(?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d\d:?\d\d)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_FORMS = (
    "give ISO-8601 UTC like 2026-05-09T12:00:00Z, 2026-05-09 or '2026-05-09 03:00', "
    "a duration back from now like 2h, 30m, 1d12h or '2 h ago', now/today/yesterday, "
    "or integer nanoseconds since the epoch"
)


def parse_duration_ns(text: str) -> int | None:
    """``"2h30m"`` / ``"90 s"`` -> nanoseconds; None if ``text`` is not a duration."""
    s = text.strip().lower()
    if not _DURATION.match(s):
        return None
    total = 0
    for number, unit in _PART.findall(s):
        factor = _UNITS.get(unit)
        if factor is None:
            return None
        total += int(float(number) * factor) if "." in number else int(number) * factor
    return total


def parse_time_ns(text: str, now_ns: int | None = None) -> int:
    """Any form above -> nanoseconds since the epoch (an ``argparse`` type: a bad one is a usage error)."""
    s = text.strip()
    if s.isdigit():
        return int(s)
    now = time.time_ns() if now_ns is None else now_ns
    low = s.lower()
    if low == "now":
        return now
    if low in ("today", "yesterday"):
        midnight = now - now % (86400 * _NS)
        return midnight - (86400 * _NS if low == "yesterday" else 0)
    back = parse_duration_ns(low[: -len("ago")] if low.endswith("ago") else low)
    if back is not None:
        return now - back
    m = _TIME_RE.match(s)
    try:
        if m is None:
            raise ValueError(s)
        dt = datetime.fromisoformat(m["main"] + (m["tz"] or ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: {_FORMS}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    frac = (m["frac"] or "").ljust(9, "0")
    return (dt - _EPOCH) // timedelta(seconds=1) * _NS + int(frac or 0)


def _one_unit(ns: int, compact: bool) -> str:
    s = ns / _NS
    if s < 60:
        return f"{int(s)}s" if compact else f"{int(s)} s"
    if s < 3600:
        return f"{int(s // 60)}m" if compact else f"{int(s // 60)} min"
    if s < 86400:
        h = s / 3600
        return f"{int(h)}h" if compact else (f"{h:.1f} h" if h < 10 else f"{int(h)} h")
    d = s / 86400
    if compact:
        return f"{int(d)}d" if d < 1000 else f"{d / 365:.0f}y"
    return f"{d:.1f} d" if d < 10 else f"{int(d)} d"


def ago(ts_ns: int | None, now_ns: int | None = None, *, compact: bool = False) -> str:
    """How long before ``now_ns`` (default: now) ``ts_ns`` was: ``"3 min ago"``, compact ``"3m"``."""
    if ts_ns is None:
        return "-"
    now = time.time_ns() if now_ns is None else now_ns
    delta = now - ts_ns
    if abs(delta) < _NS:
        return "now" if compact else "just now"
    if delta < 0:  # a clock ahead of ours (another host, a step back of the wall clock)
        return f"+{_one_unit(-delta, True)}" if compact else f"in {_one_unit(-delta, False)}"
    return _one_unit(delta, True) if compact else f"{_one_unit(delta, False)} ago"


def duration(ns: int) -> str:
    """A span for people, to about three significant figures: ``"0.41 ms"``, ``"13.5 s"``, ``"2 min 3 s"``."""
    if ns < 0:
        return "-" + duration(-ns)
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g} us"
    if ns < _NS:
        return f"{ns / 1e6:.3g} ms"
    s = ns / _NS
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"
