"""The simulator's knobs: typed, checked, and reachable in process, over /_sim/ and on the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recovery.sim import DEFAULT_SETTINGS, Settings, Simulator, SimulatorClient, SimulatorError


def test_a_typo_names_the_unknown_knob_and_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown simulator setting\(s\) \['weight_limit'\]; the settings are \["
    ) as e:
        DEFAULT_SETTINGS.replace(weight_limit=10)
    assert all(name in str(e.value) for name in Settings.names())
    with pytest.raises(ValueError, match="unknown simulator setting"):
        Simulator(settings={"weight_limit": 10})
    with pytest.raises(ValueError, match="weight_limit_1m must be an integer >= 1 or None, got 0"):
        Settings(weight_limit_1m=0)
    with pytest.raises(ValueError, match="must be an integer"):
        Settings(weight_limit_1m=True)  # a bool is not a count
    assert Settings.of(None) is DEFAULT_SETTINGS
    assert Settings.of({"weight_limit_1m": 7}).weight_limit_1m == 7


def test_configure_in_process_and_over_the_control_api() -> None:
    with Simulator(settings={"weight_limit_1m": 1200}) as sim:
        assert sim.settings.weight_limit_1m == 1200
        assert sim.configure(weight_limit_1m=600).weight_limit_1m == 600
        control = SimulatorClient(sim.url)
        assert control.settings()["weight_limit_1m"] == 600
        assert control.configure(weight_limit_1m=None)["weight_limit_1m"] is None
        assert sim.settings.weight_limit_1m is None
        with pytest.raises(SimulatorError, match="unknown simulator setting"):
            control.configure(nope=1)
        assert control.settings() == sim.settings.to_json()


def test_command_line_set_is_checked() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "recovery.sim", "--set", "weight_limit=5"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode != 0 and "unknown simulator setting" in bad.stderr
    not_json = subprocess.run(
        [sys.executable, "-m", "recovery.sim", "--set", "weight_limit_1m=five"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert not_json.returncode != 0 and "wants a JSON value" in not_json.stderr
