"""A crash demo of the journal alone: intent, SIGKILL before the commit, reopen.

``python -m journal.demo`` journals a few operations into a temporary
directory from a child process, which kills itself with SIGKILL right after an
intent is durable (the ``intent_durable`` crash point) -- exactly the moment a
bot has decided to send an order but does not know what the exchange did.
The parent then reopens the journal and prints what it finds: the committed
operations, and the one operation left pending, with its client order id, for
reconciliation. Exits non-zero if anything is not as expected.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from decimal import Decimal

from .wal import Journal


def _child(path: str) -> None:
    with Journal(path) as journal:
        for i in range(3):
            with journal.operation("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": Decimal("0.01")}) as op:
                op.commit({"id": f"exchange-{i}", "status": "open"}, wait=True)
                print(f"  child: committed op {op.op_id} ({op.client_id})", flush=True)
        journal.begin("place_order", {"symbol": "ETH/USDT", "side": "sell", "amount": Decimal("0.5")})
        print("  child: unreachable (the crash point fires first)", flush=True)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
        return 0
    with tempfile.TemporaryDirectory(prefix="tradejournal-demo-") as tmp:
        path = os.path.join(tmp, "bot.journal")
        print(f"journaling into {path}; the child crashes right after its 4th intent is durable")
        env = dict(os.environ, TRADEJOURNAL_CRASH_AT="intent_durable:4")
        proc = subprocess.run([sys.executable, "-m", "journal.demo", "--child", path], env=env)
        print(f"child exit: {proc.returncode} (SIGKILL is {-signal.SIGKILL})")
        with Journal(path) as journal:
            pending = journal.pending()
            report = journal.verify()
            committed = list(journal.records(kinds=["commit"]))
            print(f"reopened: {report}")
            print(f"committed operations: {[r.op for r in committed]}")
            for rec in pending:
                print(f"pending: op {rec.op} {rec.type} {rec.data} client id {rec.client_id} -> reconcile it")
        ok = proc.returncode == -signal.SIGKILL and report.ok and len(committed) == 3 and len(pending) == 1
        print("demo OK" if ok else "demo FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
