"""Every command docs/recovery.md shows runs, against a journal in the situation its section describes.

The runbook tags each code block with ``<!-- runbook: TAG -->``. Blocks with
tags of one :class:`Situation` run in the page's order against one journal
built for it (with a real bot, a real exchange simulator over HTTP on
127.0.0.1, real damage, a real forked process holding the lock, a real write
failure). Each shell line runs in bash with the venv's ``journal`` on PATH,
in the directory that holds ``bot.journal``, with ``$OP``, ``$PID``, ``$SEQ``
filled in as a person would from the step before; its exit code must be the
``# exit N`` the page gives (0 when it gives none). Python blocks run with the
bot's ``manager`` at hand. After each block the situation checks what the page
says its output means.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, cast

import lmdb
import pytest

from journal import Journal
from journal.state.store import StateStore
from recovery import StateManager
from recovery.exchanges import make_exchange
from recovery.sim.server import Simulator
from recovery.testing import pending_order
from tests.helpers.tty import TtySession

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = (ROOT / "docs" / "recovery.md").read_text()
BLOCK = re.compile(r"<!-- runbook: (?P<tag>[a-z_]+) -->\n```(?P<lang>sh|python)\n(?P<body>.*?)```", re.S)
FAST = {"settle_window_ms": 0}


@dataclass
class Ran:
    """One command of the page and what it did."""

    line: str
    code: int
    out: str
    err: str


@dataclass
class Situation:
    """A journal in trouble, built in ``cwd``; subclasses build it and check what the page promises."""

    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    ns: dict[str, Any] = field(default_factory=dict)
    ran: list[Ran] = field(default_factory=list)
    printed: str = ""
    sim: Simulator | None = None
    #: The block being checked: its index among this situation's blocks, and its language.
    block: int = 0
    lang: str = "sh"

    #: The runbook's tags whose blocks run in this situation (a class attribute, not a field).
    tags: ClassVar[tuple[str, ...]] = ()

    def build(self) -> None:
        raise NotImplementedError

    def before(self, tag: str) -> None:
        """Called before each block (a situation may move on: the bot starts, another host)."""

    def check(self, tag: str) -> None:
        """What the page says the block's output means."""

    def close(self) -> None:
        manager = self.ns.get("manager")
        if manager is not None:
            manager.close()
        if self.sim is not None:
            self.sim.stop()

    # -- helpers -------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.cwd / "bot.journal"

    def out(self, needle: str) -> Ran:
        """The last command whose line contains ``needle``."""
        return next(r for r in reversed(self.ran) if needle in r.line)

    def start_simulator(self) -> Simulator:
        self.sim = Simulator(prices={"BTC/USDT": "30000", "ETH/USDT": "2000"}).start()
        return self.sim


def _pending_journal(path: Path) -> int:
    with Journal(path) as j:
        a = j.begin("place_order", {"symbol": "BTC/USDT", "side": "buy", "type": "limit",
                                    "amount": Decimal("0.01"), "price": Decimal("29000")})  # fmt: skip
        a.commit({"id": "1", "client_id": a.client_id, "symbol": "BTC/USDT", "status": "open"}, wait=True)
        op = j.begin("place_order", {"symbol": "ETH/USDT", "side": "buy", "type": "limit", "amount": Decimal("0.5"),
                                     "price": Decimal("1900")})  # fmt: skip
        return op.op_id


class SafeMode(Situation):
    """A pending order the exchange holds, and the exchange down when the bot starts: safe mode."""

    tags = ("safe_mode",)

    def build(self) -> None:
        sim = self.start_simulator()
        with Journal(self.path) as j:
            op = pending_order(j, "BTC/USDT", "0.01", "29000", sent_to=sim)
        self.env["OP"] = str(op.op_id)
        sim.faults.down()
        manager = StateManager(self.path, make_exchange(sim.url), reconcile_settings=FAST)
        manager.start()  # the bot runs, holding the journal; the commands run beside it
        self.ns["manager"] = manager
        self.op = op

    def check(self, tag: str) -> None:
        if self.lang == "python":
            assert self.printed.startswith("True\n")
            assert f"{self.op.op_id} {self.op.client_id} BTC/USDT the exchange could not be asked" in self.printed
            assert "NetworkError" in self.printed
        else:
            assert re.search(rf"^\s*{self.op.op_id}\s", self.out("journal pending").out, re.M)
            assert "past it" in self.out("journal pending").out
            assert "PENDING for" in self.out("journal show").out
            report = self.out("reconcile_report").out
            assert "the exchange could not be asked" in report and "NetworkError" in report


