"""The agent's side of MQTT: the one place that touches paho, and the journal's outbox.

:class:`MqttLink` wraps paho; :class:`Outbox` publishes the journal's documents through it.

Threading: paho runs its network loop on its own thread (``loop_start``).
Every paho callback only hands work to the task loop through ``dispatch``
(the loop's ``call_soon_threadsafe``), so the agent's state, the journal and
the session are only ever touched on the task loop's thread. Publishing from
that thread is safe: paho's ``publish`` takes its own locks.

Delivery: documents go out at QoS 1. The journal, not paho, is the queue:
the outbox hands paho at most ``window`` documents awaiting their PUBACK,
publishes nothing while the link is down, and on every (re)connect starts
again from the journal's oldest unacknowledged document. paho's own queue is
capped as a safety net; it never grows with the length of an outage.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent.journal import Journal, JournalEntry
from shared.broker_url import BrokerSettings
from shared.errors import ConfigError
from shared.protocol import QOS

log = logging.getLogger("labagent.mqtt")

Dispatch = Callable[..., None]
"""``dispatch(callback, *args)`` runs ``callback(*args)`` on the task loop's thread."""

#: paho's reconnect back-off: 1 s, doubling up to 30 s while the broker stays away.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


class LinkListener(Protocol):
    """What the link tells its owner; every method is called on the task loop's thread."""

    def link_connected(self) -> None: ...

    def link_disconnected(self, reason: str) -> None: ...

    def link_message(self, topic: str, payload: bytes, retained: bool) -> None: ...

    def link_acked(self, mids: list[int]) -> None: ...


@dataclass(frozen=True)
class Sent:
    """What became of a publish: its message id, and whether paho holds it for delivery."""

    mid: int
    queued: bool


class Publisher(Protocol):
    """The part of :class:`MqttLink` the outbox uses (a fake one in unit tests)."""

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> Sent: ...


