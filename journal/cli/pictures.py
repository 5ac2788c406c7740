"""Pictures where a person would rather look than read numbers: timelines, histograms, bars, sizes.

Each function returns lines of text for a table-mode output; JSON output
never contains them (it carries the numbers they are drawn from). Drawing
characters come from the :class:`~journal.cli.terminal.Terminal` (block and
box characters on a UTF-8 terminal, ASCII otherwise).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .layout import shorten
from .terminal import Style
from .times import ago, duration

__all__ = [
    "LATENCY_EDGES_MS",
    "Glyphs",
    "Step",
    "age_bar",
    "bar",
    "glyphs_for",
    "histogram",
    "latency_summary",
    "size",
    "timeline",
    "when",
]


@dataclass(frozen=True)
class Glyphs:
    """The characters pictures are drawn with."""

    full: str = "█"
    empty: str = "░"
    dot: str = "●"
    line: str = "│"
    ellipsis: str = "…"

    @classmethod
    def ascii(cls) -> Glyphs:
        return cls("#", ".", "*", "|", "~")


def size(n: int | None) -> str:
    """Bytes for people, in binary units: ``812 B``, ``63.1 MiB``, ``1.0 GiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def bar(fraction: float, width: int, g: Glyphs) -> str:
    """A bar ``width`` cells long, ``fraction`` of it full (anything above zero shows at least one cell)."""
    fraction = min(max(fraction, 0.0), 1.0)
    full = round(fraction * width)
    if fraction > 0 and full == 0:
        full = 1
    return g.full * full + g.empty * (width - full)


# -- the timeline of one operation -----------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One record of an operation, as the timeline draws it."""

    seq: int
    ts_ns: int
    kind: str
    type: str
    source: str
    what: str  # the data, summarised


def _gloss(step: Step, first: bool) -> str:
    """What a step means, in a few words (the source, when not the bot, is part of it)."""
    if first and step.kind == "intent":
        return "durable; the order may be sent"
    if step.kind == "commit":
        return {"recovery": "settled by recovery", "manual": "settled by hand"}.get(
            step.source, "the exchange answered"
        )
    if step.kind == "abort":
        return {"recovery": "aborted by recovery", "manual": "aborted by hand"}.get(step.source, "refused or failed")
    return f"by {step.source}" if step.source != "bot" else ""


def timeline(steps: Sequence[Step], width: int, style: Style, g: Glyphs, *, bar_cells: int = 24) -> list[str]:
    """The steps one under another, each gap drawn as a bar proportional to the longest gap."""
    if not steps:
        return []
    gaps = [b.ts_ns - a.ts_ns for a, b in zip(steps, steps[1:], strict=False)]
    longest = max([*gaps, 1])
    lines: list[str] = []
    day = None
    for i, step in enumerate(steps):
        sec, frac = divmod(step.ts_ns, 1_000_000_000)
        stamp_day = time.strftime("%Y-%m-%d", time.gmtime(sec))
        if stamp_day != day:
            day = stamp_day
            lines.append(style(f"{day} (UTC)", "dim"))
        when = time.strftime("%H:%M:%S", time.gmtime(sec)) + f".{frac // 1000:06d}"
        gloss = _gloss(step, i == 0)
        tail = f"  seq {step.seq}"
        plain = f"  {when}  {g.dot} {step.kind:<6} {step.type}"
        room = width - len(plain) - len(tail) - 2
        gloss = "" if not gloss or room < 8 else "  " + shorten(gloss, room, ellipsis=g.ellipsis)
        head = f"  {when}  {style(g.dot, step.kind)} {step.kind:<6} {step.type}"
        lines.append(head + style(gloss + tail, "dim"))
        room = max(width - 23, 20)
        if step.what and step.what != "-":
            lines.append(f"{'':19}{style(g.line, 'dim')}   {shorten(step.what, room, ellipsis=g.ellipsis)}")
        if i < len(gaps):
            gap = gaps[i]
            picture = bar(gap / longest, bar_cells, g).rstrip(g.empty)
            lines.append(f"{'':19}{style(g.line, 'dim')} {style(picture, 'warn')} {duration(gap)}")
    return lines


