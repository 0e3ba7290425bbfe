"""labctl assign, unassign and the mouse group (controller.cli.mice): mice and their boxes."""

from __future__ import annotations

import json

import pytest

from controller.db import open_database
from shared.broker_url import BrokerSettings
from shared.protocol import StopCommand, Topics
from tests.fakes import FakeRig

from .labctl import Labctl, boxes, labctl, unused_port

__all__ = ["boxes", "labctl"]  # fixtures, used by name


# ---------------------------------------------------------------- assign, mice, cohorts


def test_assign_to_a_box_of_the_lab_creates_a_new_mouse_and_says_so(labctl: Labctl) -> None:
    labctl.add_boxes("1", "2")
    out = labctl.ok("assign", "ExampleMouse1", "--box", "1")
    assert "created mouse ExampleMouse1" in out and "assigned ExampleMouse1 to box 1" in out
    assert "already on box 1" in labctl.ok("assign", "ExampleMouse1", "--box", "1")
    line = labctl.error("assign", "ExampleMouse1", "--box", "2")
    assert "is on box 1; pass --move" in line
    assert "moved ExampleMouse1 from box 1 to box 2" in labctl.ok(
        "assign", "ExampleMouse1", "--box", "2", "--move"
    )
    shown = json.loads(labctl.ok("mouse", "show", "ExampleMouse1", "--json"))
    assert [a["box"] for a in shown["assignments"]] == ["1", "2"]
    assert shown["assignments"][0]["until"] is not None


def test_mice_and_cohorts(labctl: Labctl) -> None:
    labctl.add_boxes("3")
    assert "created mouse A" in labctl.ok("mouse", "add", "A", "B", "--notes", "cage 4")
    out = labctl.ok("cohort", "create", "C1", "A", "B", "C", "--create")
    assert "created mouse C" in out and "created mouse A" not in out
    assert "already exists" in labctl.error("cohort", "create", "C1", "A")
    assert labctl.ok("cohort", "list").strip() == "C1: A B C"
    labctl.ok("cohort", "remove", "C1", "B")
    assert json.loads(labctl.ok("cohort", "list", "--json")) == [
        {"cohort": "C1", "mice": ["A", "C"]}
    ]
    labctl.ok("assign", "A", "--box", "3")
    assert "A  box 3" in labctl.ok("cohort", "show", "C1")
    mice = json.loads(labctl.ok("mouse", "list", "--json"))
    assert [(m["mouse"], m["box"], m["notes"]) for m in mice] == [
        ("A", "3", "cage 4"),
        ("B", None, "cage 4"),
        ("C", None, ""),
    ]


@pytest.mark.broker
def test_unassigning_a_mouse_whose_session_runs_is_refused_unless_it_is_stopped_first(
    labctl: Labctl, broker: BrokerSettings, topic_prefix: str
) -> None:
    labctl.add_boxes("1")
    with FakeRig(broker, Topics(topic_prefix), "1", state="running") as rig:
        rig.publish_status(mouse="M1", session_id="s1", trial=3)
        labctl.ok("assign", "M1", "--box", "1")
        line = labctl.error("unassign", "M1")
        assert "M1 has a session running on box 1" in line and "--stop" in line, line
        assert json.loads(labctl.ok("mouse", "show", "M1", "--json"))["box"] == "1"
        assert not [c for c in rig.commands if isinstance(c, StopCommand)]
        out = labctl.ok("unassign", "M1", "--stop")
        assert "stopped M1's session on box 1" in out and "took M1 off box 1" in out
        assert len([c for c in rig.commands if isinstance(c, StopCommand)]) == 1
        assert json.loads(labctl.ok("mouse", "show", "M1", "--json"))["box"] is None


def test_without_the_broker_unassign_judges_by_the_box_s_last_recorded_status(
    labctl: Labctl,
) -> None:
    from controller.db import Box
    from shared.protocol import Status, encode

    labctl.add_boxes("1")
    labctl.ok("assign", "M1", "--box", "1")
    db = open_database(labctl.env["LABCTL_DB"])
    with db.session() as session:
        box = session.get(Box, "1")
        assert box is not None
        box.state = "running"
        box.status = encode(Status(box="1", state="running", mouse="M1")).decode()
    db.close()
    away = {"LABCTL_BROKER": f"mqtt://127.0.0.1:{unused_port()}"}
    result = labctl("unassign", "M1", env=away)
    assert result.exit_code == 2, result.output
    assert "labctl: error: mouse M1 has a session running on box 1" in result.stderr
    assert "last recorded states" in result.stderr  # and it says what it judged by


@pytest.mark.broker
def test_assign_neither_moves_nor_replaces_a_mouse_whose_session_runs(
    labctl: Labctl, broker: BrokerSettings, topic_prefix: str
) -> None:
    labctl.add_boxes("1", "2")
    topics = Topics(topic_prefix)
    with FakeRig(broker, topics, "1", state="running") as one, FakeRig(broker, topics, "2"):
        labctl.ok("assign", "M1", "--box", "1")
        one.publish_status(mouse="M1", session_id="s1", trial=3)
        for args in (("M1", "--box", "2", "--move"), ("M2", "--box", "1", "--replace")):
            line = labctl.error("assign", *args)
            assert "mouse M1 has a session running on box 1: stop it first" in line, line
        rows = {m["mouse"]: m["box"] for m in json.loads(labctl.ok("mouse", "list", "--json"))}
        assert rows == {"M1": "1"}  # nothing changed, and M2 was not created
        labctl.ok("stop", "M1")
        one.publish_status()  # idle: the session ended
        assert "moved M1 from box 1 to box 2" in labctl.ok("assign", "M1", "--box", "2", "--move")
