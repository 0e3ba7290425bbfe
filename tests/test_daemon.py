"""The rig agent against a real MQTT broker (the fixture chain of DESIGN §9).

Most tests run an :class:`~agent.daemon.Agent` on a thread of this process
(fast, and the test can look at the rig's pins); the Last Will and the
SIGTERM tests run a real ``python -m agent.cli run`` process. Every test has
its own topic prefix, so tests sharing the broker never hear each other.
Nothing sleeps to wait for timing: tests wait on conditions, with timeouts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import cli
from agent.daemon import Agent
from agent.journal import Journal
from agent.settings import AgentSettings, BrokerSettings, read_rig_file, resolve
from agent.status import StatusCommand
from controller.demo.broker import MosquittoBroker
from shared.broker_url import parse_broker_url
from shared.digest import session_digest
from shared.documents import Document, SessionEnd, build_session, parse_document
from shared.errors import ConfigError
from shared.protocol import Reply, Status, Topics, parse_reply, parse_status
from shared.sessionfile import read_sessions

from . import waiting

REPO = Path(__file__).resolve().parent.parent
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
        address = parse_broker_url(url)
        self.topics = Topics(prefix)
        self.box = box
        self.cond = threading.Condition()
        self.statuses: list[Status] = []
        self.events: list[Document] = []
        self.replies: dict[str, list[Reply]] = defaultdict(list)
        self.connections = 0
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:10]}",
            clean_session=not persistent,
        )
        if address.tls:
            self.client.tls_set(
                ca_certs=str(ca_file) if ca_file else None,
                certfile=str(cert[0]) if cert else None,
                keyfile=str(cert[1]) if cert else None,
            )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect(address.host, address.port, keepalive=10)
        self.client.loop_start()
        self.wait(lambda: self.connections > 0, "the test client to connect")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        # Subscribing on every connect: with a clean session a reconnect needs it again.
        client.subscribe([(self.topics.rig(self.box, k), 1) for k in ("status", "events", "reply")])
        with self.cond:
            self.connections += 1
            self.cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
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
        self.client.publish(self.topics.cmd(self.box), payload, qos=1).wait_for_publish(TIMEOUT)

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
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Wait for another process's state (a file it writes): there is no event to wait on."""
    waiting.wait_until(condition, timeout, what)


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
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

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
    reply = client.command("stop")
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
    client.command("stop")
    assert client.wait_session_end(session_id).status == "stopped"
    client.assert_one_reply_each()


def test_stop_with_no_session_running_says_so(agent: ThreadAgent, client: RigClient) -> None:
    reply = client.command("stop")
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
    start_session(client, LONG)
    requests: list[tuple[str, dict[str, Any]]] = [
        ("dispense", {"spout": 0}),
        ("set_leds", {"on": [True, True]}),
        ("move_spouts", {"spout_position": [7, 7]}),
        ("read_sensors", {}),
    ]
    for name, fields in requests:
        reply = client.command(name, **fields)
        assert not reply.ok and reply.code == "busy", name
    client.command("stop")


def test_resend_publishes_a_range_of_a_session_again(agent: ThreadAgent, client: RigClient) -> None:
    session_id = start_session(client, SHORT)
    client.wait_complete(session_id)
    before = len(client.events)
    reply = client.command("resend", session_id=session_id, from_seq=2, to_seq=5)
    assert reply.ok and reply.data["count"] == 4
    client.wait(lambda: len(client.events) >= before + 4, "the resent documents")
    assert [d.seq for d in client.events[before:]] == [2, 3, 4, 5]
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