# -- latency distributions ---------------------------------------------------------------------

#: Bucket upper edges in ms (1-2-5 steps): ``<= 0.1``, ``<= 0.2``, ... ``<= 100000``, then more.
LATENCY_EDGES_MS: tuple[float, ...] = tuple(m * 10.0**e for e in range(-1, 5) for m in (1, 2, 5)) + (100_000.0,)


def _quantile(sorted_ms: Sequence[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))]


def latency_summary(values_ms: Sequence[float]) -> dict[str, Any]:
    """Count, percentiles and a 1-2-5 histogram of latencies (for JSON and for :func:`histogram`)."""
    xs = sorted(values_ms)
    if not xs:
        return {"count": 0}
    counts = [0] * (len(LATENCY_EDGES_MS) + 1)
    for x in xs:
        counts[bisect.bisect_left(LATENCY_EDGES_MS, x)] += 1
    buckets = [
        {"le_ms": LATENCY_EDGES_MS[i] if i < len(LATENCY_EDGES_MS) else None, "count": c} for i, c in enumerate(counts)
    ]
    while buckets and buckets[-1]["count"] == 0:
        buckets.pop()
    while buckets and buckets[0]["count"] == 0:
        buckets.pop(0)
    return {
        "count": len(xs),
        "p50_ms": round(_quantile(xs, 0.50), 3),
        "p90_ms": round(_quantile(xs, 0.90), 3),
        "p99_ms": round(_quantile(xs, 0.99), 3),
        "max_ms": round(xs[-1], 3),
        "histogram": buckets,
    }


def _edge(ms_value: float | None) -> str:
    if ms_value is None:
        return "more"
    return duration(int(ms_value * 1_000_000)).replace(".0 ", " ")


def histogram(title: str, summary: dict[str, Any], style: Style, g: Glyphs, *, cells: int = 30) -> list[str]:
    """A latency distribution as bars, one per bucket, with its percentiles."""
    if not summary.get("count"):
        return [f"{title}: none in the log"]
    lines = [style(f"{title} ({summary['count']:,})", "bold")]
    ms_ns = 1_000_000
    lines.append(
        "  " + "   ".join(f"{p} {duration(int(summary[f'{p}_ms'] * ms_ns))}" for p in ("p50", "p90", "p99", "max"))
    )
    top = max(b["count"] for b in summary["histogram"])
    labels = [f"<= {_edge(b['le_ms'])}" if b["le_ms"] is not None else f"> {_edge(LATENCY_EDGES_MS[-1])}"
              for b in summary["histogram"]]  # fmt: skip
    label_w = max(len(x) for x in labels)
    for label, b in zip(labels, summary["histogram"], strict=True):
        picture = bar(b["count"] / top, cells, g).rstrip(g.empty) if b["count"] else ""
        lines.append(f"  {label:>{label_w}}  {style(f'{picture:<{cells}}', 'ok')} {b['count']:,}")
    return lines


def age_bar(age_ns: int, window_ns: int, g: Glyphs, cells: int = 10) -> tuple[str, bool]:
    """An operation's age against the settle window: the bar, and whether the window has passed."""
    if window_ns <= 0:
        return g.full * cells, True
    return bar(age_ns / window_ns, cells, g), age_ns >= window_ns


def when(ts_ns: int, now_ns: int | None = None) -> str:
    """``2026-12-01 03:12:44 (3 min ago)``."""
    sec = ts_ns // 1_000_000_000
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec)) + f" ({ago(ts_ns, now_ns)})"


def glyphs_for(unicode: bool) -> Glyphs:
    return Glyphs() if unicode else Glyphs.ascii()
