"""Journal integrity on real disks, copies and operators (issue 11, items 2, 4, 5, 6).

Damaged directories are opened in subprocesses: before the fix a truncated
data file killed the writer, a reader and ``journal verify`` with SIGBUS.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal import Journal, JournalLockedError, NotAJournalError
from journal.errors import (
    AlreadyOpenError,
    ForeignEnvironmentError,
    JournalError,
    StorageAccessError,
    TruncatedJournalError,
)
from journal.log import storage as storage_module
from journal.log.storage import Storage, makedirs_durable, write_durable_file
from tests.helpers.damage import (
    CASES,
    DamageCase,
    empty_data_file,
    foreign_environment,
    lock_file_is_directory,
    make_journal,
    path_is_regular_file,
    read_only_bind_mount,
    remove_data_file,
    truncate_data_file,
)

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


def _open_in_child(path: Path) -> dict[str, str]:
    """Open as writer, then as reader, in one subprocess: ``{mode: "OK 600" | "ERROR Class: message"}``."""
    proc = subprocess.run([sys.executable, "-m", "tests.helpers.damage_child", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode} (-7 is SIGBUS): {proc.stdout} {proc.stderr[-1500:]}"
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


def _journal_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "journal", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def _snapshot(path: Path) -> dict[str, bytes | None]:
    """Names in the directory and data.mdb's bytes: what a refused open must leave alone."""
    if not path.is_dir():
        return {"<file>": path.read_bytes()}
    out: dict[str, bytes | None] = {name: None for name in os.listdir(path)}
    if (path / "data.mdb").is_file():
        out["data.mdb"] = (path / "data.mdb").read_bytes()
    return out


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_journal(tmp_path_factory.mktemp("healthy") / "bot.journal")


def _damaged(healthy: Path, tmp_path: Path, make: object) -> Path:
    path = tmp_path / "bot.journal"
    shutil.copytree(healthy, path)
    make(path)  # type: ignore[operator]
    return path


# -- item 4: truncated and emptied files -----------------------------------------


def test_truncated_data_file_is_reported_not_sigbus(healthy: Path, tmp_path: Path) -> None:
    path = _damaged(healthy, tmp_path, truncate_data_file)
    for mode, line in _open_in_child(path).items():
        assert line.startswith("ERROR TruncatedJournalError:"), (mode, line)
        assert "was truncated" in line and "bytes" in line and "restore the journal directory from a backup" in line
    verify = _journal_cli("verify", str(path))
    assert verify.returncode > 0, f"journal verify died with {verify.returncode}: {verify.stderr[-1500:]}"
    assert "truncated" in verify.stderr + verify.stdout and "Traceback" not in verify.stderr


def test_emptied_data_file_is_not_reinitialised_as_a_new_journal(healthy: Path, tmp_path: Path) -> None:
    with Journal(healthy, readonly=True) as original:
        journal_id = original.journal_id
    path = _damaged(healthy, tmp_path, empty_data_file)
    before = _snapshot(path)
    for readonly in (False, True):
        with pytest.raises(TruncatedJournalError, match="data file is empty .*not re-initialised") as info:
            Journal(path, readonly=readonly)
        assert "move this directory away" in str(info.value)
    assert _snapshot(path) == before and (path / "data.mdb").stat().st_size == 0
    shutil.rmtree(path)  # the explicit step: restore the backup (here: the healthy copy)
    shutil.copytree(healthy, path)
    with Journal(path) as restored:
        assert restored.journal_id == journal_id and restored.last_seq == 600


def test_missing_data_file_beside_lock_files_is_not_reinitialised(healthy: Path, tmp_path: Path) -> None:
    path = _damaged(healthy, tmp_path, remove_data_file)
    with pytest.raises(TruncatedJournalError, match="data file is missing, but writer.lock and lock.mdb show"):
        Journal(path)
    assert not (path / "data.mdb").exists()
    (path / "writer.lock").unlink()
    with pytest.raises(TruncatedJournalError, match="but lock.mdb show"):
        Journal(path)


def test_fresh_directories_still_become_journals(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "left_by_failed_open").mkdir()
    (tmp_path / "left_by_failed_open" / "writer.lock").write_bytes(b"")  # what a failed first open leaves
    for path in (tmp_path / "empty", tmp_path / "left_by_failed_open", tmp_path / "a" / "b" / "new"):
        with Journal(path) as journal:
            journal.record("hello", {})
        with Journal(path, readonly=True) as reader:
            assert reader.last_seq == 1


