"""Decoding the rigs' messages, and dead letters for those that cannot be used.

:class:`Decoder` sorts one batch of raw :class:`Incoming` messages into
documents, statuses and replies, each validated against the protocol and
against its topic (a box speaks only for itself). Whatever fails becomes a
dead-letter row with its reason; a payload over the size limit is kept only
as a prefix, so a flood of large messages cannot fill the database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from shared.documents import Document, parse_document
from shared.errors import ProtocolError
from shared.protocol import (
    CommittedCommand,
    Reply,
    ResendCommand,
    Status,
    Topics,
    parse_reply,
    parse_status,
)

log = logging.getLogger("labctl.collector")

RigCommand = ResendCommand | CommittedCommand
#: How much of an oversized payload a dead letter keeps.
DEAD_LETTER_PREFIX = 1024


class CommandSink(Protocol):
    """Where the collector's commands go: published on the box's cmd topic."""

    def send(self, box: str, command: RigCommand) -> None: ...


class Incoming(NamedTuple):
    """One MQTT message as the transport received it (a tuple: thousands arrive a second)."""

    topic: str
    payload: bytes
    received_at: float
    #: A retained message the broker replayed on subscribe: not proof the box is alive now.
    retained: bool = False


@dataclass(frozen=True)
class IngestSettings:
    """Timings and bounds of the collector, in wall seconds where they are times."""

    heartbeat_timeout: float = 30.0
    gap_grace: float = 1.0
    resend_interval: float = 5.0
    #: A session whose box no longer runs it and sent nothing for this long lacks its tail.
    tail_grace: float = 5.0
    commit_retry: float = 30.0
    #: Largest payload taken; a bigger one is a dead letter (the broker should refuse it first).
    max_payload: int = 256 * 1024
    #: A document more than this many seqs past the highest stored one of its session is
    #: not one its box can have sent (nor is anything past the seq column's range).
    seq_window: int = 100_000
    #: Resend requests one collector sends in one tick, over all sessions.
    resends_per_tick: int = 20
    #: Requests for one session with nothing coming back before it is given up as a problem.
    max_resends: int = 20
    #: How many of the ``uncommitted`` ids in a box's status are looked at.
    max_listed: int = 50


@dataclass
class Decoded:
    """One batch, sorted by kind; ``dead`` holds the dead-letter rows."""

    documents: list[tuple[Document, str, float]] = field(default_factory=list)
    statuses: dict[str, tuple[Status, str]] = field(default_factory=dict)
    replies: list[tuple[str, Reply]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    #: Box -> the newest time a live (not retained) message of it arrived.
    seen: dict[str, float] = field(default_factory=dict)
    #: Box -> the newest time one of its documents arrived.
    event_at: dict[str, float] = field(default_factory=dict)
    #: Box -> when its status in ``statuses`` arrived, if live (not retained): its clock
    #: then says how far the rig's clock is off (controller.collector.presence).
    status_at: dict[str, float] = field(default_factory=dict)


def dead_letter(
    topic: str, payload: bytes, received_at: float, reason: str, limit: int | None = None
) -> dict[str, Any]:
    """A dead-letter row; past ``limit`` bytes only a prefix of the payload is kept."""
    log.warning("dead letter from %s: %s", topic[:200], reason)
    kept = bytes(payload)
    if limit is not None and len(kept) > limit:
        kept = kept[:DEAD_LETTER_PREFIX]
    return {"received_at": received_at, "topic": topic[:1000], "payload": kept, "reason": reason}


class Decoder:
    """Validates messages at the edge; one instance per collector (it caches topic parses)."""

    def __init__(self, topics: Topics, settings: IngestSettings) -> None:
        self.topics = topics
        self.settings = settings
        self._topic_cache: dict[str, tuple[str, str]] = {}

    def _parse_topic(self, topic: str) -> tuple[str, str]:
        parsed = self._topic_cache.get(topic)
        if parsed is None:
            parsed = self.topics.parse(topic)
            if len(self._topic_cache) < 10_000:  # a few topics per box; bounded all the same
                self._topic_cache[topic] = parsed
        return parsed

    def decode(self, batch: list[Incoming]) -> Decoded:
        out = Decoded()
        for message in batch:
            self._decode(message, out)
        return out

    def _decode(self, message: Incoming, out: Decoded) -> None:
        if not self.topics.is_rig_topic(message.topic):
            # Not subscribed, so not sent to this lab: a broker delivered it anyway (amqtt
            # hands new subscribers retained messages of other topics). Nothing to keep.
            log.debug("ignored a message on %s: not under %s", message.topic, self.topics.rigs_root)
            return
        limit = self.settings.max_payload
        size = len(message.payload)
        if size > limit:
            reason = f"payload of {size} bytes is over the limit of {limit} bytes (prefix kept)"
            out.dead.append(
                dead_letter(message.topic, message.payload, message.received_at, reason, limit)
            )
            return
        try:
            box, kind = self._parse_topic(message.topic)
            if kind == "events":
                doc = parse_document(message.payload)
                if doc.box != box:
                    raise ProtocolError(f"document of box {doc.box!r} on the topic of box {box!r}")
                out.documents.append((doc, message.payload.decode("utf-8"), message.received_at))
                out.event_at[box] = message.received_at
            elif kind == "status":
                status = parse_status(message.payload)
                if status.box != box:
                    raise ProtocolError(f"status of box {status.box!r} on the topic of box {box!r}")
                out.statuses[box] = (status, message.payload.decode("utf-8"))
                if message.retained:
                    out.status_at.pop(box, None)
                    return  # replayed by the broker: says nothing about the box being alive
                out.status_at[box] = message.received_at
            elif kind == "reply":
                out.replies.append((box, parse_reply(message.payload)))
            else:
                raise ProtocolError(f"the collector does not take {kind!r} messages")
        except ProtocolError as exc:
            out.dead.append(
                dead_letter(message.topic, message.payload, message.received_at, str(exc))
            )
            return
        out.seen[box] = max(out.seen.get(box, 0.0), message.received_at)
