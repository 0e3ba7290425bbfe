"""Hostile and mistaken input at the agent (issue 11): each finding as a test.

The agent here is the real :class:`~agent.daemon.Agent` with the rig, simulated
mouse and journal ``labagent run --sim`` uses, but no broker: commands go in
through the link's own entry point (``link_message``) and its replies are caught
where the link would publish them. The task loop runs on virtual time, so a
whole session ends in well under a second.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.journal import Journal
from agent.mqtt import Sent
from shared.config import TaskConfig, parse_meta, read_config
from shared.digest import session_digest
from shared.errors import ConfigError, InvalidIdError, ProtocolError
from shared.ids import check_box_id
from shared.protocol import DispenseCommand, Reply, parse_command, parse_reply

from .offline_agent import offline_agent

SHORT = {"duration": 60, "intertrial_interval": [1000, 1000], "cue_duration": 3000}


class WireAgent:
    """An agent on virtual time whose published messages are kept, per topic."""

    def __init__(self, folder: Path) -> None:
        self.agent, self.runtime = offline_agent(folder, seed=7)
        self.published: list[tuple[str, bytes]] = []
        self._mid = 0
        self.agent.link.publish = self._publish  # type: ignore[method-assign]
        self.cmd_topic = self.agent.topics.cmd("1")

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> Sent:
        self._mid += 1
        self.published.append((topic, payload))
        return Sent(self._mid, True)

    def replies(self) -> list[Reply]:
        topic = self.agent.topics.reply("1")
        return [parse_reply(p) for t, p in self.published if t == topic]

    def send(self, payload: bytes) -> Reply:
        before = len(self.replies())
        self.agent.link_message(self.cmd_topic, payload)
        replies = self.replies()
        assert len(replies) == before + 1, "exactly one reply per command"
        return replies[-1]

    def command(self, command: str, **fields: Any) -> Reply:
        body = {"command": command, "request_id": uuid.uuid4().hex[:12], **fields}
        return self.send(json.dumps(body).encode())

    def run_to_end(self) -> None:
        """Run the task loop until the running session has ended."""
        session = self.agent.session
        assert session is not None
        self.runtime.loop.run(until=lambda: session.ended)

    def close(self) -> None:
        self.agent.runtime.close()
        self.agent.journal.close()


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[WireAgent]:
    agent = WireAgent(tmp_path)
    yield agent
    agent.close()


def ended_session(wire: WireAgent) -> str:
    sid = uuid.uuid4().hex
    assert wire.command("start", session_id=sid, mouse="M1", config=SHORT).ok
    wire.run_to_end()
    return sid


# ---------------------------------------------------------------- metadata


def test_meta_notes_given_as_a_number_is_kept_as_the_text_typed() -> None:
    assert parse_meta(["notes=42", "weight=24.5"]) == {"notes": "42", "weight": 24.5}


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999", "[1, NaN]"])
def test_meta_refuses_numbers_json_cannot_store(raw: str) -> None:
    with pytest.raises(ConfigError, match="finite") as info:
        parse_meta([f"x={raw}"])
    assert "'x" in str(info.value) and "\n" not in str(info.value)


def test_a_start_with_non_string_notes_is_refused_and_the_agent_carries_on(
    wire: WireAgent,
) -> None:
    reply = wire.command(
        "start", session_id=uuid.uuid4().hex, mouse="M1", config=SHORT, metadata={"notes": 42}
    )
    assert not reply.ok and reply.code == "invalid"
    assert reply.error is not None and "notes" in reply.error
    assert wire.agent.session is None
    # The box is still usable: a proper session runs to its end and is journalled.
    sid = ended_session(wire)
    info = wire.agent.journal.session(sid)
    assert info is not None and info.state == "ended" and info.status == "complete"


def test_a_start_with_nan_in_its_metadata_is_refused(wire: WireAgent) -> None:
    payload = (
        '{"command": "start", "request_id": "r1", "session_id": "s1", "mouse": "M1",'
        ' "metadata": {"x": NaN}}'
    )
    reply = wire.send(payload.encode())
    assert not reply.ok and reply.code == "invalid" and "finite" in (reply.error or "")
    assert wire.agent.session is None


def test_a_session_whose_notes_are_not_text_still_ends_and_is_journalled(
    wire: WireAgent,
) -> None:
    """Defence in depth: a session made in-process with odd notes ends without a crash."""
    session = wire.runtime.new_session(
        config=TaskConfig.from_dict(SHORT),
        mouse="M1",
        box="1",
        metadata={"notes": 42},
        sink=wire.agent._on_document,
    )
    session.start()
    wire.runtime.loop.run(until=lambda: session.ended)
    end = session.builder.end
    assert end is not None and end.status == "complete" and end.notes is None


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("duration", 1e308),
        ("duration", math.inf),
        ("timeout", 10**12),
        ("cue_duration", 1e308),
        ("intertrial_interval", [0, 10**12]),
    ],
)
def test_absurd_durations_are_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}") as info:
        TaskConfig.from_dict({key: value})
    assert "\n" not in str(info.value)


def test_a_config_file_with_duration_1e308_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "task.ini"
    path.write_text("[Settings]\nduration = 1e308\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="key 'duration'"):
        read_config(path)


def test_a_day_long_session_is_still_allowed() -> None:
    assert TaskConfig.from_dict({"duration": 24 * 3600}).duration == 24 * 3600


# ---------------------------------------------------------------- dispense


def test_dispense_of_86_minutes_of_open_valve_is_refused_on_the_wire() -> None:
    payload = {"command": "dispense", "request_id": "r", "spout": 0, "count": 1000,
               "duration_ms": 5000}  # fmt: skip
    with pytest.raises(ProtocolError, match="at most 60000 ms") as info:
        parse_command(json.dumps(payload))
    assert "Value error" not in str(info.value)
    # A calibration run (100 rewards of 70 ms) stays fine.
    assert isinstance(parse_command(json.dumps({**payload, "count": 100, "duration_ms": 70})),
                      DispenseCommand)  # fmt: skip


def test_the_agent_replies_invalid_to_a_huge_dispense_and_opens_no_valve(
    wire: WireAgent,
) -> None:
    reply = wire.command("dispense", spout=0, count=1000, duration_ms=5000)
    assert not reply.ok and reply.code == "invalid"
    assert not any(s.value for s in wire.runtime.rig.solenoids)
    assert wire.command("dispense", spout=0, count=2, duration_ms=50).ok


# ---------------------------------------------------------------- committed


def journal_docs(wire: WireAgent, sid: str) -> int:
    return len(wire.agent.journal.entries(sid))


def test_a_committed_without_a_digest_prunes_nothing(wire: WireAgent) -> None:
    sid = ended_session(wire)
    count = journal_docs(wire, sid)
    reply = wire.command("committed", session_id=sid, last_seq=count - 1)
    assert not reply.ok and reply.code == "invalid" and "digest" in (reply.error or "")
    assert journal_docs(wire, sid) == count


def test_a_forged_committed_with_a_wrong_digest_prunes_nothing(wire: WireAgent) -> None:
    sid = ended_session(wire)
    docs = wire.agent.journal.load(sid)
    forged = session_digest(docs[:-1])  # what a collector missing the last document holds
    reply = wire.command("committed", session_id=sid, last_seq=docs[-1].seq, digest=forged)
    assert not reply.ok and reply.code == "invalid" and "digest" in (reply.error or "")
    assert journal_docs(wire, sid) == len(docs)
    reply = wire.command(
        "committed", session_id=sid, last_seq=docs[-1].seq - 1, digest=session_digest(docs)
    )
    assert not reply.ok and journal_docs(wire, sid) == len(docs)


def test_a_committed_with_the_journal_s_digest_prunes_the_session(wire: WireAgent) -> None:
    sid = ended_session(wire)
    docs = wire.agent.journal.load(sid)
    reply = wire.command(
        "committed", session_id=sid, last_seq=docs[-1].seq, digest=session_digest(docs)
    )
    assert reply.ok and reply.data["pruned"] is True
    info = wire.agent.journal.session(sid)
    assert info is not None and info.state == "committed"
    # A repeat (the controller missed the reply) is fine and prunes nothing more.
    again = wire.command(
        "committed", session_id=sid, last_seq=docs[-1].seq, digest=session_digest(docs)
    )
    assert again.ok and again.data["pruned"] is False


def test_a_committed_for_a_running_session_prunes_nothing(wire: WireAgent) -> None:
    sid = uuid.uuid4().hex
    assert wire.command("start", session_id=sid, mouse="M1", config=SHORT).ok
    docs = wire.agent.journal.load(sid)
    reply = wire.command(
        "committed", session_id=sid, last_seq=docs[-1].seq, digest=session_digest(docs)
    )
    assert not reply.ok and "running" in (reply.error or "")
    assert journal_docs(wire, sid) == len(docs)


def test_journal_commit_checks_the_digest_itself(tmp_path: Path, wire: WireAgent) -> None:
    sid = ended_session(wire)
    journal: Journal = wire.agent.journal
    docs = journal.load(sid)
    from agent.journal import CommitRefused

    with pytest.raises(CommitRefused, match="digest"):
        journal.commit(sid, docs[-1].seq, "sha256:" + "0" * 64, now=0.0)
    assert journal.commit(sid, docs[-1].seq, session_digest(docs), now=0.0) is True


# ---------------------------------------------------------------- box ids


@pytest.mark.parametrize(
    "box", ["controller", "Controller", "collector-a", "collector", "labctl-alice", "viewer-x"]
)
def test_box_ids_reserved_for_the_lab_s_own_broker_users_are_refused(box: str) -> None:
    with pytest.raises(InvalidIdError, match="reserved") as info:
        check_box_id(box)
    assert box in str(info.value)


@pytest.mark.parametrize("box", ["1", "box-12", "Lab_7", "rig-collect"])
def test_ordinary_box_ids_are_accepted(box: str) -> None:
    assert check_box_id(box) == box


# ---------------------------------------------------------------- the agent's layout


AGENT = Path(__file__).resolve().parent.parent / "agent"


def _imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_agent_mqtt_imports_paho_and_no_agent_module_reaches_back_to_the_cli() -> None:
    modules = sorted(AGENT.glob("*.py"))
    assert modules
    for path in modules:
        imports = _imports(path)
        if path.name != "mqtt.py":
            assert not any(name.startswith("paho") for name in imports), path.name
        if path.name != "cli.py":
            assert not any(name.startswith("agent.cli") for name in imports), path.name
    assert "agent.commands.Commands" in _imports(AGENT / "daemon.py")
    assert not any(name.startswith("agent.daemon") for name in _imports(AGENT / "commands.py"))


def test_every_agent_module_is_under_500_lines() -> None:
    for path in AGENT.glob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines < 500, f"agent/{path.name} has {lines} lines"
