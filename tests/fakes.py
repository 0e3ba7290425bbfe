"""Test fakes: synthetic sessions and a stand-in rig, for the controller's tests and benchmarks.

:func:`synthetic_session` makes a valid document stream (what a box would
publish for one session) without the agent. :class:`FakeRig` is a minimal
box on a real broker: it publishes a status and documents (in any order,
with any gaps) and answers ``resend`` and ``committed`` from what it holds,
as the real agent does. The end-to-end test uses the real agent instead.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as paho

from controller.transport import BrokerError
from shared.broker_url import BrokerSettings
from shared.config import TaskConfig
from shared.documents import (
    Document,
    Lift,
    Reward,
    SessionEnd,
    SessionStart,
    TrialEnd,
    TrialStart,
    build_session,
    dump_document,
)
from shared.errors import ProtocolError
from shared.protocol import (
    QOS,
    CommittedCommand,
    Reply,
    ResendCommand,
    RigState,
    StartCommand,
    Status,
    StopCommand,
    Topics,
    encode,
    parse_command,
)

from .mqttclient import MqttClient

T0 = 1_700_000_000.0


def synthetic_session(
    *,
    session_id: str | None = None,
    mouse: str = "M1",
    box: str = "1",
    trials: int = 10,
    t0: float = T0,
    seed: int = 1,
    metadata: dict[str, Any] | None = None,
    status: str = "complete",
) -> list[Document]:
    """A whole session's documents, seq 0..N, as a box would publish them."""
    rng = random.Random(seed)
    sid = session_id or uuid.uuid4().hex
    docs: list[Document] = []

    def add(kind: type[Any], t: float, **fields: Any) -> None:
        docs.append(kind(session_id=sid, box=box, seq=len(docs), t=t, **fields))

    add(
        SessionStart,
        t0,
        mouse=mouse,
        settings=TaskConfig().settings(),
        metadata=metadata or {"trainer": "test"},
        software_version="reachlab test",
    )
    t = t0
    correct = rewards = 0
    for number in range(trials):
        t += rng.uniform(4, 6)
        spout = rng.choice((0, 1))
        add(
            TrialStart,
            t,
            trial=number,
            spout=spout,
            cue_duration=10000.0,
            spout_position=(1, 1),
            shaping=False,
        )
        if rng.random() < 0.7:
            add(Lift, t + 0.3, trial=number, paw=rng.choice((0, 1)))
        outcome = rng.choice((0, 1, 1, 2))
        t += rng.uniform(0.5, 2)
        add(TrialEnd, t, trial=number, outcome=outcome)
        if outcome == 1:
            correct += 1
            rewards += 1
            add(Reward, t, spout=spout, duration_ms=70)
    t += 1
    add(
        SessionEnd,
        t,
        status=status,
        end_time=t,
        duration=t - t0,
        date="2023-11-14",
        counts={"trials": trials, "correct": correct, "rewards": rewards},
    )
    return docs


def session_dict(docs: Iterable[Document]) -> dict[str, Any]:
    """What the box's own local copy of the session holds."""
    return build_session(list(docs))


