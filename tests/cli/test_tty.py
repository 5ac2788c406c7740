"""The ``journal`` command on a real terminal (issue 16, items 1 and 6): fitting, colour, the pager, questions.

Every test here runs the command on a pseudo-terminal (the ``tty`` fixture in
conftest.py): the command sees a terminal because it has one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from journal import Journal

ROOT = Path(__file__).resolve().parents[2]

ORDER = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "amount": Decimal("0.00100000"),
         "price": Decimal("30000.10"), "params": {"timeInForce": "GTC", "postOnly": False}}  # fmt: skip
RESULT = {"id": "1234567890", "symbol": "BTC/USDT", "side": "buy", "type": "limit", "status": "open",
          "price": Decimal("30000.10"), "amount": Decimal("0.001"), "filled": Decimal("0"),
          "remaining": Decimal("0.001"), "average": None, "cost": None, "fee": None, "trades": [],
          "timestamp": 1700000000000}  # fmt: skip


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 orders placed and committed (120 records), one left pending, one aborted."""
    path = tmp_path_factory.mktemp("tty") / "bot.journal"
    with Journal(path) as j:
        for op in j.begin_many([("place_order", ORDER)] * 60):
            op.commit(dict(RESULT, client_id=op.client_id), wait=False)
        j.begin("place_order", dict(ORDER, symbol="ETH/USDT"))
        j.begin("cancel_order", {"client_id": "tjXXXX", "symbol": "BTC/USDT"}).abort("unknown order", wait=True)
    return path


def _lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


# -- item 1: tables that fit ---------------------------------------------------------


@pytest.mark.parametrize("cols", [80, 100, 132])
def test_dump_fits_the_terminal_and_keeps_what_matters(orders: Path, tty: Callable[..., Any], cols: int) -> None:
    session = tty("dump", orders, "--no-pager", "--from", 60, "--to", 62, cols=cols)
    code, text = session.finish()
    assert code == 0, text
    lines = _lines(text)
    assert lines[0].split()[:3] == ["SEQ", "TIME", "(UTC)"]
    assert all(len(line) <= cols for line in lines), [len(x) for x in lines]
    intent, commit = lines[1], lines[2]  # seq 60 is the last intent, 61 the first commit
    # the DATA column is not just an ellipsis: symbol, side, amount and price come first, then the status
    assert "intent" in intent and "BTC/USDT buy 0.00100000 @ 30000.10" in intent
    assert "commit" in commit and "BTC/USDT buy 0.001 @ 30000.10 open" in commit
    assert commit.endswith("…") or len(commit) < cols  # cut, and marked as cut
    if cols >= 100:
        assert "AGO" in lines[0] and re.search(r"\s(now|\d+[smhd])\s", intent)  # a relative time beside the exact one


def test_wrap_shows_all_of_the_data_within_the_width(orders: Path, tty: Callable[..., Any]) -> None:
    code, text = tty("dump", orders, "--no-pager", "--from", 61, "--to", 61, "--wrap", cols=80).finish()
    assert code == 0
    lines = _lines(text)
    assert len(lines) > 2 and all(len(line) <= 80 for line in lines)
    joined = "".join(line.strip() for line in lines[1:]).replace(" ", "")
    assert "timestamp=1700000000000" in joined  # the last field, which a cut line loses
    assert lines[2].startswith(" " * 20)  # continuation lines sit under DATA


def test_line_mode_shows_every_field_vertically(orders: Path, tty: Callable[..., Any]) -> None:
    code, text = tty("dump", orders, "--no-pager", "--from", 61, "--to", 62, "--line").finish()
    assert code == 0
    lines = _lines(text)
    assert any(re.fullmatch(r"\s*seq = 61", x) for x in lines) and any(re.fullmatch(r"\s*seq = 62", x) for x in lines)
    assert any(re.fullmatch(r"\s*data\.status = open", x) for x in lines)
    assert any(re.fullmatch(r"\s*data\.timestamp = 1700000000000", x) for x in lines)
    assert text.count("\n\n") >= 1 or "" in text.split("\n")  # records are separated by a blank line


def test_generic_tables_drop_columns_and_say_which(orders: Path, tty: Callable[..., Any]) -> None:
    code, text = tty("pending", orders, "--no-pager", cols=60).finish()
    assert code == 0
    lines = _lines(text)
    assert all(len(line) <= 60 for line in lines), lines
    note = " ".join(lines[-2:])
    assert "hidden to fit 60 columns" in note and "--line" in note
    assert "ETH/USDT" in text  # the data column survives


