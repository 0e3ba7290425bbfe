"""The controller's side of MQTT: broker settings, paho clients, and labctl's short-lived link.

This module and :mod:`controller.collector` are the only ones that touch
paho. :class:`LabLink` is what ``labctl start``, ``stop``, ``status`` and
``monitor`` use: it connects with a clean session and a random client id (it
must never take over the collector's persistent session), reads every box's
retained status, sends commands and waits for their replies.

Reading the retained statuses needs no timing guess: after subscribing,
the link publishes a marker to a topic of its own; the broker delivers a
client's messages in order, so once the marker is back every retained status
has been delivered.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import BaseModel

from shared.broker_url import format_broker_url
from shared.broker_url import parse_broker_url as shared_parse_broker_url
from shared.documents import Document, parse_document
from shared.errors import ConfigError, ProtocolError, ReachlabError
from shared.protocol import QOS, Reply, Status, Topics, encode, parse_reply, parse_status

log = logging.getLogger("labctl.mqtt")

DEFAULT_BROKER = "mqtt://localhost:1883"
DEFAULT_KEEPALIVE_S = 15


class BrokerError(ReachlabError, ConnectionError):
    """The broker cannot be reached or refused us; the message says which broker and why."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect; ``url`` never shows the password."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    ca_file: Path | None = None
    keepalive: int = DEFAULT_KEEPALIVE_S

    @property
    def url(self) -> str:
        return format_broker_url(self.host, self.port, self.tls)


def parse_broker_url(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | Path | None = None,
) -> BrokerSettings:
    """``mqtt://host[:port]`` or ``mqtts://[user[:password]@]host[:port]``; ConfigError if not.

    Credentials given separately (``LABCTL_MQTT_USERNAME`` / ``_PASSWORD``)
    win over ones in the URL.
    """
    address = shared_parse_broker_url(url)
    ca = Path(ca_file).expanduser() if ca_file else None
    if ca is not None and not ca.is_file():
        raise ConfigError(f"CA certificate file {ca} does not exist")
    return BrokerSettings(
        host=address.host,
        port=address.port,
        tls=address.tls,
        username=username or address.username,
        password=password or address.password,
        ca_file=ca,
    )


class _BufferedClient(paho.Client):
    """A paho client that reads its socket in large chunks, for the collector's stream.

    paho reads each packet with two or three ``recv`` calls (its type, its length,
    then the rest) and only one packet each time ``select`` wakes its loop; at
    thousands of messages a second those system calls, each also handing over the
    GIL, are most of what paho's thread costs. Here ``recv`` takes whatever the
    socket holds (up to 64 KiB) and paho's reads are served from that;
    :meth:`loop_read` goes on until nothing read is left over, since ``select`` only
    sees the socket. ``_sock_recv`` is paho's own (2.x) hook for reading the socket.
    """

    _READ_SIZE = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rbuf_sock: Any = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._rbuf_sock:
            # A new connection: nothing read on an earlier one belongs to it.
            self._rbuf_sock, self._rbuf, self._rpos = self._sock, b"", 0
        if self._rpos >= len(self._rbuf):
            self._rbuf, self._rpos = super()._sock_recv(max(bufsize, self._READ_SIZE)), 0
        data = self._rbuf[self._rpos : self._rpos + bufsize]
        self._rpos += len(data)
        return data

    def _buffered(self) -> bool:
        return (
            self._sock is not None
            and self._sock is self._rbuf_sock
            and self._rpos < len(self._rbuf)
        )

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._buffered():
            rc = super().loop_read(max_packets)
        return rc


def make_client(
    settings: BrokerSettings,
    *,
    client_id: str,
    clean_session: bool = True,
    manual_ack: bool = False,
    buffered_reads: bool = False,
) -> paho.Client:
    """A paho client for ``settings`` (credentials, TLS); not connected yet.

    ``buffered_reads``: read the socket in large chunks (:class:`_BufferedClient`), for
    a client that takes a stream of messages (the collector).
    """
    cls = _BufferedClient if buffered_reads else paho.Client
    client = cls(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=paho.MQTTv311,
        manual_ack=manual_ack,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        try:
            client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(f"TLS set-up for {settings.url} failed: {exc}") from None
    return client


_PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1 PUBACK: type, remaining length 2, packet id


def ack_all(client: paho.Client, mids: Sequence[int]) -> None:
    """Acknowledge (PUBACK) the QoS 1 messages ``mids`` of a ``manual_ack`` client at once.

    :meth:`paho.Client.ack` queues one packet per message and wakes paho's thread for
    each (a system call on both threads, then one ``send`` per 4-byte packet): at
    thousands of messages a second that costs more than storing them. Here a batch's
    PUBACKs go out as one write on paho's queue; the broker reads them as the separate
    packets they are, in order. As with single acks, a PUBACK the broker has not read
    when the connection drops only means the message is delivered again.

    ``_packet_queue`` is paho's own (2.x); without it, or on another protocol version,
    this falls back to :meth:`~paho.Client.ack` per message.
    """
    if not mids or not getattr(client, "_manual_ack", True):
        return  # paho acknowledged them itself, as Client.ack assumes
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None or client.protocol != paho.MQTTv311:
        for mid in mids:
            client.ack(mid, 1)
        return
    queue_packet(paho.PUBACK, b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids]), 0, 0)


