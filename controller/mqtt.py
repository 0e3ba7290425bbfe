"""labctl's short-lived link to the broker: retained statuses, commands, replies, live events.

:class:`BrokerLink` is what ``labctl start``, ``stop``, ``status``, ``monitor`` and
the web dashboard use. It connects through :class:`~controller.transport.Transport`
with a clean session and a random client id (it must never take over a
collector's persistent session), reads every box's and every collector's
retained status, sends commands and waits for their replies. A retained message
it finds on a box's ``cmd`` topic it clears: rigs never obey one (DESIGN §15),
and it must not wait there for the next reconnect.

Reading the retained statuses needs no timing guess: after subscribing,
the link publishes a marker to a topic of its own; the broker delivers a
client's messages in order, so once the marker is back every retained status
has been delivered.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

from pydantic import BaseModel

from controller.collector.leases import CollectorStatus, check_same_lab, parse_collector_status
from controller.transport import BrokerError, Transport
from shared.broker_url import BrokerSettings
from shared.documents import Document, parse_document
from shared.errors import ProtocolError
from shared.protocol import Reply, Status, Topics, encode, parse_reply, parse_status

__all__ = ["BrokerError", "BrokerLink"]

log = logging.getLogger("labctl.mqtt")


def new_client_id(role: str) -> str:
    """A labctl command's MQTT client id, ``labctl-<role>-<8 hex digits>``: random, so it can
    never take over a collector's persistent session."""
    return f"labctl-{role}-{uuid.uuid4().hex[:8]}"


class BrokerLink:
    """A short-lived connection of one labctl command: statuses, commands, replies, events.

    Use as a context manager. Every message is recorded on the transport's thread under
    ``cond``; the command's thread waits on it.
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
        lab: tuple[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.timeout = timeout
        self.client_id = new_client_id("cli")
        self.cond = threading.Condition()
        self.statuses: dict[str, Status] = {}
        self.status_texts: dict[str, str] = {}
        self.status_times: dict[str, float] = {}
        #: Every collector's retained presence, by its client id.
        self.collectors: dict[str, CollectorStatus] = {}
        self.replies: dict[str, Reply] = {}
        #: The cmd topics whose retained message this link cleared.
        self.cleared: list[str] = []
        self.events: deque[tuple[float, str, Document]] = deque(maxlen=200)
        self.on_event = on_event
        self.on_status = on_status
        #: (database URL, identity) of the database this link's commands were judged from:
        #: opening refuses (WrongLab) when the online collectors write to another one.
        self.lab = lab
        self._marker = topics.labctl_sync(self.client_id)
        self._marker_seen: set[bytes] = set()
        kinds = ["status", "reply", "cmd"] + (["events"] if events else [])
        self._transport = Transport(
            settings, client_id=self.client_id, clean_session=True, on_message=self._on_message
        )
        self._transport.subscribe(
            [
                *(topics.all_rigs(k) for k in kinds),  # type: ignore[arg-type]
                topics.all_collectors(),
                self._marker,
            ]
        )

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> BrokerLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect, subscribe and read every retained status; BrokerError if that fails."""
        self._transport.connect(self.timeout)
        try:
            if not self._transport.subscribed.wait(self.timeout):
                raise BrokerError(
                    f"MQTT broker {self.settings.url} did not answer (subscribe) within "
                    f"{self.timeout:g} s"
                )
            self.sync()
            if self.lab is not None:
                check_same_lab(*self.lab, self.online_collectors())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._transport.close()

    @property
    def connected(self) -> bool:
        """Whether the connection is up now; after a drop it reconnects on its own."""
        return self._transport.connected.is_set()

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
        self._transport.publish(self._marker, token)
        self._wait(lambda: token in self._marker_seen, "retained statuses")

    def online_collectors(self) -> list[CollectorStatus]:
        """The collectors whose retained presence says they are collecting now."""
        with self.cond:
            return [c for _, c in sorted(self.collectors.items()) if c.state == "online"]

    # ------------------------------------------------------------ commands

    def send(self, box: str, command: BaseModel) -> None:
        """Publish a command to ``box`` (QoS 1)."""
        self._transport.publish(self.topics.cmd(box), encode(command))

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

    # ------------------------------------------------------------ the transport's thread

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        with self.cond:
            if topic == self._marker:
                self._marker_seen.add(payload)
            elif retained and payload and self._is_cmd_topic(topic):
                self._clear_retained(topic)
            else:
                self._record(topic, payload)
            self.cond.notify_all()

    def _is_cmd_topic(self, topic: str) -> bool:
        try:
            return self.topics.parse(topic)[1] == "cmd"
        except ProtocolError:
            return False

    def _clear_retained(self, topic: str) -> None:
        # An empty retained message deletes the broker's copy; the rig ignores both.
        log.warning(
            "cleared a retained command on %s: commands must never be retained (rigs ignore "
            "them); find who publishes with the retain flag",
            topic,
        )
        self._transport.publish(topic, b"", retain=True)
        self.cleared.append(topic)

    def _record(self, topic: str, payload: bytes) -> None:
        try:
            if self.topics.is_collector_topic(topic):
                if payload:  # an empty retained message clears a collector's presence
                    presence = parse_collector_status(payload)
                    self.collectors[presence.collector] = presence
                return
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
            elif kind == "cmd":
                return  # commands (ours echoed back): subscribed only to find retained ones
            elif kind == "events":
                doc = parse_document(payload)
                self.events.append((time.time(), box, doc))
                if self.on_event is not None:
                    self.on_event(box, doc)
        except ProtocolError as exc:
            # The collector keeps bad messages; a labctl command only looks.
            log.debug("ignoring a bad message on %s: %s", topic, exc)
