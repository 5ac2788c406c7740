"""The state commands of `journal`, run as subprocesses: snapshots, state, diff, correct, compact, verify."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from decimal import Decimal as D
from pathlib import Path

import lmdb
import pytest

from journal import SCHEMA_VERSION, Journal
from journal.state.store import StateStore
from tests.helpers import raw
from tests.helpers.journal_cli import journal_cmd

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """``journal ARGS`` in this process through main() (tests/helpers/journal_cli.py): JSON and exit codes."""
    return journal_cmd(*args)


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        for i in range(30):
            s.set("custom", f"k{i % 7}", {"i": i, "v": D(i) / 4})
            if i % 10 == 9:
                s.save()
    return path


def test_snapshots_lists_each_with_checksum_status(journal_path: Path) -> None:
    out = lines(run("snapshots", str(journal_path), "--json"))
    assert [r["seq"] for r in out] == [10, 20, 30]
    assert all(r["ok"] and r["schema"] == SCHEMA_VERSION and r["keys"] == {"custom": 7} for r in out)


def test_state_now_at_seq_and_at_snapshot(journal_path: Path) -> None:
    now = lines(run("state", str(journal_path), "--json", "--section", "custom"))[0]
    assert now["seq"] == 30 and now["state"]["custom"]["k1"] == {"i": 29, "v": "7.25"}
    at = lines(run("state", str(journal_path), "--json", "--at", "5"))[0]
    assert at["seq"] == 5 and sorted(at["state"]["custom"]) == ["k0", "k1", "k2", "k3", "k4"]
    stored = lines(run("state", str(journal_path), "--json", "--snapshot", "20"))[0]
    assert stored["seq"] == 20 and stored["state"]["custom"]["k6"] == {"i": 13, "v": "3.25"}
    bad = run("state", str(journal_path), "--section", "nope")
    assert bad.returncode != 0 and "no section 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_diff_between_points(journal_path: Path) -> None:
    out = lines(run("diff", str(journal_path), "snap:10", "now", "--json"))
    head, changes = out[0], out[1:]
    assert head == {"change": "summary", "from": "snap:10", "to": "now", "from_seq": 10, "to_seq": 30,
                    "sections": {"custom": {"added": 0, "removed": 0, "changed": 7}}}  # fmt: skip
    assert {"section": "custom", "key": "k0", "change": "changed", "field": "i", "old": 7, "new": 28} in changes
    assert {(c["key"], c["field"]) for c in changes} == {(f"k{i}", f) for i in range(7) for f in ("i", "v")}
    bad = run("diff", str(journal_path), "bogus", "now")
    assert bad.returncode != 0 and "is not a point" in bad.stderr


def test_diff_lines_added_removed_and_nested_fields(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        s.set("orders", "a", {"status": "open", "fee": {"cost": D("0.1"), "currency": "USDT"}, "trades": []})
        s.set("orders", "b", {"status": "open"})
        s.set("orders", "a", {"status": "closed", "fee": {"cost": D("0.2"), "currency": "USDT"}, "trades": [1]})
        s.set("orders", "b", None)
        s.set("orders", "c", {"status": "open", "extra": 1})
    changes = lines(run("diff", str(path), "2", "now", "--json"))[1:]
    assert changes == [
        {"section": "orders", "key": "c", "change": "added", "value": {"status": "open", "extra": 1}},
        {"section": "orders", "key": "b", "change": "removed", "value": {"status": "open"}},
        {"section": "orders", "key": "a", "change": "changed", "field": "status", "old": "open", "new": "closed"},
        {"section": "orders", "key": "a", "change": "changed", "field": "fee.cost", "old": "0.1", "new": "0.2"},
        {"section": "orders", "key": "a", "change": "changed", "field": "trades", "old": [], "new": [1]},
    ]
    only = lines(run("diff", str(path), "2", "now", "--json", "--section", "orders"))
    assert only[0]["sections"] == {"orders": {"added": 1, "removed": 1, "changed": 1}} and len(only) == 6
    missing = run("diff", str(path), "2", "now", "--section", "nope")
    assert (
        missing.returncode == 1
        and "no section 'nope'; sections: balances, inflight, orders, positions" in missing.stderr
    )


def test_correct_is_journaled_as_manual_and_refused_while_held(journal_path: Path) -> None:
    out = lines(run("correct", str(journal_path), "custom", "k1", '{"fixed": 1.5}', "--reason", "operator fix",
                    "--json"))  # fmt: skip
    assert out[0]["new"] == {"fixed": "1.5"} and out[0]["old"] == {"i": 29, "v": "7.25"}
    with Journal(journal_path, readonly=True) as j:
        rec = list(j.records(types=["state_set"]))[-1]
        assert rec.source == "manual" and "operator fix" in rec.data["reason"]
        assert StateStore(j).state["custom"]["k1"] == {"fixed": D("1.5")}
    dump = [json.loads(x) for x in run("dump", str(journal_path), "--json", "--kind", "manual").stdout.splitlines()]
    assert [r["type"] for r in dump] == ["state_set"]
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from journal import Journal
            j = Journal(sys.argv[1]); print("ready", flush=True); sys.stdin.readline()
        """), str(journal_path)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        refused = run("correct", str(journal_path), "custom", "k1", "null", "--reason", "x")
        assert refused.returncode == 4 and f"pid {holder.pid}" in refused.stderr
    finally:
        holder.kill()
        holder.wait()
    malformed = run("correct", str(journal_path), "custom", "k1", "{oops", "--reason", "x")
    assert malformed.returncode != 0 and "not valid JSON" in malformed.stderr


def test_compact_keeps_verify_and_state(journal_path: Path) -> None:
    before = lines(run("state", str(journal_path), "--json"))[0]["state"]
    out = lines(run("compact", str(journal_path), "--retention", "0", "--json"))[0]
    assert out["deleted"] > 0 and out["verify"].startswith("ok")
    assert run("verify", str(journal_path)).returncode == 0
    assert lines(run("state", str(journal_path), "--json"))[0]["state"] == before


def test_verify_reports_a_corrupt_snapshot(journal_path: Path) -> None:
    env = lmdb.open(str(journal_path), max_dbs=10, lib_version=0)
    snaps = env.open_db(b"snapshots")
    chunks = env.open_db(b"chunks")
    with env.begin(write=True) as txn:
        manifest = raw.manifest(txn, snaps, 20)
        digest = manifest["sections"]["custom"]["deltas"][-1]
        blob = bytearray(txn.get(digest, db=chunks))
        blob[-1] ^= 0xFF
        txn.put(digest, bytes(blob), db=chunks)
        assert struct.unpack(">Q", next(iter(txn.cursor(db=snaps).iternext(values=False))))[0] == 10
    env.close()
    proc = run("verify", str(journal_path), "--json")
    assert proc.returncode == 3
    checks = {r["check"]: r for r in lines(proc)}
    assert not checks["snapshots"]["ok"] and checks["snapshots"]["first_bad_seq"] == 20
    assert checks["records"]["ok"]
    listed = lines(run("snapshots", str(journal_path), "--json"))
    assert [r["ok"] for r in listed] == [True, False, False]  # snapshot 30 reuses 20's delta chunk