class SafeModeOut(SafeMode):
    """The same, and then the exchange answers again."""

    tags = ("safe_mode_out",)

    def before(self, tag: str) -> None:
        assert self.sim is not None and self.ns["manager"].safe_mode
        self.sim.faults.up()

    def check(self, tag: str) -> None:
        assert self.printed == "1 []\nFalse\n"
        assert self.ns["manager"].state["orders"][self.op.client_id]["status"] == "open"


class Pending(Situation):
    """A bot stopped with an order pending; the exchange cannot tell (its history no longer holds it)."""

    tags = ("pending",)

    def build(self) -> None:
        self.op = _pending_journal(self.path)
        self.env["OP"] = str(self.op)

    def check(self, tag: str) -> None:
        if not any("resolve" in r.line for r in self.ran):
            assert "PENDING for" in self.out("journal show").out and "ETH/USDT buy 0.5 @ 1900" in self.out("show").out
            return
        dry, real = [r for r in self.ran if "resolve" in r.line]
        assert "would write" in dry.out and "manual_resolve" in dry.out and "nothing written" in dry.out
        assert "written to" in real.out
        assert "no pending operations" in self.ran[-1].out
        with Journal(self.path, readonly=True) as j:
            commit = [r for r in j.timeline(self.op) if r.kind == "commit"]
            assert [(r.source, r.data) for r in commit] == [("manual", {"id": "98765", "status": "closed"})]
            assert StateStore(j).state["orders"][j.client_id(self.op)]["status"] == "closed"


class PendingAbort(Pending):
    tags = ("pending_abort",)

    def check(self, tag: str) -> None:
        assert "aborted by hand" in self.out("journal show").out
        with Journal(self.path, readonly=True) as j:
            assert j.pending_ids() == []
            assert StateStore(j).state["orders"][j.client_id(self.op)]["status"] == "rejected"


class Damaged(Situation):
    """One byte of record 3 flipped on disk."""

    tags = ("damaged",)

    def build(self) -> None:
        _pending_journal(self.path)
        with Journal(self.path) as j:
            for i in range(5):
                j.record("tick", {"i": i})
        env = lmdb.open(str(self.path), max_dbs=10, lib_version=0)
        db = env.open_db(b"log", create=False)
        with env.begin(write=True) as txn:
            value = bytearray(cast(bytes, txn.get((3).to_bytes(8, "big"), db=db)))
            value[-1] ^= 0x40
            txn.put((3).to_bytes(8, "big"), bytes(value), db=db)
        env.close()
        self.env["SEQ"] = "3"

    def check(self, tag: str) -> None:
        verify = self.out("journal verify")
        assert "FAILED" in verify.out and "damaged at seq 3: " in verify.out and "checksum mismatch" in verify.out
        dump = self.out("journal dump")
        assert "checksum mismatch" in dump.out and re.search(r"^\s*raw = ", dump.out, re.M)
        with pytest.raises(Exception, match="seq 3"):
            Journal(self.path).close()  # the bot refuses it too


