"""Open a (possibly damaged) journal and say what it holds: for storage-fault trials.

Usage: python -m tests.helpers.open_child PATH
Prints one line: ``STATE <fingerprint>`` (opened, fully verified, state loaded)
or ``REPORTED <error class>: <message>`` (damage reported). Any other exception
is a traceback and a non-zero exit: damage that was not reported cleanly.
"""

from __future__ import annotations

import sys

import lmdb

from journal import Journal, JournalError
from journal.state.store import StateStore
from tests.helpers.fingerprint import fingerprint


def main() -> None:
    path = sys.argv[1]
    try:
        with Journal(path, readonly=True, verify_on_open="full") as j:
            report = j.verify()
            if not report.ok:
                print(f"REPORTED verify: {report}", flush=True)
                return
            store = StateStore(j)
            problems = store.validate()
            if problems:
                print(f"REPORTED validate: {problems[0]}", flush=True)
                return
            print(f"STATE {fingerprint(store.view())}", flush=True)
    except (JournalError, lmdb.Error) as exc:
        print(f"REPORTED {type(exc).__name__}: {str(exc)[:200]}", flush=True)


if __name__ == "__main__":
    main()
