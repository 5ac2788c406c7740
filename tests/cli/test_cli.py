"""The ``journal`` command, run as a subprocess against journals built here.

Every command's output is parsed (``--json``) and checked field by field;
errors must be one line on stderr with the documented exit code, never a
traceback. Read commands run beside a writer holding the journal.
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journal import Journal, make_client_id
from journal.cli.app import (
    COMMANDS,
    EXIT_DAMAGED,
    EXIT_ERROR,
    EXIT_LOCKED,
    EXIT_PIPE,
    EXIT_USAGE,
    build_parser,
    parse_time_ns,
)
from journal.cli.dump import Waker
from journal.errors import DecodeError
from journal.log.clientid import base62
from journal.log.codec import decimal_text, decode_display, encode
from tests.helpers.journal_cli import journal_cmd

ROOT = Path(__file__).resolve().parents[2]


def run(*args: Any, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``journal ARGS`` in this process through main() (tests/helpers/journal_cli.py): JSON and exit codes."""
    return journal_cmd(*args)


def cid(ids: dict[str, Any], op: int) -> str:
    return make_client_id(ids["jid"], op, ids["inc"])


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("journal: error: "), proc.stderr
    for needle in needles:
        assert needle in err[0], (needle, err[0])


# -- journals ----------------------------------------------------------------------


def build(path: Path) -> dict[str, Any]:
    """Ten records: committed, aborted, pending, an event, recovery decisions."""
    with Journal(path) as j:
        a = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": Decimal("0.5")})
        a.commit({"id": "1", "symbol": "BTC/USDT", "status": "open", "filled": Decimal("0")}, wait=True)
        b = j.begin("place_order", {"symbol": "ETH/USDT", "side": "sell", "amount": Decimal("1E-8")})
        b.abort("insufficient funds", wait=True)
        c = j.begin("cancel_order", {"client_id": a.client_id, "symbol": "BTC/USDT"})  # stays pending
        j.record("fill", {"symbol": "BTC/USDT", "raw": b"\x00\x01\xff", "amount": Decimal("0.25")}, op=a.op_id)
        d = j.begin("place_order", {"symbol": "BTC/USDT", "side": "sell", "amount": Decimal("2")})  # pending
        j.record("reconcile_report", {"found": 1}, source="recovery")
        j.commit(e := j.begin("place_order", {"symbol": "SOL/USDT"}), {"id": "9"}, source="recovery", wait=True)
        return {"jid": j.journal_id, "inc": j.incarnation, "a": a.op_id, "b": b.op_id, "c": c.op_id, "d": d.op_id,
                "e": e.op_id}  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("cli") / "bot.journal"
    return path, build(path)


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "bot.journal"
    return path, build(path)


def damage(path: Path, seq: int) -> None:
    """Flip one byte of record ``seq``'s body, behind the journal's back."""
    env = lmdb.open(str(path), max_dbs=10, lib_version=0)
    try:
        db = env.open_db(b"log", create=False)
        with env.begin(write=True) as txn:
            key = seq.to_bytes(8, "big")
            value = bytearray(cast(bytes, txn.get(key, db=db)))
            value[-1] ^= 0x40
            txn.put(key, bytes(value), db=db)
    finally:
        env.close()


