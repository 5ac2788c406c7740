"""Progress lines (issue 14): drawn on a terminal's stderr for work that takes a while, never when piped."""

from __future__ import annotations

import io
from pathlib import Path

from journal import Journal
from journal.cli.terminal import Progress, Terminal
from tests.helpers.journal_cli import journal_cmd


def test_a_progress_line_is_drawn_counted_and_erased() -> None:
    stream = io.StringIO()
    with Progress("replaying", 4, stream=stream, interval_s=0, delay_s=0) as p:
        p.update(1)
        p.update(3)
    text = stream.getvalue()
    assert "\rreplaying: 1/4 (25%)\x1b[K" in text and "\rreplaying: 3/4 (75%)\x1b[K" in text
    assert text.endswith("\r\x1b[K")  # erased when done: the output that follows starts on a clean line


def test_a_quick_job_draws_nothing_and_a_pipe_gets_no_line() -> None:
    stream = io.StringIO()
    with Progress("quick", 10, stream=stream, delay_s=60) as p:
        p.update(5)
    assert stream.getvalue() == ""
    piped = Terminal(color="auto", stdout_fd=-1, stderr_fd=-1).progress("piped", 10)
    assert piped.stream is None  # stderr is not a terminal: every call is a no-op
    piped.update(5)
    piped.close()


def test_verify_and_snapshots_piped_print_no_progress(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    with Journal(path) as j:
        for i in range(5):
            j.commit(j.begin("note", {"i": i}))
    for command in ("verify", "snapshots", "stats"):
        ran = journal_cmd(command, path)
        assert ran.returncode == 0, ran.stderr
        assert "\r" not in ran.stderr and "\x1b[K" not in ran.stderr, (command, ran.stderr)
