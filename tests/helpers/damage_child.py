"""Open a damaged journal directory in a child process and say what happened.

Usage: python -m tests.helpers.damage_child PATH [writer|reader ...] (default: writer reader)
Prints one line per open, in order: ``<mode> OK <last seq>`` or
``<mode> ERROR <class>: <message>``. A SIGBUS or a traceback (an error that is
not a JournalError) shows as the exit status.
"""

from __future__ import annotations

import sys

from journal import Journal
from journal.errors import JournalError


def main() -> None:
    path, modes = sys.argv[1], sys.argv[2:] or ["writer", "reader"]
    for mode in modes:
        try:
            with Journal(path, readonly=mode == "reader") as journal:
                assert journal.verify().ok
                print(f"{mode} OK {journal.last_seq}", flush=True)
        except JournalError as exc:
            print(f"{mode} ERROR {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    main()
