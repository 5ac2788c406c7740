"""What differs between two states: added, removed and changed keys per section."""

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
            if key not in x:
                d.added[key] = value
            elif x[key] != value:
                d.changed[key] = (x[key], value)
        for key, value in x.items():
            if key not in y:
                d.removed[key] = value
        out.sections[name] = d
    return out
