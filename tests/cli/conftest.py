"""Fixtures for the ``journal`` command's tests: a real pseudo-terminal to run it on.

``tty(*args, cols=80)`` runs ``python -m journal ARGS`` on a
:class:`tests.helpers.tty.TtySession`: a pty is its controlling terminal, of
the size the test sets, so the command finds a terminal because there is one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.tty import TtySession

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tty() -> Iterator[Callable[..., TtySession]]:
    """``tty(*args, cols=80, rows=24, env=None, stderr=True)`` -> a :class:`TtySession` running ``journal ARGS``."""
    sessions: list[TtySession] = []

    def start(*args: Any, cols: int = 80, rows: int = 24, env: Mapping[str, str] | None = None,
              stderr: bool = True, cwd: Path = ROOT) -> TtySession:  # fmt: skip
        argv = [sys.executable, "-m", "journal", *map(str, args)]
        session = TtySession(argv, cols=cols, rows=rows, env=env, stderr=stderr, cwd=cwd)
        sessions.append(session)
        return session

    yield start
    for s in sessions:
        s.kill()