class Restore(Situation):
    """A backup taken after order A; orders B and C placed after it; then the journal is lost."""

    tags = ("restore", "restore_start", "restore_after")

    def build(self) -> None:
        sim = self.start_simulator()
        manager = StateManager(self.path, make_exchange(sim.url), reconcile_settings=FAST)
        manager.start()
        self.a = manager.place_order("BTC/USDT", "limit", "buy", "0.01", "29000")
        (self.cwd / "backups").mkdir()
        subprocess.run([sys.executable, "-m", "journal", "backup", str(self.path),
                        str(self.cwd / "backups" / "bot.journal-2026-12-01")], check=True, capture_output=True)  # fmt: skip
        self.b = manager.place_order("ETH/USDT", "limit", "buy", "0.5", "1900")
        self.c = manager.place_order("BTC/USDT", "limit", "sell", "0.01", "31000")
        manager.close()
        self.lost_ids = {self.b["client_id"], self.c["client_id"]}

    def before(self, tag: str) -> None:
        if tag == "restore_start":
            assert self.sim is not None
            self.ns["manager"] = StateManager(self.path, make_exchange(self.sim.url), reconcile_settings=FAST)

    def check(self, tag: str) -> None:
        if tag == "restore":
            assert (self.cwd / "bot.journal.damaged").is_dir()
            with Journal(self.cwd / "backups" / "bot.journal-2026-12-01", readonly=True) as backup:
                last = backup.last_seq
            assert f"(seq 1..{last})" in self.out("journal stats").out  # the backup's records only
        elif tag == "restore_start":
            assert self.printed == "2\n"
            manager = self.ns["manager"]
            assert self.lost_ids <= set(manager.state["orders"])
            new = manager.place_order("ETH/USDT", "limit", "buy", "0.1", "1800")
            assert self.sim is not None
            sent = [r.params.get("newClientOrderId") for r in self.sim.requests("POST")]
            assert new["client_id"] not in sent[:-1] and len(sent) == len(set(sent))  # no client id sent twice
        else:
            out = self.out("order_update").out
            assert out.count("adopted = true") == 2 and all(cid in out for cid in self.lost_ids)


