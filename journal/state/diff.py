"""What differs between two states: added, removed and changed keys per section.

Two states may keep different keys in memory: an order archived by a
snapshot between them sits in one's working set and in the other's archive.
So a key only one side holds in memory is looked up in the other side's
archive, and a key both sides keep archived is compared when a snapshot
between them archived it again (:meth:`journal.state.archive.Archive.changed`):
the diff is of the states as a whole, wherever each key lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .state import State

__all__ = ["SectionDiff", "StateDiff", "diff_states"]


@dataclass
class SectionDiff:
    """Keys added, removed and changed in one section (changed: key -> (old, new))."""

    added: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass
class StateDiff:
    """Per-section differences from ``a`` to ``b``; falsy when the states are equal."""

    sections: dict[str, SectionDiff] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.sections.values())

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            name: {"added": len(d.added), "removed": len(d.removed), "changed": len(d.changed)}
            for name, d in self.sections.items()
            if d
        }

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON output): per section, added/removed values and changed fields."""
        out: dict[str, Any] = {}
        for name, d in self.sections.items():
            if not d:
                continue
            out[name] = {
                "added": d.added,
                "removed": d.removed,
                "changed": {k: _field_changes(old, new) for k, (old, new) in d.changed.items()},
            }
        return out


def _field_changes(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(old) + [k for k in new if k not in old]
        return {k: {"old": old.get(k), "new": new.get(k)} for k in keys if old.get(k) != new.get(k)}
    return {"old": old, "new": new}


def diff_states(a: State | Mapping[str, Mapping[str, Any]], b: State | Mapping[str, Mapping[str, Any]]) -> StateDiff:
    """List what differs between two states (snapshots, or a snapshot and the live state)."""
    sa = a.as_dict() if isinstance(a, State) else {k: dict(v) for k, v in a.items()}
    sb = b.as_dict() if isinstance(b, State) else {k: dict(v) for k, v in b.items()}
    out = StateDiff()
    for name in list(sa) + [n for n in sb if n not in sa]:
        x, y = sa.get(name, {}), sb.get(name, {})
        d = SectionDiff()
        for key, value in y.items():
            old = x[key] if key in x else _archived(a, name, key)
            if old is None:
                d.added[key] = value
            elif old != value:
                d.changed[key] = (old, value)
        for key, value in x.items():
            if key not in y:
                new = _archived(b, name, key)
                if new is None:
                    d.removed[key] = value
                elif new != value:
                    d.changed[key] = (value, new)
        out.sections[name] = d
    if isinstance(a, State) and isinstance(b, State) and a.archive is not None and b.archive is not None:
        lo, hi = sorted((a.archive.bound, b.archive.bound))
        for name, key in a.archive.changed(lo, hi) if lo < hi else ():
            if key in sa.get(name, {}) or key in sb.get(name, {}):
                continue  # compared above
            old, new = a.archived(name, key), b.archived(name, key)
            d = out.sections.setdefault(name, SectionDiff())
            if old is None and new is not None:
                d.added[key] = new
            elif new is None and old is not None:
                d.removed[key] = old
            elif old != new:
                d.changed[key] = (old, new)
    return out


def _archived(state: State | Mapping[str, Mapping[str, Any]], section: str, key: str) -> Any:
    return state.archived(section, key) if isinstance(state, State) else None
