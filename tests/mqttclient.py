"""The tests' one raw MQTT client: connect, subscribe, collect, publish, clear a retained message.

Every test that needs a client of its own on a broker (to check a permission on
the wire, to play a rig or a controller, to leave or clear a retained status)
uses :class:`MqttClient`. By default it records what it receives in
``received``; a test double with its own bookkeeping (tests.fakes.FakeRig,
tests.agentlab.RigClient) passes ``on_message`` instead, and ``on_connect`` for
what it must do on every (re)connection.
"""

from __future__ import annotations

import os
import queue
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from shared.broker_url import broker_settings

#: How long a test waits for the broker to answer (CONNACK, SUBACK, PUBACK).
TIMEOUT = 10.0


class MqttClient:
    """A paho client on ``host``:``port`` that records what it receives, connected on creation.

    ``accepted`` says whether the broker took the connection (``connack`` holds its
    answer, or the error of a refused TLS handshake).
    """

    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        host: str = "127.0.0.1",
        will: tuple[str, bytes] | None = None,
        client_id: str | None = None,
        clean_session: bool = True,
        tls: bool = False,
        ca: Path | None = None,
        cert: tuple[Path, Path] | None = None,
        manual_ack: bool = False,
        keepalive: int = 60,
        on_message: Callable[[paho.MQTTMessage], None] | None = None,
        on_connect: Callable[[MqttClient], None] | None = None,
    ) -> None:
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        #: Message ids not yet acknowledged, in arrival order (with ``manual_ack``).
        self.unacked: queue.Queue[int] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self._connack: queue.Queue[Any] = queue.Queue()
        self._subacks: queue.Queue[list[Any]] = queue.Queue()
        self._on_message = on_message
        self._manual_ack = manual_ack
        self._on_connect = on_connect
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{username or 'anon'}-{os.urandom(3).hex()}",
            clean_session=clean_session,
            protocol=paho.MQTTv311,
            manual_ack=manual_ack,
        )
        if username is not None:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        if tls or ca is not None:
            client.tls_set(
                ca_certs=str(ca) if ca else None,
                certfile=str(cert[0]) if cert else None,
                keyfile=str(cert[1]) if cert else None,
            )
        client.on_connect = self._connected
        client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)
        client.on_subscribe = lambda c, u, mid, codes, p: self._subacks.put(codes)
        client.on_message = self._message
        # A lost connection comes back within a second: tests wait seconds, not minutes.
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client = client
        try:
            client.connect(host, port, keepalive=keepalive)
        except OSError as exc:  # nothing listening, or a TLS handshake the broker refused
            self.connack: Any = exc
            return
        client.loop_start()
        try:
            self.connack = self._connack.get(timeout=TIMEOUT)
        except queue.Empty:
            try:
                self.connack = self.disconnects.get(timeout=TIMEOUT)  # closed before any CONNACK
            except queue.Empty:
                self.connack = TimeoutError(f"no answer from {host}:{port} in {TIMEOUT:g} s")

    @classmethod
    def at(cls, url: str, **options: Any) -> MqttClient:
        """A client on the broker of an ``mqtt://`` or ``mqtts://`` URL (its credentials too)."""
        address = broker_settings(url)
        options.setdefault("username", address.username)
        options.setdefault("password", address.password)
        return cls(address.port, host=address.host, tls=address.tls, **options)

    def _connected(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if self._on_connect is not None and not rc.is_failure:
            self._on_connect(self)
        self._connack.put(rc)

    def _message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        if self._on_message is not None:
            self._on_message(message)
        else:
            self.received.put((message.topic, bytes(message.payload)))
        if self._manual_ack:
            self.unacked.put(message.mid)

    def __enter__(self) -> MqttClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def accepted(self) -> bool:
        return not isinstance(self.connack, BaseException) and not self.connack.is_failure

    def subscribe(self, *topics: str) -> list[bool]:
        """Subscribe (QoS 1) and wait for the SUBACK; True for each filter the broker granted."""
        self.client.subscribe([(t, 1) for t in topics])
        return [not code.is_failure for code in self._subacks.get(timeout=TIMEOUT)]

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        """Publish at QoS 1 and return once the broker has it."""
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(TIMEOUT)

    def clear_retained(self, topic: str) -> None:
        """Remove the retained message of ``topic``, so later tests on the broker never see it."""
        self.publish(topic, b"", retain=True)

    def collect(self, count: int, timeout: float = TIMEOUT) -> list[tuple[str, bytes]]:
        """The next ``count`` messages received (queue.Empty if they do not come in time)."""
        return [self.received.get(timeout=timeout) for _ in range(count)]

    def until(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including (topic, payload)."""
        seen = []
        while True:
            message = self.received.get(timeout=TIMEOUT)
            seen.append(message)
            if message == (topic, payload):
                return seen

    def ack(self, mid: int) -> None:
        """Acknowledge a message received with ``manual_ack``."""
        self.client.ack(mid, 1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Vanish without DISCONNECT, as a rig whose network dies: the broker sends the will."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