class FakeRig:
    """A box on a real broker that publishes what it is told and answers like the agent.

    It keeps every document it has published, by session, to serve ``resend``;
    ``committed`` prunes a session. ``start`` and ``stop`` are answered with a
    reply (and a status) but no session runs.
    """

    def __init__(
        self,
        broker: BrokerSettings,
        topics: Topics,
        box: str,
        *,
        answer_resend: bool = True,
        state: RigState = "idle",
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.box = box
        self.answer_resend = answer_resend
        self.state: RigState = state
        #: The running session, named in the status as the agent does (a stop names it).
        self.session_id: str | None = f"fake-{box}" if state == "running" else None
        self.held: dict[str, dict[int, Document]] = {}
        self.commands: list[Any] = []
        self.committed: list[str] = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.mqtt: MqttClient | None = None
        self._paho: paho.Client | None = None

    @property
    def client(self) -> paho.Client:
        """The rig's paho client (once connected)."""
        assert self.mqtt is not None, "use the fake rig in a with block"
        return self.mqtt.client

    def __enter__(self) -> FakeRig:
        offline = Status(box=self.box, state="offline")
        self.mqtt = MqttClient(
            self.broker.port,
            self.broker.username,
            self.broker.password,
            host=self.broker.host,
            client_id=f"fake-rig-{self.box}-{uuid.uuid4().hex[:6]}",
            will=(self.topics.status(self.box), encode(offline)),
            keepalive=15,
            on_connect=self._on_connect,
            on_message=self._on_message,
        )
        if isinstance(self.mqtt.connack, OSError):
            raise BrokerError(f"cannot reach MQTT broker {self.broker.url}: {self.mqtt.connack}")
        if not self.mqtt.accepted or not self.connected.wait(10):
            raise BrokerError(f"fake rig {self.box} could not connect to {self.broker.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, *, clean: bool = True) -> None:
        """Disconnect; ``clean`` first publishes an offline status, as the agent does."""
        # A connection the broker already dropped (the embedded amqtt broker drops a client
        # when its own subscription table changes under it) has no offline status to send.
        if clean and self.client.is_connected():
            offline = Status(box=self.box, state="offline")
            self.client.publish(
                self.topics.status(self.box), encode(offline), qos=QOS, retain=True
            ).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------ what the test does

    def uncommitted(self) -> list[str]:
        """Sessions held whole (their session_end too) and not committed, as the agent lists
        them in its status."""
        with self.cond:
            return [
                session_id
                for session_id, docs in self.held.items()
                if any(isinstance(doc, SessionEnd) for doc in docs.values())
            ]

    def publish_status(self, **fields: Any) -> None:
        fields.setdefault("uncommitted", self.uncommitted())
        fields.setdefault("session_id", self.session_id)
        status = Status(box=self.box, state=self.state, **fields)
        self.client.publish(
            self.topics.status(self.box), encode(status), qos=QOS, retain=True
        ).wait_for_publish(5)

    def publish(self, docs: Iterable[Document], *, hold: bool = True) -> None:
        """Publish documents in the order given (and keep them for resend unless told not to)."""
        infos = []
        for doc in docs:
            if hold:
                with self.cond:
                    self.held.setdefault(doc.session_id, {})[doc.seq] = doc
            infos.append(
                self.client.publish(
                    self.topics.events(self.box), dump_document(doc).encode(), qos=QOS
                )
            )
        for info in infos:
            info.wait_for_publish(10)

    def hold(self, docs: Iterable[Document]) -> None:
        """Keep documents for resend without publishing them (the network lost them)."""
        with self.cond:
            for doc in docs:
                self.held.setdefault(doc.session_id, {})[doc.seq] = doc

    def publish_raw(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=QOS).wait_for_publish(5)

    def wait(self, predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    # ------------------------------------------------------------ paho's thread

    def _on_connect(self, mqtt: MqttClient) -> None:
        # paho's thread, before the constructor has returned: subscribe and publish, no waiting.
        client = self._paho = mqtt.client
        client.subscribe(self.topics.cmd(self.box), QOS)
        self._publish_status(client)
        self.connected.set()

    def _publish_status(self, client: paho.Client) -> None:
        status = Status(
            box=self.box,
            state=self.state,
            session_id=self.session_id,
            uncommitted=self.uncommitted(),
        )
        client.publish(self.topics.status(self.box), encode(status), qos=QOS, retain=True)

    def _on_message(self, message: paho.MQTTMessage) -> None:
        client = self._paho  # set on connect, before any message can arrive
        assert client is not None
        try:
            command = parse_command(bytes(message.payload))
        except ProtocolError:
            return
        reply = Reply(request_id=command.request_id, command=command.command, ok=True)
        with self.cond:
            self.commands.append(command)
            if isinstance(command, ResendCommand):
                held = self.held.get(command.session_id)
                if held is None or not self.answer_resend:
                    reply = reply.model_copy(
                        update={"ok": False, "code": "not_found", "error": "not held"}
                    )
                    resend: list[Document] = []
                else:
                    top = command.to_seq if command.to_seq is not None else max(held)
                    resend = [held[s] for s in sorted(held) if command.from_seq <= s <= top]
                    reply = reply.model_copy(update={"data": {"count": len(resend)}})
                for doc in resend:
                    client.publish(self.topics.events(self.box), dump_document(doc).encode(), QOS)
            elif isinstance(command, CommittedCommand):
                self.committed.append(command.session_id)
                self.held.pop(command.session_id, None)
            elif isinstance(command, StartCommand):
                if self.state == "running":
                    reply = reply.model_copy(
                        update={"ok": False, "code": "busy", "error": f"box {self.box} is busy"}
                    )
                else:
                    self.state, self.session_id = "running", command.session_id
                    reply = reply.model_copy(update={"data": {"session_id": command.session_id}})
                    self._publish_status(client)
            elif isinstance(command, StopCommand):
                if self.state != "running":
                    reply = reply.model_copy(
                        update={"ok": False, "code": "idle", "error": "no session is running"}
                    )
                self.state, self.session_id = "idle", None
                self._publish_status(client)
            self.cond.notify_all()
        client.publish(self.topics.reply(self.box), encode(reply), qos=QOS)
