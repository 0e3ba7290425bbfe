"""The rig agent under test and a controller's view of it, for the agent's broker tests.

:class:`RigClient` talks to one box the way the controller does and records what it
hears; :class:`ThreadAgent` runs an :class:`~agent.daemon.Agent` on a thread of this
process (fast, and the test can look at the rig's pins); :class:`AgentProcess` runs a
real ``python -m agent.cli run``, stopped by its pid. The ``client`` and ``agent``
fixtures are imported by name where they are used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from agent.daemon import Agent
from agent.settings import AgentSettings, BrokerSettings
from shared.broker_url import parse_broker_url
from shared.documents import Document, SessionEnd, parse_document
from shared.protocol import Reply, Status, Topics, parse_reply, parse_status

from .conftest import REPO
from .mqttclient import MqttClient
from .processes import stop

TIMEOUT = 15.0

TIME_SCALE = 600.0

#: A session of a simulated minute: a tenth of a second at TIME_SCALE.
SHORT = {"duration": 60, "intertrial_interval": [1000, 2000], "timeout": 2000}

#: A session that runs until stopped (six wall seconds at TIME_SCALE).
LONG = {"duration": 3600}


# ---------------------------------------------------------------- a controller's view of a box


class RigClient:
    """Talks to one box the way the controller does, and records everything it hears."""

    def __init__(
        self,
        url: str,
        prefix: str,
        box: str = "1",
        *,
        client_id: str | None = None,
        persistent: bool = False,
        ca_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        cert: tuple[Path, Path] | None = None,
    ) -> None:
        self.topics = Topics(prefix)
        self.box = box
        self.cond = threading.Condition()
        self.statuses: list[Status] = []
        self.events: list[Document] = []
        self.replies: dict[str, list[Reply]] = defaultdict(list)
        self.connections = 0
        self.mqtt = MqttClient.at(
            url,
            client_id=client_id or f"test-{uuid.uuid4().hex[:10]}",
            clean_session=not persistent,
            ca=ca_file,
            cert=cert,
            username=username,
            password=password,
            keepalive=10,
            on_connect=self._on_connect,
            on_message=self._on_message,
        )
        self.client = self.mqtt.client
        self.wait(lambda: self.connections > 0, "the test client to connect")

    def _on_connect(self, mqtt: MqttClient) -> None:
        # Subscribing on every connect: with a clean session a reconnect needs it again.
        mqtt.client.subscribe(
            [(self.topics.rig(self.box, k), 1) for k in ("status", "events", "reply")]
        )
        with self.cond:
            self.connections += 1
            self.cond.notify_all()

    def _on_message(self, message: paho.MQTTMessage) -> None:
        kind = message.topic.rsplit("/", 1)[-1]
        if message.topic not in {
            self.topics.rig(self.box, k) for k in ("status", "events", "reply")
        }:
            # amqtt hands a new subscriber retained messages of other topics (a collector's
            # presence, another box's status): they are not this box's, as the agent knows too.
            return
        payload = bytes(message.payload)
        with self.cond:
            if kind == "status":
                self.statuses.append(parse_status(payload))
            elif kind == "events":
                self.events.append(parse_document(payload))
            elif kind == "reply":
                reply = parse_reply(payload)
                self.replies[reply.request_id].append(reply)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")

    def send_raw(self, payload: bytes | str) -> None:
        self.mqtt.publish(self.topics.cmd(self.box), payload)

    def send(self, command: str, **fields: Any) -> str:
        request_id = fields.pop("request_id", uuid.uuid4().hex[:12])
        self.send_raw(json.dumps({"command": command, "request_id": request_id, **fields}))
        return str(request_id)

    def reply(self, request_id: str) -> Reply:
        self.wait(lambda: bool(self.replies.get(request_id)), f"the reply to {request_id}")
        return self.replies[request_id][0]

    def command(self, command: str, **fields: Any) -> Reply:
        return self.reply(self.send(command, **fields))

    def assert_one_reply_each(self) -> None:
        """Replies go out in command order: once a ping is answered, no earlier reply is due."""
        self.command("ping")
        with self.cond:
            doubles = {rid: len(r) for rid, r in self.replies.items() if len(r) != 1}
        assert doubles == {}

    @property
    def status(self) -> Status | None:
        with self.cond:
            return self.statuses[-1] if self.statuses else None

    def wait_state(self, state: str) -> Status:
        self.wait(lambda: self.status is not None and self.status.state == state, f"state {state}")
        assert self.status is not None
        return self.status

    def session_docs(self, session_id: str) -> list[Document]:
        """The session's documents as received, keeping the first of each (session_id, seq)."""
        seen: set[int] = set()
        docs: list[Document] = []
        with self.cond:
            for doc in self.events:
                if doc.session_id == session_id and doc.seq not in seen:
                    seen.add(doc.seq)
                    docs.append(doc)
        return docs

    def wait_session_end(self, session_id: str) -> SessionEnd:
        def ended() -> bool:
            return any(
                isinstance(d, SessionEnd) and d.session_id == session_id for d in self.events
            )

        self.wait(ended, f"the session_end of {session_id}")
        return next(d for d in self.session_docs(session_id) if isinstance(d, SessionEnd))

    def wait_complete(self, session_id: str, timeout: float = TIMEOUT) -> list[Document]:
        """Wait until every seq up to the session_end has arrived; return them in arrival order."""
        end = self.wait_session_end(session_id)
        try:
            self.wait(
                lambda: len(self.session_docs(session_id)) == end.seq + 1,
                f"all {end.seq + 1} documents of {session_id}",
                timeout,
            )
        except AssertionError as exc:
            have = {doc.seq for doc in self.session_docs(session_id)}
            missing = sorted(set(range(end.seq + 1)) - have)
            raise AssertionError(f"{exc}; missing seqs {missing[:20]} of {len(missing)}") from None
        return self.session_docs(session_id)

    def close(self) -> None:
        self.mqtt.close()


