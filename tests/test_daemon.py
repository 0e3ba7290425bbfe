"""The rig agent's daemon (agent.daemon) against a real MQTT broker (DESIGN §9's fixtures).

Most tests run an :class:`~agent.daemon.Agent` on a thread of this process
(fast, and the test can look at the rig's pins); the Last Will and the
SIGTERM tests run a real ``python -m agent.cli run`` process. Every test has
its own topic prefix, so tests sharing the broker never hear each other.
Nothing sleeps to wait for timing: tests wait on conditions, with timeouts.
"""

from __future__ import annotations

import itertools
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.journal import Journal
from shared.digest import session_digest
from shared.documents import SessionEnd, build_session, parse_document
from shared.sessionfile import read_sessions

from .agentlab import (
    LONG,
    SHORT,
    TIME_SCALE,
    AgentProcess,
    RigClient,
    ThreadAgent,
    agent,
    client,
    settings_for,
    start_session,
)

__all__ = ["agent", "client"]  # fixtures, used by name


pytestmark = pytest.mark.broker


# ---------------------------------------------------------------- status and ping


def test_the_agent_announces_itself_with_a_retained_idle_status(
    agent: ThreadAgent, broker_url: str, topic_prefix: str
) -> None:
    late = RigClient(broker_url, topic_prefix)  # connects after the agent: gets the retained one
    try:
        status = late.wait_state("idle")
        assert status.box == "1" and status.software_version.startswith("reachlab")
    finally:
        late.close()


def test_ping_replies_ok_with_the_box_state(agent: ThreadAgent, client: RigClient) -> None:
    reply = client.command("ping")
    assert reply.ok and reply.command == "ping"
    assert reply.data["box"] == "1" and reply.data["state"] == "idle"


def test_the_heartbeat_period_is_in_wall_seconds_whatever_the_time_scale(
    broker_url: str, topic_prefix: str, tmp_path: Path, client: RigClient
) -> None:
    running = ThreadAgent(settings_for(broker_url, topic_prefix, tmp_path, heartbeat=0.2))
    try:
        client.wait(lambda: len(client.statuses) >= 4, "a few heartbeats")
    finally:
        running.stop()
    clocks = [s.clock for s in client.statuses if s.state == "idle"][:4]
    gaps = [b - a for a, b in itertools.pairwise(clocks)]
    # 0.2 wall seconds are 120 task seconds at TIME_SCALE 600 (not 0.2 task seconds).
    assert all(0.2 * TIME_SCALE * 0.7 < gap < 0.2 * TIME_SCALE * 2 for gap in gaps), gaps


# ---------------------------------------------------------------- sessions


def test_a_started_session_runs_to_its_end_and_every_document_arrives_in_order(
    agent: ThreadAgent, client: RigClient, tmp_path: Path
) -> None:
    session_id = start_session(client, SHORT, metadata={"trainer": "Ada"})
    docs = client.wait_complete(session_id)
    assert [d.seq for d in docs] == list(range(len(docs)))
    end = docs[-1]
    assert isinstance(end, SessionEnd) and end.status == "complete"
    client.wait(lambda: client.status is not None and client.status.state == "idle", "idle")
    # The agent's local copy is what the controller would rebuild from the documents.
    session = build_session(docs)
    assert session["trainer"] == "Ada" and session["status"] == "complete"
    assert read_sessions(tmp_path / "data" / "M1.json") == [session]
    # Nothing is pruned before "committed" ...
    with Journal.open_readonly(tmp_path / "journal.sqlite3") as journal:
        info = journal.session(session_id)
        assert info is not None and info.state == "ended" and info.documents == end.seq + 1
    # ... and the box says so, so a collector that never saw the session can ask for it.
    assert client.command("ping").data["uncommitted"] == [session_id]
    client.wait(lambda: client.status is not None and client.status.uncommitted == [session_id],
                "a status listing the session")  # fmt: skip
    # After "committed", the journal lets the session go, and the status stops listing it.
    reply = client.command(
        "committed", session_id=session_id, last_seq=end.seq, digest=session_digest(docs)
    )
    assert reply.ok and reply.data["pruned"] is True
    with Journal.open_readonly(tmp_path / "journal.sqlite3") as journal:
        assert journal.sessions() == []
    client.wait(lambda: client.status is not None and client.status.uncommitted == [],
                "a status without it")  # fmt: skip
    assert client.command("ping").data["uncommitted"] == []
    client.assert_one_reply_each()


def test_stop_ends_the_running_session_as_stopped(agent: ThreadAgent, client: RigClient) -> None:
    session_id = start_session(client, LONG)
    client.wait_state("running")
    client.wait(lambda: len(client.session_docs(session_id)) > 3, "a few documents")
    reply = client.command("stop", session_id=session_id)
    assert reply.ok and reply.data["session_id"] == session_id
    end = client.wait_session_end(session_id)
    assert end.status == "stopped" and reply.data["last_seq"] == end.seq
    assert [d.seq for d in client.wait_complete(session_id)] == list(range(end.seq + 1))
    assert not any(s.value for s in agent.rig.solenoids), "outputs are off after a stop"


