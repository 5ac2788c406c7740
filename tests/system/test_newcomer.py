"""What a newcomer meets after installing (issue 16, items 10 and 12): the demo's kept journal and the
README's next commands, the console scripts, and an editable install type checkers can see."""

from __future__ import annotations

import json
import re
import shlex
import site
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def _after_the_demo() -> list[str]:
    block = next(b for b in re.findall(r"```sh\n(.*?)\n```", README, re.S) if "--keep" in b)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_after_demo_commands_run_verbatim(tmp_path: Path) -> None:
    """The README's --keep lines, as a newcomer types them in the project directory (.venv/bin is ours)."""
    commands = _after_the_demo()
    assert commands[0].startswith(".venv/bin/python -m recovery.demo --keep ")
    ran = []
    for command in commands:
        argv = shlex.split(command)
        argv[0] = str(BIN / Path(argv[0]).name) if argv[0].startswith(".venv/bin/") else argv[0]
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
        ran.append(proc.stdout)
    demo, dump, show = ran
    assert "demo OK" in demo and (tmp_path / "demo" / "bot.journal" / "data.mdb").exists()
    op = re.search(r"journal show demo/bot.journal (\d+)", commands[2])
    printed = re.search(r"journal show demo/bot.journal (\d+)\s+# the order the crash left pending", demo)
    assert op and printed and op[1] == printed[1], "the README's op is not the one the demo says"
    assert [json.loads(x)["seq"] for x in dump.splitlines()][:3] == [1, 2, 3]  # piped: JSON lines
    timeline = [json.loads(x) for x in show.splitlines()]
    assert timeline[0]["kind"] == "intent" and timeline[1]["source"] == "recovery"  # settled by recovery
    again = subprocess.run([sys.executable, "-m", "recovery.demo", "--keep", "demo"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 2 and "demo/bot.journal exists" in again.stderr  # never mixes with an old run


def test_the_demo_docstring_names_a_console_script_that_exists() -> None:
    import recovery.demo

    assert "``tradejournal-demo``" in (recovery.demo.__doc__ or "")
    dist = next(metadata.distributions(name="tradejournal", path=site.getsitepackages()))
    scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts == {"journal": "journal.cli:main", "tradejournal-demo": "recovery.demo:main"}
    proc = subprocess.run([str(BIN / "tradejournal-demo"), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--keep DIR" in proc.stdout


def test_every_subpackage_is_packaged() -> None:
    """The wheel holds journal.log, journal.state, journal.cli and recovery.sim, not only the top packages."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(setuptools.find_packages(str(ROOT), include=config["packages"]["find"]["include"]))
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for top in ("journal", "recovery")
               for p in (ROOT / top).rglob("__init__.py")}  # fmt: skip
    assert found == on_disk and {"journal.log", "journal.state", "journal.cli", "recovery.sim"} <= found


def test_an_editable_install_is_a_path_type_checkers_read() -> None:
    """`pip install -e .` must put the project on a .pth path line (mypy and pyright read those, not import hooks)."""
    # the installed metadata in site-packages (with the project root on sys.path, setuptools' own
    # tradejournal.egg-info there is found first otherwise)
    dist = next(metadata.distributions(name="tradejournal", path=site.getsitepackages()))
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if not direct.get("dir_info", {}).get("editable"):
        pytest.skip("tradejournal is not installed editable here (pip install -e .)")
    pth = [f for f in dist.files or () if str(f).endswith(".pth")]
    assert pth, "the editable install wrote no .pth file"
    lines = [x.strip() for f in pth for x in Path(str(f.locate())).read_text().splitlines()]
    paths = [Path(x).resolve() for x in lines if x and not x.startswith(("import ", "#"))]
    assert ROOT in paths, f"no plain path to {ROOT} in {lines} (an import hook only: type checkers cannot see it)"


def test_mypy_strict_on_a_bot_sees_the_editable_install(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extras: pip install -e '.[test]'")
    bot = tmp_path / "bot.py"  # outside the project: only the install can make these imports resolve
    bot.write_text(
        "from decimal import Decimal\n\n"
        "from journal import Journal\n"
        "from recovery import StateManager\n\n\n"
        "def run(path: str, exchange: object) -> Decimal:\n"
        "    manager = StateManager(path, exchange)\n"
        "    manager.start()\n"
        "    with Journal(path + '.notes') as notes:\n"
        "        notes.record('note', {'text': 'started'})\n"
        "    order = manager.place_order('BTC/USDT', 'limit', 'buy', '0.01', '30000')\n"
        "    manager.close()\n"
        "    return Decimal(str(order['amount']))\n"
    )
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
                           str(bot)], cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "import-not-found" not in proc.stdout, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
