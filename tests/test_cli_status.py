"""labctl status, monitor and dead-letters (controller.cli.status): what the rigs and the
collector are doing, against a real broker with :class:`~tests.fakes.FakeRig` boxes.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import pytest

from controller.db import open_database
from shared.protocol import Topics
from tests.fakes import FakeRig, synthetic_session

from .labctl import Labctl, boxes, labctl, labctl_on_terminal, unused_port
from .waiting import wait_until

__all__ = ["boxes", "labctl"]  # fixtures, used by name


# ---------------------------------------------------------------- dead letters


def test_dead_letters_lists_what_the_collector_could_not_use_newest_first(
    db_url: str, broker_url: str
) -> None:
    from controller.collector.ingest import Incoming, Ingest
    from shared.protocol import Status, encode

    labctl = Labctl(db_url, broker_url, "unused")
    assert labctl.ok("dead-letters").strip() == "no dead letters"
    assert json.loads(labctl.ok("dead-letters", "--json")) == []

    class Sink:
        def send(self, box: str, command: Any) -> None:
            pass

    topics = Topics()
    long_garbage = b"[bold]not markup[/bold] \n\t" + b"x" * 500 + b"\xff"
    db = open_database(db_url)
    try:
        Ingest(db, Sink()).handle(
            [
                Incoming(topics.events("1"), b"{not json", 1_000.0),
                Incoming(topics.status("2"), encode(Status(box="3", state="idle")), 2_000.0),
                Incoming(f"{topics.prefix}/rigs/1/elsewhere", long_garbage, 3_000.0),
            ]
        )
    finally:
        db.close()

    rows = json.loads(labctl.ok("dead-letters", "--json"))
    assert [(r["received_at"], r["topic"]) for r in rows] == [
        (3_000.0, f"{topics.prefix}/rigs/1/elsewhere"),
        (2_000.0, topics.status("2")),
        (1_000.0, topics.events("1")),
    ]
    assert "status of box '3' on the topic of box '2'" in rows[1]["reason"]
    assert rows[2]["payload_preview"] == "{not json" and rows[2]["payload_bytes"] == 9
    garbage = rows[0]
    assert garbage["payload_bytes"] == len(long_garbage)
    assert garbage["payload_preview"].startswith("[bold]not markup[/bold] xxx")
    assert len(garbage["payload_preview"]) == 60 and garbage["payload_preview"].endswith("\u2026")

    newest = json.loads(labctl.ok("dead-letters", "--limit", "1", "--json"))
    assert [r["topic"] for r in newest] == [f"{topics.prefix}/rigs/1/elsewhere"]

    table = labctl.ok("dead-letters")
    assert "newest first (all 3)" in table
    assert table.index(f"{topics.prefix}/rigs/1/elsewhere") < table.index(topics.status("2"))
    assert table.index(topics.status("2")) < table.index(topics.events("1"))
    assert "[bold]not markup[/bold]" in table  # a payload is shown, never read as markup
    assert "{not json (9 B)" in table
    assert "the newest 2 of 3" in labctl.ok("dead-letters", "-n", "2")
    assert "--limit must be at least 1, got 0" in labctl.error("dead-letters", "--limit", "0")


@pytest.mark.broker
def test_status_merges_the_live_statuses_with_the_database(
    labctl: Labctl, boxes: dict[str, FakeRig]
) -> None:
    labctl.add_boxes("9")  # added, and its rig never reported
    labctl.ok("assign", "M1", "--box", "1")
    labctl.ok("assign", "M9", "--box", "9")
    boxes["2"].publish_status(
        mouse="M2", session_id="s2", trial=12, rewards=7, session_started=1000.0,
        session_duration=1800.0, clock=1900.0,
    )  # fmt: skip
    report = json.loads(labctl.ok("status", "--json"))
    assert report["broker_reachable"] is True
    rows = {row["box"]: row for row in report["boxes"]}
    assert rows["1"]["online"] and rows["1"]["state"] == "idle" and rows["1"]["assigned"] == "M1"
    assert rows["2"]["state"] == "running" and rows["2"]["mouse"] == "M2"
    assert (rows["2"]["trial"], rows["2"]["rewards"]) == (12, 7)
    assert rows["2"]["progress"] == pytest.approx(0.5)
    assert not rows["9"]["online"] and rows["9"]["state"] == "offline"
    table = labctl.ok("status")
    assert "M2" in table and "50%" in table


def test_status_without_the_broker_shows_the_database_and_warns(labctl: Labctl) -> None:
    labctl.add_boxes("1")
    labctl.ok("assign", "M1", "--box", "1")
    port = unused_port()
    result = labctl("--broker", f"mqtt://127.0.0.1:{port}", "status", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["broker_reachable"] is False
    assert f"cannot reach MQTT broker mqtt://127.0.0.1:{port}" in result.stderr


@pytest.mark.broker
def test_monitor_once_or_for_a_while_shows_every_box(
    labctl: Labctl, boxes: dict[str, FakeRig]
) -> None:
    out = labctl.ok("monitor", "--once")
    assert "recent events" in out and "running" in out and "idle" in out
    # --duration ends the live view by itself and leaves its last picture.
    out = labctl.ok("monitor", "--duration", "0.3", "--refresh", "0.1")
    assert "running" in out and "idle" in out and "Ctrl-C to leave" in out


@pytest.mark.broker
@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_monitor_shows_events_live_and_leaves_cleanly_on_ctrl_c(
    labctl: Labctl, boxes: dict[str, FakeRig]
) -> None:
    term = labctl_on_terminal(labctl, "monitor", "--refresh", "0.1")
    try:
        # Events are not retained, so one sent before the monitor subscribed is lost: the rig
        # keeps sending the session's start until the live view shows it.
        start = synthetic_session(mouse="M1", box="1", trials=1)[:1]

        def shown() -> bool:
            boxes["1"].publish(start, hold=False)
            term.read(0.2)  # this is the pause between two checks
            return b"session started: M1" in term.screen

        def alive() -> None:
            assert term.process.poll() is None, f"labctl monitor exited: {term.process.returncode}"

        wait_until(
            shown, 30, "the event on the monitor's screen", alive=alive, interval=0,
            detail=lambda: repr(term.screen[-2000:]),
        )  # fmt: skip
        term.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        term.read_until_exit(20, "labctl monitor did not leave on SIGINT")
    finally:
        term.close()
    assert term.process.returncode == 0, term.errors
    assert b"Traceback" not in term.screen
    assert term.errors == ""