@pytest.fixture
def holder(fresh: tuple[Path, dict[str, Any]]) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the journal for writing, like a running bot."""
    path = fresh[0]
    code = "import sys\nfrom journal import Journal\nj = Journal(sys.argv[1])\nprint('ready', flush=True)\nsys.stdin.read()\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)


# -- help ---------------------------------------------------------------------------


def test_every_command_has_help_text_and_an_example() -> None:
    assert {"dump", "show", "pending", "verify", "resolve", "backup", "stats"} <= set(COMMANDS)
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, cmd in COMMANDS.items():
        assert cmd.help and cmd.example.startswith("journal " + name), name
        parser = cast(dict[str, argparse.ArgumentParser], sub.choices)[name]
        text = parser.format_help()
        assert "example:" in text and cmd.example in text and cmd.help.split(";")[0] in text, name
    proc = run("dump", "--help")
    assert proc.returncode == 0 and "example:" in proc.stdout and "--follow" in proc.stdout


# -- dump ---------------------------------------------------------------------------


def test_dump_json_fields(built: tuple[Path, dict[str, Any]]) -> None:
    path, ids = built
    proc = run("dump", path, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = lines(proc)
    assert [r["seq"] for r in rows] == list(range(1, 11))
    first = rows[0]
    assert set(first) == {"seq", "time", "ts_ns", "kind", "type", "op", "client_id", "source", "data", "checksum"}
    assert first["kind"] == "intent" and first["type"] == "place_order" and first["source"] == "bot"
    assert first["op"] == ids["a"] and first["client_id"] == cid(ids, ids["a"])
    assert first["data"] == {"symbol": "BTC/USDT", "side": "buy", "amount": "0.5"}  # Decimal as a string
    assert first["checksum"] == "ok"
    when = datetime.strptime(first["time"][:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    assert first["time"].endswith("Z") and abs(when.timestamp() * 1e9 - first["ts_ns"]) < 2000
    assert first["time"][20:29] == f"{first['ts_ns'] % 10**9:09d}"
    by_seq = {r["seq"]: r for r in rows}
    assert by_seq[2]["kind"] == "commit" and by_seq[2]["data"]["filled"] == "0" and by_seq[2]["op"] == ids["a"]
    assert by_seq[3]["data"]["amount"] == "0.00000001"  # plain notation, exact
    assert by_seq[4]["kind"] == "abort" and by_seq[4]["data"] == {"reason": "insufficient funds"}
    fill = by_seq[6]
    assert (
        fill["kind"] == "event" and fill["op"] == ids["a"] and base64.b64decode(fill["data"]["raw"]) == b"\x00\x01\xff"
    )
    assert by_seq[8]["op"] is None and by_seq[8]["client_id"] is None and by_seq[8]["source"] == "recovery"
    hexed = lines(run("dump", path, "--json", "--bytes", "hex", "--type", "fill"))
    assert hexed[0]["data"]["raw"] == "0001ff"


def test_dump_filters(built: tuple[Path, dict[str, Any]]) -> None:
    path, ids = built

    def seqs(*args: Any) -> list[int]:
        proc = run("dump", path, "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return [r["seq"] for r in lines(proc)]

    everything = lines(run("dump", path, "--json"))
    assert seqs("--from", 3, "--to", 5) == [3, 4, 5]
    assert seqs("--from", -2) == [9, 10]
    assert seqs("--to", -9) == [1, 2]
    assert seqs("--type", "cancel_order", "--type", "fill") == [5, 6]
    assert seqs("--kind", "abort") == [4]
    assert seqs("--kind", "intent", "--kind", "commit") == [1, 2, 3, 5, 7, 9, 10]
    assert seqs("--kind", "recovery") == [8, 10]
    assert seqs("--kind", "recovery", "--kind", "commit") == [10]
    assert seqs("--op", ids["a"]) == [1, 2, 6]
    assert seqs("--op", cid(ids, ids["a"]), "--kind", "event") == [6]
    assert seqs("--symbol", "BTC/USDT") == [1, 2, 5, 6, 7]
    assert seqs("--pending") == [ids["c"], ids["d"]]
    assert seqs("--pending", "--from", 6) == [ids["d"]]
    ts = {r["seq"]: r["ts_ns"] for r in everything}
    assert seqs("--since", ts[6], "--until", ts[7]) == [6, 7]
    assert seqs("--since", everything[5]["time"], "--until", everything[6]["time"]) == [6, 7]
    assert seqs("--since", "2999-01-01") == []


def test_dump_table_on_request(built: tuple[Path, dict[str, Any]]) -> None:
    proc = run("dump", built[0], "--table", "--kind", "abort")
    assert proc.returncode == 0
    header, row = proc.stdout.splitlines()
    assert header.split()[:5] == ["SEQ", "TIME", "(UTC)", "KIND", "TYPE"]
    assert row.split()[0] == "4" and "abort" in row and "insufficient funds" in row


def test_dump_damaged_record_prints_status_and_exits_nonzero(fresh: tuple[Path, dict[str, Any]]) -> None:
    path, _ = fresh
    damage(path, 3)
    proc = run("dump", path, "--json")
    rows = lines(proc)
    assert [r["seq"] for r in rows] == list(range(1, 11))  # the rest still prints
    bad = rows[2]
    assert "checksum mismatch" in bad["checksum"] and "seq 3" in bad["checksum"]
    assert bad["data"] is None and base64.b64decode(bad["raw"])
    assert all(r["checksum"] == "ok" for r in rows if r["seq"] != 3)
    assert_one_line_error(proc, EXIT_DAMAGED, "1 damaged record", "seq 3", "journal verify")
    # a damaged record shows whatever the filters (its header cannot be trusted)
    assert [r["seq"] for r in lines(run("dump", path, "--json", "--type", "fill"))] == [3, 6]


# -- verify -------------------------------------------------------------------------


def test_verify_clean_and_damaged(fresh: tuple[Path, dict[str, Any]]) -> None:
    path, _ = fresh
    proc = run("verify", path, "--json")
    assert proc.returncode == 0, proc.stderr
    checks = {r["check"]: r for r in lines(proc)}
    assert checks["records"]["ok"] is True and checks["records"]["records_checked"] == 10
    assert checks["records"]["first_seq"] == 1 and checks["records"]["last_seq"] == 10
    assert checks["pending-index"]["ok"] is True
    damage(path, 5)
    proc = run("verify", path, "--json")
    checks = {r["check"]: r for r in lines(proc)}
    assert checks["records"]["ok"] is False and checks["records"]["first_bad_seq"] == 5
    assert "checksum mismatch" in checks["records"]["summary"]
    assert_one_line_error(proc, EXIT_DAMAGED, "seq 5")


# -- show, pending ------------------------------------------------------------------


def test_show_timeline_with_durations(built: tuple[Path, dict[str, Any]]) -> None:
    path, ids = built
    rows = lines(run("show", path, ids["a"], "--json"))
    assert [(r["seq"], r["kind"], r["type"]) for r in rows] == [
        (1, "intent", "place_order"),
        (2, "commit", "place_order"),
        (6, "event", "fill"),
    ]
    assert rows[0]["since_intent_ms"] == 0 and rows[0]["since_prev_ms"] == 0
    assert rows[1]["since_intent_ms"] == pytest.approx((rows[1]["ts_ns"] - rows[0]["ts_ns"]) / 1e6, abs=1e-3)
    assert rows[2]["since_prev_ms"] == pytest.approx((rows[2]["ts_ns"] - rows[1]["ts_ns"]) / 1e6, abs=1e-3)
    by_client_id = lines(run("show", path, cid(ids, ids["e"]), "--json"))
    assert [(r["kind"], r["source"]) for r in by_client_id] == [("intent", "bot"), ("commit", "recovery")]
    table = run("show", path, ids["c"], "--table").stdout
    assert "PENDING" in "\n".join(table.splitlines()[:4])


def test_pending_oldest_first_with_age(built: tuple[Path, dict[str, Any]]) -> None:
    path, ids = built
    rows = lines(run("pending", path, "--json"))
    assert [r["op"] for r in rows] == [ids["c"], ids["d"]]
    assert rows[0]["client_id"] == cid(ids, ids["c"]) and rows[0]["type"] == "cancel_order"
    assert rows[0]["age_ms"] >= rows[1]["age_ms"] >= 0
    assert rows[0]["age_ms"] == pytest.approx((time.time_ns() - rows[0]["ts_ns"]) / 1e6, abs=5000)


# -- resolve ------------------------------------------------------------------------


def test_resolve_commit_shows_in_show_and_dump(fresh: tuple[Path, dict[str, Any]]) -> None:
    path, ids = fresh
    op = ids["d"]
    proc = run(
        "resolve",
        path,
        op,
        "--commit",
        "--result",
        '{"id": "77", "price": 1.10, "n": 3}',
        "--reason",
        "seen on UI",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    written = lines(proc)
    assert [(r["kind"], r["type"], r["source"]) for r in written] == [
        ("commit", "place_order", "manual"),
        ("event", "manual_resolve", "manual"),
    ]
    assert written[1]["data"]["reason"] == "seen on UI" and written[1]["data"]["outcome"] == "commit"
    timeline = lines(run("show", path, op, "--json"))
    assert [(r["kind"], r["source"]) for r in timeline] == [
        ("intent", "bot"),
        ("commit", "manual"),
        ("event", "manual"),
    ]
    assert timeline[1]["data"] == {"id": "77", "price": "1.10", "n": 3}
    manual = lines(run("dump", path, "--json", "--kind", "manual"))
    assert [r["op"] for r in manual] == [op, op]
    with Journal(path, readonly=True) as j:  # the float was parsed as an exact Decimal
        assert j.get(written[0]["seq"]).data["price"] == Decimal("1.10")
        assert op not in [r.op for r in j.pending()]
    assert [r["op"] for r in lines(run("pending", path, "--json"))] == [ids["c"]]


def test_resolve_abort_and_refusals(fresh: tuple[Path, dict[str, Any]]) -> None:
    path, ids = fresh
    proc = run("resolve", path, cid(ids, ids["c"]), "--abort", "--reason", "never sent", "--json")
    assert proc.returncode == 0, proc.stderr
    assert lines(proc)[0]["data"] == {"reason": "never sent"} and lines(proc)[0]["kind"] == "abort"
    again = run("resolve", path, ids["c"], "--commit", "--reason", "x")
    assert_one_line_error(again, EXIT_ERROR, "already aborted", "seq")
    bad_json = run("resolve", path, ids["d"], "--commit", "--result", "{'id': 1}", "--reason", "x")
    assert_one_line_error(bad_json, EXIT_ERROR, "--result is not valid JSON")
    assert_one_line_error(run("resolve", path, ids["d"], "--commit", "--result", "NaN", "--reason", "x"), EXIT_ERROR)
    no_reason = run("resolve", path, ids["d"], "--abort")
    assert no_reason.returncode == EXIT_USAGE and "--reason" in no_reason.stderr
    assert_one_line_error(run("resolve", path, 999, "--abort", "--reason", "x"), EXIT_ERROR, "no operation 999")


def test_resolve_refused_while_a_writer_holds_the_journal(
    fresh: tuple[Path, dict[str, Any]], holder: subprocess.Popen[str]
) -> None:
    path, ids = fresh
    proc = run("resolve", path, ids["d"], "--abort", "--reason", "x")
    assert_one_line_error(proc, EXIT_LOCKED, f"pid {holder.pid}", "stop it")
    # reads go on beside the writer
    assert run("dump", path, "--json").returncode == 0
    assert [r["op"] for r in lines(run("pending", path, "--json"))] == [ids["c"], ids["d"]]


# -- follow -------------------------------------------------------------------------


def _reader_thread(stream: Any, out: queue.Queue[bytes]) -> None:
    # readline() on the binary pipe: a text-mode iterator may sit on a line it has read
    while line := stream.readline():
        out.put(line)


def test_dump_follow_sees_new_records_and_exits_on_ctrl_c(fresh: tuple[Path, dict[str, Any]]) -> None:
    path, _ = fresh
    proc = subprocess.Popen(
        [sys.executable, "-m", "journal", "dump", str(path), "--json", "--follow", "--from", "8"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    got: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=_reader_thread, args=(proc.stdout, got), daemon=True).start()
    try:
        assert [json.loads(got.get(timeout=10))["seq"] for _ in range(3)] == [8, 9, 10]
        time.sleep(0.3)  # let it settle into waiting
        with Journal(path) as writer:
            for i in range(3):
                t0 = time.monotonic()
                seq = writer.record("tick", {"i": i})
                row = json.loads(got.get(timeout=5))
                assert time.monotonic() - t0 < 1.0
                assert (row["seq"], row["type"], row["data"]) == (seq, "tick", {"i": i})
            ops = writer.begin_many([("place_order", {"symbol": "X"})] * 50)
            for op in ops:
                op.commit({"ok": True}, wait=False)
            writer.flush()
            rows = [json.loads(got.get(timeout=5)) for _ in range(100)]
            assert [r["seq"] for r in rows] == list(range(ops[0].op_id, ops[0].op_id + 100))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_dump_follow_with_filters_and_an_end(fresh: tuple[Path, dict[str, Any]]) -> None:
    path, ids = fresh
    by_op = subprocess.Popen(
        [sys.executable, "-m", "journal", "dump", str(path), "--json", "--follow", "--op", str(ids["d"])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    bounded = subprocess.Popen(
        [sys.executable, "-m", "journal", "dump", str(path), "--json", "--follow", "--from", "10", "--to", "12"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    got: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=_reader_thread, args=(by_op.stdout, got), daemon=True).start()
    try:
        assert json.loads(got.get(timeout=10))["seq"] == ids["d"]
        with Journal(path) as writer:
            writer.record("tick", {"i": 0})  # seq 11: not op d
            writer.commit(ids["d"], {"id": "42"}, wait=True)  # seq 12
            writer.record("tick", {"i": 1}, op=ids["a"])  # seq 13
            row = json.loads(got.get(timeout=5))
            assert (row["seq"], row["kind"], row["op"]) == (12, "commit", ids["d"])
            assert bounded.wait(10) == 0  # passed --to 12: the follow ends by itself
            assert bounded.stdout is not None
            assert [json.loads(x)["seq"] for x in bounded.stdout.read().splitlines()] == [10, 11, 12]
        with pytest.raises(queue.Empty):
            got.get(timeout=0.7)
        by_op.send_signal(signal.SIGTERM)
        assert by_op.wait(10) == 0
    finally:
        for proc in (by_op, bounded):
            proc.kill()
            proc.wait()


def test_dump_follow_does_not_stop_after_many_large_records(tmp_path: Path) -> None:
    """Reported as "follow stops printing new records after a while": 400 appends of ~3 KB each.

    The follower never stalled: the report's harness read its stdout only after
    the writes, so the follower blocked in write(2) on a full 64 KiB pipe (17
    large or ~336 small rows). A consumer must read while it follows, as here.
    """
    path = tmp_path / "bot.journal"
    with Journal(path) as writer:
        writer.record("x", {})
        proc = subprocess.Popen(
            [sys.executable, "-m", "journal", "dump", "--follow", "--json", str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        got: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=_reader_thread, args=(proc.stdout, got), daemon=True).start()
        try:
            assert json.loads(got.get(timeout=10))["seq"] == 1
            for i in range(400):
                writer.record("x", {"i": i, "pad": "y" * 3000})
            last = writer.last_seq
            seqs = []
            deadline = time.monotonic() + 5  # every record printed within a few seconds of the last append
            while len(seqs) < last - 1:
                seqs.append(json.loads(got.get(timeout=max(0.0, deadline - time.monotonic())))["seq"])
            assert seqs == list(range(2, last + 1))
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0
            assert got.empty()
            assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
        finally:
            proc.kill()
            proc.wait()


def test_waker_wakes_on_a_commit_from_another_process(fresh: tuple[Path, dict[str, Any]]) -> None:
    path, _ = fresh
    waker = Waker(str(path))
    try:
        assert waker.watching, waker.error
        waker.wait(0.2)  # drop events from opening
        subprocess.run(
            [sys.executable, "-c", f"from journal import Journal\nwith Journal({str(path)!r}) as j: j.record('x')"],
            cwd=ROOT,
            check=True,
        )
        assert waker.wait(5)
    finally:
        waker.close()


# -- backup, stats ------------------------------------------------------------------


def test_backup_while_a_writer_holds_it(
    fresh: tuple[Path, dict[str, Any]], holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    path, _ = fresh
    dest = tmp_path / "copy"
    proc = run("backup", path, dest, "--json")
    assert proc.returncode == 0, proc.stderr
    row = lines(proc)[0]
    assert row["verified"] is True and (row["first_seq"], row["last_seq"]) == (1, 10)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    for f in dest.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert lines(run("dump", dest, "--json")) == lines(run("dump", path, "--json"))
    assert_one_line_error(run("backup", path, dest), EXIT_ERROR, "not empty")


def test_stats(built: tuple[Path, dict[str, Any]]) -> None:
    path, ids = built
    row = lines(run("stats", path, "--json"))[0]
    assert row["records"] == 10 and (row["first_seq"], row["last_seq"]) == (1, 10)
    assert row["counts"] == {"intent": 5, "commit": 2, "abort": 1, "event": 2}
    assert row["pending"] == 2 and row["oldest_pending_op"] == ids["c"] and row["oldest_pending_age_ms"] >= 0
    assert row["journal_id"] == ids["jid"] and row["file_bytes"] > 0 and row["writer_pid"] is None


# -- errors -------------------------------------------------------------------------


def test_bad_input_is_one_line_and_nonzero(built: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, ids = built
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run("dump", tmp_path / "missing"), EXIT_ERROR, "no such journal directory")
    assert_one_line_error(run("verify", tmp_path / "empty"), EXIT_ERROR, "not a journal")
    assert_one_line_error(run("stats", tmp_path / "file"), EXIT_ERROR, "is a file")
    assert_one_line_error(run("show", path, 2), EXIT_ERROR, "no operation 2")
    assert_one_line_error(run("show", path, "tjNOTOURS0001"), EXIT_ERROR, "neither an op id nor a client id")
    assert_one_line_error(run("dump", path, "--from", 5, "--to", 2), EXIT_ERROR, "after --to")
    assert_one_line_error(
        run("dump", path, "--since", "2026-02-01", "--until", "2026-01-01"), EXIT_ERROR, "after --until"
    )
    assert_one_line_error(run("dump", path, "--since", "last tuesday"), EXIT_USAGE, "not a time")
    assert_one_line_error(run("dump", path, "--op", 12345), EXIT_ERROR, "no operation 12345")
    assert_one_line_error(run("nonsense"), EXIT_USAGE, "invalid choice")


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.journal"
    with Journal(path) as j:
        j.record("x")
    env = lmdb.open(str(path), max_dbs=10, lib_version=0)
    meta = env.open_db(b"meta", create=False)
    with env.begin(write=True) as txn:
        txn.put(b"format_version", encode(99), db=meta)
    env.close()
    assert_one_line_error(run("dump", path), EXIT_ERROR, "format version 99", "upgrade tradejournal")


def test_broken_pipe_exits_quietly(tmp_path: Path) -> None:
    path = tmp_path / "big.journal"
    with Journal(path, durability="process") as j:
        for _ in range(3):
            for op in j.begin_many([("place_order", {"symbol": "BTC/USDT", "pad": "x" * 200})] * 500):
                op.commit({"ok": True}, wait=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "journal", "dump", str(path), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["seq"] == 1
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(20) == EXIT_PIPE
    assert proc.stderr.read() == b""


# -- units ----------------------------------------------------------------------------


def test_parse_time_ns() -> None:
    assert parse_time_ns("1700000000123456789") == 1700000000123456789
    assert parse_time_ns("2023-11-14T22:13:20Z") == 1700000000 * 10**9
    assert parse_time_ns("2023-11-14T22:13:20.123456789Z") == 1700000000123456789
    assert parse_time_ns("2023-11-14 22:13:20.5") == 1700000000500000000
    assert parse_time_ns("2023-11-15T00:13:20+02:00") == 1700000000 * 10**9
    assert parse_time_ns("2023-11-14") == 1699920000 * 10**9


def test_fast_base62_matches_a_plain_one() -> None:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

    def plain(n: int) -> str:
        out = ""
        while True:
            n, r = divmod(n, 62)
            out = alphabet[r] + out
            if not n:
                return out

    for n in [*range(0, 5000), 3843, 3844, 238327, 238328, 62**5, 2**63 - 1, 2**64 - 1]:
        assert base62(n) == plain(n)
        if n:
            assert "tjABCDEFGH" + base62(n) == make_client_id("ABCDEFGH", n)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.decimals(allow_nan=False, allow_infinity=False, places=None)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


def _as_text(value: Any) -> Any:
    if isinstance(value, Decimal):
        sign, digits, exp = value.as_tuple()
        mantissa = int("".join(map(str, digits)) or 0) * (-1 if sign else 1)
        return decimal_text(mantissa, int(exp))
    if isinstance(value, list | tuple):
        return [_as_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_text(v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(_values)
def test_dump_decoder_agrees_with_the_codec(value: Any) -> None:
    from journal.log.codec import decode

    try:
        data = encode(value)
    except Exception:
        return  # the codec refuses it: nothing stored to compare
    assert decode_display(data) == _as_text(decode(data))


@pytest.mark.parametrize(
    "hostile",
    [
        bytes.fromhex("c11a5f5e1000"),  # tag 1 (epoch datetime)
        bytes.fromhex("d82582"),  # tag 37, truncated
        bytes.fromhex("9fff"),  # indefinite array
        bytes.fromhex("a2616101616102"),  # duplicate keys
        bytes.fromhex("0101"),  # trailing bytes
        bytes.fromhex("c482c4820101"),  # tag 4 holding a tag 4
        bytes.fromhex("c48261610a"),  # tag 4 with a string exponent
        bytes.fromhex("c2") + bytes.fromhex("5a00000800") + b"\x01" * 2048,  # bignum beyond the limit
        b"\x81" * 100 + b"\x00",  # too deep
    ],
)
def test_dump_decoder_refuses_what_the_codec_refuses(hostile: bytes) -> None:
    from journal.log.codec import decode

    with pytest.raises(DecodeError):
        decode(hostile, check=False)
    with pytest.raises(DecodeError):
        decode_display(hostile)


def test_decimal_text_is_exact_and_bounded() -> None:
    for text in ["0.00100000", "30000.10", "0", "1E+2", "-0.0012", "1E-8", "0.00", "-5"]:
        d = Decimal(text)
        sign, digits, exp = d.as_tuple()
        mantissa = int("".join(map(str, digits))) * (-1 if sign else 1)
        assert Decimal(decimal_text(mantissa, int(exp))) == d
        assert decimal_text(mantissa, int(exp)) == format(d, "f")
    assert decimal_text(1, 10**9) == "1E+1000000000"  # no gigabyte of zeros
    assert decimal_text(-7, -(10**9)) == "-7E-1000000000"
