"""Shared fixtures and the loopback-only guard.

No test may reach any address but loopback: the guard below wraps
``socket.socket.connect`` (and ``socket.getaddrinfo``: a DNS query already
leaves the machine) for the whole session and fails the test that tries. With
the testnet opt-in (``TRADEJOURNAL_TESTNET_KEY`` and
``TRADEJOURNAL_TESTNET_SECRET`` set) it also lets the Binance spot testnet's
hosts through, and nothing else (tests/helpers/netguard.py decides).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.helpers.netguard import NetGuard

pytest_plugins = ["recovery.testing"]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
_guard = NetGuard()


def _check_address(sock: socket.socket, address: Any) -> None:
    _guard.check_connect(sock.family, address)


def _guarded_connect(sock: socket.socket, address: Any) -> None:
    _check_address(sock, address)
    return _real_connect(sock, address)


def _guarded_connect_ex(sock: socket.socket, address: Any) -> int:
    _check_address(sock, address)
    return _real_connect_ex(sock, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    _guard.check_resolve(host)
    infos = _real_getaddrinfo(host, *args, **kwargs)
    _guard.learned(host, infos)
    return infos


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Any:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _real_getaddrinfo
