"""labctl start and stop (controller.cli.sessions): what reaches the boxes and what a
person is told, against a real broker with :class:`~tests.fakes.FakeRig` boxes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.broker_url import BrokerSettings
from shared.carryover import carry_over_from
from shared.config import TaskConfig
from shared.protocol import StartCommand, StopCommand, Topics
from shared.sessionfile import write_sessions
from tests.fakes import FakeRig, session_dict, synthetic_session

from .labctl import Labctl, boxes, labctl

__all__ = ["boxes", "labctl"]  # fixtures, used by name


@pytest.mark.broker
def test_start_sends_config_carry_over_and_metadata_and_reports_what_did_not_start(
    labctl: Labctl, boxes: dict[str, FakeRig], tmp_path: Path
) -> None:
    # M1 on an idle box, with a previous session; M2 on a busy box; M3 on a box with no
    # agent; M4 on no box at all.
    labctl.add_boxes("3")
    previous = session_dict(synthetic_session(mouse="M1", trials=20, seed=9))
    write_sessions(tmp_path / "M1.json", [previous])
    labctl.ok("import", str(tmp_path / "M1.json"))
    for mouse, box in (("M1", "1"), ("M2", "2"), ("M3", "3")):
        labctl.ok("assign", mouse, "--box", box)
    labctl.ok("mouse", "add", "M4")
    labctl.ok("cohort", "create", "C1", "M1", "M2", "M3", "M4")
    result = labctl(
        "start", "--cohort", "C1", "--duration", "600", "--meta", "trainer=Matt",
        "--meta", "weight=24.5", "--timeout", "5",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "1 of 4 session(s) started" in result.stdout
    assert "box 2 is busy" in result.stdout
    assert "box 3 is offline" in result.stdout
    assert "no box assigned" in result.stdout
    assert boxes["1"].wait(lambda: any(isinstance(c, StartCommand) for c in boxes["1"].commands))
    (command,) = [c for c in boxes["1"].commands if isinstance(c, StartCommand)]
    assert command.mouse == "M1"
    assert command.config == TaskConfig(duration=600)
    assert command.metadata == {"trainer": "Matt", "weight": 24.5}
    assert command.carry_over == carry_over_from(previous, TaskConfig().window)
    assert command.session_id in result.stdout
    assert not [c for c in boxes["2"].commands if isinstance(c, StartCommand)]


@pytest.mark.broker
def test_start_of_idle_boxes_succeeds_and_a_second_start_finds_them_busy(
    labctl: Labctl, broker: BrokerSettings, topic_prefix: str
) -> None:
    labctl.add_boxes("1", "2")
    topics = Topics(topic_prefix)
    with FakeRig(broker, topics, "1") as one, FakeRig(broker, topics, "2") as two:
        labctl.ok("assign", "A", "--box", "1")
        labctl.ok("assign", "B", "--box", "2")
        out = labctl.ok("start", "--all")
        assert "2 of 2 session(s) started" in out
        assert one.state == two.state == "running"
        one.publish_status()  # the box says so, as the agent does after starting
        result = labctl("start", "A")
        assert result.exit_code == 1 and "busy" in result.stdout
        stopped = labctl.ok("stop", "A")
        assert "yes" in stopped
        assert any(isinstance(c, StopCommand) for c in one.commands)


@pytest.mark.broker
def test_stop_mouse_finds_its_session_by_the_session_s_mouse_when_it_is_on_no_box(
    labctl: Labctl, broker: BrokerSettings, topic_prefix: str
) -> None:
    labctl.add_boxes("1", "2")
    topics = Topics(topic_prefix)
    with FakeRig(broker, topics, "1") as one, FakeRig(broker, topics, "2") as two:
        # M1 is on no box, yet box 1 runs a session of M1 (started before its assignment
        # ended, e.g. while the broker was away): stop M1 finds it there.
        labctl.ok("assign", "M1", "--box", "1")
        labctl.ok("unassign", "M1")
        one.state = "running"
        one.publish_status(mouse="M1", session_id="s1", trial=3)
        out = labctl.ok("stop", "M1")
        assert re.search(r"M1\s.*1\s.*yes", out), out
        assert len([c for c in one.commands if isinstance(c, StopCommand)]) == 1
        # M2 is on box 2 now, but its session runs on box 1: it is stopped where it runs.
        labctl.ok("assign", "M2", "--box", "2")
        one.state = "running"
        one.publish_status(mouse="M2", session_id="s2", trial=1)
        labctl.ok("stop", "M2")
        assert len([c for c in one.commands if isinstance(c, StopCommand)]) == 2
        assert not [c for c in two.commands if isinstance(c, StopCommand)]
        # Nothing runs and no box: one clear line.
        labctl.ok("mouse", "add", "M3")
        assert "M3 has no running session and is not on any box" in labctl.error("stop", "M3")


@pytest.mark.broker
def test_stop_all_with_nothing_running_says_so(labctl: Labctl, broker: BrokerSettings) -> None:
    prefix = labctl.env["LABCTL_PREFIX"]
    assert prefix is not None
    with FakeRig(broker, Topics(prefix), "1"):
        assert "no session is running" in labctl.ok("stop", "--all")
