"""The husbandry commands as a person uses them: ``labctl start`` refusing a light mouse
until forced with a reason (and keeping the override), ``--weight``, a two-shift cohort
started shift by shift, ``today`` and ``report``. Run on SQLite and PostgreSQL, with
:class:`~tests.fakes.FakeRig` boxes on a real broker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from controller.cli import app
from controller.db import open_database
from controller.files import import_sessions
from controller.husbandry.days import today
from controller.husbandry.models import Weighing, WeightOverride
from shared.broker_url import broker_settings as parse_broker_url
from shared.protocol import StartCommand, Topics
from tests.fakes import FakeRig

from .cli_runner import CliRunner, Result

pytestmark = pytest.mark.broker


class Labctl:
    def __init__(self, db_url: str, broker_url: str, prefix: str) -> None:
        self.env = {"LABCTL_DB": db_url, "LABCTL_BROKER": broker_url, "LABCTL_PREFIX": prefix,
                    "LABCTL_USER": "desk", "LABCTL_MQTT_USERNAME": None,
                    "LABCTL_MQTT_PASSWORD": None}  # fmt: skip
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args), env=self.env)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    def error(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("labctl: error: "), result.stderr
        return lines[0]


@pytest.fixture
def labctl(db_url: str, broker_url: str, topic_prefix: str) -> Labctl:
    lab = Labctl(db_url, broker_url, topic_prefix)
    for box in ("1", "2"):  # the rigs' boxes, known to the lab (no collector runs here)
        lab.ok("box", "add", box)
    return lab


@pytest.fixture
def rigs(broker_url: str, topic_prefix: str) -> Iterator[dict[str, FakeRig]]:
    broker, topics = parse_broker_url(broker_url), Topics(topic_prefix)
    with FakeRig(broker, topics, "1") as one, FakeRig(broker, topics, "2") as two:
        yield {"1": one, "2": two}


def starts(rig: FakeRig) -> list[StartCommand]:
    with rig.cond:
        return [c for c in rig.commands if isinstance(c, StartCommand)]


def end_sessions(rig: FakeRig) -> None:
    """The box's session is over: it says idle again."""
    rig.state = "idle"
    rig.publish_status()


def test_a_light_mouse_starts_only_when_forced_with_a_reason_and_the_override_is_kept(
    labctl: Labctl, rigs: dict[str, FakeRig], db_url: str
) -> None:
    labctl.ok("assign", "M1", "--box", "1")
    labctl.ok("mouse", "baseline", "M1", "25")
    for total in ("480", "380"):  # the second is 21 % less: a drifting valve
        drift = labctl("calibrate", "--box", "1", "--spout", "left", "--already-dispensed",
                       "--count", "100", "--total-mg", total)  # fmt: skip
        assert drift.exit_code == 0, drift.output
    assert "left spout gives 3.80 ul per opening, -21 % from 4.80 ul" in drift.stderr
    not_weighed = labctl("start", "M1")
    assert not_weighed.exit_code == 1
    assert f"labctl: warning: M1 has not been weighed on {today()}" in not_weighed.stderr
    assert (
        "weight check" in not_weighed.stdout and "0 of 1 session(s) started" in not_weighed.stdout
    )
    light = labctl("start", "M1", "--weight", "19")
    assert light.exit_code == 1 and "76.0 % of its baseline 25 g (below 80 %)" in light.stderr
    assert starts(rigs["1"]) == []  # nothing reached the box
    status = labctl("status")
    assert status.exit_code == 0 and "labctl: warning: M1 weighs 19 g, 76.0 %" in status.stderr
    assert "--force needs --reason WHY" in labctl.error("start", "M1", "--force")
    forced = labctl("start", "M1", "--force", "--reason", "vet: weight stable", "--by", "anna")
    assert forced.exit_code == 0, forced.output
    assert "M1: started despite the weight check; override recorded (anna)" in forced.stdout
    assert rigs["1"].wait(lambda: len(starts(rigs["1"])) == 1)
    (command,) = starts(rigs["1"])
    assert command.metadata["weight"] == 19  # the day's weighing (issue 17: as the original)
    calibration = command.metadata["reward_calibration"]
    assert calibration["right"] is None
    assert calibration["left"]["ul_per_opening"] == 3.8  # the one in force
    assert "labctl: warning: box 1 left spout gives 3.80 ul" in forced.stderr
    assert "labctl: warning: box 1 right spout has never been calibrated" in forced.stderr
    assert calibration["left"]["duration_ms"] == 70 and calibration["left"]["measured_by"] == "desk"
    db = open_database(db_url)
    with db.reader() as s:
        (override,) = s.scalars(select(WeightOverride))
        weights = [(w.grams, w.session_id) for w in s.scalars(select(Weighing))]
    db.close()
    assert (override.by, override.reason, override.session_id) == (
        "anna", "vet: weight stable", command.session_id,
    )  # fmt: skip
    assert override.weight_grams == 19.0 and "below 80 %" in override.warning
    assert weights == [(19.0, None)]  # weighed, but that start did not happen
    report = json.loads(labctl.ok("report", "--from", today(), "--to", today(), "--format", "json"))
    (row,) = report
    assert row["mouse"] == "M1" and row["below_threshold"] is True
    assert row["overrides"] == [
        "anna: vet: weight stable (overrode: M1 weighs 19 g, 76.0 % of its baseline 25 g "
        "(below 80 %))"
    ]