def test_csv_on_a_terminal_is_plain_csv(orders: Path, tty: Callable[..., Any]) -> None:
    session = tty("dump", orders, "--no-pager", "--to", 2, "--csv")
    code, text = session.finish()
    assert code == 0
    lines = _lines(text)
    assert lines[0] == "seq,time,ts_ns,kind,type,op,client_id,source,data,extra,checksum,raw"
    assert lines[1].startswith("1,") and '"{""symbol"":""BTC/USDT""' in lines[1]
    assert b"\x1b[" not in session.raw  # CSV is data: never coloured


# -- colour -------------------------------------------------------------------------------


def test_colour_only_on_a_terminal_and_never_with_no_color(orders: Path, tty: Callable[..., Any]) -> None:
    coloured = tty("dump", orders, "--no-pager", "--from", 60, "--to", 62)
    coloured.finish()
    assert b"\x1b[32m" in coloured.raw  # commit in green
    plain = tty("dump", orders, "--no-pager", "--to", 4, env={"NO_COLOR": "1"})
    plain.finish()
    assert b"\x1b[" not in plain.raw
    never = tty("dump", orders, "--no-pager", "--to", 4, "--color", "never")
    never.finish()
    assert b"\x1b[" not in never.raw
    piped = subprocess.run([sys.executable, "-m", "journal", "dump", str(orders), "--table", "--to", "62"], cwd=ROOT,
                           capture_output=True)  # fmt: skip
    assert piped.returncode == 0 and b"\x1b[" not in piped.stdout
    forced = subprocess.run([sys.executable, "-m", "journal", "dump", str(orders), "--table", "--to", "62", "--color",
                             "always"], cwd=ROOT, capture_output=True)  # fmt: skip
    assert b"\x1b[32m" in forced.stdout


# -- the pager ------------------------------------------------------------------------------


def test_long_output_goes_through_less_until_the_person_quits(orders: Path, tty: Callable[..., Any]) -> None:
    session = tty("dump", orders, rows=12, cols=100)
    session.expect("place_order")
    session.expect(":")  # less's prompt: it waits for the person
    assert "   122 " not in session.text  # the last record is below the screen
    session.send(b"q")
    code, text = session.finish()
    assert code == 0, text
    assert "Traceback" not in text and "error" not in text


def test_no_pager_and_one_screen_need_no_key(orders: Path, tty: Callable[..., Any]) -> None:
    code, text = tty("dump", orders, "--no-pager", rows=12, cols=100).finish(timeout=20)
    assert code == 0 and re.search(r"^\s*122 ", text, re.M)  # everything, straight to the terminal
    code, text = tty("stats", orders, rows=40).finish(timeout=20)  # fits one screen: less -F quits by itself
    assert code == 0 and "records" in text


def test_pager_is_the_users_and_only_on_a_terminal(orders: Path, tty: Callable[..., Any]) -> None:
    marker = {"PAGER": "sed 's/^/PAGED: /'"}
    code, text = tty("dump", orders, "--to", 3, env=marker).finish()
    assert code == 0 and text.count("PAGED: ") == 4  # header and three rows
    code, text = tty("dump", orders, "--to", 3, env={**marker, "JOURNAL_PAGER": "sed 's/^/MINE: /'"}).finish()
    assert text.count("MINE: ") == 4 and "PAGED" not in text
    code, text = tty("dump", orders, "--to", 3, "--no-pager", env=marker).finish()
    assert "PAGED" not in text and "place_order" in text
    piped = subprocess.run([sys.executable, "-m", "journal", "dump", str(orders), "--to", "3"], cwd=ROOT,
                           capture_output=True, text=True, env={**_env(), **marker})  # fmt: skip
    assert piped.returncode == 0 and "PAGED" not in piped.stdout and piped.stdout.count("\n") == 3


def test_messages_come_after_the_pager(orders: Path, tty: Callable[..., Any]) -> None:
    session = tty("dump", orders, "--type", "plcae_order", env={"PAGER": "sed 's/^/PAGED: /'"}, stderr=False)
    code, text = session.finish()
    assert code == 0 and "PAGED" not in text  # nothing matched: nothing paged
    assert "journal: warning: no record of type 'plcae_order'" in session.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PAGER", "JOURNAL_PAGER", "NO_COLOR")}
