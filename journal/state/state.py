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

**The working set and the archive.** Settled orders and old trades leave
memory for the journal's archive when a snapshot is written
(:mod:`journal.state.archive`). The sections then hold the working set, and a
state knows the :class:`~journal.state.archive.Archive` it was loaded with:
reading one key -- ``state.get("orders", cid)``, ``state["orders"][cid]``,
``cid in state["orders"]`` -- finds an archived value too, while iterating a
section (``state["orders"].values()``, ``len()``) covers the working set only.
Changing an archived key brings it back into the working set.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from ..errors import CodecError
from ..log.codec import encode
from .archive import ARCHIVED_SECTIONS, Archive

__all__ = ["BUILTIN_SECTIONS", "SectionView", "State", "check_value"]

BUILTIN_SECTIONS = ("orders", "positions", "balances", "strategies", "trades", "inflight")
_ARCHIVED = frozenset(ARCHIVED_SECTIONS)
_EMPTY: dict[str, Any] = {}


class SectionView(Mapping[str, Any]):
    """A read-only view of one section: lookups by key read through to the archive.

    ``view[key]``, ``view.get(key)`` and ``key in view`` find archived values
    too; ``len``, iteration, ``keys()``, ``values()`` and ``items()`` cover the
    working set (what is in memory). Comparing with ``==`` compares working sets.
    """

    __slots__ = ("_state", "_name", "_items")

    def __init__(self, state: State, name: str) -> None:
        self._state = state
        self._name = name
        self._items = state.raw_sections().get(name, _EMPTY)

    def __getitem__(self, key: str) -> Any:
        value = self._items.get(key)
        if value is None:
            value = self._state.archived(self._name, key)
            if value is None:
                raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._items.get(key)
        if value is None:
            value = self._state.archived(self._name, key)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        if key in self._items:
            return True
        return isinstance(key, str) and self._state.archived(self._name, key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> KeysView[str]:
        return self._items.keys()

    def values(self) -> ValuesView[Any]:
        return self._items.values()

    def items(self) -> ItemsView[str, Any]:
        return self._items.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SectionView):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SectionView({self._name!r}, {len(self._items)} in memory)"


