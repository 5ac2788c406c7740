"""The ``journal`` command for a person at 3 a.m. (issue 16): times people type, filters that say when
they match nothing, pictures instead of raw numbers, and the small rough edges (items 2, 3, 4, 8).

Terminal pictures are checked on a real pseudo-terminal (the ``tty`` fixture); JSON and exit codes
in-process through ``main()`` (tests/helpers/journal_cli.py), the command's own entry point.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import lmdb
import pytest

from journal import Journal
from journal.cli.app import EXIT_USAGE, main
from journal.cli.operations import DEFAULT_SETTLE_WINDOW_MS
from journal.cli.pictures import latency_summary, size
from journal.cli.times import ago, duration, parse_duration_ns, parse_time_ns
from journal.log.storage import FORMAT_VERSION
from journal.state.store import StateStore
from tests.helpers import raw
from tests.helpers.journal_cli import journal_cmd

ROOT = Path(__file__).resolve().parents[2]
NS = 1_000_000_000


run = journal_cmd  # in-process, through main(): the JSON and exit-code checks


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """Orders on two symbols, one aborted, one cancel pending, a fill and a reconcile report."""
    path = tmp_path_factory.mktemp("people") / "bot.journal"
    with Journal(path) as j:
        a = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": Decimal("0.5"),
                                    "price": Decimal("30000")})  # fmt: skip
        time.sleep(0.02)
        a.commit({"id": "1", "symbol": "BTC/USDT", "status": "open", "filled": Decimal("0")}, wait=True)
        b = j.begin("place_order", {"symbol": "ETH/USDT", "side": "sell", "amount": Decimal("1")})
        b.abort("insufficient funds", wait=True)
        j.record("fill", {"symbol": "BTC/USDT", "amount": Decimal("0.25"), "price": Decimal("30000")}, op=a.op_id)
        c = j.begin("cancel_order", {"client_id": a.client_id, "symbol": "BTC/USDT"})
        j.record("reconcile_report", {"resolved": 0}, source="recovery")
        return path, {"a": a.op_id, "b": b.op_id, "c": c.op_id}


# -- item 2: times people type ------------------------------------------------------------------


def test_times_people_type() -> None:
    now = 1_796_000_000 * NS + 123
    assert parse_time_ns("2h", now) == now - 2 * 3600 * NS
    assert parse_time_ns("2 h ago", now) == now - 2 * 3600 * NS
    assert parse_time_ns("1d12h", now) == now - 36 * 3600 * NS
    assert parse_time_ns("90s", now) == now - 90 * NS
    assert parse_time_ns("15 min", now) == now - 15 * 60 * NS
    assert parse_time_ns("1w", now) == now - 7 * 86400 * NS
    assert parse_time_ns("now", now) == now
    assert parse_time_ns("today", now) == now - now % (86400 * NS)
    assert parse_time_ns("yesterday", now) == now - now % (86400 * NS) - 86400 * NS
    assert parse_time_ns("2026-12-01 03:00") == parse_time_ns("2026-12-01T03:00:00Z")
    assert parse_time_ns("2026-12-01 05:00+02:00") == parse_time_ns("2026-12-01T03:00:00Z")
    assert parse_time_ns("1700000000123456789") == 1700000000123456789
    assert parse_duration_ns("2 fortnights") is None
    for bad in ("last tuesday", "2 fortnights", "12:xx"):
        with pytest.raises(Exception, match="not a time"):
            parse_time_ns(bad, now)


def test_relative_times_for_people() -> None:
    now = 1_796_000_000 * NS
    assert ago(now - 3 * 60 * NS - 5 * NS, now) == "3 min ago"
    assert ago(now - 3 * 60 * NS, now, compact=True) == "3m"
    assert ago(now - 500_000_000, now) == "just now"
    assert ago(now - 2 * 86400 * NS, now) == "2.0 d ago" and ago(now - 30 * 86400 * NS, now) == "30 d ago"
    assert ago(now + 5 * NS, now) == "in 5 s"  # a clock ahead of ours
    assert duration(13_494_802_000) == "13.5 s" and duration(1_040_000) == "1.04 ms"
    assert duration(123 * NS) == "2 min 3 s" and duration(3 * 86400 * NS + 7200 * NS) == "3 d 2 h"


def test_dump_since_and_until_as_people_type_them(bot: tuple[Path, dict[str, int]]) -> None:
    path, _ = bot
    everything = lines(run("dump", path, "--json"))
    assert [r["seq"] for r in lines(run("dump", path, "--json", "--since", "2h"))] == [r["seq"] for r in everything]
    assert lines(run("dump", path, "--json", "--until", "1h")) == []
    assert lines(run("dump", path, "--json", "--since", "10 min ago", "--until", "now")) == everything
    first = everything[0]["time"][:16].replace("T", " ")  # "2026-12-01 03:00": minutes, as typed
    assert lines(run("dump", path, "--json", "--since", first))[0]["seq"] == 1


def test_tables_show_relative_times_beside_exact_ones(
    bot: tuple[Path, dict[str, int]], tty: Callable[..., Any]
) -> None:
    path, ids = bot
    code, text = tty("pending", path, "--no-pager", cols=140).finish()
    assert code == 0
    row = next(x for x in text.splitlines() if x.lstrip().startswith(str(ids["c"])))
    assert " s " in row or "just now" in row or "min" in row  # AGE
    assert time.strftime("%Y-%m-%dT", time.gmtime()) in row  # SINCE (UTC), exact
    with Journal(path.parent / "snap.journal") as j:
        store = StateStore(j)
        store.set("custom", "k", {"v": 1})
        store.save()
    code, text = tty("snapshots", path.parent / "snap.journal", "--no-pager", cols=120).finish()
    row = text.splitlines()[1]
    assert code == 0 and time.strftime("%Y-%m-%dT", time.gmtime()) in row and (" s ago" in row or "just now" in row)


# -- item 3: a filter that matches nothing says so ----------------------------------------------------


def test_a_typo_in_type_or_symbol_is_named_with_the_values_that_exist(bot: tuple[Path, dict[str, int]]) -> None:
    path, _ = bot
    proc = run("dump", path, "--type", "plcae_order")
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "journal: warning: no record of type 'plcae_order'; types in this journal: cancel_order, fill, "
        "place_order, reconcile_report (did you mean place_order?)"
    )
    proc = run("dump", path, "--symbol", "BTCUSDT", "--json")
    assert proc.returncode == 0 and proc.stdout == ""
    assert "no record with symbol 'BTCUSDT'; symbols in this journal: BTC/USDT, ETH/USDT" in proc.stderr
    assert "did you mean BTC/USDT?" in proc.stderr
    # a value that exists is never warned about, even beside one that does not
    proc = run("dump", path, "--json", "--type", "fill", "--type", "fil")
    assert [r["type"] for r in lines(proc)] == ["fill"]
    assert (
        proc.stderr.count("journal: warning:") == 1 and "'fil'" in proc.stderr and "did you mean fill?" in proc.stderr
    )


def test_filters_that_exist_but_match_nothing_together(bot: tuple[Path, dict[str, int]]) -> None:
    path, _ = bot
    proc = run("dump", path, "--json", "--type", "fill", "--kind", "abort")
    assert proc.stdout == "" and "no record of type 'fill'; types in the records selected: place_order" in proc.stderr
    proc = run("dump", path, "--json", "--since", "2999-01-01")
    assert proc.returncode == 0 and proc.stdout == ""
    assert "no record matches --since 2999-01-01T00:00:00.000000000Z; its records span" in proc.stderr
    proc = run("dump", path, "--json", "--type", "place_order")  # matches: no warning at all
    assert proc.stderr == "" and len(lines(proc)) == 4


# -- item 4: pictures -----------------------------------------------------------------------------


def test_show_draws_the_timeline_with_the_time_between_steps(
    bot: tuple[Path, dict[str, int]], tty: Callable[..., Any]
) -> None:
    path, ids = bot
    rows = lines(run("show", path, ids["a"], "--json"))
    code, text = tty("show", path, ids["a"], "--no-pager", cols=80).finish()
    assert code == 0
    assert "+MS" not in text and "13494.802" not in text
    assert "committed by the bot" in text and "after the intent" in text
    steps = [x for x in text.splitlines() if "●" in x]
    assert [s.split("●")[1].split()[0] for s in steps] == ["intent", "commit", "event"]
    assert "durable; the order may be sent" in steps[0] and "the exchange answered" in steps[1]
    gap = duration(rows[1]["ts_ns"] - rows[0]["ts_ns"])
    assert any("│ █" in x and x.endswith(gap) for x in text.splitlines()), (gap, text)
    assert all(len(x) <= 80 for x in text.splitlines())
    code, text = tty("show", path, ids["c"], "--no-pager").finish()
    assert "PENDING for" in text


def test_stats_shows_the_latency_distribution_and_sizes(
    bot: tuple[Path, dict[str, int]], tty: Callable[..., Any]
) -> None:
    path, ids = bot
    row = lines(run("stats", path, "--json"))[0]
    dumped = {r["seq"]: r for r in lines(run("dump", path, "--json"))}
    commit = next(r for r in dumped.values() if r["kind"] == "commit")
    expected_ms = (commit["ts_ns"] - dumped[ids["a"]]["ts_ns"]) / 1e6
    latency = row["latency"]["intent_to_commit"]
    assert latency["count"] == 1 and latency["p50_ms"] == pytest.approx(expected_ms, abs=1e-3) and expected_ms >= 20
    assert row["latency"]["intent_to_abort"]["count"] == 1
    assert sum(b["count"] for b in latency["histogram"]) == 1
    code, text = tty("stats", path, "--no-pager", cols=100).finish()
    assert code == 0 and "known only to the writer" not in text
    assert "intent -> commit latency" in text and "p50 " in text and "█" in text
    assert " KiB on disk" in text or " MiB on disk" in text


def test_latency_summary_and_sizes() -> None:
    s = latency_summary([0.3, 0.4, 1.5, 1.6, 1.7, 30.0, 2500.0])
    assert s["count"] == 7 and s["p50_ms"] == 1.6 and s["max_ms"] == 2500.0
    assert [(b["le_ms"], b["count"]) for b in s["histogram"]][:3] == [(0.5, 2), (1.0, 0), (2.0, 3)]
    assert sum(b["count"] for b in s["histogram"]) == 7
    assert latency_summary([]) == {"count": 0}
    assert size(812) == "812 B" and size(63 * 1024 * 1024 + 100_000) == "63.1 MiB" and size(1 << 30) == "1.0 GiB"


def test_pending_shows_each_age_against_the_settle_window(
    bot: tuple[Path, dict[str, int]], tty: Callable[..., Any]
) -> None:
    from recovery.exchanges import make_exchange
    from recovery.venue import settle_window_ms

    # the bot's default: derived from a default ccxt binance client's recvWindow (the CLI has no exchange)
    assert DEFAULT_SETTLE_WINDOW_MS == settle_window_ms(make_exchange("http://127.0.0.1:1"))
    path, ids = bot
    row = lines(run("pending", path, "--json"))[0]
    assert row["op"] == ids["c"] and row["settle_window_ms"] == DEFAULT_SETTLE_WINDOW_MS
    assert row["past_settle_window"] is (row["age_ms"] >= DEFAULT_SETTLE_WINDOW_MS)
    long = lines(run("pending", path, "--json", "--settle-window", 10**9))[0]
    assert long["past_settle_window"] is False
    code, text = tty("pending", path, "--no-pager", "--settle-window", 10**9, cols=120).finish()
    text = text.replace("\n", " ")
    assert "within it (may not show on the exchange yet)" in text and "left" in text
    code, text = tty("pending", path, "--no-pager", "--settle-window", 0, cols=120).finish()
    assert "1 past it" in text and "██████████ past" in text


# -- item 8: small ones ------------------------------------------------------------------------------


def test_version_names_the_package_and_the_format() -> None:
    proc = run("--version")
    assert proc.returncode == 0
    assert (
        proc.stdout.strip()
        == f"journal {metadata.version('tradejournal')} (tradejournal, journal format {FORMAT_VERSION})"
    )


def test_no_arguments_shows_the_commands_and_errors_have_one_prefix() -> None:
    proc = run()
    assert proc.returncode == EXIT_USAGE and proc.stderr == ""
    assert "COMMAND" in proc.stdout and "dump" in proc.stdout and "docs/recovery.md" in proc.stdout
    top = run("--bogus", "stats", ROOT)
    assert top.stderr.startswith("journal: error: unrecognized arguments: --bogus")
    assert top.stderr.count("journal") == 2  # the prefix and the --help hint, never "journal: error: journal:"
    sub = run("dump")
    assert sub.stderr.startswith("journal: error: dump: the following arguments are required: PATH")


def test_library_warnings_carry_the_journal_prefix(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        s = StateStore(j)
        for i in range(20):
            s.set("custom", f"k{i % 3}", {"i": i})
            if i % 10 == 9:
                s.save()
    env = lmdb.open(str(path), max_dbs=10, lib_version=0)
    snaps, chunks = env.open_db(b"snapshots"), env.open_db(b"chunks")
    with env.begin(write=True) as txn:
        digest = raw.manifest(txn, snaps, 20)["sections"]["custom"]["deltas"][-1]
        blob = bytearray(txn.get(digest, db=chunks))
        blob[-1] ^= 0xFF
        txn.put(digest, bytes(blob), db=chunks)
    env.close()
    proc = run("state", path, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["seq"] == 20  # fell back to snapshot 10 plus replay
    warned = [x for x in proc.stderr.splitlines() if "snapshot at seq 20" in x]
    assert warned and all(x.startswith("journal: warning: snapshot at seq 20 ") for x in warned), proc.stderr


def test_python_warnings_carry_the_prefix_too(bot: tuple[Path, dict[str, int]], capfd: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import warnings

    from journal.cli import maintenance

    def warn_then_answer(path: str) -> None:
        warnings.warn("the lock table looks odd", RuntimeWarning, stacklevel=1)

    monkeypatch.setattr(maintenance, "writer_pid", warn_then_answer)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["stats", str(bot[0]), "--json"]) == 0
    err = capfd.readouterr().err
    assert "journal: warning: the lock table looks odd (RuntimeWarning)" in err
