"""The fault campaign, short: every family runs and finds no invariant violation.

The long version: ``python -m tests.system.campaign --size 200`` (see README).
Size here: TRADEJOURNAL_CAMPAIGN_SIZE (default 3 bot runs; the storage family
runs 10x that many bit flips).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.system import campaign

SIZE = int(os.environ.get("TRADEJOURNAL_CAMPAIGN_SIZE", "3"))

pytestmark = [pytest.mark.crash, pytest.mark.integration]


@pytest.mark.parametrize("family,size", [("crash", SIZE), ("exchange", SIZE), ("storage", SIZE * 10), ("load", 20)])
def test_family_has_no_violation(family: str, size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fam = campaign.FAMILIES[family](size, 11, Path(tmp))
    assert fam.runs > 0
    assert fam.violations == [], "\n".join(fam.violations[:10])
    if family in ("crash", "storage"):
        assert fam.faults > 0
