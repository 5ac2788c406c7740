"""A bot for power-cut tests: opens a journal and journals operations, saying what is acknowledged.

Usage: python -m tests.helpers.powercut_child PATH N_OPS MODE
MODE ``seq``: begin + commit(wait=True) per operation; ``batch``: begin_many of
4, then their commits. Prints, flushed at once: ``OPEN`` when Journal() has
returned, ``I op`` when an intent is durable, ``C op`` when a commit is
durable, ``DONE`` at the end. The parent takes crash images while it runs or
after killing it.
"""

from __future__ import annotations

import sys

from journal import Journal


def main() -> None:
    path, n_ops, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with Journal(path) as journal:
        print("OPEN", flush=True)
        i = 0
        while i < n_ops:
            size = 4 if mode == "batch" else 1
            ops = journal.begin_many([("place_order", {"i": i + k, "symbol": "BTC/USDT"}) for k in range(size)])
            for op in ops:
                print(f"I {op.op_id}", flush=True)
            for op in ops:
                op.commit({"id": str(op.op_id)}, wait=True)
                print(f"C {op.op_id}", flush=True)
            i += size
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