class DiskFull(Situation):
    """The bot's writes failed for want of space (a file size limit stands in for the full disk)."""

    tags = ("disk_full",)

    CHILD = """\
import os, resource, signal, sys
from journal import Journal
from journal.state.store import StateStore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk fails the write, it does not kill the process
j = Journal(sys.argv[1])
store = StateStore(j)


def trade():  # market data and notes, a few orders
    for i in range(40):
        j.record("tick", {"symbol": "BTC/USDT", "book": "x" * 400}, wait=False)
    for op in j.begin_many([("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": 1})] * 10):
        op.commit({"id": str(op.op_id), "status": "closed"}, wait=False)


for n in range(60):
    trade()
    if n % 20 == 19:
        store.save()  # the autosave's snapshots
limit = os.path.getsize(os.path.join(sys.argv[1], "data.mdb")) + 1024 * 1024
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # from here the disk is full
try:
    while True:
        trade()
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
try:
    j.record("tick", {})
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
j.close()
"""

    def build(self) -> None:
        proc = subprocess.run([sys.executable, "-c", self.CHILD, str(self.path)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        failed, refused = proc.stdout.splitlines()[:2]
        assert failed.startswith("JournalError") and "failed" in failed, proc.stdout + proc.stderr
        assert "journal refuses writes after a failed write" in refused
        self.size = (self.path / "data.mdb").stat().st_size

    def check(self, tag: str) -> None:
        if "compact" not in self.ran[-1].line:
            assert "Avail" in self.out("df -h").out
            assert "FAILED" not in self.out("journal verify").out
            assert " MiB on disk" in self.out("journal stats").out
            assert re.search(r"^\d+ pending; settle window", self.out("journal pending").out)  # markers lost
            return
        out = " ".join(self.out("journal compact").out.split())
        assert "the compact copy replaced the file" in out and "bot.journal.before-shrink-" in out
        assert (self.path / "data.mdb").stat().st_size < self.size * 0.75  # the deleted records given back
        assert list(self.cwd.glob("bot.journal.before-shrink-*/data.mdb"))
        with Journal(self.path) as j:  # the bot starts again, and writes
            j.record("tick", {"after": "disk full"})


class StaleLock(Situation):
    """The bot died; a worker forked by native code without exec still holds the journal's lock.

    ``os.fork()`` would not do: the journal closes the lock file in a Python-forked child
    (issue 11, item 6). libc's ``fork()`` called through ctypes runs no Python fork hooks,
    as a C extension's fork would not."""

    tags = ("stale_lock",)

    CHILD = """\
import ctypes, os, sys, time
from journal import Journal
j = Journal(sys.argv[1])
worker = ctypes.CDLL(None, use_errno=True).fork()  # a native fork: no Python at-fork hooks run
if worker == 0:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    time.sleep(120)
    os._exit(0)
print(worker, flush=True)
os._exit(0)
"""

    def build(self) -> None:
        self.env["OP"] = str(_pending_journal(self.path))
        proc = subprocess.run([sys.executable, "-c", self.CHILD, str(self.path)], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        self.worker = int(proc.stdout)
        self.dead = int((self.path / "writer.lock").read_text())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.dead, 0)
                time.sleep(0.05)
            except ProcessLookupError:
                break
        self.env["PID"] = str(self.worker)

    def check(self, tag: str) -> None:
        if "kill" not in " ".join(r.line for r in self.ran):
            stats = " ".join(self.out("journal stats").out.split())
            assert (
                f"journal is held by pid {self.dead}, which has exited; its lock lives on in pid {self.worker} ("
                in stats
            )
            refused = self.out("journal resolve").err
            assert f"pid {self.worker} (" in refused and "stop that process" in refused
            return
        deadline = time.monotonic() + 10
        while "none (no bot holds the journal)" not in self.ran[-1].out and time.monotonic() < deadline:
            self.ran.append(_run("journal stats bot.journal", self))  # the killed worker may take a moment to go
        assert "none (no bot holds the journal)" in self.ran[-1].out
        Journal(self.path).close()  # the bot can start

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.worker, signal.SIGKILL)


class Move(Situation):
    """A journal moved to another host (another directory stands in for it)."""

    tags = ("move", "move_there")

    def build(self) -> None:
        _pending_journal(self.path)
        self.records = subprocess.run([sys.executable, "-m", "journal", "dump", str(self.path), "--json"],
                                      capture_output=True, text=True, check=True).stdout  # fmt: skip

    def before(self, tag: str) -> None:
        if tag == "move_there":
            there = self.cwd / "otherhost"
            there.mkdir()
            shutil.copy(self.cwd / "bot.journal.tgz", there)  # scp, rsync
            self.cwd = there

    def check(self, tag: str) -> None:
        if tag == "move":
            assert re.search(r"^verified\s+true$", self.out("journal backup").out, re.M)
            assert not self.path.exists() and (self.cwd / "bot.journal.moved-away").is_dir()
        else:
            assert "FAILED" not in self.out("journal verify").out
            moved = subprocess.run([sys.executable, "-m", "journal", "dump", str(self.path), "--json"],
                                   capture_output=True, text=True, check=True).stdout  # fmt: skip
            assert moved == self.records


class Disagree(Situation):
    """While the bot was down the exchange filled one order and canceled another; a position changed by hand."""

    tags = ("disagree",)

    def build(self) -> None:
        sim = self.start_simulator()
        manager = StateManager(self.path, make_exchange(sim.url), reconcile_settings=FAST)
        manager.start()
        self.a = manager.place_order("BTC/USDT", "limit", "buy", "0.01", "29000")
        self.b = manager.place_order("ETH/USDT", "limit", "buy", "0.5", "1900")
        manager.close()
        assert manager.journal is not None
        self.env["SEQ"] = str(manager.journal.last_seq)
        by_cid = {o.client_order_id: o for o in sim.orders()}
        sim.fill(by_cid[self.a["client_id"]].order_id)
        sim.cancel(by_cid[self.b["client_id"]].order_id)
        restarted = StateManager(self.path, make_exchange(sim.url), reconcile_settings=FAST)
        restarted.start()
        restarted.close()

    def check(self, tag: str) -> None:
        if self.block == 0:
            assert "order_update" in self.out("--kind recovery").out
            assert "data.order_updates = 2" in self.out("reconcile_report").out
            diff = self.out("journal diff").out
            assert "status: open -> closed" in diff and "status: open -> canceled" in diff
            assert "filled: 0.0 -> 0.01" in diff
            return
        dry, real = [r for r in self.ran if "journal correct" in r.line]
        assert "would write" in dry.out and "amount: 0.01 -> 0" in dry.out and "nothing written" in dry.out
        assert "state_set" in real.out or '"seq"' in real.out or "seq" in real.out
        state = self.ran[-1].out.replace(" ", "").replace("\n", "")
        assert '"adjusted":true' in state and '"amount":"0"' in state


SITUATIONS: tuple[type[Situation], ...] = (SafeMode, SafeModeOut, Pending, PendingAbort, Damaged, Restore, DiskFull,
                                          StaleLock, Move, Disagree)  # fmt: skip
BY_TAG = {tag: s for s in SITUATIONS for tag in s.tags}


def _blocks() -> list[tuple[str, str, str]]:
    return [(m["tag"], m["lang"], m["body"]) for m in BLOCK.finditer(RUNBOOK)]


def _run(line: str, s: Situation) -> Ran:
    """``line`` in bash on a terminal, as the person reading the page runs it (stderr apart, no pager)."""
    env = dict(s.env, PAGER="cat", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    session = TtySession(["/bin/bash", "-c", line], cols=250, rows=50, env=env, stderr=False, cwd=s.cwd)
    try:
        code, text = session.finish(timeout=120)
    finally:
        session.kill()
    return Ran(line, code, text, session.stderr)


def _commands(body: str) -> Iterator[tuple[str, int]]:
    for line in body.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            m = re.search(r"#\s*exit (\d+)\s*$", line)
            yield line, int(m[1]) if m else 0


def test_every_block_of_the_runbook_is_run() -> None:
    fences = re.findall(r"^```(\w+)$", RUNBOOK, re.M)
    assert len(_blocks()) == fences.count("sh") + fences.count("python"), "a code block without a runbook tag"
    assert {tag for tag, _, _ in _blocks()} == set(BY_TAG), "a tag no situation builds, or a situation unused"
    assert "<!-- recovery: update when safe_mode events land -->" in RUNBOOK
    sections = re.findall(r"^## (.+)$", RUNBOOK, re.M)
    assert sections == ["The bot is in safe mode", "An operation stays pending", "verify reports damage",
                        "Restoring a backup", "The disk is full", "The lock is held by a process that is gone",
                        "Moving a journal to another host", "The exchange's answer and the journal disagree"]  # fmt: skip


def _walk(situation: type[Situation], cwd: Path) -> None:
    """Build ``situation`` in ``cwd`` and run its blocks of the page in order, checking each."""
    cwd.mkdir(parents=True)
    s = situation(cwd)
    blocks = [(tag, lang, body) for tag, lang, body in _blocks() if tag in s.tags]
    assert blocks, f"no block of the runbook is tagged {s.tags}"
    try:
        s.build()
        for index, (tag, lang, body) in enumerate(blocks):
            s.block, s.lang = index, lang
            s.before(tag)
            s.printed = ""
            if lang == "python":
                buf = io.StringIO()
                s.ns["print"] = functools.partial(print, file=buf)  # this situation's own stdout
                exec(compile(body, f"docs/recovery.md ({tag})", "exec"), s.ns)
                s.printed = buf.getvalue()
            else:
                for line, expected in _commands(body):
                    ran = _run(line, s)
                    s.ran.append(ran)
                    assert ran.code == expected, (
                        f"{line}\nexit {ran.code}, the page says {expected}\n{ran.out}{ran.err}"
                    )
                    assert "Traceback" not in ran.err, ran.err
            s.check(tag)
    finally:
        s.close()


@pytest.mark.integration
def test_runbook_commands_in_their_situations(tmp_path: Path) -> None:
    """Every situation at once (each is mostly waiting for its commands): a failure names its situation."""
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        runs = {pool.submit(_walk, s, tmp_path / s.__name__): s for s in SITUATIONS}
        for future in concurrent.futures.as_completed(runs):
            try:
                future.result()
            except BaseException:
                failures.append(f"{runs[future].__name__}:\n{traceback.format_exc()}")
    assert not failures, "\n\n".join(failures)
