"""Power-cut trials on a :class:`~tests.helpers.fuselayer.FuseLayer`: shared by the test and the campaign.

:func:`power_cut_runs` starts a bot (tests/helpers/powercut_child.py) per run
on the mounted layer, takes crash images at random moments -- during
``Journal()`` itself, right after the first acknowledgement, anywhere in the
run, and once more after the bot was killed (SIGKILL) or finished -- and
checks each image as the restarted bot would open it: every intent and
commit acknowledged before the image was taken is there, and ``verify()``
passes. A directory that exists must open even if nothing was acknowledged
(a power cut while the journal was being created must not leave one that
refuses to open).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from journal import Journal
from tests.helpers.fuselayer import FuseLayer

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["PowerCutResult", "check_image", "power_cut_runs"]


@dataclass
class PowerCutResult:
    runs: int = 0
    images: int = 0
    acknowledged: int = 0  # acknowledged intents checked, summed over images
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"powercut runs={self.runs} images={self.images} acknowledged_intents_checked={self.acknowledged} "
            f"violations={len(self.violations)}"
        )


class _Bot:
    """The child process and the lines it printed, read by a thread as they come."""

    def __init__(self, path: Path, n_ops: int, mode: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.powercut_child", str(path), str(n_ops),
                                      mode], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def acknowledged(self) -> tuple[set[int], set[int]]:
        lines = list(self.lines)
        intents = {int(x.split()[1]) for x in lines if x.startswith("I ")}
        commits = {int(x.split()[1]) for x in lines if x.startswith("C ")}
        return intents, commits

    def wait_for(self, n_lines: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.lines) < n_lines and self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"bot stalled after {self.lines[-3:]}")
            time.sleep(0.001)

    def finish(self, kill: bool) -> str:
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=120)
        self._thread.join(10)  # stdout belongs to the reader thread
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def check_image(image: Path, rel: str, intents: set[int], commits: set[int]) -> str | None:
    """None if the journal at ``image/rel`` holds every acknowledged intent and commit and verifies."""
    path = image / rel
    if not path.is_dir():
        return f"journal directory gone ({len(intents)} intents acknowledged)" if intents else None
    try:
        with Journal(path) as journal:  # opened as the restarted bot would
            report = journal.verify()
            records = {(r.kind, r.op) for r in journal.records()}
    except Exception as exc:
        return f"does not open: {type(exc).__name__}: {exc}"
    if not report.ok:
        return f"verify: {report}"
    lost = sorted(op for op in intents if ("intent", op) not in records)
    lost_commits = sorted(op for op in commits if ("commit", op) not in records)
    if lost or lost_commits:
        return f"lost intents {lost[:5]} ({len(lost)}), commits {lost_commits[:5]} ({len(lost_commits)})"
    return None


def power_cut_runs(layer: FuseLayer, workdir: Path, runs: int, rng: random.Random, n_ops: int = 40) -> PowerCutResult:
    """``runs`` bots on the layer, each cut at a few random moments; images go under ``workdir``."""
    result = PowerCutResult()
    for run in range(runs):
        rel = f"run{run}/bot.journal"
        bot = _Bot(Path(layer.mount) / rel, n_ops=n_ops, mode="batch" if run % 2 else "seq")
        points = sorted({0, 2, *(rng.randrange(3, 3 * n_ops) for _ in range(3))})
        try:
            for n in points:
                bot.wait_for(n)
                intents, commits = bot.acknowledged()  # taken before the image: all of it must be in it
                result.violations += _cut(layer, workdir / f"image{result.images}", rel, intents, commits,
                                          f"run {run} after {n} lines")  # fmt: skip
                result.images += 1
                result.acknowledged += len(intents)
        finally:
            kill = rng.random() < 0.5
            err = bot.finish(kill=kill)
        if not kill and "DONE" not in bot.lines:
            result.violations.append(f"run {run}: the bot failed: {err[-1500:]}")
        intents, commits = bot.acknowledged()
        result.violations += _cut(layer, workdir / f"image{result.images}", rel, intents, commits,
                                  f"run {run} at the end ({'killed' if kill else 'done'})")  # fmt: skip
        result.images += 1
        result.acknowledged += len(intents)
        result.runs += 1
    return result


def _cut(layer: FuseLayer, image: Path, rel: str, intents: set[int], commits: set[int], where: str) -> list[str]:
    layer.image(image)
    problem = check_image(image, rel, intents, commits)
    return [f"{where}: {problem}"] if problem else []
