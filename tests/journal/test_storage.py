"""One writer, read-only readers, fork detection, format versions, file modes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import pytest

from journal import (
    ForkError,
    FormatVersionError,
    Journal,
    JournalLockedError,
    NotAJournalError,
)
from journal.log.codec import encode

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str, **kw):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_second_writer_in_same_process_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path / "j"):
        with pytest.raises(
            JournalLockedError, match=f"already open for writing in this process \\(pid {os.getpid()}\\)"
        ):
            Journal(tmp_path / "j")
    with Journal(tmp_path / "j"):  # released on close
        pass


def test_second_writer_process_is_refused_with_holder_pid(tmp_path: Path) -> None:
    path = tmp_path / "j"
    holder = _python(
        """
        import sys, time
        from journal import Journal
        j = Journal(sys.argv[1])
        print("ready", flush=True)
        sys.stdin.readline()
        """,
        str(path),
        stdin=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(JournalLockedError, match=f"held by pid {holder.pid}") as info:
            Journal(path)
        assert info.value.pid == holder.pid
        with Journal(path, readonly=True) as reader:  # readers are welcome
            assert reader.pending() == []
    finally:
        holder.kill()
        holder.wait()
    with Journal(path) as j:  # the dead holder's lock file is taken over
        j.record("after", {})


def test_reader_process_sees_a_consistent_prefix_while_writer_appends(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal(path) as j:
        j.record("start", {})
        reader = _python(
            """
            import sys
            from journal import Journal
            last = 0
            seen = 0
            for _ in range(40):
                with Journal(sys.argv[1], readonly=True) as r:
                    seqs = [rec.seq for rec in r.records()]
                    assert seqs == list(range(1, len(seqs) + 1)), seqs[:5]
                    assert len(seqs) >= last
                    assert r.verify().ok
                    last = len(seqs)
                    seen += 1
            print(seen, last)
            """,
            str(path),
        )
        n = 0
        while reader.poll() is None and n < 20000:
            op = j.begin("place_order", {"n": n})
            op.commit({"id": n})
            n += 1
        out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    seen, last = map(int, out.split())
    assert seen == 40 and last >= 1


def test_use_after_fork_is_detected(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    j.record("before", {})
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must refuse, and must not release the parent's lock
        os.close(r)
        try:
            j.record("child", {})
            os.write(w, b"wrote")
        except ForkError as exc:
            os.write(w, ("ForkError:" + str(exc)).encode())
        except BaseException as exc:  # pragma: no cover - reported to the parent
            os.write(w, repr(exc).encode())
        os._exit(0)
    os.close(w)
    message = os.read(r, 4096).decode()
    os.waitpid(pid, 0)
    os.close(r)
    assert message.startswith("ForkError:") and "open the journal again in the child" in message
    j.record("after", {})  # the parent is unaffected
    assert j.last_seq == 2
    j.close()


def _fake_journal(path: Path, version: object) -> None:
    env = lmdb.open(str(path), max_dbs=10, lib_version=0)
    meta = env.open_db(b"meta")
    env.open_db(b"log")
    with env.begin(write=True) as txn:
        txn.put(b"format_version", encode(version), db=meta)
        txn.put(b"journal_id", encode("Ab3dE5gH"), db=meta)
    env.close()


def test_older_format_version_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    _fake_journal(tmp_path / "old", 0)
    with pytest.raises(FormatVersionError, match="format version 0, this tradejournal reads version 2.*older"):
        Journal(tmp_path / "old")


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    _fake_journal(tmp_path / "new", 7)
    with pytest.raises(FormatVersionError, match="newer tradejournal: upgrade"):
        Journal(tmp_path / "new", readonly=True)


def test_path_that_is_not_a_journal(tmp_path: Path) -> None:
    with pytest.raises(NotAJournalError, match="no such journal directory"):
        Journal(tmp_path / "missing", readonly=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAJournalError, match="no data.mdb"):
        Journal(tmp_path / "empty", readonly=True)
    env = lmdb.open(str(tmp_path / "other"), lib_version=0)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(NotAJournalError, match="not a tradejournal journal"):
        Journal(tmp_path / "other", readonly=True)


def test_files_are_private_regardless_of_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with Journal(tmp_path / "j") as j:
            j.record("x", {})
    finally:
        os.umask(old)
    assert (tmp_path / "j").stat().st_mode & 0o777 == 0o700
    for name in ("data.mdb", "lock.mdb", "writer.lock"):
        assert (tmp_path / "j" / name).stat().st_mode & 0o777 == 0o600, name