# ---------------------------------------------------------------- agents under test


def settings_for(broker_url: str, prefix: str, folder: Path, **changes: Any) -> AgentSettings:
    address = parse_broker_url(broker_url)
    values: dict[str, Any] = {
        "box": "1",
        "broker": BrokerSettings(host=address.host, port=address.port),
        "journal": folder / "journal.sqlite3",
        "data_dir": folder / "data",
        "prefix": prefix,
        "sim": True,
        "time_scale": TIME_SCALE,
        "seed": 11,
        "heartbeat": 5.0,
    }
    values.update(changes)
    return AgentSettings(**values)


class ThreadAgent:
    """An Agent serving on a thread of this process."""

    def __init__(self, settings: AgentSettings) -> None:
        self.agent = Agent(settings)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="agent-under-test")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.agent.run()
        except BaseException as exc:  # handed to the test thread by stop()
            self.error = exc

    @property
    def rig(self) -> Any:
        return self.agent.runtime.rig

    def stop(self) -> None:
        self.agent.request_stop("test finished")
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the agent did not stop"
        if self.error is not None:
            raise self.error


class AgentProcess:
    """A real ``labagent run`` process; the test stops it by its pid."""

    def __init__(
        self,
        folder: Path,
        broker_url: str,
        prefix: str,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.journal = folder / "journal.sqlite3"
        self.data_dir = folder / "data"
        self.log = folder / f"agent-{uuid.uuid4().hex[:6]}.log"
        argv = [
            sys.executable, "-m", "agent.cli", "run", "--box", "1",
            "--broker", broker_url, "--prefix", prefix, "--sim",
            "--time-scale", f"{TIME_SCALE:g}", "--seed", "5", "--heartbeat", "1",
            "--journal", str(self.journal), "--data-dir", str(self.data_dir), *extra,
        ]  # fmt: skip
        environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environ
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"agent {self.pid} did not exit:\n{self.output()}") from None

    def stop(self) -> None:
        """Make sure the process is gone: SIGTERM, then SIGKILL."""
        stop(self.process)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def client(broker_url: str, topic_prefix: str) -> Iterator[RigClient]:
    rig_client = RigClient(broker_url, topic_prefix)
    yield rig_client
    rig_client.close()


@pytest.fixture
def agent(broker_url: str, topic_prefix: str, tmp_path: Path, client: RigClient) -> Iterator[Any]:
    running = ThreadAgent(settings_for(broker_url, topic_prefix, tmp_path))
    client.wait_state("idle")
    yield running
    running.stop()


def start_session(client: RigClient, config: dict[str, Any], **fields: Any) -> str:
    session_id = str(fields.pop("session_id", uuid.uuid4().hex))
    reply = client.command("start", session_id=session_id, mouse="M1", config=config, **fields)
    assert reply.ok, reply.error
    return session_id
