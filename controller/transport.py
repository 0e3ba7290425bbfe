"""The controller's one MQTT client: connect, subscribe, publish, acknowledge a batch.

This is the only controller module that imports paho. :class:`Transport`
wraps one paho client: it re-subscribes its filters on every connect, puts
each message it receives onto a queue (the collector) or hands it to a
callback (labctl's short-lived link), publishes, and acknowledges a stored
batch of messages at once (``manual_ack``).

Two speed-ups for the collector's stream reach into paho's internals: reading
the socket in 64 KiB chunks (paho's ``_sock_recv`` hook) and writing a batch's
PUBACKs as one packet write (paho's ``_packet_queue``). Both are used only on
a paho release they were written against (:data:`FAST_PATH_PAHO`) and when
the client has the hooks; anywhere else, or with ``fast=False``, the plain
public API does the same work more slowly.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt import __version__ as PAHO_VERSION
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from shared.broker_url import BrokerSettings
from shared.errors import ConfigError, ReachlabError

log = logging.getLogger("labctl.mqtt")

QOS = 1
#: paho major releases whose internals the fast path was written and tested against.
FAST_PATH_PAHO = ("2.",)


class BrokerError(ReachlabError, ConnectionError):
    """The broker cannot be reached or refused us; the message says which broker and why."""


def paho_version() -> str:
    return str(PAHO_VERSION)


def fast_path_available() -> bool:
    """Whether the installed paho is one the internal speed-ups know."""
    return paho_version().startswith(FAST_PATH_PAHO) and all(
        hasattr(paho.Client, name) for name in ("_sock_recv", "_packet_queue", "loop_read")
    )


class Received(NamedTuple):
    """One message as it came off the wire (a tuple: thousands arrive a second)."""

    topic: str
    payload: bytes
    retained: bool
    received_at: float
    mid: int
    qos: int
    #: Which connection it came on: only that connection can acknowledge it.
    generation: int


@dataclass(frozen=True)
class Will:
    """A Last Will: what the broker publishes (retained) when this client dies."""

    topic: str
    payload: bytes
    retain: bool = True


class _BufferedClient(paho.Client):
    """A paho client that reads its socket in large chunks, for the collector's stream.

    paho reads each packet with two or three ``recv`` calls (its type, its length,
    then the rest) and only one packet each time ``select`` wakes its loop; at
    thousands of messages a second those system calls, each also handing over the
    GIL, are most of what paho's thread costs. Here ``recv`` takes whatever the
    socket holds (up to 64 KiB) and paho's reads are served from that;
    :meth:`loop_read` goes on until nothing read is left over, since ``select`` only
    sees the socket.
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
        rc: MQTTErrorCode = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._buffered():
            rc = super().loop_read(max_packets)
        return rc


_PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1 PUBACK: type, remaining length 2, packet id


