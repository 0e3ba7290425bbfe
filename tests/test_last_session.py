"""A box's row keeps its last session's trials when the session ends (``status``, ``monitor``)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from rich.console import Console

from controller.cli import app
from controller.db import TrainingSession, open_database
from controller.lab import add_mouse
from controller.last_session import LastSession, SessionMemory, last_sessions
from controller.views import StoredBox, box_views, status_table
from shared.broker_url import broker_settings as parse_broker_url
from shared.documents import SessionEnd
from shared.protocol import Status, Topics
from tests.fakes import FakeRig, synthetic_session

from .cli_runner import CliRunner
from .terminal import Terminal
from .waiting import wait_until


def render(table: object) -> str:
    console = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


def running(trial: int, rewards: int, session_id: str = "s1") -> Status:
    return Status(box="1", state="running", mouse="M1", session_id=session_id, trial=trial,
                  rewards=rewards)  # fmt: skip


def test_the_monitor_keeps_the_count_of_a_session_it_saw_end() -> None:
    memory = SessionMemory()
    memory.update({"1": running(11, 6)}, [])
    memory.update({"1": running(12, 7)}, [])
    # The box goes idle: its status names no session any more.
    idle = {"1": Status(box="1", state="idle")}
    memory.update(idle, [])
    assert memory.merged({}) == {"1": LastSession("M1", "s1", 12, 7)}
    # Its session_end then gives the final count and how it ended.
    (end,) = [d for d in synthetic_session(session_id="s1", trials=13) if isinstance(d, SessionEnd)]
    memory.update(idle, [(100.0, "1", end)])
    last = memory.merged({})["1"]
    assert (last.mouse, last.trials, last.status) == ("M1", 13, "complete")
    # A stale running status of the same session does not undo its end.
    memory.update({"1": running(12, 7)}, [(100.0, "1", end)])
    assert memory.merged({})["1"].status == "complete"
    # What the database stored for an older session is overridden; for this one, kept.
    older = LastSession("M0", "s0", 40, 20, "complete", 50.0)
    assert memory.merged({"1": older})["1"].session_id == "s1"
    views = box_views(
        {"1": StoredBox("1", "idle", None, None, None, None)}, {}, idle, last=memory.merged({})
    )
    text = render(status_table(views))
    assert "M1 (ended)" in text and " 13 " in text and "last session complete" in text, text


def test_a_session_the_monitor_saw_only_run_takes_its_end_from_the_database() -> None:
    memory = SessionMemory()
    memory.update({"1": running(12, 7)}, [])
    stored = {"1": LastSession("M1", "s1", 14, 8, "stopped", 99.0)}
    assert memory.merged(stored) == stored


def test_status_shows_each_idle_box_s_last_recorded_session(
    tmp_path: Path, broker_url: str, topic_prefix: str
) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    db = open_database(url)
    with db.session() as session:
        add_mouse(session, "M1")
        for sid, position, trials in (("old", 1000.0, 30), ("new", 2000.0, 57)):
            session.add(
                TrainingSession(
                    session_id=sid, mouse_id="M1", box="1", origin="recorded",
                    status="stopped", complete=True, position=position, start_time=position,
                    end_time=position + 600, trial_count=trials, reward_count=trials // 2,
                    created_at=position,
                )
            )  # fmt: skip
    assert last_sessions(db)["1"] == LastSession("M1", "new", 57, 28, "stopped", 2600.0)
    db.close()
    env = {"LABCTL_DB": url, "LABCTL_BROKER": broker_url, "LABCTL_PREFIX": topic_prefix}
    with FakeRig(parse_broker_url(broker_url), Topics(topic_prefix), "1"):
        result = CliRunner().invoke(app, ["status", "--json"], env=env)
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.stdout)["boxes"]
        assert row["state"] == "idle" and row["mouse"] is None
        assert row["last_session"]["trials"] == 57
        assert row["last_session"]["status"] == "stopped"
        table = CliRunner().invoke(app, ["status"], env={**env, "COLUMNS": "200"}).stdout
        assert "M1 (ended)" in table and "57" in table, table


@pytest.mark.broker
@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_the_live_monitor_row_keeps_the_trials_when_the_session_ends(
    tmp_path: Path, broker_url: str, topic_prefix: str
) -> None:
    env = {
        **os.environ, "LABCTL_DB": f"sqlite:///{tmp_path / 'lab.db'}", "LABCTL_BROKER": broker_url,
        "LABCTL_PREFIX": topic_prefix, "TERM": "xterm", "COLUMNS": "200", "LINES": "60",
    }  # fmt: skip
    with FakeRig(parse_broker_url(broker_url), Topics(topic_prefix), "1", state="running") as rig:
        rig.publish_status(mouse="M1", session_id="s1", trial=23, rewards=11)
        term = Terminal("controller.cli", ["monitor", "--refresh", "0.1"], env, split_stderr=True)
        try:
            # The row itself: a bare b"23" also matched the banner's broker port (mqtt://…:32370).
            term.read_until(re.compile(rb"M1[^\n]*\b23\b"))
            # The session ends: the box goes idle and its status names no session.
            rig.state = "idle"
            rig.publish_status()
            screen_before = len(term.screen)

            def ended_shown() -> bool:
                term.read(0.2)  # waits for the next redraw: the pause between two checks
                return b"(ended)" in term.screen[screen_before:]

            def alive() -> None:
                assert term.process.poll() is None, term.text()[-3000:]

            wait_until(
                ended_shown, 30, "the ended session on the monitor's screen", alive=alive,
                interval=0, detail=lambda: term.text()[-3000:],
            )  # fmt: skip
            last_frame = term.text()[-3000:]
        finally:
            term.close()
    assert "M1 (ended)" in last_frame and "23" in last_frame, last_frame
    assert term.errors == ""
