"""What the ``journal`` command knows about the terminal: width, colour, the pager, a progress line.

Everything here is decided once, in :func:`journal.cli.app.main`, from the
real file descriptors -- never from a flag a test could set:

- **Width.** On a terminal, tables fit its width (``shutil.get_terminal_size``,
  so ``COLUMNS`` overrides); written to a file or a pipe nothing is cut.
- **Colour.** ``--color auto`` (the default) colours only when stdout is a
  terminal, ``TERM`` is not ``dumb`` and ``NO_COLOR`` is unset or empty
  (https://no-color.org); ``--color always`` / ``never`` decide explicitly.
- **Pager.** Like git: on a terminal, a command's output goes through
  ``$JOURNAL_PAGER``, else ``$PAGER``, else ``less`` (with ``LESS=FRX`` unless
  ``LESS`` is set: quit if one screen, keep colours, leave the screen as it
  is). ``--no-pager``, a pipe, ``dump --follow`` and the commands that ask
  for confirmation never page. An empty pager or ``cat`` means none.
- **Progress.** :class:`Progress` draws one self-erasing line on stderr, only
  when stderr is a terminal; a long command (``compact --shrink``, a fleet
  scan) calls ``update(done)`` as often as it likes: redraws are throttled.

Commands never test ``isatty`` themselves: they ask the
:class:`Terminal` the context carries, so the same rules hold everywhere.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

__all__ = ["COLOR_CHOICES", "Progress", "Style", "Terminal", "pager_command"]

COLOR_CHOICES = ("auto", "always", "never")

# SGR codes by role; only these roles exist, so a command cannot invent a colour scheme of its own.
_SGR = {
    "bold": "1",
    "dim": "2",
    "ok": "32",
    "bad": "1;31",
    "warn": "33",
    "intent": "33",
    "commit": "32",
    "abort": "31",
    "event": "36",
    "manual": "35",
    "recovery": "34",
    "added": "32",
    "removed": "31",
    "changed": "33",
}


class Style:
    """Paints text by role (``ok``, ``bad``, ``warn``, ``dim``, a record kind, ...), or leaves it plain."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, role: str | None) -> str:
        if not self.enabled or not role or not text:
            return text
        code = _SGR.get(role)
        return f"\x1b[{code}m{text}\x1b[0m" if code else text


def pager_command(env: Mapping[str, str]) -> str | None:
    """The pager to run (a shell command line), or None for none."""
    for name in ("JOURNAL_PAGER", "PAGER"):
        if name in env:
            cmd = env[name].strip()
            return None if cmd in ("", "cat") else cmd
    return "less" if shutil.which("less") else None


class Terminal:
    """The facts about stdout and stderr a command prints by, and the pager it may run.

    ``stdout_fd`` / ``stderr_fd`` are the real descriptors (1 and 2 in the
    command); ``color`` is ``auto``, ``always`` or ``never``.
    """

    def __init__(
        self,
        *,
        color: str = "auto",
        env: Mapping[str, str] | None = None,
        stdout_fd: int = 1,
        stderr_fd: int = 2,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        #: stdout is a terminal (tables fit it, the pager may run).
        self.is_tty = _isatty(stdout_fd)
        #: stderr is a terminal (progress lines, coloured error prefixes).
        self.err_tty = _isatty(stderr_fd)
        #: stdin is a terminal too: a person can answer a question.
        self.interactive = self.is_tty and _isatty(0)
        #: Columns to fit; unlimited when stdout is not a terminal.
        self.width = max(shutil.get_terminal_size().columns, 20) if self.is_tty else 1 << 30
        #: Rows of the terminal (24 when unknown).
        self.height = shutil.get_terminal_size().lines if self.is_tty else 24
        no_color = bool(self.env.get("NO_COLOR")) or self.env.get("TERM") == "dumb"
        if color == "always":
            enabled = True
        elif color == "never":
            enabled = False
        else:
            enabled = self.is_tty and not no_color
        #: Paints stdout text (plain unless colour is on).
        self.style = Style(enabled)
        #: Paints stderr text: colour there follows stderr, not stdout.
        self.err_style = Style(color == "always" or (color == "auto" and self.err_tty and not no_color))
        encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
        #: Box-drawing and block characters are safe (a UTF-8 stdout); else ASCII stand-ins.
        self.unicode = encoding == "utf8"
        self._pager: subprocess.Popen[bytes] | None = None
        self._saved_stdout: int | None = None

    # -- the pager ---------------------------------------------------------------

    @property
    def paging(self) -> bool:
        return self._pager is not None

    def start_pager(self) -> bool:
        """Send everything written to fd 1 from now on through the pager; False if none runs."""
        if not self.is_tty or self._pager is not None:
            return False
        cmd = pager_command(self.env)
        if cmd is None:
            return False
        env = dict(self.env)
        env.setdefault("LESS", "FRX")  # as git: quit on one screen, raw colours, no screen clearing
        env.setdefault("LV", "-c")
        try:
            if shlex.split(cmd)[0] == "less" and not shutil.which("less"):
                return False
            proc = subprocess.Popen(cmd, shell=True, stdin=subprocess.PIPE, env=env)
        except (OSError, ValueError):
            return False
        assert proc.stdin is not None
        sys.stdout.flush()
        self._saved_stdout = os.dup(1)
        os.dup2(proc.stdin.fileno(), 1)
        proc.stdin.close()  # fd 1 is now the only write end: the pager sees EOF when we close it
        self._pager = proc
        return True

    def stop_pager(self) -> None:
        """End the output (the pager sees EOF) and wait until the person quits it. Idempotent."""
        proc = self._pager
        if proc is None:
            return
        self._pager = None
        try:
            sys.stdout.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
        saved = self._saved_stdout
        self._saved_stdout = None
        if saved is not None:
            os.dup2(saved, 1)  # closes the pipe's write end; stdout is the terminal again
            os.close(saved)
        while True:
            try:
                proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reaches the pager too; it decides when to quit
                continue

    # -- helpers for commands -------------------------------------------------------

    def glyph(self, unicode: str, ascii: str) -> str:
        return unicode if self.unicode else ascii

    def progress(self, label: str, total: int | None = None) -> Progress:
        """A progress line on stderr (silent unless stderr is a terminal)."""
        return Progress(label, total, stream=sys.stderr if self.err_tty else None)


class Progress:
    """One line on stderr, redrawn at most every ``interval_s``, erased by :meth:`close`.

    Nothing is drawn for the first ``delay_s`` (a quick command never
    flickers). ``stream=None`` (stderr is not a terminal) makes every call a
    no-op, so a command can report progress unconditionally. A context manager.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: IO[str] | None,
        interval_s: float = 0.1,
        delay_s: float = 0.5,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.interval_s = interval_s
        self.done = 0
        self._last = time.monotonic() + delay_s - interval_s
        self._drawn = False

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        if self.total:
            text = f"{self.label}: {done:,}/{self.total:,} ({100 * done / self.total:.0f}%)"
        else:
            text = f"{self.label}: {done:,}"
        self._write(f"\r{text}\x1b[K")
        self._drawn = True

    def close(self) -> None:
        if self.stream is not None and self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False

    def _write(self, text: str) -> None:
        assert self.stream is not None
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