def test_failed_first_open_leaves_no_traces(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    path.mkdir()
    (path / "lock.mdb").mkdir()  # LMDB cannot open its lock file
    with pytest.raises(JournalError):
        Journal(path)
    assert sorted(os.listdir(path)) == ["lock.mdb", "writer.lock"]
    assert (path / "writer.lock").stat().st_size == 0 and not (path / "data.mdb").exists()
    (path / "lock.mdb").rmdir()
    with Journal(path) as journal:  # an empty writer.lock is no trace of a journal
        journal.record("hello", {})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_damage_case_is_reported_in_a_subprocess(healthy: Path, tmp_path: Path, case: DamageCase) -> None:
    """The campaign's case list: each damage gives its error class, no signal, and the files stay as they were."""
    path = _damaged(healthy, tmp_path, case.make)
    before = _snapshot(path)
    seen = _open_in_child(path)
    for mode, expected in (("writer", case.writer_error), ("reader", case.reader_error)):
        word = seen[mode].split(":")[0].split()
        assert word[-1] == expected or (expected == "OK" and word[0] == "OK"), (mode, seen[mode])
    after = _snapshot(path)
    if "writer.lock" not in before and (path / "writer.lock").exists():
        assert (path / "writer.lock").stat().st_size == 0  # an empty lock file: no trace of a journal
        after.pop("writer.lock")
    assert after == before, f"the refused opens changed the directory: {sorted(before)} -> {sorted(after)}"


# -- item 5: foreign and unusual directories ------------------------------------


def test_foreign_lmdb_environment_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.lmdb"
    foreign_environment(path)
    (path / "lock.mdb").unlink()
    before = _snapshot(path)
    with pytest.raises(ForeignEnvironmentError, match="another program's LMDB environment.*'config', 'users'"):
        Journal(path)
    assert _snapshot(path) == before, "writer.lock or lock.mdb left behind in another program's directory"
    with pytest.raises(ForeignEnvironmentError):
        Journal(path, readonly=True)


def test_path_that_is_a_regular_file_gives_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    path_is_regular_file(path)
    with pytest.raises(NotAJournalError, match="is a file, not a journal directory"):
        Journal(path)
    with pytest.raises(NotAJournalError, match="is a file, not a journal directory"):
        Journal(path, readonly=True)
    with pytest.raises(StorageAccessError, match="a file stands where a directory belongs"):
        Journal(path / "inner")


def test_writer_lock_that_is_a_directory_gives_a_journal_error(healthy: Path, tmp_path: Path) -> None:
    path = _damaged(healthy, tmp_path, lock_file_is_directory)
    with pytest.raises(StorageAccessError, match="writer.lock: cannot open writer.lock .*move it away") as info:
        Journal(path)
    assert info.value.path == str(path / "writer.lock")
    with Journal(path, readonly=True) as reader:  # readers never touch writer.lock
        assert reader.last_seq == 600


def test_read_only_open_beside_own_writer_says_to_share_the_journal(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as writer:
        writer.record("x", {})
        with pytest.raises(AlreadyOpenError, match="already open for writing in this process.*read through that"):
            Journal(tmp_path / "j", readonly=True)
    with Journal(tmp_path / "j", readonly=True):
        with pytest.raises(AlreadyOpenError, match="already open read-only in this process"):
            Journal(tmp_path / "j")
    with Journal(tmp_path / "j") as writer:  # both released on close
        writer.record("y", {})


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's own tmp directories are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="tj-public-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_AS_NOBODY = textwrap.dedent(
    """
    import logging, os, sys
    from journal import Journal, JournalError  # imported first: the stdlib may be unreadable to nobody
    import journal.state.store, encodings.idna, uuid, ipaddress, fractions, datetime, email.parser, fcntl
    from journal.log.codec import decode, encode, warm_up
    warm_up(); decode(encode({"a": [1, "b"]}))
    logging.basicConfig(level=logging.WARNING, format="LOG %(message)s", stream=sys.stdout)
    os.setgid(65534); os.setuid(65534)
    for readonly in (False, True):
        try:
            with Journal(sys.argv[1], readonly=readonly) as j:
                print("OPENED", readonly, j.last_seq, j.verify().ok, flush=True)
        except JournalError as exc:
            print("REFUSED", readonly, type(exc).__name__, exc, flush=True)
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_journal_without_write_permission_is_readable_read_only(public_dir: Path) -> None:
    path = make_journal(public_dir / "bot.journal", ops=20)
    for name in os.listdir(path):
        os.chown(path / name, NOBODY, NOBODY)
        os.chmod(path / name, 0o444)
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o555)
    proc = subprocess.run([sys.executable, "-c", _AS_NOBODY, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    out = proc.stdout
    assert "REFUSED False StorageAccessError" in out and "Permission denied" in out, out + proc.stderr
    assert "readonly=True" in out  # the writer's error says how to inspect it
    assert "OPENED True 40 True" in out, out + proc.stderr
    assert "without LMDB's reader table" in out and "no writer may run" in out, out


@pytest.fixture
def ro_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A journal and a read-only bind mount of its directory's parent (read-only media)."""
    source = tmp_path / "disk"
    make_journal(source / "bot.journal", ops=20)
    mount = read_only_bind_mount(source, tmp_path / "ro")
    try:
        view = mount.__enter__()
    except PermissionError as exc:
        pytest.skip(f"cannot make a read-only bind mount here (needs root and mount): {exc}")
    try:
        yield source / "bot.journal", view / "bot.journal"
    finally:
        mount.__exit__(None, None, None)


def test_journal_on_read_only_media_is_readable_read_only(
    ro_view: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _, path = ro_view
    with pytest.raises(StorageAccessError, match="read-only file system|Read-only file system") as info:
        Journal(path)
    assert "readonly=True" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="journal.storage"):
        with Journal(path, readonly=True) as reader:
            assert reader.last_seq == 40 and reader.verify().ok
            assert len(list(reader.records())) == 40
    assert any("no writer may run" in r.getMessage() for r in caplog.records)
    proc = _journal_cli("verify", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lockless_reader_is_refused_while_a_writer_runs(ro_view: tuple[Path, Path]) -> None:
    source, view = ro_view
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from journal import Journal; j = Journal(sys.argv[1]); "
         "print('ready', flush=True); sys.stdin.readline()", str(source)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(JournalLockedError, match=f"cannot read safely.*pid {holder.pid}.*is running") as info:
            Journal(view, readonly=True)
        assert info.value.pid == holder.pid and info.value.alive is True
    finally:
        holder.kill()
        holder.wait()
    with Journal(view, readonly=True) as reader:  # the writer is gone: reading is safe again
        assert reader.last_seq == 40


# -- item 6: the writer lock belongs to the process that took it ------------------

_FORKING_BOT = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from journal import Journal
    journal = Journal(sys.argv[1])
    journal.record("started", {})
    if sys.argv[2] == "os.fork":
        r, w = os.pipe()
        worker = os.fork()
        if worker == 0:  # at-fork hooks have run once os.fork returns here
            os.write(w, b"x")
            time.sleep(120)
            os._exit(0)
        os.read(r, 1)
    else:
        def work(w):
            os.write(w, b"x")
            time.sleep(120)
        r, w = os.pipe()
        proc = multiprocessing.get_context("fork").Process(target=work, args=(w,))
        proc.start()
        worker = proc.pid
        os.read(r, 1)
    print(os.getpid(), worker, flush=True)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_writer_lock_is_not_kept_by_a_forked_worker(tmp_path: Path, how: str) -> None:
    path = tmp_path / "bot.journal"
    bot = subprocess.Popen([sys.executable, "-c", _FORKING_BOT, str(path), how], cwd=ROOT, stdout=subprocess.PIPE,
                           text=True)  # fmt: skip
    assert bot.stdout is not None
    bot_pid, worker_pid = map(int, bot.stdout.readline().split())
    try:
        bot.send_signal(signal.SIGKILL)
        bot.wait()
        os.kill(worker_pid, 0)  # the worker outlives the bot
        with Journal(path) as restarted:  # and does not keep the restarted bot out
            restarted.record("restarted", {})
            assert restarted.last_seq == 2
    finally:
        try:
            os.kill(worker_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert bot_pid == bot.pid


_LEAKING_BOT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from journal import Journal
    journal = Journal(sys.argv[1])
    lock_fd = next(int(fd) for fd in os.listdir("/proc/self/fd")
                   if os.readlink(f"/proc/self/fd/{fd}").endswith("writer.lock"))
    # A helper started without exec's cleanup (here: the lock file passed on on purpose)
    helper = subprocess.Popen(["sleep", "120"], pass_fds=[lock_fd])
    print(os.getpid(), helper.pid, flush=True)
    time.sleep(120)
    """
)


def test_lock_error_says_whether_the_holder_is_alive(tmp_path: Path) -> None:
    path = tmp_path / "bot.journal"
    bot = subprocess.Popen([sys.executable, "-c", _LEAKING_BOT, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                           text=True)  # fmt: skip
    assert bot.stdout is not None
    bot_pid, helper_pid = map(int, bot.stdout.readline().split())
    try:
        with pytest.raises(JournalLockedError, match=f"held by pid {bot_pid} \\(running\\)") as info:
            Journal(path)
        assert (info.value.pid, info.value.alive) == (bot_pid, True)
        bot.send_signal(signal.SIGKILL)
        bot.wait()
        with pytest.raises(JournalLockedError, match=f"pid {bot_pid}, which took it, has exited.*fuser -v") as info:
            Journal(path)
        assert (info.value.pid, info.value.alive) == (bot_pid, False)
    finally:
        os.kill(helper_pid, signal.SIGKILL)
        bot.kill()
        bot.wait()
    deadline = time.monotonic() + 30
    while True:  # the helper's exit closes the last copy of the lock file
        try:
            with Journal(path) as journal:
                journal.record("after", {})
            break
        except JournalLockedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


# -- item 2: directory fsyncs ------------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """Every os.fsync in this process: the path, and for a directory the names it held then."""
    calls: list[tuple[str, list[str]]] = []
    real = os.fsync

    def recording(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        calls.append((path, sorted(os.listdir(path)) if os.path.isdir(path) else []))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return calls


def test_new_journal_fsyncs_its_directory_and_parents(tmp_path: Path, fsyncs: list[tuple[str, list[str]]]) -> None:
    path = tmp_path / "bots" / "bot.journal"
    with Journal(path) as journal:
        journal.begin("place_order", {"n": 1})
    synced = {p: names for p, names in fsyncs}
    assert str(tmp_path) in synced, "the new 'bots' directory's entry was not made durable"
    assert str(tmp_path / "bots") in synced, "the journal directory's entry was not made durable"
    # the journal directory is fsynced once its files exist, so their names survive a power cut
    assert {"data.mdb", "lock.mdb", "writer.lock"} <= set(synced[str(path)]), fsyncs


def test_reopening_a_journal_fsyncs_its_directory_again(tmp_path: Path, fsyncs: list[tuple[str, list[str]]]) -> None:
    Journal(tmp_path / "j").close()
    fsyncs.clear()
    Journal(tmp_path / "j").close()
    assert [p for p, _ in fsyncs] == [str(tmp_path / "j"), str(tmp_path)]


def test_copy_fsyncs_files_then_directory_then_parent(tmp_path: Path, fsyncs: list[tuple[str, list[str]]]) -> None:
    make_journal(tmp_path / "j", ops=5)
    dest = tmp_path / "backups" / "b1"
    fsyncs.clear()
    storage = Storage(tmp_path / "j", readonly=True, map_size=1 << 20, max_map_size=1 << 30)
    try:
        storage.copy(str(dest))
    finally:
        storage.close()
    order = [p for p, _ in fsyncs]
    assert order == [str(tmp_path), str(tmp_path / "backups"), str(dest / "data.mdb"), str(dest),
                     str(tmp_path / "backups")], order  # fmt: skip
    with Journal(dest, readonly=True) as copy:
        assert copy.last_seq == 10 and copy.verify().ok


def test_write_durable_file_replaces_whole_and_syncs(tmp_path: Path, fsyncs: list[tuple[str, list[str]]]) -> None:
    target = tmp_path / "state.json"
    write_durable_file(target, b"one")
    write_durable_file(target, b"two" * 1000)
    assert target.read_bytes() == b"two" * 1000 and target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left
    kinds = ["dir" if os.path.isdir(p) else "file" for p, _ in fsyncs]
    assert kinds == ["file", "dir", "file", "dir"], fsyncs  # content first, then the name
    assert makedirs_durable(tmp_path / "x" / "y") == [str(tmp_path / "x"), str(tmp_path / "x" / "y")]
    assert makedirs_durable(tmp_path / "x" / "y") == []


def test_fsync_dir_tolerates_file_systems_that_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def refuse(fd: int) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", refuse)
    storage_module.fsync_dir(tmp_path)  # EINVAL: the file system persists entries itself

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
        storage_module.fsync_dir(tmp_path)


def test_child_of_fork_cannot_release_or_keep_the_parent_lock(tmp_path: Path) -> None:
    """The at-fork hook closes the child's copy of writer.lock; the parent keeps its lock."""
    journal = Journal(tmp_path / "j")
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=os._exit, args=(0,))
    child.start()
    child.join()
    probe = subprocess.run([sys.executable, "-c", "import sys; from journal import Journal; Journal(sys.argv[1])",
                            str(tmp_path / "j")], cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert probe.returncode != 0 and f"held by pid {os.getpid()}" in probe.stderr
    journal.record("still the writer", {})
    journal.close()
