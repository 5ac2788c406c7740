"""The README's simulator section: its example runs, and shows what it says it shows."""

from __future__ import annotations

import re
from pathlib import Path

import ccxt
import pytest

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()

pytestmark = pytest.mark.integration


def test_the_simulator_example_runs_and_the_order_is_invisible_for_a_while() -> None:
    section = README.split("## The exchange simulator", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    lines = block.splitlines()
    assert 5 <= len([line for line in lines if line.strip()]) <= 12  # short, as a README example should be
    probe = (
        "\n    with pytest.raises(ccxt.OrderNotFound, match='-2013'):"
        "\n        exchange.fetch_order(None, 'BTC/USDT', params={'clientOrderId': 'bot1'})"
        "\n    exchange.session.close()\n"
    )
    namespace: dict[str, object] = {"pytest": pytest}
    exec(compile(block + probe, "README.md", "exec"), namespace)  # the example verbatim, then one check
    assert namespace["ccxt"] is ccxt
