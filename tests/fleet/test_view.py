"""The fleet view, from archived records: safe mode and why, pending, open orders per symbol, the lag.

The archive here is filled through Archive.offer with the records exactly as a
shipper sends them (no hub needed: the hub's part is tested in test_archive.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from journal import Journal
from journal.fleet.archive import Archive, SyncReport
from journal.fleet.view import fleet_rows, history_view, symbol_rows
from journal.fleet.wire import Shipped
from journal.log.record import chain_of


def _archive(root: Path, *journals: Path) -> Archive:
    archive = Archive(root)
    report = SyncReport(source="test", stream="TJ")
    for path in journals:
        with Journal(path, readonly=True) as j:
            base_seq, prev = j.chain_base
            for chunk in j.scan_raw(0):
                for raw in chunk:
                    rec = Shipped(j.journal_id, j.incarnations.at(raw.seq), raw.seq, prev, raw.value,
                                  raw.seq == base_seq + 1)  # fmt: skip
                    archive.offer(rec, 0, report)
                    prev = chain_of(raw.value, raw.seq)
    assert report.problems == [] and report.held == []
    archive.release()
    return archive


def _order(j: Journal, symbol: str, side: str, amount: str, *, status: str | None = "open") -> int:
    op = j.begin("place_order", {"symbol": symbol, "side": side, "type": "limit", "amount": amount, "price": "10"})
    if status is not None:
        op.commit({"id": str(op.op_id), "status": status, "symbol": symbol, "side": side, "amount": amount,
                   "filled": "0", "remaining": amount, "price": "10"})  # fmt: skip
    return op.op_id


def test_safe_mode_open_orders_and_pending_come_from_the_records(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        _order(j, "BTC/USDT", "buy", "0.5")
        _order(j, "BTC/USDT", "sell", "0.25")
        _order(j, "ETH/USDT", "buy", "2", status="closed")
        doubt = _order(j, "SOL/USDT", "buy", "3", status=None)  # in flight when the bot died
        j.record("reconcile_report", {"unresolved": [{"op": doubt, "symbol": "SOL/USDT", "why": "exchange timed out"}],
                                      "errors": []}, source="recovery")  # fmt: skip
        jid = j.journal_id
    archive = _archive(tmp_path / "archive", path)
    view = history_view(archive, jid, now_ns=time.time_ns() + 120 * 10**9)
    assert view["safe_mode"] is True and view["safe_mode_reasons"] == [f"op {doubt} SOL/USDT: exchange timed out"]
    assert view["pending"] == 1 and view["pending_ops"] == [doubt]
    assert [d["op"] for d in view["in_doubt"]] == [doubt] and view["in_doubt"][0]["symbol"] == "SOL/USDT"
    assert view["open_orders"] == 3  # two resting, one in flight; the filled one is settled
    by = view["open_orders_by_symbol"]
    assert (
        by["BTC/USDT"]["orders"] == 2 and str(by["BTC/USDT"]["buy"]) == "0.5" and str(by["BTC/USDT"]["sell"]) == "0.25"
    )
    assert by["SOL/USDT"]["orders"] == 1 and "ETH/USDT" not in by


def test_a_later_clean_reconciliation_or_a_safe_mode_event_decides(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        j.record("tick", {})
        jid = j.journal_id
    assert history_view(_archive(tmp_path / "a0", path), jid)["safe_mode"] is None  # nothing says yet
    with Journal(path) as j:
        j.record("reconcile_report", {"unresolved": [{"op": 1, "why": "x"}]}, source="recovery")
        j.record("reconcile_report", {"unresolved": []}, source="recovery")
    assert history_view(_archive(tmp_path / "a1", path), jid)["safe_mode"] is False
    with Journal(path) as j:
        j.record("safe_mode", {"active": True, "reasons": ["op 7 in doubt at run time"]})
    view = history_view(_archive(tmp_path / "a2", path), jid)
    assert view["safe_mode"] is True and view["safe_mode_reasons"] == ["op 7 in doubt at run time"]


def test_the_replay_is_incremental_and_a_stale_cache_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        _order(j, "BTC/USDT", "buy", "1")
        jid = j.journal_id
    archive = _archive(tmp_path / "archive", path)
    assert history_view(archive, jid)["open_orders"] == 1
    cache = tmp_path / "archive" / "views" / f"{jid}.cbor"
    first = cache.read_bytes()
    with Journal(path) as j:
        _order(j, "BTC/USDT", "buy", "1")
    archive = _archive(tmp_path / "archive", path)
    assert history_view(archive, jid)["open_orders"] == 2
    assert cache.read_bytes() != first
    cache.write_bytes(first.replace(b"BTC/USDT", b"XRP/USDT"))  # a cache that lies about its content...
    assert history_view(archive, jid)["open_orders_by_symbol"].keys() >= {"XRP/USDT"}  # ...is trusted if it matches
    cache.write_bytes(b"garbage")
    assert set(history_view(archive, jid)["open_orders_by_symbol"]) == {"BTC/USDT"}  # an unreadable one is rebuilt


def test_a_journal_compacted_before_shipping_says_its_orders_are_unknown(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        for _ in range(5):
            _order(j, "BTC/USDT", "buy", "1")
        j.compact_log(4)
        jid = j.journal_id
    view = history_view(_archive(tmp_path / "archive", path), jid)
    assert view["open_orders"] is None and "compacted before shipping began" in view["state"]
    assert view["first_seq"] == 5 and view["last_seq"] == 10


def test_rows_join_the_shippers_status_and_symbols_add_up(tmp_path: Path) -> None:
    paths = [tmp_path / "a.journal", tmp_path / "b.journal"]
    jids = []
    incs = []
    for p in paths:
        with Journal(p) as j:
            _order(j, "BTC/USDT", "buy", "1")
            jids.append(j.journal_id)
            incs.append(j.incarnation)
    archive = _archive(tmp_path / "archive", *paths)
    statuses: dict[str, dict[str, Any]] = {
        f"{jids[0]}.vm.x": {"journal_id": jids[0], "incarnation": incs[0], "host": "vm-a", "lag_records": 3,
                            "lag_s": 1.5, "state": "shipping", "updated_ns": time.time_ns()},
        "ZZZZZZZZ.vm.y": {"journal_id": "ZZZZZZZZ", "host": "vm-c", "state": "link-down", "lag_records": 10},
    }  # fmt: skip
    rows = fleet_rows(archive, statuses)
    by = {r["journal_id"]: r for r in rows}
    assert by[jids[0]]["host"] == "vm-a" and by[jids[0]]["lag_records"] == 3 and by[jids[0]]["status_age_s"] >= 0
    assert by[jids[1]]["host"] is None  # no shipper status for it
    assert by["ZZZZZZZZ"]["state"] == "no records archived yet" and by["ZZZZZZZZ"]["ship_state"] == "link-down"
    (btc,) = symbol_rows(rows)
    assert btc["symbol"] == "BTC/USDT" and btc["orders"] == 2 and sorted(btc["bots"]) == sorted(jids)
