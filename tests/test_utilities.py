"""The rig's hardware check commands, on mock pins."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from agent import utilities
from agent.hardware import Rig
from shared.errors import ConfigError


def parse(command: Any, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(["--sim", *argv])


class Captured:
    """The mock pins of the rig a command built (the devices close when it is done)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.solenoids = [d.pin for d in rig.solenoids]
        self.actuators = [d.pin for d in rig.actuators]


def watch(monkeypatch: pytest.MonkeyPatch) -> list[Captured]:
    """Capture the rig a command builds, so its mock pins can be inspected afterwards."""
    rigs: list[Captured] = []
    original = utilities._run_steps

    def run_steps(args: argparse.Namespace, make_steps: Any) -> None:
        def capture(rig: Rig) -> list[utilities.Step]:
            rigs.append(Captured(rig))
            return list(make_steps(rig))

        original(args, capture)

    monkeypatch.setattr(utilities, "_run_steps", run_steps)
    return rigs


def opened(pin: Any) -> int:
    return sum(1 for state in pin.states if state.state > 0)


def test_dispense_opens_one_solenoid_count_times_and_leaves_it_closed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rigs = watch(monkeypatch)
    args = parse(utilities.Dispense, "--spout", "1", "--count", "3", "--duration-ms", "5")
    assert utilities.Dispense.run(args) == 0
    (rig,) = rigs
    assert opened(rig.solenoids[1]) == 3
    assert opened(rig.solenoids[0]) == 0
    assert rig.solenoids[1].state == 0
    assert "dispensed 3 rewards of 5 ms from the right spout" in capsys.readouterr().out


def test_step_actuators_visits_every_position_and_returns_to_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rigs = watch(monkeypatch)
    monkeypatch.setattr(utilities, "STEP_INTERVAL_S", 0.01)
    assert utilities.StepActuators.run(parse(utilities.StepActuators)) == 0
    (rig,) = rigs
    duties = [round(s.state * 100, 2) for s in rig.actuators[0].states if s.state > 0]
    assert duties == [7.2, 7.7, 7.95, 8.2, 8.4, 8.7, 8.9, 7.2]
    assert rig.rig.spout_position == [1, 1]


@pytest.mark.parametrize(
    ("count", "duration_ms", "problem"),
    [("1000", "5000", "at most 60000 ms"), ("0", "70", "--count"), ("5", "0", "--duration-ms")],
)
def test_dispense_refuses_what_the_dispense_command_refuses_and_opens_nothing(
    monkeypatch: pytest.MonkeyPatch, count: str, duration_ms: str, problem: str
) -> None:
    rigs = watch(monkeypatch)
    args = parse(utilities.Dispense, "--spout", "0", "--count", count, "--duration-ms", duration_ms)
    with pytest.raises(ConfigError, match=problem) as info:
        utilities.Dispense.run(args)
    assert "\n" not in str(info.value)
    assert rigs == []  # refused before any pin was touched
