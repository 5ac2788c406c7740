"""A child process for crash tests: journals operations until a crash point kills it.

Usage: python -m tests.helpers.crash_child PATH N_OPS MODE
MODE is one of: seq (begin + commit(wait=True)), batch (begin_many of 4 +
commits), events (begin + record + commit), buffered (commit without wait,
flush every 3 ops). Prints one line per acknowledged step, flushed at once:
``I op cid`` after an intent is durable, ``C op`` after a commit is durable,
``E seq`` after an event. The crash point is armed through
TRADEJOURNAL_CRASH_AT by the parent.
"""

from __future__ import annotations

import sys

from journal import Journal


def main() -> None:
    path, n_ops, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out = sys.stdout
    with Journal(path) as journal:
        i = 0
        while i < n_ops:
            if mode == "batch":
                ops = journal.begin_many([("place_order", {"i": i + k, "symbol": "BTC/USDT"}) for k in range(4)])
                for op in ops:
                    print(f"I {op.op_id} {op.client_id}", file=out, flush=True)
                for op in ops:
                    op.commit({"id": str(op.op_id)}, wait=True)
                    print(f"C {op.op_id}", file=out, flush=True)
                i += 4
                continue
            op = journal.begin("place_order", {"i": i, "symbol": "BTC/USDT", "amount": "0.01"})
            print(f"I {op.op_id} {op.client_id}", file=out, flush=True)
            if mode == "events":
                seq = journal.record("fill", {"order": op.client_id, "amount": "0.005"}, op=op.op_id)
                print(f"E {seq}", file=out, flush=True)
            if mode == "buffered":
                op.commit({"id": str(op.op_id)})
                if i % 3 == 2:
                    journal.flush()
                    print(f"F {op.op_id}", file=out, flush=True)
            else:
                op.commit({"id": str(op.op_id)}, wait=True)
                print(f"C {op.op_id}", file=out, flush=True)
            i += 1
    print("DONE", file=out, flush=True)


if __name__ == "__main__":
    main()
