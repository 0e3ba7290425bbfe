"""Papercuts at the rig (issue 17 item 12): each line a person reads says what is true.

A negative water amount is named as such, not as an unknown option; a volume over the
lab's limit needs a confirmation or ``--force``; weighing a mouse whose restriction
ended says so; ``config init`` names ``--force``; Ctrl-C at calibrate's prompt is
labctl's own line and 130; calibrate says a box is offline before "opening".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import app as labctl_app
from tests.fakes import FakeRig
from tests.labctl import Labctl, boxes, labctl  # noqa: F401  # fixtures
from tests.terminal import Terminal

from .cli_runner import CliRunner, Result

CLEAN = {"LABCTL_BROKER": None, "LABCTL_MQTT_USERNAME": None, "LABCTL_MQTT_PASSWORD": None}


def _labctl(tmp_path: Path, *args: str) -> Result:
    env = {**CLEAN, "LABCTL_DB": f"sqlite:///{tmp_path / 'lab.db'}", "LABCTL_USER": "desk"}
    result = CliRunner().invoke(labctl_app, list(args), env=env)
    assert "Traceback" not in result.output
    return result


def test_a_negative_water_amount_is_named_as_such_and_nothing_is_stored(tmp_path: Path) -> None:
    assert _labctl(tmp_path, "mouse", "add", "M1").exit_code == 0
    result = _labctl(tmp_path, "water", "M1", "-50")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "labctl: error: the amount must be positive, got -50 µL: labctl water M1 50"
    )
    assert "No such option" not in result.output
    assert "(water 1)" in _labctl(tmp_path, "water", "M1", "50").output, "nothing was stored"


def test_water_over_the_labs_limit_needs_force_and_nothing_is_stored_without_it(
    tmp_path: Path,
) -> None:
    assert _labctl(tmp_path, "mouse", "add", "M1").exit_code == 0
    refused = _labctl(tmp_path, "water", "M1", "5000")
    assert refused.exit_code == 2
    (line,) = refused.output.strip().splitlines()
    assert "over the lab's limit of 1500 µL" in line and "--force" in line
    stored = _labctl(tmp_path, "water", "M1", "5000", "--force")
    assert stored.exit_code == 0, stored.output
    assert "given 5000 ul by hand" in stored.output
    assert "(water 1)" in stored.output, "the refused one was not stored"


def test_weighing_after_the_restriction_ended_says_so_not_no_baseline(tmp_path: Path) -> None:
    for argv in (("mouse", "add", "M9"), ("mouse", "baseline", "M9", "25"),
                 ("mouse", "baseline", "M9", "--end")):  # fmt: skip
        assert _labctl(tmp_path, *argv).exit_code == 0
    result = _labctl(tmp_path, "weigh", "M9", "24")
    assert result.exit_code == 0
    assert "water restriction ended" in result.output
    assert "no baseline yet" not in result.output


def test_config_init_on_an_existing_file_names_force(tmp_path: Path) -> None:
    existing = tmp_path / "rig.ini"
    existing.write_text("[Settings]\n")
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "init", str(existing)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--force" in done.stderr
    assert existing.read_text() == "[Settings]\n"


@pytest.mark.broker
def test_calibrate_says_a_box_is_offline_before_opening_anything(labctl: Labctl) -> None:  # noqa: F811
    labctl.add_boxes("77")  # known to the lab, but its rig is not on the broker
    result = labctl("calibrate", "--box", "77", "--spout", "left", "--timeout", "1")
    assert result.exit_code == 2
    assert "offline" in result.output
    assert "opening" not in result.output


def test_ctrl_c_at_calibrates_weighing_prompt_is_labctls_line_and_130(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
    env.update(LABCTL_DB=f"sqlite:///{tmp_path / 'lab.db'}", TERM="xterm", LABCTL_USER="desk")
    Labctl(env["LABCTL_DB"], "mqtt://127.0.0.1:1", "lab").add_boxes("1")
    terminal = Terminal(
        "controller.cli",
        ["calibrate", "--box", "1", "--spout", "left", "--already-dispensed"],
        env,
        typing=True,
    )
    try:
        terminal.read_until(b"in mg")
        terminal.process.send_signal(signal.SIGINT)
        terminal.read_until_exit(30, "labctl calibrate")
    finally:
        terminal.close()
    assert terminal.process.returncode == 130, terminal.text()
    assert "labctl: interrupted (Ctrl-C)" in terminal.text()
    assert "Aborted!" not in terminal.text()
    assert "Traceback" not in terminal.text()


@pytest.mark.broker
def test_starting_a_scheduled_mouse_whose_box_holds_the_other_shift_names_its_shift(
    labctl: Labctl,  # noqa: F811
    boxes: dict[str, FakeRig],  # noqa: F811
) -> None:
    labctl.ok("cohort", "create", "C1", "M1", "M2", "--create")
    labctl.ok("schedule", "C1", "--shifts", "2", "--box", "1")
    table = labctl.ok("schedule", "C1", "--json")
    shift_of = {row["mouse"]: row["shift"] for row in json.loads(table)}
    first, other = sorted(shift_of, key=shift_of.__getitem__)
    labctl.ok("assign", first, "--box", "1")
    result = labctl("start", other, "--timeout", "2")
    assert result.exit_code == 1
    assert f"--cohort C1 --shift {shift_of[other]}" in result.stdout.replace("\n", " ")
    assert "no box assigned" not in result.stdout
    assert boxes["1"].commands == []


@pytest.mark.broker
def test_the_start_table_names_the_box_of_a_mouse_the_weight_check_held_back(
    labctl: Labctl,  # noqa: F811
    boxes: dict[str, FakeRig],  # noqa: F811
) -> None:
    labctl.ok("assign", "M1", "--box", "1")
    labctl.ok("mouse", "baseline", "M1", "25")
    result = labctl("start", "M1", "--timeout", "2")
    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "M1" in line and "weight" in line)
    assert row.split("│")[2].strip() == "1", result.stdout
