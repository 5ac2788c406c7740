"""Errors raised by the exchange side: reconciliation, order helpers, simulator.

One base class, :class:`RecoveryError`; each message says what happened, to
which operation (op id, client id, symbol) and what to do.
"""

from __future__ import annotations

__all__ = ["RecoveryError"]


class RecoveryError(Exception):
    """Base class of every error the ``recovery`` package raises."""
