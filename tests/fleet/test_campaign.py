"""The fleet campaign, short: three bots trade and ship while a shipper, the hub and the link each fail once.

The long version: ``python -m tests.fleet.campaign --size 10`` (see README, "Fleet").
Size here: TRADEJOURNAL_FLEET_CAMPAIGN_SIZE (faults of each kind; default 1).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fleet import campaign

SIZE = int(os.environ.get("TRADEJOURNAL_FLEET_CAMPAIGN_SIZE", "1"))

pytestmark = [pytest.mark.crash, pytest.mark.integration]


def test_every_record_of_every_bot_reaches_the_archive_once_in_order(tmp_path: Path) -> None:
    result = campaign.run_campaign(SIZE, 7, tmp_path, bots=3, ops=40, rounds=1)
    assert result.violations == [], "\n".join(result.violations[:10])
    assert result.runs >= 3
    assert result.faults == {"shipper_kill": SIZE, "server_kill": SIZE, "link_cut": SIZE}
    assert result.notes["records"] > 3 * 40  # every operation wrote records, and all of them were checked
