"""Retained and stale commands (issue 17 item 6): a real mosquitto, a real agent process.

A message published with the retain flag on a box's ``cmd`` topic is replayed by
the broker at every reconnect; the agent must never obey it. A ``stop`` names its
session, so a late one cannot end the next. ``labctl`` clears retained commands.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.cli import app
from controller.demo.broker import MosquittoBroker
from controller.transport import Transport
from shared.broker_url import broker_settings
from shared.protocol import (
    DispenseCommand,
    PingCommand,
    Reply,
    StartCommand,
    StopCommand,
    Topics,
    encode,
    parse_reply,
)
from tests import waiting
from tests.processes import Processes

from .cli_runner import CliRunner

pytestmark = [pytest.mark.slow, pytest.mark.broker]

BOX = "1"
TIMEOUT = 60.0


def wait_until(condition: Callable[[], object], what: str, procs: Processes) -> None:
    """Until another process's effect shows (no event to wait on), failing if a child died."""
    waiting.wait_until(
        condition, TIMEOUT, what, alive=procs.check_alive, detail=procs.all_logs, interval=0.1
    )


class Operator:
    """A controller-side MQTT client: publishes commands, collects the box's replies."""

    def __init__(self, broker: MosquittoBroker, topics: Topics) -> None:
        self.topics = topics
        self.lock = threading.Lock()
        self.replies: dict[str, Reply] = {}
        self.seen: list[tuple[str, bytes, bool]] = []
        self.transport = Transport(
            broker_settings(broker.url),
            client_id=f"operator-{uuid.uuid4().hex[:6]}",
            on_message=self._message,
        )
        self.transport.subscribe([topics.reply(BOX), topics.status(BOX)])
        self.transport.connect(10)
        assert self.transport.subscribed.wait(10)

    def _message(self, topic: str, payload: bytes, retained: bool) -> None:
        with self.lock:
            self.seen.append((topic, payload, retained))
            if topic == self.topics.reply(BOX):
                reply = parse_reply(payload)
                self.replies[reply.request_id] = reply

    def publish(self, command: object, *, retain: bool = False) -> None:
        assert self.transport.publish(
            self.topics.cmd(BOX),
            encode(command),  # type: ignore[arg-type]
            retain=retain,
            wait=10,
        )

    def reply(self, request_id: str, procs: Processes) -> Reply:
        wait_until(lambda: request_id in self.replies, f"the reply to {request_id}", procs)
        return self.replies[request_id]

    def command(self, command: object, procs: Processes) -> Reply:
        self.publish(command)
        return self.reply(command.request_id, procs)  # type: ignore[attr-defined]


@pytest.fixture
def lab(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[tuple[MosquittoBroker, Topics, Processes, Operator]]:
    topics = Topics(f"retained-{uuid.uuid4().hex[:8]}")
    procs = Processes(tmp_path / "logs")
    operator = Operator(private_mosquitto, topics)
    try:
        yield private_mosquitto, topics, procs, operator
    finally:
        operator.transport.close()
        procs.stop_all()


def start_agent(broker: MosquittoBroker, topics: Topics, procs: Processes, folder: Path) -> None:
    argv = [
        sys.executable, "-m", "agent.cli", "run", "--box", BOX, "--broker", broker.url,
        "--prefix", topics.prefix, "--sim", "--heartbeat", "1",
        "--journal", str(folder / "journal.db"), "--data-dir", str(folder / "data"),
    ]  # fmt: skip
    procs.start("rig", argv, {**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_online(operator: Operator, procs: Processes) -> None:
    """Until the agent's first status: it subscribes to its commands before sending it."""

    def online() -> bool:
        with operator.lock:
            seen = operator.seen
            return any(t == operator.topics.status(BOX) and b'"idle"' in p for t, p, _ in seen)

    wait_until(online, "the agent's idle status", procs)


def test_a_retained_dispense_is_refused_at_every_start_of_the_agent(
    lab: tuple[MosquittoBroker, Topics, Processes, Operator], tmp_path: Path
) -> None:
    broker, topics, procs, operator = lab
    dispense = DispenseCommand(request_id="retained-dispense", spout=0, count=100, duration_ms=500)
    operator.publish(dispense, retain=True)
    start_agent(broker, topics, procs, tmp_path / "rig")
    refused = operator.reply("retained-dispense", procs)
    assert not refused.ok and refused.code == "retained"
    assert "retained" in (refused.error or "")
    # The box is idle (nothing dispenses) and obeys the same command sent plainly.
    ping = operator.command(PingCommand(request_id="ping-1"), procs)
    assert ping.ok and ping.data["state"] == "idle"
    assert "ignored a retained dispense command" in procs.log("rig")


def test_a_stop_naming_another_session_leaves_the_running_one_alone(
    lab: tuple[MosquittoBroker, Topics, Processes, Operator], tmp_path: Path
) -> None:
    broker, topics, procs, operator = lab
    start_agent(broker, topics, procs, tmp_path / "rig")
    wait_online(operator, procs)
    start = StartCommand(
        request_id="start-1", session_id="session-now", mouse="M1", config={"duration": 3600}
    )
    assert operator.command(start, procs).ok
    late = operator.command(StopCommand(request_id="stop-late", session_id="session-before"), procs)
    assert not late.ok and late.code == "not_found"
    assert "session-before is not running" in (late.error or "")
    ping = operator.command(PingCommand(request_id="ping-1"), procs)
    assert ping.data["state"] == "running" and ping.data["session_id"] == "session-now"
    stop = operator.command(StopCommand(request_id="stop-now", session_id="session-now"), procs)
    assert stop.ok and stop.data["session_id"] == "session-now"


def test_a_stop_without_a_session_id_is_refused(
    lab: tuple[MosquittoBroker, Topics, Processes, Operator], tmp_path: Path
) -> None:
    broker, topics, procs, operator = lab
    start_agent(broker, topics, procs, tmp_path / "rig")
    wait_online(operator, procs)
    operator.transport.publish(
        topics.cmd(BOX), json.dumps({"command": "stop", "request_id": "bare-stop"}).encode()
    )
    reply = operator.reply("bare-stop", procs)
    assert not reply.ok and reply.code == "invalid" and "session_id" in (reply.error or "")


def test_labctl_clears_a_retained_command_it_finds(
    lab: tuple[MosquittoBroker, Topics, Processes, Operator], tmp_path: Path
) -> None:
    broker, topics, procs, operator = lab
    operator.publish(DispenseCommand(request_id="stale", spout=1, count=3), retain=True)
    env = {
        "LABCTL_BROKER": broker.url,
        "LABCTL_PREFIX": topics.prefix,
        "LABCTL_DB": f"sqlite:///{tmp_path / 'lab.db'}",
    }
    result = CliRunner().invoke(app, ["status"], env=env)
    assert result.exit_code == 0, result.output
    # A new subscriber gets whatever the broker still retains on the cmd topic, then the marker.
    watcher = Operator(broker, topics)
    try:
        marker = topics.labctl_sync("watcher")
        watcher.transport.subscribe([topics.cmd(BOX), marker])
        wait_until(watcher.transport.subscribed.is_set, "the watcher's subscriptions", procs)
        watcher.transport.publish(marker, b"done", wait=10)
        wait_until(lambda: any(t == marker for t, _, _ in watcher.seen), "the marker", procs)
        assert [s for s in watcher.seen if s[0] == topics.cmd(BOX)] == []
    finally:
        watcher.transport.close()