def test_a_start_while_busy_is_refused_and_the_session_carries_on(
    agent: ThreadAgent, client: RigClient
) -> None:
    session_id = start_session(client, LONG)
    refused = client.command("start", session_id="another", mouse="M2", config=SHORT)
    assert not refused.ok and refused.code == "busy"
    assert session_id in (refused.error or "")
    # Retrying the same start (a lost reply) is not an error: it is the same session.
    again = client.command("start", session_id=session_id, mouse="M1", config=LONG)
    assert again.ok and again.data["already_running"] is True
    assert client.command("ping").data["session_id"] == session_id
    client.command("stop", session_id=session_id)
    assert client.wait_session_end(session_id).status == "stopped"
    client.assert_one_reply_each()


def test_stop_with_no_session_running_says_so(agent: ThreadAgent, client: RigClient) -> None:
    reply = client.command("stop", session_id="any")
    assert not reply.ok and reply.code == "idle" and "no session" in (reply.error or "")


@pytest.mark.parametrize(
    ("config", "named"),
    [({"duration": 60, "bogus": 1}, "bogus"), ({"timeout": "long"}, "timeout")],
)
def test_a_start_with_a_bad_config_is_refused_naming_the_key(
    agent: ThreadAgent, client: RigClient, config: dict[str, Any], named: str
) -> None:
    reply = client.command("start", session_id="s1", mouse="M1", config=config)
    assert not reply.ok and reply.code == "invalid"
    assert f"'{named}'" in (reply.error or "")
    assert client.command("ping").data["state"] == "idle"


def test_a_start_with_a_bad_mouse_id_is_refused(agent: ThreadAgent, client: RigClient) -> None:
    reply = client.command("start", session_id="s1", mouse="../etc/passwd", config=SHORT)
    assert not reply.ok and reply.code == "invalid" and "mouse id" in (reply.error or "")


def test_a_session_id_cannot_be_used_twice(agent: ThreadAgent, client: RigClient) -> None:
    session_id = start_session(client, SHORT)
    client.wait_session_end(session_id)
    client.wait_state("idle")
    reply = client.command("start", session_id=session_id, mouse="M1", config=SHORT)
    assert not reply.ok and reply.code == "invalid" and "already used" in (reply.error or "")


# ---------------------------------------------------------------- bad commands


def test_an_unknown_command_gets_an_error_reply_and_the_agent_carries_on(
    agent: ThreadAgent, client: RigClient
) -> None:
    reply = client.command("frobnicate")
    assert not reply.ok and reply.code == "unknown_command"
    assert "frobnicate" in (reply.error or "")
    assert client.command("ping").ok


def test_a_payload_that_is_not_json_gets_an_error_reply_without_a_request_id(
    agent: ThreadAgent, client: RigClient
) -> None:
    client.send_raw(b"\xff this is not json")
    reply = client.reply("")
    assert not reply.ok and reply.code == "invalid" and "JSON" in (reply.error or "")
    assert client.command("ping").ok


def test_a_command_missing_a_field_is_refused_naming_it(
    agent: ThreadAgent, client: RigClient
) -> None:
    reply = client.command("start", session_id="s1", config=SHORT)
    assert not reply.ok and reply.code == "invalid" and "mouse" in (reply.error or "")
    reply = client.command("dispense", spout=3)
    assert not reply.ok and reply.code == "invalid" and "spout" in (reply.error or "")
    assert client.command("ping").ok
    client.assert_one_reply_each()


# ---------------------------------------------------------------- utilities, resend, committed


def test_hardware_utilities_drive_the_rig(agent: ThreadAgent, client: RigClient) -> None:
    reply = client.command("set_leds", on=[True, False])
    assert reply.ok and [bool(c.value) for c in agent.rig.cues] == [True, False]
    reply = client.command("move_spouts", spout_position=[3, 5])
    assert reply.ok and agent.rig.spout_position == [3, 5]
    reply = client.command("read_sensors")
    assert reply.ok and set(reply.data) >= {"paws_resting", "spouts_touched", "spout_position"}
    assert reply.data["spout_position"] == [3, 5]
    pin = agent.rig.solenoids[1].pin
    reply = client.command("dispense", spout=1, count=3, duration_ms=50)
    assert reply.ok and reply.data["count"] == 3

    def opened_three_times() -> bool:
        rises = [s for s in pin.states if s.state]
        return len(rises) >= 3 and not agent.rig.solenoids[1].value

    client.wait(opened_three_times, "three rewards")  # mock pins keep their history


def test_a_hardware_fault_is_an_error_reply_naming_the_part_and_the_agent_carries_on(
    agent: ThreadAgent, client: RigClient
) -> None:
    # A solenoid whose GPIO has gone (closed under the agent): using it raises in gpiozero.
    agent.rig.solenoids[0].close()
    reply = client.command("dispense", spout=0, count=1, duration_ms=50)
    assert not reply.ok and reply.code == "hardware"
    assert reply.error is not None and "opening the solenoid of spout 0 failed" in reply.error
    assert client.command("ping").ok  # still serving
    assert client.command("dispense", spout=1, count=1, duration_ms=50).ok  # the other spout
    client.assert_one_reply_each()


