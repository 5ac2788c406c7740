"""The decisions of the test session's network guard (installed by tests/conftest.py).

No test may reach any address but loopback. With the testnet opt-in
(:func:`tests.helpers.testnet.credentials`: both environment variables set),
the Binance spot testnet's hosts may also be resolved, and the addresses they
resolve to connected to -- nothing else. Without it, resolving any name but
``localhost`` fails too (a DNS query already leaves the machine).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from tests.helpers.testnet import KEY_VAR, SECRET_VAR, credentials, sandbox_hosts

__all__ = ["NetGuard"]


class NetGuard:
    """What a test may resolve and connect to; ``env`` says whether the testnet opt-in is given."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        #: The testnet opt-in was given (both credentials set).
        self.testnet = credentials(env) is not None
        #: Host names that may be resolved besides localhost.
        self.hosts: frozenset[str] = sandbox_hosts() if self.testnet else frozenset()
        #: Addresses those hosts resolved to (the only non-loopback ones a socket may connect to).
        self.addresses: set[str] = set()
        self._lock = threading.Lock()

    def _refusal(self, what: str) -> str:
        if self.testnet:
            return (
                f"test tried to {what}; only loopback and the Binance spot testnet ({sorted(self.hosts)}) are allowed"
            )
        return (f"test tried to {what}; only loopback addresses are allowed (the Binance spot testnet only when "
                f"{KEY_VAR} and {SECRET_VAR} are set)")  # fmt: skip

    def check_resolve(self, host: Any) -> None:
        """Raise AssertionError unless resolving ``host`` is allowed."""
        if host is None or host in ("", b""):
            return  # a wildcard bind
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name.split("%")[0])
            return  # numeric: no query leaves the machine; connect() judges the address
        except ValueError:
            pass
        if name.lower().rstrip(".") in ("localhost", *self.hosts):
            return
        raise AssertionError(self._refusal(f"resolve {name!r}"))

    def learned(self, host: Any, infos: Iterable[Any]) -> None:
        """Remember what a testnet host resolved to."""
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.lower().rstrip(".") not in self.hosts:
            return
        with self._lock:
            for info in infos:
                self.addresses.add(str(info[4][0]))

    def check_connect(self, family: int, address: Any) -> None:
        """Raise AssertionError unless a socket of ``family`` may connect to ``address``."""
        if family == getattr(socket, "AF_UNIX", None):
            return
        host = address[0] if isinstance(address, tuple) else address
        try:
            ip = ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            raise AssertionError(self._refusal(f"connect to non-numeric host {host!r}")) from None
        if ip.is_loopback:
            return
        with self._lock:
            if str(ip) in self.addresses:
                return
        raise AssertionError(self._refusal(f"connect to {host!r}"))
