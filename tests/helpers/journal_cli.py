"""Run the ``journal`` command in this process, through its real entry point :func:`journal.cli.app.main`.

For tests that check what the command prints to a pipe (JSON lines, exit
codes, stderr): the same code path as the console script, without the cost of
a new interpreter per call. Terminal behaviour is tested on a real pty
(:mod:`tests.helpers.tty`), never here: stdout is not a terminal in-process.
"""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

from journal.cli.app import main

__all__ = ["journal_cmd"]


def journal_cmd(*args: Any) -> subprocess.CompletedProcess[str]:
    """``journal ARGS`` -> its exit code, stdout and stderr, as :func:`subprocess.run` would give them."""
    argv = [str(a) for a in args]
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, stderr
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage errors, --help, --version
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        stdout.flush()
        stderr.flush()
        sys.stdout, sys.stderr = saved
    return subprocess.CompletedProcess(["journal", *argv], code, out.getvalue().decode(), err.getvalue().decode())