class MqttLink:
    """One paho client with a Last Will, automatic reconnects and callbacks handed to the loop."""

    def __init__(
        self,
        broker: BrokerSettings,
        *,
        client_id: str,
        will: tuple[str, bytes],
        subscriptions: Sequence[str],
        dispatch: Dispatch,
        listener: LinkListener,
        max_inflight: int = 120,
        max_queued: int = 1000,
    ) -> None:
        self.broker = broker
        self._dispatch = dispatch
        self._listener = listener
        self._subscriptions = list(subscriptions)
        self._acks: list[int] = []
        self._acks_lock = threading.Lock()
        self._closing = False
        self._was_connected = False
        self._failures = 0
        self._last_refusal = ""

        # A clean session on purpose: a command sent while this rig was offline
        # (say "start" for a mouse that has long gone home) must not run hours later.
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            try:
                client.tls_set(
                    ca_certs=str(broker.ca_file) if broker.ca_file else None,
                    certfile=str(broker.cert_file) if broker.cert_file else None,
                    keyfile=str(broker.key_file) if broker.key_file else None,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ConfigError(f"TLS set-up for {broker.url} failed: {exc}") from None
        topic, payload = will
        client.will_set(topic, payload, qos=QOS, retain=True)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(max_queued)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._client = client

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        """Connect in the background; an unreachable broker is retried with back-off."""
        log.info("connecting to broker %s", self.broker.url)
        self._client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive)
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> Sent:
        """Publish at QoS 1. ``queued`` is False when paho refused it (its queue is full)."""
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        # NO_CONN: paho keeps the message and sends it after reconnecting.
        queued = info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)
        return Sent(info.mid, queued)

    def close(self, final: tuple[str, bytes] | None = None, timeout: float = 3.0) -> None:
        """Publish ``final`` (retained) if connected, wait for it, then disconnect cleanly."""
        self._closing = True
        client = self._client
        was_connected = client.is_connected()
        if final is not None and was_connected:
            topic, payload = final
            info = client.publish(topic, payload, qos=QOS, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish the final status: %s", exc)
        client.disconnect()
        # After disconnect() paho's network thread ends by itself; if it ends between
        # loop_stop's look at it and its join, paho raises AttributeError (paho-mqtt issue
        # 872, open): the thread is gone, which is all loop_stop was for.
        with contextlib.suppress(AttributeError):
            client.loop_stop()
        if was_connected:
            log.info("disconnected from broker %s", self.broker.url)

    # ------------------------------------------------------------------ paho's thread
    # These run on paho's network thread. They must not raise (an exception would
    # end that thread) and must not touch agent state: they only dispatch.

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            reason = str(reason_code)
            if reason != self._last_refusal:
                log.error("broker %s refused the connection: %s", self.broker.url, reason)
                self._last_refusal = reason
            return
        self._last_refusal = ""
        self._failures = 0
        self._was_connected = True
        if self._subscriptions:
            client.subscribe([(topic, QOS) for topic in self._subscriptions])
        self._dispatch(self._listener.link_connected)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._failures += 1
        # One warning per outage; the retries that follow go to the debug log.
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(
            level,
            "cannot reach broker %s; retrying every %d-%d s",
            self.broker.url,
            RECONNECT_MIN_S,
            RECONNECT_MAX_S,
        )

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if self._closing:
            return
        if not self._was_connected:
            # Closed before the broker accepted the connection: typically a TLS handshake
            # the broker refused (a client certificate it wants and did not get, or one it
            # does not trust). Said once per outage, like an unreachable broker.
            self._failures += 1
            if self._failures == 1 and not self._last_refusal:  # a refusal is logged already
                log.warning(
                    "broker %s closed the connection before accepting it: check the TLS "
                    "certificates and the credentials; retrying every %d-%d s",
                    self.broker.url,
                    RECONNECT_MIN_S,
                    RECONNECT_MAX_S,
                )
            return
        self._was_connected = False
        # paho reports a dropped socket as "Unspecified error"; say what happened.
        reason = str(reason_code)
        reason = "connection closed" if reason == "Unspecified error" else reason
        self._dispatch(self._listener.link_disconnected, reason)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # ``retain`` is set on a message the broker kept and hands over at (re)subscribing.
        self._dispatch(
            self._listener.link_message,
            message.topic,
            bytes(message.payload),
            bool(message.retain),
        )

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning("broker rejected message %d: %s", mid, reason_code)
            return
        # Batch the PUBACKs: one hand-over to the loop (and one journal transaction)
        # however many arrive before the loop gets to them.
        with self._acks_lock:
            self._acks.append(mid)
            first = len(self._acks) == 1
        if first:
            self._dispatch(self._deliver_acks)

    def _deliver_acks(self) -> None:
        with self._acks_lock:
            mids, self._acks = self._acks, []
        if mids:
            self._listener.link_acked(mids)


class Outbox:
    """Publishes the journal's unacknowledged documents, in journal order, on one topic.

    Used on the task loop's thread only. Call :meth:`pump` after appending to
    the journal, :meth:`connected` / :meth:`disconnected` on link changes and
    :meth:`acked` with PUBACK message ids.
    """

    def __init__(
        self,
        journal: Journal,
        publisher: Publisher,
        topic: str,
        *,
        window: int = 100,
        on_acked: Callable[[list[JournalEntry]], None] | None = None,
        on_sent: Callable[[JournalEntry], None] | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.journal = journal
        self.publisher = publisher
        self.topic = topic
        self.window = window
        self.on_acked = on_acked
        #: Told of every document handed to paho (a benchmark times them from here).
        self.on_sent = on_sent
        self.is_connected = False
        self._inflight: dict[int, JournalEntry] = {}
        self._cursor = 0  # journal id of the last document handed to paho on this connection
        self._resend: deque[JournalEntry] = deque()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def connected(self) -> None:
        """A (new) connection: publish everything unacknowledged again, from the oldest."""
        self.is_connected = True
        self._inflight.clear()
        self._cursor = 0
        self.pump()

    def disconnected(self) -> None:
        """The link dropped: whatever was in flight stays unacknowledged in the journal."""
        self.is_connected = False
        # PUBACKs for these mids can no longer come; the next connection replays them.
        self._inflight.clear()

    def resend(self, entries: list[JournalEntry]) -> None:
        """Publish these (already published) documents again, ahead of new ones."""
        self._resend.extend(entries)
        self.pump()

    def acked(self, mids: list[int]) -> list[JournalEntry]:
        """Record PUBACKs; mids that are not ours (status, replies) are ignored."""
        done = [self._inflight.pop(mid) for mid in mids if mid in self._inflight]
        if done:
            self.journal.mark_acked(entry.id for entry in done)
            if self.on_acked is not None:
                self.on_acked(done)
        self.pump()
        return done

    def pump(self) -> None:
        """Hand paho the next documents, keeping at most ``window`` awaiting their PUBACK."""
        while self.is_connected and len(self._inflight) < self.window:
            if self._resend:
                if not self._send(self._resend[0]):
                    return
                self._resend.popleft()
                continue
            batch = self.journal.pending(self._cursor, self.window - len(self._inflight))
            if not batch:
                return
            for entry in batch:
                if not self._send(entry):
                    return
                self._cursor = entry.id

    def _send(self, entry: JournalEntry) -> bool:
        sent = self.publisher.publish(self.topic, entry.body.encode())
        if not sent.queued:
            # paho's queue is full: stop here; the next PUBACK or reconnect pumps again.
            log.debug("paho queue full; document %s/%d waits", entry.session_id, entry.seq)
            return False
        self._inflight[sent.mid] = entry
        if self.on_sent is not None:
            self.on_sent(entry)
        return True
