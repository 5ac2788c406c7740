"""A child for state crash tests: builds state, prints its fingerprint, then saves or compacts.

Usage: python -m tests.helpers.state_child PATH ACTION
ACTION: ``save`` (a full snapshot) or ``compact``. The crash point is armed by
the parent through TRADEJOURNAL_CRASH_AT; the child prints ``STATE <hash>``
before the risky step, where hash is the xxh3-128 of the full snapshot encoding.
"""

from __future__ import annotations

import sys
from decimal import Decimal

from journal import Journal
from journal.state.store import StateStore
from tests.helpers.fingerprint import fingerprint


def main() -> None:
    path, action = sys.argv[1], sys.argv[2]
    with Journal(path) as j:
        s = StateStore(j, chunk_items=8, compact_batch=5)
        for i in range(60):
            s.set("custom", f"k{i % 40}", {"i": i, "price": Decimal(i) / 7})
            if i % 20 == 19:
                s.save()
        print("STATE", fingerprint(s.view()), flush=True)
        if action == "save":
            s.save(full=True)
        else:
            s.compact(retention_s=0)
        print("DONE", flush=True)


if __name__ == "__main__":
    main()
