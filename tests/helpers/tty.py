"""A real pseudo-terminal to run a command on, as a person at a terminal would (tests of terminal behaviour).

``TtySession(argv, cols=80)`` starts ``argv`` (an absolute program path first)
with a pty as its controlling terminal and as stdin/stdout (stderr too, unless
``stderr=False``: then stderr is a pipe, read apart). Nothing fakes
``isatty``: the command finds a terminal because there is one, of the size set
with ``TIOCSWINSZ`` before it started. ``expect(text)`` / ``send(bytes)``
answer like a person at the keyboard; ``finish()`` returns the exit code and
everything the terminal showed (control sequences removed).
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["TtySession"]

# login_tty makes the pty the controlling terminal (setsid + TIOCSCTTY + fds 0-2), as a terminal emulator does;
# an optional pipe then replaces stderr.
_LAUNCH = (
    "import os, sys\n"
    "os.login_tty(os.open(sys.argv[1], os.O_RDWR))\n"
    "err = int(sys.argv[2])\n"
    "if err >= 0:\n"
    "    os.dup2(err, 2)\n"
    "    os.close(err)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")


class TtySession:
    """One command on a pseudo-terminal."""

    def __init__(
        self,
        argv: list[str],
        *,
        cols: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
        stderr: bool = True,
        cwd: Path | str = ".",
    ) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "PAGER")}
        full_env.update({"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
        full_env.update(env or {})
        err_r = err_w = -1
        if not stderr:
            err_r, err_w = os.pipe()
        name = os.ttyname(slave)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, name, str(err_w), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=[err_w] if err_w >= 0 else [],
            env=full_env,
            cwd=cwd,
        )
        os.close(slave)
        if err_w >= 0:
            os.close(err_w)
        self.err_fd = err_r
        self.raw = b""
        self.err = b""

    def _pump(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False once the terminal is closed."""
        fds = [self.master] + ([self.err_fd] if self.err_fd >= 0 else [])
        ready, _, _ = select.select(fds, [], [], timeout)
        alive = True
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every process holding the pty's other side has gone
                chunk = b""
            if fd == self.master:
                if not chunk:
                    # EIO: no process holds the pty's other side -- the command has ended, or its
                    # launcher has not opened the pty yet
                    if self.proc.poll() is None:
                        time.sleep(0.02)
                    else:
                        alive = False
                self.raw += chunk
            else:
                if not chunk:
                    os.close(self.err_fd)
                    self.err_fd = -1
                self.err += chunk
        return alive

    @property
    def text(self) -> str:
        """What the terminal showed, without control sequences and carriage returns."""
        return _ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def expect(self, needle: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            left = deadline - time.monotonic()
            if left <= 0 or (not self._pump(min(left, 0.2)) and needle not in self.text):
                raise AssertionError(f"{needle!r} never appeared on the terminal; it shows:\n{self.text[-3000:]}")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the command to end; its exit code and the terminal's text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pump(0.2) and self.proc.poll() is not None:
                break
        code = self.proc.wait(max(deadline - time.monotonic(), 1))
        while self.err_fd >= 0 and self._pump(0.5):
            pass
        os.close(self.master)
        return code, self.text

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
