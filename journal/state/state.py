"""The bot's state: sections of plain data, changed only by reducers.

A :class:`State` holds named *sections*, each a map from a str key to a plain
value (what :mod:`journal.codec` stores): ``orders`` (by client id),
``positions`` (by symbol), ``balances`` (by asset), ``strategies`` (by name),
``trades`` (applied fills, by ``symbol:trade id``, so a fill is applied once),
``inflight`` (operations begun and not yet settled, by op id) and any custom
section a bot adds.

Rules that make snapshots cheap and replay exact:

- Values are treated as immutable: a reducer changes a key with
  :meth:`State.put`, :meth:`State.patch` or :meth:`State.delete`, which
  replace the value, never mutate it in place. So a shallow copy of the
  sections is a consistent view (what a snapshot encodes while the bot goes
  on writing), and the state knows exactly which keys changed since the last
  snapshot (``dirty``), which makes incremental snapshots cost what changed.
- Reducers are deterministic functions of (state, record): replaying the same
  records gives the same state, and the same snapshot bytes (snapshots encode
  keys sorted).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from ..errors import CodecError
from ..log.codec import encode

__all__ = ["BUILTIN_SECTIONS", "State", "check_value"]

BUILTIN_SECTIONS = ("orders", "positions", "balances", "strategies", "trades", "inflight")


class State:
    """Sections of plain data at sequence number ``seq`` (the last record applied).

    Read with ``state["orders"]`` (a read-only view), ``state.get(section,
    key)``; write only from reducers. Not thread-safe by itself: the journal
    applies records under its queue lock, and :meth:`copy` gives a consistent
    view to another thread.
    """

    __slots__ = ("_sections", "_dirty", "seq", "check_values")

    def __init__(self, sections: Mapping[str, Mapping[str, Any]] | None = None, seq: int = 0) -> None:
        self._sections: dict[str, dict[str, Any]] = {name: {} for name in BUILTIN_SECTIONS}
        if sections:
            for name, items in sections.items():
                self._sections[name] = dict(items)
        self._dirty: dict[str, dict[str, bool]] = {}
        self.seq = seq
        #: When True (custom reducers are running), every value put is checked
        #: with the codec at the point of change. Built-in reducers build values
        #: from checked record data only.
        self.check_values = False

    # -- reading -------------------------------------------------------------

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return MappingProxyType(self._sections.get(section, {}))

    def __contains__(self, section: object) -> bool:
        return section in self._sections

    def __iter__(self) -> Iterator[str]:
        return iter(self._sections)

    def sections(self) -> list[str]:
        return list(self._sections)

    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self._sections.get(section, {}).get(key, default)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """A shallow copy of every section (values are shared and must not be mutated)."""
        return {name: dict(items) for name, items in self._sections.items()}

    def copy(self) -> State:
        """A consistent copy: later changes to this state do not show in it."""
        other = State(self._sections, self.seq)
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        mine = {k: v for k, v in self._sections.items() if v}
        theirs = {k: v for k, v in other._sections.items() if v}
        return mine == theirs

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self._sections.items() if v)
        return f"<State seq={self.seq} {sizes}>"

    # -- writing (reducers) --------------------------------------------------

    def put(self, section: str, key: str, value: Any) -> None:
        """Set ``section[key] = value`` (replacing any previous value)."""
        if not isinstance(key, str):
            raise TypeError(f"state keys are str; got {type(key).__name__} {key!r} in section {section!r}")
        if self.check_values:
            check_value(section, key, value)
        items = self._sections.get(section)
        if items is None:
            items = self._sections[section] = {}
        dirty = self._dirty.setdefault(section, {})
        if key not in items:
            dirty.pop(key, None)
        dirty[key] = True
        items[key] = value

    def patch(self, section: str, key: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Replace ``section[key]`` by a copy of it with ``changes`` applied; returns it."""
        old = self._sections.get(section, {}).get(key)
        new = dict(old) if isinstance(old, dict) else {}
        new.update(changes)
        self.put(section, key, new)
        return new

    def delete(self, section: str, key: str) -> None:
        """Remove ``section[key]`` if present."""
        items = self._sections.get(section)
        if items is not None and key in items:
            del items[key]
            self._dirty.setdefault(section, {})[key] = False

    # -- snapshot support ----------------------------------------------------

    def take_dirty(self) -> dict[str, dict[str, bool]]:
        """Return and reset the keys changed since the last call, per section."""
        dirty, self._dirty = self._dirty, {}
        return dirty

    def restore_dirty(self, dirty: dict[str, dict[str, bool]]) -> None:
        """Put back keys taken by :meth:`take_dirty` (after a failed save)."""
        for section, keys in dirty.items():
            mine = self._dirty.setdefault(section, {})
            for key, flag in keys.items():
                mine.setdefault(key, flag)

    def raw_sections(self) -> dict[str, dict[str, Any]]:
        """The live section dicts (for the snapshot writer; do not mutate)."""
        return self._sections


def check_value(section: str, key: str, value: Any) -> None:
    """Raise :class:`CodecError` naming ``section[key]`` if ``value`` cannot be stored."""
    try:
        encode(value)
    except CodecError as exc:
        raise CodecError(
            f"state value {section}[{key!r}] cannot be stored: {exc}; the state and the journal are unchanged",
            f"{section}[{key!r}]" + exc.path.removeprefix("$"),
        ) from None
