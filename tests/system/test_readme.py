"""The README's code block runs, and its two commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_quickstart_code_block_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no python code block"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # the quick start, verbatim
    assert "store" in namespace


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_first_screen_has_the_demo_command() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "python -m recovery.demo" in first_screen and "python -m pytest" in first_screen


def test_main_job_runs_without_the_test_dependencies() -> None:
    """The README's first command installs only the runtime dependencies: the demo must not need pytest."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('pytest', 'hypothesis', 'pytest_benchmark', '_pytest'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "from recovery.demo import main\n"
        "sys.exit(main([]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "demo OK" in proc.stdout