class State:
    """Sections of plain data at sequence number ``seq`` (the last record applied).

    Read with ``state["orders"]`` (a read-only :class:`SectionView`),
    ``state.get(section, key)``; write only from reducers. Not thread-safe by
    itself: the journal applies records under its queue lock, and
    :meth:`copy` gives a consistent view to another thread.
    """

    __slots__ = ("_sections", "_dirty", "_shadowed", "seq", "check_values", "archive")

    def __init__(
        self,
        sections: Mapping[str, Mapping[str, Any]] | None = None,
        seq: int = 0,
        *,
        archive: Archive | None = None,
        adopt: bool = False,
    ) -> None:
        """``adopt=True`` takes ``sections`` (dicts the caller gives up) as they are, without copying."""
        self._sections: dict[str, dict[str, Any]] = {name: {} for name in BUILTIN_SECTIONS}
        if sections:
            for name, items in sections.items():
                self._sections[name] = items if adopt and type(items) is dict else dict(items)
        self._dirty: dict[str, dict[str, bool]] = {}
        #: Per archived section, keys changed (or deleted) while not in the working set:
        #: their archived version no longer holds (see journal.state.archive).
        self._shadowed: dict[str, dict[str, None]] = {}
        self.seq = seq
        #: When True (custom reducers are running), every value put is checked
        #: with the codec at the point of change. Built-in reducers build values
        #: from checked record data only.
        self.check_values = False
        #: The archive this state reads through to (None: everything is in memory).
        self.archive = archive

    # -- reading -------------------------------------------------------------

    def __getitem__(self, section: str) -> SectionView:
        return SectionView(self, section)

    def __contains__(self, section: object) -> bool:
        return section in self._sections

    def __iter__(self) -> Iterator[str]:
        return iter(self._sections)

    def sections(self) -> list[str]:
        return list(self._sections)

    def get(self, section: str, key: str, default: Any = None) -> Any:
        """``section[key]``: from the working set, else from the archive; ``default`` if neither has it."""
        value = self._sections.get(section, _EMPTY).get(key)
        if value is None:
            value = self.archived(section, key)
        return default if value is None else value

    def archived(self, section: str, key: str) -> Any:
        """The archived value of ``section[key]`` (None when not archived, or changed since)."""
        archive = self.archive
        if archive is None or not archive.info.counts.get(section) or key in self._shadowed.get(section, _EMPTY):
            return None  # (counts: a section with nothing archived costs no read)
        return archive.get(section, key)

    def archived_items(self, section: str) -> Iterator[tuple[str, Any]]:
        """Every ``(key, value)`` of ``section`` in the archive and not in the working set (reads the table)."""
        if self.archive is None or section not in _ARCHIVED:
            return
        hot = self._sections.get(section, _EMPTY)
        shadowed = self._shadowed.get(section, _EMPTY)
        for key, value in self.archive.items(section):
            if key not in hot and key not in shadowed:
                yield key, value

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """A shallow copy of every section's working set (values are shared and must not be mutated)."""
        return {name: dict(items) for name, items in self._sections.items()}

    def copy(self) -> State:
        """A consistent copy: later changes to this state do not show in it."""
        other = State(self._sections, self.seq, archive=self.archive)
        other._shadowed = {name: dict(keys) for name, keys in self._shadowed.items()}
        return other

    def __eq__(self, other: object) -> bool:
        """Equal working sets (what is in memory)."""
        if not isinstance(other, State):
            return NotImplemented
        mine = {k: v for k, v in self._sections.items() if v}
        theirs = {k: v for k, v in other._sections.items() if v}
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self._sections.items() if v)
        archived = (
            f" archive={self.archive.info.counts}" if self.archive is not None and self.archive.info.counts else ""
        )
        return f"<State seq={self.seq} {sizes}{archived}>"

    # -- writing (reducers) --------------------------------------------------

    def put(self, section: str, key: str, value: Any, *, new: bool = False) -> None:
        """Set ``section[key] = value`` (replacing any previous value).

        ``new=True`` says the caller knows ``key`` is in neither the working set
        nor the archive (it just looked), which spares a note that the archived
        version is shadowed.
        """
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
            if not new and section in _ARCHIVED and self.archive is not None:
                self._shadowed.setdefault(section, {})[key] = None
        dirty[key] = True
        items[key] = value

    def patch(self, section: str, key: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Replace ``section[key]`` by a copy of it with ``changes`` applied; returns it.

        An archived value is patched too (and comes back into the working set).
        """
        old = self.get(section, key)
        new = dict(old) if isinstance(old, dict) else {}
        new.update(changes)
        self.put(section, key, new)
        return new

    def delete(self, section: str, key: str) -> None:
        """Remove ``section[key]`` if present (from the working set, and from view in the archive)."""
        items = self._sections.get(section)
        if items is not None and key in items:
            del items[key]
            self._dirty.setdefault(section, {})[key] = False
        if section in _ARCHIVED and self.archive is not None:
            self._shadowed.setdefault(section, {})[key] = None

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

    def take_shadowed(self) -> dict[str, dict[str, None]]:
        """Return and reset the archived keys changed since the last call (for the next snapshot)."""
        shadowed, self._shadowed = self._shadowed, {}
        return shadowed

    def restore_shadowed(self, shadowed: dict[str, dict[str, None]]) -> None:
        """Put back keys taken by :meth:`take_shadowed` (after a failed save)."""
        for section, keys in shadowed.items():
            self._shadowed.setdefault(section, {}).update(keys)

    def shadow(self, section: str, key: str) -> None:
        """Note that the archived version of ``section[key]`` no longer holds."""
        self._shadowed.setdefault(section, {})[key] = None

    def shadowed(self, section: str) -> Mapping[str, None]:
        """The keys of ``section`` whose archived version no longer holds."""
        return self._shadowed.get(section, _EMPTY)

    def forget(self, section: str, key: str, value: Any) -> bool:
        """Drop ``section[key]`` from memory if it still is ``value`` (it was archived); no change is noted."""
        items = self._sections.get(section)
        if items is not None and items.get(key) is value:
            del items[key]
            return True
        return False

    def raw_sections(self) -> dict[str, dict[str, Any]]:
        """The live section dicts of the working set (for the snapshot writer; do not mutate)."""
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
