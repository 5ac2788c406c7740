"""Shared fixtures and the loopback-only guard.

No test may reach any address but loopback: the guard below wraps
``socket.socket.connect`` for the whole session and fails the test that tries.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

pytest_plugins = ["recovery.testing"]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family == socket.AF_UNIX:
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise AssertionError(f"test tried to connect to non-numeric host {host!r}; only 127.0.0.1 is allowed") from None
    if not ip.is_loopback:
        raise AssertionError(f"test tried to connect to {host!r}; only loopback addresses are allowed")


def _guarded_connect(sock: socket.socket, address: Any) -> None:
    _check_address(sock, address)
    return _real_connect(sock, address)


def _guarded_connect_ex(sock: socket.socket, address: Any) -> int:
    _check_address(sock, address)
    return _real_connect_ex(sock, address)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Any:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
