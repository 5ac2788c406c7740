"""The ``journal`` command for people: dump, follow, show, verify, resolve, state, diff, ...

:mod:`journal.cli.app` builds the parser and runs a command; each command family
lives in a module of its own and calls only the public library.
"""

from __future__ import annotations

from .app import main

__all__ = ["main"]
