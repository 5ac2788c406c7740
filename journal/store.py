"""Moved to :mod:`journal.state.store`; this name stays for code written against it."""

from __future__ import annotations

from .state.store import DEFAULT_STORE_SETTINGS, StateStore

__all__ = ["DEFAULT_STORE_SETTINGS", "StateStore"]