class Transport:
    """One MQTT connection. Callbacks run on paho's thread and only record or enqueue.

    ``inbox``: every message goes onto it as a :class:`Received`; past ``max_queued``
    paho's thread waits (the socket fills and the broker keeps the rest), so a stalled
    consumer cannot grow it without end. ``on_message`` instead: called with
    (topic, payload, retained) on paho's thread.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        client_id: str,
        clean_session: bool = True,
        manual_ack: bool = False,
        inbox: queue.SimpleQueue[Received] | None = None,
        max_queued: int = 10_000,
        on_message: Callable[[str, bytes, bool], None] | None = None,
        will: Will | None = None,
        fast: bool | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.fast = fast_path_available() if fast is None else fast and fast_path_available()
        self.inbox = inbox
        self.max_queued = max_queued
        self.on_message = on_message
        #: Called on paho's thread after each (re)connect that the broker accepted.
        self.on_connected: Callable[[bool], None] | None = None
        self.connected = threading.Event()
        #: Set once the broker has confirmed the subscriptions.
        self.subscribed = threading.Event()
        self.closing = threading.Event()
        self.refused: str | None = None
        self.generation = 0
        self._filters: list[str] = []
        self._drained = threading.Event()
        self._failures = 0
        cls = _BufferedClient if self.fast else paho.Client
        self._client = cls(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
            manual_ack=manual_ack,
        )
        self._manual_ack = manual_ack
        if settings.username is not None:
            self._client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            try:
                self._client.tls_set(
                    ca_certs=str(settings.ca_file) if settings.ca_file else None,
                    certfile=str(settings.cert_file) if settings.cert_file else None,
                    keyfile=str(settings.key_file) if settings.key_file else None,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ConfigError(f"TLS set-up for {settings.url} failed: {exc}") from None
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=QOS, retain=will.retain)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # ------------------------------------------------------------ lifecycle

    def subscribe(self, filters: Sequence[str]) -> None:
        """Subscribe (QoS 1) now if connected, and again after every reconnect."""
        self._filters = list(filters)
        self.subscribed.clear()
        if self.connected.is_set():
            self._client.subscribe([(f, QOS) for f in self._filters])

    def connect(self, timeout: float) -> None:
        """Connect now and start paho's thread; :class:`BrokerError` if that fails."""
        try:
            self._client.connect(self.settings.host, self.settings.port, self.settings.keepalive)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot reach MQTT broker {self.settings.url}: {exc}") from None
        self._client.loop_start()
        deadline = time.monotonic() + timeout
        while not self.connected.wait(0.05):
            if self.refused is not None or time.monotonic() > deadline:
                self.close()
                why = self.refused or f"no answer within {timeout:g} s"
                raise BrokerError(f"MQTT broker {self.settings.url} refused the connection: {why}")

    def connect_in_background(self, min_delay: int = 1, max_delay: int = 30) -> None:
        """Connect, retrying with back-off for as long as it takes, on paho's thread."""
        self._client.reconnect_delay_set(min_delay=min_delay, max_delay=max_delay)
        self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        self._client.loop_start()

    def close(self) -> None:
        self.closing.set()
        self._drained.set()
        self._client.disconnect()
        # After disconnect() paho's network thread ends by itself; if it ends between
        # loop_stop's look at it and its join, paho raises AttributeError (paho-mqtt issue
        # 872, open): the thread is gone, which is all loop_stop was for.
        with contextlib.suppress(AttributeError):
            self._client.loop_stop()

    # ------------------------------------------------------------ sending

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, wait: float | None = None
    ) -> bool:
        """Publish at QoS 1; with ``wait``, True once the broker has it (False on timeout).

        Without a connection paho queues the message and sends it on reconnect."""
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BrokerError(f"could not publish to {self.settings.url}: {info.rc}")
        if wait is None:
            return True
        try:
            info.wait_for_publish(wait)
        except RuntimeError:  # paho: the message was dropped (connection lost for good)
            return False
        return bool(info.is_published())

    def ack(self, batch: Sequence[Received]) -> None:
        """Acknowledge a stored batch (QoS 1 and 2) on a ``manual_ack`` connection.

        A message of an earlier connection is delivered again on this one: not acked.
        """
        if not self._manual_ack:
            return
        generation = self.generation
        mids = [m.mid for m in batch if m.qos == 1 and m.generation == generation]
        if mids:
            self.ack_mids(mids)
        for m in batch:
            if m.qos == 2 and m.generation == generation:  # not used by reachlab
                self._client.ack(m.mid, m.qos)

    def ack_mids(self, mids: Sequence[int]) -> None:
        """PUBACK the QoS 1 messages ``mids`` at once.

        :meth:`paho.Client.ack` queues one packet per message and wakes paho's thread for
        each; at thousands of messages a second that costs more than storing them. On the
        fast path a batch's PUBACKs go out as one write on paho's queue; the broker reads
        them as the separate packets they are, in order.
        """
        if not self.fast:
            for mid in mids:
                self._client.ack(mid, 1)
            return
        self._client._packet_queue(  # behind fast_path_available()
            paho.PUBACK, b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids]), 0, 0
        )

    def drained(self) -> None:
        """The consumer took messages off the inbox: wake paho's thread if it waits."""
        if not self._drained.is_set():
            self._drained.set()

    # ------------------------------------------------------------ paho's thread

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            log.error("broker %s refused %s: %s", self.settings.url, self.client_id, reason_code)
            return
        self.generation += 1
        self._failures = 0
        # Again on every connect: harmless with a persistent session, needed when the
        # broker has lost it (restarted without persistence).
        if self._filters:
            client.subscribe([(f, QOS) for f in self._filters])
        self.connected.set()
        if self.on_connected is not None:
            self.on_connected(bool(getattr(flags, "session_present", False)))

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        failed = [code for code in reason_codes if code.is_failure]
        if failed:
            log.error("broker %s refused the subscriptions: %s", self.settings.url, failed)
            return
        self.subscribed.set()

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "cannot reach broker %s; retrying", self.settings.url)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self.closing.is_set():
            log.warning("lost the broker %s (%s); reconnecting", self.settings.url, reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        payload = message.payload
        # paho hands over bytes; copy only the odd bytearray, off the hot path.
        data = payload if isinstance(payload, bytes) else bytes(payload)
        if self.on_message is not None:
            self.on_message(message.topic, data, bool(message.retain))
            return
        inbox = self.inbox
        if inbox is None:
            return
        while inbox.qsize() >= self.max_queued:
            self._drained.clear()
            if self.closing.is_set():
                return  # not acknowledged: the broker delivers it again
            self._drained.wait(1.0)
        inbox.put(
            Received(
                message.topic,
                data,
                bool(message.retain),
                time.time(),
                message.mid,
                message.qos,
                self.generation,
            )
        )

    def deliver(self, topic: str, payload: bytes, *, mid: int = 0, qos: int = 0) -> None:
        """Hand a message to the consumer as if it came off the wire (tests)."""
        message = paho.MQTTMessage(mid=mid, topic=topic.encode())
        message.payload, message.qos = payload, qos
        self._on_message(self._client, None, message)
