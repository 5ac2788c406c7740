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


def test_the_async_bot_with_the_live_feed_runs_against_the_simulator(tmp_path: Path) -> None:
    """Issue 15.6: the README's async bot, verbatim, over real ccxt.pro and the simulator's websocket."""
    import asyncio
    import threading
    import time
    from decimal import Decimal

    from recovery.exchanges import make_pro_exchange
    from recovery.sim.server import Simulator

    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    source = next(b for b in blocks if "AsyncStateManager" in b and "start_live_feed" in b)
    assert len(source.strip().splitlines()) < 25 + 6  # under 25 lines of code, plus imports and the main guard
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(source, "README.md", "exec"), namespace)
    with Simulator(prices={"BTC/USDT": "30000"}, balances={"USDT": "100000"}) as sim:

        def fill_when_placed() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                orders = [o for o in sim.orders() if o.status == "NEW"]
                if orders:
                    sim.fill(orders[0].client_order_id, symbol="BTC/USDT")
                    return
                time.sleep(0.05)

        filler = threading.Thread(target=fill_when_placed)
        filler.start()

        async def main() -> dict:
            ex = make_pro_exchange(sim.url, sim.ws_url)
            try:
                return await namespace["bot"](ex, str(tmp_path / "bot.journal"))  # type: ignore[operator]
            finally:
                await ex.close()

        positions = asyncio.run(main())
        filler.join()
    assert positions["BTC/USDT"]["amount"] == Decimal("0.001")