def test_start_weight_is_a_weighing_and_the_session_s_weight(
    labctl: Labctl, rigs: dict[str, FakeRig], db_url: str
) -> None:
    labctl.ok("assign", "M2", "--box", "2")
    labctl.ok("mouse", "baseline", "M2", "25")
    out = labctl.ok("start", "M2", "--weight", "24.2")
    assert "1 of 1 session(s) started" in out
    assert rigs["2"].wait(lambda: len(starts(rigs["2"])) == 1)
    (command,) = starts(rigs["2"])
    assert command.metadata["weight"] == 24.2 and "reward_calibration" not in command.metadata
    db = open_database(db_url)
    with db.reader() as s:
        (weighing,) = s.scalars(select(Weighing))
    db.close()
    assert (weighing.mouse_id, weighing.grams, weighing.session_id) == (
        "M2", 24.2, command.session_id,
    )  # fmt: skip
    assert weighing.recorded_by == "desk"
    labctl.ok("mouse", "add", "M3")
    assert "one mouse's weight" in labctl.error("start", "M2", "M3", "--weight", "20")
    assert "one mouse's weight" in labctl.error("start", "--all", "--weight", "20")


def _ended_session(mouse: str, box: str) -> dict[str, Any]:
    t = time.time() - 60
    trial = {"start": t, "end": t + 1, "spout": 0, "cue_duration": 10000.0, "outcome": 1,
             "spout_position": [1, 1], "shaping": False}  # fmt: skip
    return {"trials": [trial], "resets": [], "spontaneous_reaches": [], "start_time": t - 5,
            "end_time": t + 5, "date": today(), "box": box, "status": "complete",
            "reward_volume_ul": 6, "session_id": f"S-{mouse}"}  # fmt: skip


def test_a_two_shift_cohort_is_started_shift_by_shift_and_the_next_mouse_is_shown(
    labctl: Labctl, rigs: dict[str, FakeRig], db_url: str
) -> None:
    labctl.ok("mouse", "add", "A", "B", "C", "D")
    labctl.ok("cohort", "create", "C1", "A", "B", "C", "D")
    table = labctl.ok("schedule", "C1", "--shifts", "2", "--box", "1", "--box", "2")
    assert "cohort C1" in table
    shift_one = labctl.ok("start", "--cohort", "C1", "--shift", "1")
    assert "A goes in box 1 (shift 1)" in shift_one and "2 of 2 session(s) started" in shift_one
    for box, mouse in (("1", "A"), ("2", "B")):
        rig = rigs[box]

        def started_once(rig: FakeRig = rig) -> bool:
            return len(starts(rig)) == 1

        assert rig.wait(started_once)
        assert starts(rig)[0].mouse == mouse
    # While shift 1 still runs, shift 2 waits: nobody is moved, nothing is started.
    for box, mouse in (("1", "A"), ("2", "B")):
        rigs[box].publish_status(mouse=mouse, session_id=f"S-{mouse}")  # as the agent does
    early = labctl("start", "--cohort", "C1", "--shift", "2")
    assert early.exit_code == 1 and "0 of 2 session(s) started" in early.stdout
    assert "box 1 still runs a session of A" in " ".join(early.stdout.split())
    on_box = json.loads(labctl.ok("mouse", "show", "A", "--json"))["box"]
    assert on_box == "1" and len(starts(rigs["1"])) == 1
    # Both sessions end and are collected; each box's next mouse is the shift-2 one.
    db = open_database(db_url)
    for mouse, box in (("A", "1"), ("B", "2")):
        with db.engine.begin() as conn:
            import_sessions(conn, mouse, [_ended_session(mouse, box)])
    db.close()
    for rig in rigs.values():
        end_sessions(rig)
    status = labctl("status")
    assert status.exit_code == 0, status.output
    assert (
        "box 1: next is C (cohort C1 shift 2): place it, then `labctl start --cohort C1 "
        "--shift 2`" in " ".join(status.stdout.split())
    )
    monitor = " ".join(labctl.ok("monitor", "--once").split())
    assert "box 2: next is D (cohort C1 shift 2)" in monitor
    view = labctl.ok("today")
    assert "next in box 1: C (cohort C1 shift 2)" in view
    assert "next in box 2: D (cohort C1 shift 2)" in view
    shift_two = labctl.ok("start", "--cohort", "C1", "--shift", "2")
    assert "took A off box 1 for C" in shift_two and "2 of 2 session(s) started" in shift_two
    assert rigs["1"].wait(lambda: len(starts(rigs["1"])) == 2)
    assert [c.mouse for c in starts(rigs["1"])] == ["A", "C"]
    assert [c.mouse for c in starts(rigs["2"])] == ["B", "D"]
    history = json.loads(labctl.ok("mouse", "show", "A", "--json"))["assignments"]
    assert [(a["box"], a["until"] is not None) for a in history] == [("1", True)]
    rows = {r["mouse"]: r for r in json.loads(labctl.ok("today", "--json"))["mice"]}
    assert (rows["A"]["sessions"], rows["A"]["shift"], rows["C"]["box"]) == (1, 1, "1")
    assert "no shift 3: its shifts are 1, 2" in labctl.error(
        "start", "--cohort", "C1", "--shift", "3"
    )
    assert "--shift needs --cohort" in labctl.error("start", "A", "--shift", "1")