class SecureBroker:
    """A private mosquitto with a TLS listener (own test CA) that wants a user name and password."""

    USER, PASSWORD = "rig1", "s3cret"

    def __init__(self, client_certificates: bool = False) -> None:
        # Outside pytest's private tmp_path: mosquitto drops to its own user to read these.
        self.folder = Path(tempfile.mkdtemp(prefix="reachlab-tls-"))
        self.folder.chmod(0o755)
        self.ca = self.folder / "ca.pem"
        run = [
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=reachlab-test-ca"],
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext"],
            ["mosquitto_passwd", "-b", "-c", "passwords", self.USER, self.PASSWORD],
            # A client certificate for the rig, signed by the same CA.
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
             "-out", "client.csr", "-subj", "/CN=rig1"],
            ["openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "client.pem", "-days", "2"],
        ]  # fmt: skip
        self.client_cert = self.folder / "client.pem"
        self.client_key = self.folder / "client.key"
        (self.folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        for argv in run:
            subprocess.run(argv, cwd=self.folder, check=True, capture_output=True)
        for file in self.folder.iterdir():
            file.chmod(0o644)
        self.broker = MosquittoBroker(
            extra_config=(
                f"allow_anonymous false\npassword_file {self.folder / 'passwords'}\n"
                f"cafile {self.ca}\ncertfile {self.folder / 'server.pem'}\n"
                f"keyfile {self.folder / 'server.key'}\n"
                + ("require_certificate true\n" if client_certificates else "")
            )
        )
        self.url = f"mqtts://127.0.0.1:{self.broker.port}"
        self.broker.start()

    def close(self) -> None:
        self.broker.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def secure_broker() -> Iterator[SecureBroker]:
    if not (MosquittoBroker.available() and shutil.which("openssl")):
        pytest.skip("needs the mosquitto and openssl binaries")
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("needs mosquitto_passwd")
    broker = SecureBroker()
    yield broker
    broker.close()


def test_the_agent_connects_over_tls_with_a_password_from_the_environment(
    secure_broker: SecureBroker, topic_prefix: str, tmp_path: Path
) -> None:
    client = RigClient(
        secure_broker.url,
        topic_prefix,
        ca_file=secure_broker.ca,
        username=SecureBroker.USER,
        password=SecureBroker.PASSWORD,
    )
    try:
        with AgentProcess(
            tmp_path, secure_broker.url, topic_prefix, "--ca-file", str(secure_broker.ca),
            env={"LABAGENT_MQTT_USERNAME": SecureBroker.USER,
                 "LABAGENT_MQTT_PASSWORD": SecureBroker.PASSWORD},
        ) as process:  # fmt: skip
            client.wait_state("idle")
            assert client.command("ping").ok
            assert SecureBroker.PASSWORD not in process.output()
    finally:
        client.close()


@pytest.fixture
def mtls_broker() -> Iterator[SecureBroker]:
    if not (MosquittoBroker.available() and shutil.which("openssl")):
        pytest.skip("needs the mosquitto and openssl binaries")
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("needs mosquitto_passwd")
    broker = SecureBroker(client_certificates=True)
    yield broker
    broker.close()


def test_a_broker_that_wants_client_certificates_takes_the_rig_s_and_refuses_none(
    mtls_broker: SecureBroker, topic_prefix: str, tmp_path: Path
) -> None:
    broker = mtls_broker
    auth = {"LABAGENT_MQTT_USERNAME": SecureBroker.USER,
            "LABAGENT_MQTT_PASSWORD": SecureBroker.PASSWORD}  # fmt: skip
    client = RigClient(
        broker.url, topic_prefix, ca_file=broker.ca, username=SecureBroker.USER,
        password=SecureBroker.PASSWORD, cert=(broker.client_cert, broker.client_key),
    )  # fmt: skip
    try:
        with AgentProcess(
            tmp_path / "without", broker.url, topic_prefix, "--ca-file", str(broker.ca), env=auth
        ) as refused:
            wait_until(lambda: "closed the connection before" in refused.output(), "the refusal")
            assert refused.process.poll() is None  # still running, retrying with back-off
            assert client.status is None  # it never got as far as publishing a status
        with AgentProcess(
            tmp_path / "with", broker.url, topic_prefix, "--ca-file", str(broker.ca),
            "--cert-file", str(broker.client_cert), "--key-file", str(broker.client_key), env=auth,
        ):  # fmt: skip
            client.wait_state("idle")
            assert client.command("ping").ok
    finally:
        client.close()


def test_a_refused_password_is_logged_and_the_agent_keeps_trying(
    secure_broker: SecureBroker, topic_prefix: str, tmp_path: Path
) -> None:
    with AgentProcess(
        tmp_path, secure_broker.url, topic_prefix, "--ca-file", str(secure_broker.ca),
        "--username", SecureBroker.USER, env={"LABAGENT_MQTT_PASSWORD": "wrong"},
    ) as process:  # fmt: skip
        wait_until(lambda: "refused the connection" in process.output(), "the refusal")
        assert "Not authorized" in process.output()
        assert process.process.poll() is None  # still running, retrying with back-off


# ---------------------------------------------------------------- settings and labagent status


def test_broker_urls_are_parsed_and_bad_ones_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_broker_url("mqtt://rig-host").port == 1883
    tls = parse_broker_url("mqtts://u%40lab:p@broker.lab:9999")
    assert (tls.host, tls.port, tls.tls, tls.username, tls.password) == (
        "broker.lab", 9999, True, "u@lab", "p",
    )  # fmt: skip
    for bad in ("http://x", "mqtt://", "mqtt://host:99999", "broker:1883", "mqtt://h/path"):
        with pytest.raises(ConfigError, match="invalid broker URL"):
            parse_broker_url(bad)
    assert cli.main(["run", "--box", "1", "--broker", "tcp://nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("labagent: error: invalid broker URL 'tcp://nowhere'")
    assert "\n" not in err and "Traceback" not in err


def _args(**values: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    from agent.daemon import add_arguments

    add_arguments(parser)
    return parser.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in values.items()])


def test_options_win_over_environment_which_wins_over_the_rig_file(tmp_path: Path) -> None:
    rig = tmp_path / "rig.ini"
    rig.write_text(
        "[agent]\nbox = 3\nbroker = mqtts://broker.lab\nusername = filer\npassword = secret\n"
        "journal = state/journal.db\nheartbeat = 20\n\n[pins]\nsync = 21\n",
        encoding="utf-8",
    )
    env = {"LABAGENT_CONFIG_FILE": str(rig), "LABAGENT_MQTT_USERNAME": "envuser",
           "XDG_DATA_HOME": str(tmp_path / "xdg")}  # fmt: skip
    settings = resolve(_args(), env)
    assert settings.box == "3" and settings.broker.tls and settings.broker.port == 8883
    assert (settings.broker.username, settings.broker.password) == ("envuser", "secret")
    assert settings.journal == tmp_path / "state" / "journal.db"  # relative to the rig file
    assert settings.data_dir == tmp_path / "xdg" / "reachlab-agent" / "sessions"
    assert settings.heartbeat == 20 and settings.pins is not None and settings.pins.sync == 21
    settings = resolve(_args(box="7", broker="mqtt://other:1884"), {**env, "LABAGENT_BOX": "5"})
    assert settings.box == "7" and settings.broker.url == "mqtt://other:1884"
    assert resolve(_args(), {**env, "LABAGENT_BOX": "5"}).box == "5"


def test_a_json_rig_file_works_and_mistakes_name_the_key(tmp_path: Path) -> None:
    good = tmp_path / "rig.json"
    good.write_text(json.dumps({"box": 4, "pins": {"sync": 26}}), encoding="utf-8")
    rig, base = read_rig_file(good)
    assert rig.box == "4" and base == tmp_path
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"box": "4", "brokr": "mqtt://x"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key 'brokr'"):
        read_rig_file(bad)
    ini = tmp_path / "bad.ini"
    ini.write_text("[agent]\nheartbeat = often\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="key 'heartbeat'"):
        read_rig_file(ini)
    with pytest.raises(ConfigError, match="does not exist"):
        read_rig_file(tmp_path / "missing.ini")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "no box id"),
        ({"box": "a/b"}, "invalid box id"),
        ({"box": "1", "time_scale": "60"}, "needs --sim"),
        ({"box": "1", "sim": True, "time_scale": "max"}, "finite time scale"),
        ({"box": "1", "ca_file": "/nonexistent/ca.pem"}, "does not exist"),
        ({"box": "1", "heartbeat": "-1"}, "heartbeat must be positive"),
    ],
)
def test_settings_mistakes_are_clear_errors(
    values: dict[str, Any], message: str, tmp_path: Path
) -> None:
    sim = values.pop("sim", False)
    args = _args(**values)
    args.sim = sim or None
    with pytest.raises(ConfigError, match=message):
        resolve(args, {"XDG_DATA_HOME": str(tmp_path)})


def test_certificate_files_need_an_mqtts_broker(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not really a certificate")
    with pytest.raises(ConfigError, match="mqtts://"):
        resolve(_args(box="1", ca_file=ca), {"XDG_DATA_HOME": str(tmp_path)})


def test_labagent_status_lists_uncommitted_sessions_and_pending_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_journal import run_session

    path = tmp_path / "journal.sqlite3"
    args = argparse.Namespace(journal=str(path), config_file=None, json=False)
    assert StatusCommand.run(args) == 0
    assert "no journal" in capsys.readouterr().out
    docs = run_session(duration=30)
    with Journal.open(path) as journal:
        entries = [journal.append(doc) for doc in docs]
        journal.mark_acked(e.id for e in entries[:-3])
    assert StatusCommand.run(args) == 0
    out = capsys.readouterr().out
    assert "1 session(s) not yet committed" in out and "3 document(s) not yet acknowledged" in out
    assert "s1" in out and "M1" in out and "complete" in out
    args.json = True
    StatusCommand.run(args)
    data = json.loads(capsys.readouterr().out)
    assert data["pending"] == 3 and data["sessions"][0]["session_id"] == "s1"