def describe_connect_error(settings: BrokerSettings, exc: BaseException) -> BrokerError:
    reason = str(exc) or type(exc).__name__
    return BrokerError(f"cannot reach MQTT broker {settings.url}: {reason}")


def new_client_id(role: str) -> str:
    return f"labctl-{role}-{uuid.uuid4().hex[:8]}"


class LabLink:
    """A short-lived connection of one labctl command: statuses, commands, replies, events.

    Use as a context manager. Every callback runs on paho's thread and only
    records what arrived under ``cond``; the command's thread waits on it.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        topics: Topics,
        *,
        timeout: float = 5.0,
        events: bool = False,
        on_event: Callable[[str, Document], None] | None = None,
        on_status: Callable[[str, Status], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.timeout = timeout
        self.client_id = new_client_id("cli")
        self.cond = threading.Condition()
        self.statuses: dict[str, Status] = {}
        self.status_texts: dict[str, str] = {}
        self.status_times: dict[str, float] = {}
        self.replies: dict[str, Reply] = {}
        self.events: deque[tuple[float, str, Document]] = deque(maxlen=200)
        self.on_event = on_event
        self.on_status = on_status
        self._want_events = events
        self._marker = f"{topics.prefix}/labctl/{self.client_id}/sync"
        self._marker_seen: set[bytes] = set()
        self._connected = False
        self._refused: str | None = None
        self._subscribed = False
        self._client = make_client(settings, client_id=self.client_id, clean_session=True)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> LabLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect, subscribe and read every retained status; BrokerError if that fails."""
        try:
            self._client.connect(self.settings.host, self.settings.port, self.settings.keepalive)
        except (OSError, ValueError) as exc:
            raise describe_connect_error(self.settings, exc) from None
        self._client.loop_start()
        try:
            self._wait(lambda: self._connected or self._refused is not None, "connect")
            if self._refused is not None:
                raise BrokerError(
                    f"MQTT broker {self.settings.url} refused the connection: {self._refused}"
                )
            self._wait(lambda: self._subscribed, "subscribe")
            self.sync()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        """Whether the connection is up now; after a drop paho reconnects on its own."""
        return bool(self._client.is_connected())

    def _wait(self, predicate: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, self.timeout if timeout is None else timeout):
                raise BrokerError(
                    f"MQTT broker {self.settings.url} did not answer ({what}) within "
                    f"{self.timeout if timeout is None else timeout:g} s"
                )

    def sync(self) -> None:
        """Return once everything the broker queued for us before now has arrived."""
        token = uuid.uuid4().hex.encode()
        self._client.publish(self._marker, token, qos=QOS)
        self._wait(lambda: token in self._marker_seen, "retained statuses")

    # ------------------------------------------------------------ commands

    def send(self, box: str, command: BaseModel) -> None:
        """Publish a command to ``box`` (QoS 1)."""
        info = self._client.publish(self.topics.cmd(box), encode(command), qos=QOS)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BrokerError(f"could not publish to {self.settings.url}: {info.rc}")

    def wait_replies(self, request_ids: set[str], timeout: float) -> dict[str, Reply]:
        """The replies that arrive for ``request_ids`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not request_ids <= self.replies.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return {rid: self.replies[rid] for rid in request_ids if rid in self.replies}

    def wait_for_message(self, timeout: float, *, only_new: bool = True) -> None:
        """Return when a message arrives (or after ``timeout``); with ``only_new`` False,
        simply let ``timeout`` pass (a pause that a Ctrl-C still interrupts)."""
        with self.cond:
            if only_new:
                self.cond.wait(timeout)
            else:
                self.cond.wait_for(lambda: False, timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` (checked under ``cond``) holds; False on timeout."""
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    # ------------------------------------------------------------ paho's thread

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        with self.cond:
            if reason_code.is_failure:
                self._refused = str(reason_code)
            else:
                self._connected = True
                kinds = ["status", "reply"] + (["events"] if self._want_events else [])
                subscriptions = [(self.topics.all_rigs(k), QOS) for k in kinds]  # type: ignore[arg-type]
                client.subscribe([*subscriptions, (self._marker, QOS)])
            self.cond.notify_all()

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        with self.cond:
            self._subscribed = True
            self.cond.notify_all()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        payload = bytes(message.payload)
        with self.cond:
            if message.topic == self._marker:
                self._marker_seen.add(payload)
            else:
                self._record(message.topic, payload)
            self.cond.notify_all()

    def _record(self, topic: str, payload: bytes) -> None:
        try:
            box, kind = self.topics.parse(topic)
            if kind == "status":
                status = parse_status(payload)
                self.statuses[box] = status
                self.status_texts[box] = payload.decode("utf-8")
                self.status_times[box] = time.time()
                if self.on_status is not None:
                    self.on_status(box, status)
            elif kind == "reply":
                reply = parse_reply(payload)
                self.replies[reply.request_id] = reply
            elif kind == "events":
                doc = parse_document(payload)
                self.events.append((time.time(), box, doc))
                if self.on_event is not None:
                    self.on_event(box, doc)
        except ProtocolError as exc:
            # The collector keeps bad messages; a labctl command only looks.
            log.debug("ignoring a bad message on %s: %s", topic, exc)