def test_report_formats_and_bad_input(labctl: Labctl) -> None:
    labctl.ok("mouse", "add", "M1")
    labctl.ok("mouse", "baseline", "M1", "25")
    labctl.ok("weigh", "M1", "21")
    labctl.ok("water", "M1", "250", "--kind", "supplement")
    day = today()
    csv_text = labctl.ok("report", "--from", day, "--to", day, "--format", "csv")
    header, row = csv_text.strip().splitlines()
    assert header.split(",")[:4] == ["date", "mouse", "baseline_g", "weight_g"]
    assert row.startswith(f"{day},M1,25,21,84,80,no,0,0,0,250,250,1000,750,")
    labctl.ok("mouse", "add", "M9")
    labctl.ok("weigh", "M9", "30")
    both = json.loads(labctl.ok("report", "--from", day, "--to", day, "--format", "json"))
    only = json.loads(labctl.ok("report", "--from", day, "--to", day, "--format", "json",
                                "--mouse", "M9"))  # fmt: skip
    assert [r["mouse"] for r in both] == ["M1", "M9"] and [r["mouse"] for r in only] == ["M9"]
    assert only[0]["weight_g"] == 30 and only[0]["required_ul"] is None  # not restricted
    md = labctl.ok("report", "--from", day, "--to", day, "--format", "md")
    assert md.startswith(f"# Husbandry report {day} to {day}")
    assert "--format must be csv, json or md, got 'xls'" in labctl.error(
        "report", "--from", day, "--to", day, "--format", "xls"
    )
    assert "invalid --from '2026-13-01'" in labctl.error(
        "report", "--from", "2026-13-01", "--to", day
    )
    assert "invalid weight 2500 g" in labctl.error("weigh", "M1", "2500")
    assert "invalid kind 'juice'" in labctl.error("water", "M1", "10", "--kind", "juice")
    assert "unknown mouse 'NOPE'" in labctl.error("weigh", "NOPE", "20")
    assert "unknown lab setting 'x'" in labctl.error("lab", "set", "x", "1")
    assert "invalid --at 'nan': not a time" in labctl.error("weigh", "M1", "20", "--at", "nan")
    assert "is in the future" in labctl.error("water", "M1", "20", "--at", "2999-01-01 10:00")
    assert "invalid total inf mg" in labctl.error(
        "calibrate", "--box", "1", "--spout", "left", "--already-dispensed", "--total-mg", "inf"
    )
    assert "ul per opening is more than a reward valve gives" in labctl.error(
        "calibrate", "--box", "1", "--spout", "left", "--already-dispensed", "--count", "10",
        "--total-mg", "50000",
    )  # fmt: skip
    assert "invalid spout 'middle'" in labctl.error(
        "calibrate", "--box", "1", "--spout", "middle", "--already-dispensed", "--total-mg", "5"
    )
    assert "--box goes with --shifts" in labctl.error("schedule", "C9", "--box", "1")


def test_records_lists_a_mouse_s_entries_and_void_takes_a_mistaken_one_out(
    labctl: Labctl,
) -> None:
    labctl.ok("mouse", "add", "M1")
    labctl.ok("mouse", "baseline", "M1", "25")
    assert "(weighing 1)" in labctl.ok("weigh", "M1", "24")
    labctl.ok("water", "M1", "3000", "--force")
    (water,) = [r for r in json.loads(labctl.ok("records", "M1", "--json")) if r["kind"] == "water"]
    out = labctl.ok("void", "water", str(water["id"]), "--reason", "meant 300", "--by", "ben")
    assert f"voided water {water['id']} of M1: 3000 ul water" in out
    listed = labctl.ok("records", "M1")
    assert "3000 ul water  by desk  [voided" in listed and "by ben: meant 300]" in listed
    (row,) = json.loads(labctl.ok("today", "--json"))["mice"]
    assert row["given_ul"] == 0 and row["owed_ul"] == 1000
    assert "voiding needs a reason" in labctl.error("void", "weighing", "1", "--reason", "")
    assert "invalid record kind 'baseline'" in labctl.error(
        "void", "baseline", "1", "--reason", "x"
    )
    assert "--end takes no GRAMS" in labctl.error("mouse", "baseline", "M1", "20", "--end")
    assert "off water restriction" in labctl.ok("mouse", "baseline", "M1", "--end")
    (row,) = json.loads(labctl.ok("today", "--json"))["mice"]  # it still has records today
    assert row["baseline_g"] is None and row["owed_ul"] is None and row["warnings"] == []
    assert "restriction ended" in labctl.ok("mouse", "baseline", "M1")