def test_hardware_utilities_are_refused_while_a_session_runs(
    agent: ThreadAgent, client: RigClient
) -> None:
    session_id = start_session(client, LONG)
    requests: list[tuple[str, dict[str, Any]]] = [
        ("dispense", {"spout": 0}),
        ("set_leds", {"on": [True, True]}),
        ("move_spouts", {"spout_position": [7, 7]}),
        ("read_sensors", {}),
    ]
    for name, fields in requests:
        reply = client.command(name, **fields)
        assert not reply.ok and reply.code == "busy", name
    client.command("stop", session_id=session_id)


def test_resend_publishes_a_range_of_a_session_again(agent: ThreadAgent, client: RigClient) -> None:
    session_id = start_session(client, SHORT)
    last = client.wait_complete(session_id)[-1].seq
    # A range inside the session, whatever number of trials the simulated mouse did in it
    # (fewer on a loaded machine: the task runs at TIME_SCALE): from the second document to
    # the one before session_end, or a single document when the session holds three.
    low, high = 1, max(1, min(5, last - 1))
    before = len(client.events)
    reply = client.command("resend", session_id=session_id, from_seq=low, to_seq=high)
    assert reply.ok and reply.data["count"] == high - low + 1
    client.wait(lambda: len(client.events) >= before + high - low + 1, "the resent documents")
    assert [d.seq for d in client.events[before:]] == list(range(low, high + 1))
    missing = client.command("resend", session_id="nope", from_seq=0)
    assert not missing.ok and missing.code == "not_found"


def test_committed_is_refused_unless_it_matches_an_ended_session(
    agent: ThreadAgent, client: RigClient
) -> None:
    session_id = start_session(client, SHORT)
    docs = client.wait_complete(session_id)
    end = docs[-1]
    digest = session_digest(docs)
    wrong = client.command("committed", session_id=session_id, last_seq=end.seq + 5, digest=digest)
    assert not wrong.ok and wrong.code == "invalid" and "does not match" in (wrong.error or "")
    unknown = client.command("committed", session_id="nope", last_seq=3, digest=digest)
    assert not unknown.ok and unknown.code == "not_found"
    assert client.command("committed", session_id=session_id, last_seq=end.seq, digest=digest).ok


# ---------------------------------------------------------------- real processes


def test_the_last_will_marks_the_box_offline_when_the_agent_is_killed(
    broker_url: str, topic_prefix: str, tmp_path: Path, client: RigClient
) -> None:
    with AgentProcess(tmp_path, broker_url, topic_prefix) as process:
        client.wait_state("idle")
        process.signal(signal.SIGKILL)
        process.wait()
        status = client.wait_state("offline")
        assert status.box == "1"


def test_meta_notes_42_from_labctl_ends_its_session_and_the_agent_stays_up(
    broker_url: str, topic_prefix: str, tmp_path: Path, client: RigClient
) -> None:
    """Issue 11: ``labctl start M --meta notes=42`` crashed the agent when the session ended."""
    from shared.config import parse_meta

    with AgentProcess(tmp_path, broker_url, topic_prefix) as process:
        client.wait_state("idle")
        raw = client.command(
            "start", session_id=uuid.uuid4().hex, mouse="M1", config=SHORT, metadata={"notes": 42}
        )  # what an older labctl sent: refused with a line, nothing started
        assert not raw.ok and raw.code == "invalid" and "notes" in (raw.error or "")
        session_id = start_session(client, SHORT, metadata=parse_meta(["notes=42"]))
        docs = client.wait_complete(session_id)
        end = docs[-1]
        assert isinstance(end, SessionEnd) and end.status == "complete" and end.notes == "42"
        client.wait_state("idle")
        assert process.process.poll() is None and client.command("ping").ok
        assert "Traceback" not in process.output()
    assert read_sessions(process.data_dir / "M1.json")[0]["notes"] == "42"


def test_sigterm_stops_the_session_journals_everything_and_goes_offline(
    broker_url: str, topic_prefix: str, tmp_path: Path, client: RigClient
) -> None:
    with AgentProcess(tmp_path, broker_url, topic_prefix) as process:
        client.wait_state("idle")
        session_id = start_session(client, LONG)
        client.wait(lambda: len(client.session_docs(session_id)) > 5, "a few documents")
        process.signal(signal.SIGTERM)
        assert process.wait() == 0, process.output()
    docs = client.wait_complete(session_id)
    end = docs[-1]
    assert isinstance(end, SessionEnd) and end.status == "stopped"
    client.wait_state("offline")
    with Journal.open_readonly(process.journal) as journal:
        assert [parse_document(e.body) for e in journal.entries(session_id)] == docs
        assert journal.pending_count() == 0
    assert read_sessions(process.data_dir / "M1.json") == [build_session(docs)]
    assert "SIGTERM: shutting down" in process.output()
