"""Counters and latency percentiles of a journal's writes."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

__all__ = ["LatencyWindow", "WriteStats"]


class LatencyWindow:
    """The last ``size`` latency samples in nanoseconds, with percentiles."""

    def __init__(self, size: int = 8192) -> None:
        self._samples: deque[int] = deque(maxlen=size)
        self.count = 0
        self.total_ns = 0

    def add(self, ns: int) -> None:
        self._samples.append(ns)
        self.count += 1
        self.total_ns += ns

    def summary(self) -> dict[str, Any]:
        """``count`` (all time) and p50/p90/p99/max in microseconds (recent window)."""
        samples = sorted(self._samples)
        out: dict[str, Any] = {"count": self.count}
        if not samples:
            return out | {"p50_us": None, "p90_us": None, "p99_us": None, "max_us": None}
        last = len(samples) - 1
        for name, q in (("p50_us", 0.50), ("p90_us", 0.90), ("p99_us", 0.99)):
            out[name] = round(samples[min(last, int(q * len(samples)))] / 1000, 1)
        out["max_us"] = round(samples[-1] / 1000, 1)
        return out


class WriteStats:
    """What a journal wrote since it was opened. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {
            "intent": 0,
            "commit": 0,
            "abort": 0,
            "event": 0,
            "transactions": 0,
            "bytes": 0,
            "map_grows": 0,
        }
        self.append = LatencyWindow()
        self.sync = LatencyWindow()
        self.max_group = 0

    def wrote(self, kinds: dict[str, int], nbytes: int, txn_ns: int) -> None:
        with self._lock:
            for kind, n in kinds.items():
                self.counters[kind] += n
            self.counters["transactions"] += 1
            self.counters["bytes"] += nbytes
            self.sync.add(txn_ns)
            self.max_group = max(self.max_group, sum(kinds.values()))

    def waited(self, ns: int) -> None:
        with self._lock:
            self.append.add(ns)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            records = sum(self.counters[k] for k in ("intent", "commit", "abort", "event"))
            txns = self.counters["transactions"]
            return {
                "counters": dict(self.counters),
                "append_latency": self.append.summary(),
                "sync_latency": self.sync.summary(),
                "records_per_transaction": {
                    "mean": round(records / txns, 2) if txns else None,
                    "max": self.max_group,
                },
            }
