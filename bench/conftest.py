"""Benchmark plumbing: a ``measured`` registry and the ratio table.

Each benchmark records its median under a name (``record_median``); pairs
declared in ``RATIOS`` (ours, peer, target) are printed at the end of the run,
so every figure comes with its peer measured in the same run on the same
machine. Run with ``pytest bench/ --benchmark-only``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

MEDIANS: dict[str, float] = {}
# (label, ours, peer, how to read it)
RATIOS: list[tuple[str, str, str, str]] = []


def ratio(label: str, ours: str, peer: str, target: str) -> None:
    """Declare a ratio to print: median(ours) / median(peer), with its target."""
    RATIOS.append((label, ours, peer, target))


@pytest.fixture
def record_median(benchmark: Any) -> Callable[[str, float], None]:
    """Call after the benchmark: stores its median (divided by ``per`` items) under ``name``."""

    def record(name: str, per: float = 1.0) -> None:
        stats = benchmark.stats.stats if benchmark.stats is not None else None
        if stats is not None:
            MEDIANS[name] = stats.median / per

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MEDIANS:
        return
    tr = terminalreporter
    tr.section("tradejournal ratios (medians, same run)")
    for name, value in sorted(MEDIANS.items()):
        tr.write_line(f"{name:55s} {value * 1e6:12.1f} us")
    seen = set()
    for label, ours, peer, target in RATIOS:
        if (label, ours, peer) in seen or ours not in MEDIANS or peer not in MEDIANS:
            continue
        seen.add((label, ours, peer))
        tr.write_line(f"{label:55s} {MEDIANS[ours] / MEDIANS[peer]:8.3f}x   target {target}")
