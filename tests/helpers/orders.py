"""Shared helpers of the order-helper tests (sync and async): fault arming and invariant checks."""

from __future__ import annotations

from typing import Any

from journal import Journal
from recovery.sim.server import Simulator

SYMBOL = "BTC/USDT"
ORDER = ("POST", "/api/v3/order")
REPLACE = ("POST", "/api/v3/order/cancelReplace")
CANCEL = ("DELETE", "/api/v3/order")
LOOKUP = ("GET", "/api/v3/order")
#: Faults applied by the simulator before the connection fails, and those refused before the core.
APPLIED = ("commit_then_delay", "commit_then_drop", "http_503_1007")
NOT_APPLIED = ("http_429", "http_418", "rate_limit_orders", "http_502_html")
FAULTS = ("reject", *APPLIED, *NOT_APPLIED, "down")
#: Short windows keep the suite fast; the client times out before a delayed answer.
FAST: dict[str, Any] = {"settle_window_ms": 150, "lookup_retries": 2, "backoff_s": 0.01}
CLIENT_TIMEOUT_MS = 400
DELAY_S = 0.8


def arm(sim: Simulator, path: tuple[str, str], fault: str, reject_code: int = -2010) -> None:
    """Arm ``fault`` once on ``path``; ``down`` takes the whole exchange down."""
    if fault == "down":
        sim.faults.down()
    elif fault == "reject":
        sim.faults.arm(*path, "reject", code=reject_code)
    elif fault == "commit_then_delay":
        sim.faults.arm(*path, fault, delay_s=DELAY_S)
    else:
        sim.faults.arm(*path, fault)


def outcome(journal: Journal, op_id: int) -> tuple[str, Any]:
    """``("pending", None)``, or the outcome record's kind and data."""
    for rec in reversed(journal.timeline(op_id)):
        if rec.kind in ("commit", "abort"):
            return rec.kind, rec.data
    return "pending", None


def ops(journal: Journal, type: str) -> list[int]:
    journal.flush()
    return [r.op for r in journal.records(kinds=["intent"], types=[type]) if r.op is not None]


def on_exchange(sim: Simulator, client_id: str) -> list[Any]:
    return [o for o in sim.orders() if o.client_order_id == client_id]


def sent_client_ids(sim: Simulator) -> list[str]:
    return [r.params["newClientOrderId"] for path in (ORDER, REPLACE) for r in sim.requests(*path)]


def check_invariants(journal: Journal, sim: Simulator) -> None:
    """No client id sent twice; each committed create holds one exchange order, each aborted none."""
    sent = sent_client_ids(sim)
    assert len(sent) == len(set(sent)), f"a client id was sent twice: {sent}"
    for type in ("place_order", "edit_order"):
        for op_id in ops(journal, type):
            kind, _ = outcome(journal, op_id)
            held = len(on_exchange(sim, journal.client_id(op_id)))
            assert held == {"commit": 1, "abort": 0, "pending": held}[kind], (type, op_id, kind, held)
            assert held <= 1


#: Markers synced before the call returns, so a test reads what the helper wrote: in the default
#: INTENT mode ``Journal.flush()`` may return while the background flusher is still writing the
#: batch it took (a race in journal/wal.py), and a read right after a commit can miss it.
DURABILITY = "full"
