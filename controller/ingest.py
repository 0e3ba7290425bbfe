"""The collector's core: messages from the rigs in, database rows and commands to the rigs out.

No broker here. The transport (:mod:`controller.collector`) decodes nothing;
it hands batches of raw :class:`Incoming` messages to :meth:`Ingest.handle`
and calls :meth:`Ingest.tick` now and then. Commands for the rigs (``resend``,
``committed``) go out through a :class:`CommandSink`, only after the
transaction that justified them has committed. Tests drive this class with a
temp SQLite file and a list as the sink.

What it does with each kind of message:

* **events** (session documents): stored raw and idempotently on
  ``(session_id, seq)``; each new document goes through the
  :class:`DocumentRouter`, one method per document kind. When every seq
  ``0..last_seq`` of a session is stored, the session dict is rebuilt with
  :class:`~shared.documents.SessionBuilder` (the same code the agent's local
  copy comes from), stored with its trials, and the box gets ``committed``.
* **gaps**: a seq missing below the highest seen, or fewer documents than the
  ``session_end`` says, for longer than ``gap_grace``: the box is asked to
  ``resend`` the missing range, at most every ``resend_interval``. A session
  whose box has moved on without its ``session_end`` arriving gets a resend of
  its tail.
* **status**: the box's state and last-seen time. A box that sends nothing
  for ``heartbeat_timeout`` is marked offline even if its Last Will never came.
* **reply**: confirms ``committed`` (the box pruned its journal) or reports a
  resend the box cannot serve.
* anything malformed goes to ``dead_letters`` with the reason, and a log line; a
  message outside this lab's topics (which it never subscribed to) is ignored.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection, Table, bindparam, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from controller.db import Box, Database, DeadLetter
from controller.db import Document as DocumentRow
from controller.store import (
    SESSIONS,
    digest,
    ensure_mouse,
    insert_ignore,
    session_text,
    store_trials,
)
from shared.documents import (
    CueChanged,
    Document,
    Lift,
    Reset,
    Reward,
    SessionBuilder,
    SessionEnd,
    SessionStart,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
    TrialStart,
    parse_document,
)
from shared.errors import InvalidIdError, ProtocolError
from shared.ids import check_mouse_id
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

DOCUMENTS: Table = DocumentRow.__table__  # type: ignore[assignment]
BOXES: Table = Box.__table__  # type: ignore[assignment]
DEAD_LETTERS: Table = DeadLetter.__table__  # type: ignore[assignment]

RigCommand = ResendCommand | CommittedCommand


class CommandSink(Protocol):
    """Where the ingest's commands go: the collector publishes them on the box's cmd topic."""

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
    """Timings of the collector, in wall seconds."""

    heartbeat_timeout: float = 30.0
    gap_grace: float = 1.0
    resend_interval: float = 5.0
    #: A session whose box no longer runs it and sent nothing for this long lacks its tail.
    tail_grace: float = 5.0
    commit_retry: float = 30.0
    #: Forget a committed session's in-memory state after this long.
    forget_after: float = 600.0
    #: Replies later than this are no longer expected.
    request_timeout: float = 120.0


# ---------------------------------------------------------------- in-memory state


@dataclass
class SessionTrack:
    """What the collector knows about one session while it is being collected."""

    session_id: str
    box: str
    seqs: set[int] = field(default_factory=set)
    max_seq: int = -1
    #: The documents this collector received, by seq: the session is rebuilt from them
    #: without reading them back, unless some came before a restart.
    docs: dict[int, Document] = field(default_factory=dict)
    mouse: str | None = None
    has_row: bool = False
    last_seq: int | None = None
    status: str | None = None
    trials: int = 0
    rewards: int = 0
    complete: bool = False
    imported: bool = False
    committed: bool = False
    failed: str | None = None
    last_doc_at: float = 0.0
    gap_since: float | None = None
    last_resend_at: float | None = None
    commit_sent_at: float | None = None
    completed_at: float | None = None
    #: Counts changed since they were last written (written by :meth:`Ingest.tick`).
    dirty: bool = False

    def add(self, seq: int) -> None:
        self.seqs.add(seq)
        if seq > self.max_seq:
            self.max_seq = seq

    @property
    def whole(self) -> bool:
        """Every document 0..last_seq is stored and the session can be completed."""
        return (
            not self.complete
            and not self.failed
            and self.has_row
            and self.last_seq is not None
            and len(self.seqs) == self.last_seq + 1
            and self.max_seq == self.last_seq
        )

    def has_gap(self) -> bool:
        top = self.last_seq if self.last_seq is not None else self.max_seq
        return len(self.seqs) < top + 1

    def missing(self) -> tuple[int, int] | None:
        """(first, last) missing seq below the highest expected one, or None."""
        if not self.has_gap():
            return None
        top = self.last_seq if self.last_seq is not None else self.max_seq
        absent = [seq for seq in range(top + 1) if seq not in self.seqs]
        return (absent[0], absent[-1]) if absent else None


@dataclass
class BoxTrack:
    """A box as the collector sees it."""

    box: str
    reported: str = "offline"  # the state in its last status
    session_id: str | None = None
    last_seen: float | None = None
    timed_out: bool = False
    last_event_at: float | None = None
    #: The last_seen / last_event_at values the database holds (written at most every second).
    written_seen: float | None = None
    written_event: float | None = None
    #: Ended sessions its journal still holds, uncommitted (from its last status).
    uncommitted: tuple[str, ...] = ()

    @property
    def online(self) -> bool:
        return self.reported != "offline" and not self.timed_out


@dataclass
class _Request:
    command: str
    session_id: str
    box: str
    sent_at: float


@dataclass
class _Batch:
    """Everything one batch of messages (or one tick) changes."""

    now: float
    documents: list[tuple[Document, str, float]] = field(default_factory=list)
    statuses: dict[str, tuple[Status, str, Incoming]] = field(default_factory=dict)
    replies: list[tuple[str, Reply]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)
    event_at: dict[str, float] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    outgoing: list[tuple[str, RigCommand]] = field(default_factory=list)
    came_online: set[str] = field(default_factory=set)
    new_documents: int = 0


# ---------------------------------------------------------------- the router


class DocumentRouter:
    """One method per document kind, called once for every newly stored document."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self._handlers: dict[type[Any], Callable[[Any, SessionTrack, Connection, _Batch], None]]
        self._handlers = {
            SessionStart: self.session_start,
            TrialStart: self.trial_start,
            Lift: self.lift,
            TrialEnd: self.trial_end,
            Reward: self.reward,
            Reset: self.reset,
            SpontaneousReach: self.spontaneous_reach,
            SpoutsMoved: self.spouts_moved,
            CueChanged: self.cue_changed,
            SessionEnd: self.session_end,
        }

    def dispatch(self, doc: Document, track: SessionTrack, conn: Connection, batch: _Batch) -> None:
        self._handlers[type(doc)](doc, track, conn, batch)

    def session_start(
        self, doc: SessionStart, track: SessionTrack, conn: Connection, batch: _Batch
    ) -> None:
        try:
            check_mouse_id(doc.mouse)
        except InvalidIdError as exc:
            track.failed = f"session_start: {exc}"
            log.error("session %s cannot be stored: %s", doc.session_id, exc)
            return
        track.mouse = doc.mouse
        if ensure_mouse(conn, doc.mouse, batch.now):
            log.info("new mouse %s (from box %s)", doc.mouse, doc.box)
        inserted = insert_ignore(
            conn,
            SESSIONS,
            [
                {
                    "session_id": doc.session_id,
                    "mouse_id": doc.mouse,
                    "box": doc.box,
                    "origin": "recorded",
                    "complete": False,
                    "position": doc.t,
                    "start_time": doc.t,
                    "trial_count": track.trials,
                    "reward_count": track.rewards,
                    "created_at": batch.now,
                }
            ],
            index_elements=["session_id"],
            returning=[SESSIONS.c.id],
        )
        track.has_row = True
        if inserted:
            log.info("session %s of %s started on box %s", doc.session_id, doc.mouse, doc.box)

    def trial_start(
        self, doc: TrialStart, track: SessionTrack, conn: Connection, batch: _Batch
    ) -> None:
        """Nothing to store beyond the raw document; the session dict comes at the end."""

    def lift(self, doc: Lift, track: SessionTrack, conn: Connection, batch: _Batch) -> None:
        """Nothing beyond the raw document."""

    def trial_end(
        self, doc: TrialEnd, track: SessionTrack, conn: Connection, batch: _Batch
    ) -> None:
        track.trials += 1

    def reward(self, doc: Reward, track: SessionTrack, conn: Connection, batch: _Batch) -> None:
        track.rewards += 1

    def reset(self, doc: Reset, track: SessionTrack, conn: Connection, batch: _Batch) -> None:
        """Nothing beyond the raw document."""

    def spontaneous_reach(
        self, doc: SpontaneousReach, track: SessionTrack, conn: Connection, batch: _Batch
    ) -> None:
        """Nothing beyond the raw document."""

    def spouts_moved(
        self, doc: SpoutsMoved, track: SessionTrack, conn: Connection, batch: _Batch
    ) -> None:
        """Nothing beyond the raw document."""

    def cue_changed(
        self, doc: CueChanged, track: SessionTrack, conn: Connection, batch: _Batch
    ) -> None:
        """Nothing beyond the raw document."""

    def session_end(
        self, doc: SessionEnd, track: SessionTrack, conn: Connection, batch: _Batch
    ) -> None:
        track.last_seq = doc.seq
        track.status = doc.status
        if track.max_seq > doc.seq:
            track.failed = f"documents after session_end (seq {track.max_seq} > {doc.seq})"


# ---------------------------------------------------------------- the ingest


class Ingest:
    """Turns batches of rig messages into database rows and rig commands. Not thread-safe:
    one thread (the collector's writer) calls :meth:`handle` and :meth:`tick`."""

    def __init__(
        self,
        db: Database,
        sink: CommandSink,
        *,
        topics: Topics | None = None,
        settings: IngestSettings | None = None,
        clock: Callable[[], float] = time.time,
        completions_per_batch: int | None = None,
    ) -> None:
        self.db = db
        self.sink = sink
        self.topics = topics or Topics()
        self.settings = settings or IngestSettings()
        self.clock = clock
        self.router = DocumentRouter(self)
        self.tracks: dict[str, SessionTrack] = {}
        self.boxes: dict[str, BoxTrack] = {}
        self.requests: dict[str, _Request] = {}
        self.started_at = clock()
        self.stored_documents = 0
        self.dead_letters = 0
        self._topic_cache: dict[str, tuple[str, str]] = {}
        #: When each session a box listed as uncommitted, unknown here, was last asked for.
        self._asked_unknown: dict[str, float] = {}
        #: When each of those was first listed by its box.
        self._unknown_since: dict[str, float] = {}
        #: Every topic of this lab's rigs starts so; the collector subscribes to nothing else.
        self._rig_topics = f"{self.topics.prefix}/rigs/"
        #: Sessions whose every document is stored, waiting to be rebuilt: id -> box.
        self._whole: dict[str, str] = {}
        self._completions_paused_until = 0.0
        self.completions_per_batch = completions_per_batch
        self._load()

    # ------------------------------------------------------------ start-up

    def _load(self) -> None:
        """Boxes, sessions still being collected, and commits not yet confirmed, from the DB."""
        with self.db.engine.begin() as conn:
            for row in conn.execute(select(BOXES)).mappings():
                track = BoxTrack(box=row["id"], last_seen=row["last_seen"])
                track.timed_out = row["state"] == "offline" and row["offline_reason"] is not None
                status = _status_or_none(row["status"])
                if status is not None:
                    track.reported = status.state
                    track.session_id = status.session_id
                self.boxes[track.box] = track
            pending = conn.execute(
                select(SESSIONS.c.session_id, SESSIONS.c.box).where(
                    SESSIONS.c.origin == "recorded",
                    SESSIONS.c.problem.is_(None),
                    (SESSIONS.c.complete.is_(False)) | (SESSIONS.c.committed_at.is_(None)),
                )
            ).all()
            orphans = conn.execute(
                select(DOCUMENTS.c.session_id, func.min(DOCUMENTS.c.box))
                .where(
                    DOCUMENTS.c.session_id.not_in(
                        select(SESSIONS.c.session_id).where(SESSIONS.c.session_id.is_not(None))
                    )
                )
                .group_by(DOCUMENTS.c.session_id)
            ).all()
            for session_id, box in [*pending, *orphans]:
                if session_id is not None:
                    self._track(conn, session_id, box or "")
        if self.tracks:
            log.info("resuming %d session(s) not yet complete or committed", len(self.tracks))

    def _track(self, conn: Connection, session_id: str, box: str) -> SessionTrack:
        """The session's track, loaded from the database the first time it is needed."""
        track = self.tracks.get(session_id)
        if track is not None:
            return track
        track = SessionTrack(session_id=session_id, box=box, last_doc_at=self.clock())
        row = (
            conn.execute(select(SESSIONS).where(SESSIONS.c.session_id == session_id))
            .mappings()
            .first()
        )
        if row is not None:
            track.has_row = True
            track.mouse = row["mouse_id"]
            track.box = row["box"] or box
            track.last_seq = row["last_seq"]
            track.status = row["status"]
            track.complete = bool(row["complete"])
            track.imported = row["origin"] == "imported"
            track.committed = row["committed_at"] is not None
            track.failed = row["problem"]
            track.trials = row["trial_count"]
            track.rewards = row["reward_count"]
        if not track.complete:
            kinds: dict[str, int] = {}
            for seq, kind in conn.execute(
                select(DOCUMENTS.c.seq, DOCUMENTS.c.kind).where(
                    DOCUMENTS.c.session_id == session_id
                )
            ):
                track.add(seq)
                kinds[kind] = kinds.get(kind, 0) + 1
                if kind == "session_end" and track.last_seq is None:
                    track.last_seq = seq
            track.trials = kinds.get("trial_end", 0)
            track.rewards = kinds.get("reward", 0)
        self.tracks[session_id] = track
        if track.whole:
            self._whole[session_id] = track.box  # stored whole before a restart, not yet rebuilt
        return track

    # ------------------------------------------------------------ batches

    def handle(self, batch: Sequence[Incoming]) -> None:
        """Store one batch in one transaction, then send the commands it calls for.

        Raises the database's error if the transaction fails; nothing of the
        batch is then stored and the in-memory state of its sessions is
        reloaded next time, so the caller may simply retry the batch.
        """
        work = _Batch(now=self.clock())
        for message in batch:
            self._decode(message, work)
        sessions = {doc.session_id for doc, _, _ in work.documents}
        try:
            with self.db.engine.begin() as conn:
                self._store(conn, work)
        except BaseException:
            for session_id in sessions | work.touched:
                self.tracks.pop(session_id, None)
            raise
        self.stored_documents += work.new_documents
        self.dead_letters += len(work.dead)
        self._send(work)
        self.complete_sessions(self.completions_per_batch)

    def handle_unusable(self, message: Incoming, reason: str) -> None:
        """Keep a message the collector failed on as a dead letter, so it is not retried forever."""
        work = _Batch(now=self.clock())
        self._dead(work, message, reason)
        with self.db.engine.begin() as conn:
            conn.execute(DEAD_LETTERS.insert(), work.dead)
        self.dead_letters += 1

    def _dead(self, work: _Batch, message: Incoming, reason: str) -> None:
        log.warning("dead letter from %s: %s", message.topic, reason)
        work.dead.append(
            {
                "received_at": message.received_at,
                "topic": message.topic,
                "payload": bytes(message.payload),
                "reason": reason,
            }
        )

    def _parse_topic(self, topic: str) -> tuple[str, str]:
        parsed = self._topic_cache.get(topic)
        if parsed is None:
            parsed = self.topics.parse(topic)
            if len(self._topic_cache) < 10_000:  # a few topics per box; bounded all the same
                self._topic_cache[topic] = parsed
        return parsed

    def _decode(self, message: Incoming, work: _Batch) -> None:
        """Validate one message and sort it into the batch; a bad one becomes a dead letter."""
        if not message.topic.startswith(self._rig_topics):
            # Not subscribed, so not sent to this lab: a broker delivered it anyway (amqtt
            # hands new subscribers retained messages of other topics). Nothing to keep.
            log.debug("ignored a message on %s: not under %s", message.topic, self._rig_topics)
            return
        try:
            box, kind = self._parse_topic(message.topic)
        except ProtocolError as exc:
            self._dead(work, message, str(exc))
            return
        try:
            if kind == "events":
                doc = parse_document(message.payload)
                if doc.box != box:
                    raise ProtocolError(f"document of box {doc.box!r} on the topic of box {box!r}")
                work.documents.append((doc, message.payload.decode("utf-8"), message.received_at))
                work.event_at[box] = message.received_at  # messages arrive in order
            elif kind == "status":
                status = parse_status(message.payload)
                if status.box != box:
                    raise ProtocolError(f"status of box {status.box!r} on the topic of box {box!r}")
                work.statuses[box] = (status, message.payload.decode("utf-8"), message)
                if message.retained:
                    return  # replayed by the broker: says nothing about the box being alive
            elif kind == "reply":
                work.replies.append((box, parse_reply(message.payload)))
            else:
                raise ProtocolError(f"the collector does not take {kind!r} messages")
        except ProtocolError as exc:
            self._dead(work, message, str(exc))
            return
        work.seen[box] = message.received_at

    def _store(self, conn: Connection, work: _Batch) -> None:
        if work.dead:
            conn.execute(DEAD_LETTERS.insert(), work.dead)
        self._store_boxes(conn, work)
        # Tracks are loaded before the insert, so that what they count excludes this batch.
        tracks = self.tracks
        for session_id, box in {(doc.session_id, doc.box) for doc, _, _ in work.documents}:
            if session_id not in tracks:
                self._track(conn, session_id, box)
        new, replayed = self._insert_documents(conn, work)
        work.new_documents = len(new)
        # Arrival order: each box publishes its documents in seq order, and what the
        # router does (counting, creating the session's row) does not depend on order.
        for doc in new:
            track = tracks[doc.session_id]
            track.add(doc.seq)
            track.docs[doc.seq] = doc
            track.last_doc_at = work.now
            self.router.dispatch(doc, track, conn, work)
            work.touched.add(doc.session_id)
        for session_id in replayed:
            track = tracks[session_id]
            if track.complete and not track.committed and not track.imported:
                # The box is replaying a session it still holds: it missed our committed.
                self._commit_again(track, work, min_interval=2.0)
        self._handle_replies(conn, work)
        for session_id in sorted(work.touched):
            track = self.tracks[session_id]
            if track.complete or track.imported:
                continue
            if track.gap_since is None and track.has_gap():
                track.gap_since = work.now  # the grace period runs from when it was first seen
            # A running session's counts are written by tick(), not on every batch:
            # one UPDATE per session per batch would cost more than storing the documents.
            track.dirty = track.has_row
            if track.whole:
                self._whole[session_id] = track.box

    def _insert_documents(self, conn: Connection, work: _Batch) -> tuple[list[Document], set[str]]:
        """Store the batch's new documents; returns them, and the sessions that got repeats."""
        rows: dict[tuple[str, int], tuple[str, int, str, str, float, float, str]] = {}
        docs: list[Document] = []
        replayed: set[str] = set()
        tracks = self.tracks
        for doc, body, received_at in work.documents:
            key = (doc.session_id, doc.seq)
            if key in rows:
                continue
            track = tracks[doc.session_id]
            if track.complete or doc.seq in track.seqs:
                replayed.add(doc.session_id)  # a duplicate we know of: skip the round trip
                continue
            rows[key] = (doc.session_id, doc.seq, doc.kind, doc.box, doc.t, received_at, body)
            docs.append(doc)
        if not rows:
            return [], replayed
        # The tracks know every stored seq of the sessions they follow (they were loaded from
        # the database), so the rows left are new. ON CONFLICT still guards the table against
        # a second collector on the same database; RETURNING the inserted rows instead would
        # cost more than the rest of the batch.
        if conn.dialect.name == "sqlite":
            # The hot path: straight to sqlite3's executemany. Through SQLAlchemy Core every
            # row's parameters are processed in Python, which costs more than the insert.
            conn.exec_driver_sql(_SQLITE_INSERT_DOCUMENT, list(rows.values()))
        else:
            columns = ("session_id", "seq", "kind", "box", "t", "received_at", "body")
            insert_ignore(
                conn,
                DOCUMENTS,
                [dict(zip(columns, row, strict=True)) for row in rows.values()],
                index_elements=["session_id", "seq"],
            )
        return docs, replayed

    def _save_progress(self, conn: Connection, track: SessionTrack) -> None:
        track.dirty = False
        conn.execute(
            update(SESSIONS)
            .where(SESSIONS.c.session_id == track.session_id)
            .values(
                trial_count=track.trials,
                reward_count=track.rewards,
                last_seq=track.last_seq,
                status=track.status,
                problem=track.failed,
            )
        )

    def complete_sessions(self, limit: int | None = None) -> int:
        """Rebuild and store whole sessions (at most ``limit``), each in its own transaction,
        and send their ``committed``; returns how many were completed.

        Separate from the batches so that finishing a long session (rebuilding it, writing
        its trials) does not hold up the documents of the boxes still running. A database
        error is logged and the session waits for the next call, two seconds later at least.
        """
        done = 0
        while self._whole and (limit is None or done < limit):
            if self.clock() < self._completions_paused_until:
                break
            session_id, box = next(iter(self._whole.items()))
            work = _Batch(now=self.clock())
            try:
                # Durable: once it commits, the box is told it may delete its own copy.
                with self.db.durable_engine.begin() as conn:
                    track = self._track(conn, session_id, box)
                    if track.whole:
                        self._complete(conn, track, work)
            except SQLAlchemyError as exc:
                self.tracks.pop(session_id, None)  # reloaded from the database next time
                self._completions_paused_until = self.clock() + 2.0
                log.error("could not store whole session %s: %s", session_id, exc)
                break
            del self._whole[session_id]
            self._send(work)
            done += 1
        return done

    def _complete(self, conn: Connection, track: SessionTrack, work: _Batch) -> None:
        """Rebuild, store and commit a session whose every document is in."""
        assert track.last_seq is not None
        builder = SessionBuilder()
        try:
            if len(track.docs) == track.last_seq + 1:
                for seq in range(track.last_seq + 1):
                    builder.add(track.docs[seq])
            else:
                for (body,) in conn.execute(
                    select(DOCUMENTS.c.body)
                    .where(DOCUMENTS.c.session_id == track.session_id)
                    .order_by(DOCUMENTS.c.seq)
                ):
                    builder.add(parse_document(body))
        except ProtocolError as exc:
            track.failed = f"cannot rebuild the session from its documents: {exc}"
            log.error("session %s: %s", track.session_id, track.failed)
            self._save_progress(conn, track)
            return
        data = builder.data
        text = session_text(data)
        session_pk = conn.execute(
            select(SESSIONS.c.id).where(SESSIONS.c.session_id == track.session_id)
        ).scalar_one()
        trials = store_trials(conn, session_pk, data)
        end = builder.end
        conn.execute(
            update(SESSIONS)
            .where(SESSIONS.c.id == session_pk)
            .values(
                complete=True,
                data=text,
                digest=digest(text),
                status=end.status if end else None,
                end_time=end.end_time if end else None,
                date=end.date if end else None,
                last_seq=track.last_seq,
                trial_count=trials,
                reward_count=builder.rewards,
                completed_at=work.now,
                problem=None,
            )
        )
        track.complete = True
        track.completed_at = work.now
        track.trials = trials
        track.rewards = builder.rewards
        track.seqs, track.docs = set(), {}  # no longer needed; the rows are in the database
        log.info(
            "session %s of %s (box %s) complete: %s, %d trials, %d documents",
            track.session_id,
            track.mouse,
            track.box,
            track.status,
            trials,
            track.last_seq + 1,
        )
        self._commit_again(track, work, min_interval=0.0)

    def _commit_again(self, track: SessionTrack, work: _Batch, min_interval: float) -> None:
        if track.last_seq is None:
            return
        if track.commit_sent_at is not None and work.now - track.commit_sent_at < min_interval:
            return
        track.commit_sent_at = work.now
        work.outgoing.append(
            (
                track.box,
                CommittedCommand(
                    request_id=_request_id(), session_id=track.session_id, last_seq=track.last_seq
                ),
            )
        )

    # ------------------------------------------------------------ boxes and replies

    def _box(self, box: str) -> BoxTrack:
        track = self.boxes.get(box)
        if track is None:
            track = self.boxes[box] = BoxTrack(box=box)
        return track

    def _store_boxes(self, conn: Connection, work: _Batch) -> None:
        names = set(work.seen) | set(work.statuses) | {doc.box for doc, _, _ in work.documents}
        new = [name for name in names if name not in self.boxes]
        if new:
            insert_ignore(
                conn,
                BOXES,
                [{"id": name, "created_at": work.now, "state": "offline"} for name in new],
                index_elements=["id"],
            )
        for name in sorted(names):
            track = self._box(name)
            was_online = track.online
            values: dict[str, Any] = {}
            if name in work.seen:
                track.last_seen = work.seen[name]
                if track.timed_out:
                    track.timed_out = False
                    values["offline_reason"] = None
                    values["state"] = track.reported
            if name in work.event_at:
                track.last_event_at = work.event_at[name]
            if name in work.statuses:
                status, text, _ = work.statuses[name]
                track.reported = status.state
                track.session_id = status.session_id
                track.uncommitted = tuple(status.uncommitted)
                values["status"] = text
                values["state"] = status.state
                if status.state == "offline":
                    values["offline_reason"] = "the agent disconnected (its Last Will)"
                elif not track.timed_out:
                    values["offline_reason"] = None
                if track.timed_out:
                    values["state"] = "offline"
            if values:
                values.update(self._times_to_write(track, force=True))
                conn.execute(update(BOXES).where(BOXES.c.id == name).values(**values))
            if track.online and not was_online:
                work.came_online.add(name)
                log.info("box %s is online (%s)", name, track.reported)
            elif was_online and not track.online:
                log.info("box %s went offline", name)
        self._write_box_times(conn, names, force=False)

    def _times_to_write(self, track: BoxTrack, force: bool) -> dict[str, float]:
        """The box's last-seen and last-event times, if they moved enough to be written."""
        values = {}
        if track.last_seen is not None and (
            track.written_seen is None
            or track.last_seen - track.written_seen >= (0.0 if force else BOX_TIME_RESOLUTION_S)
        ):
            values["last_seen"] = track.written_seen = track.last_seen
        if track.last_event_at is not None and (
            track.written_event is None
            or track.last_event_at - track.written_event
            >= (0.0 if force else BOX_TIME_RESOLUTION_S)
        ):
            values["last_event_at"] = track.written_event = track.last_event_at
        return values

    def _write_box_times(self, conn: Connection, names: Iterable[str], force: bool) -> None:
        # Every message refreshes its box's last-seen time; writing it once a second per box
        # (in one executemany) keeps that from costing an UPDATE per box per batch.
        rows = []
        for name in names:
            track = self.boxes[name]
            values = self._times_to_write(track, force)
            if values:
                rows.append(
                    {
                        "box_id": name,
                        "seen": values.get("last_seen"),
                        "event": values.get("last_event_at"),
                    }
                )
        if rows:
            conn.execute(_UPDATE_BOX_TIMES, rows)

    def _handle_replies(self, conn: Connection, work: _Batch) -> None:
        for box, reply in work.replies:
            request = self.requests.pop(reply.request_id, None)
            if request is None:
                continue  # a reply to someone else's command (labctl start, ...)
            track = self.tracks.get(request.session_id)
            if request.command == "committed":
                if reply.ok or reply.code == "not_found":
                    conn.execute(
                        update(SESSIONS)
                        .where(SESSIONS.c.session_id == request.session_id)
                        .values(committed_at=work.now)
                    )
                    if track is not None:
                        track.committed = True
                    log.info("box %s confirmed committed session %s", box, request.session_id)
                else:
                    log.warning(
                        "box %s refused committed for session %s: %s",
                        box,
                        request.session_id,
                        reply.error,
                    )
            elif request.command == "resend":
                if reply.ok:
                    log.info(
                        "box %s resends %s document(s) of session %s",
                        box,
                        reply.data.get("count", "?"),
                        request.session_id,
                    )
                elif reply.code == "not_found" and track is not None and not track.complete:
                    track.failed = f"box {box} no longer holds the session's documents"
                    log.error("session %s cannot be completed: %s", track.session_id, track.failed)
                    if track.has_row:
                        self._save_progress(conn, track)
                else:
                    log.warning(
                        "box %s could not resend session %s: %s",
                        box,
                        request.session_id,
                        reply.error,
                    )

    # ------------------------------------------------------------ periodic work

    def tick(self) -> None:
        """Heartbeat timeouts, gaps, lost session tails and unconfirmed commits."""
        work = _Batch(now=self.clock())
        now = work.now
        timed_out = []
        for track in self.boxes.values():
            last = max(track.last_seen or 0.0, self.started_at)
            if track.online and now - last > self.settings.heartbeat_timeout:
                track.timed_out = True
                timed_out.append(track.box)
                log.warning(
                    "box %s sent nothing for %.0f s: marking it offline",
                    track.box,
                    now - last,
                )
        # One short transaction a tick: timeouts, and the times and counts written lazily.
        with self.db.engine.begin() as conn:
            if timed_out:
                reason = f"no message for {self.settings.heartbeat_timeout:g} s"
                conn.execute(
                    update(BOXES)
                    .where(BOXES.c.id.in_(timed_out))
                    .values(state="offline", offline_reason=reason)
                )
            self._write_box_times(conn, list(self.boxes), force=True)
            dirty = [t for t in self.tracks.values() if t.dirty and not t.complete]
            if dirty:
                conn.execute(_UPDATE_PROGRESS, [_progress_row(t) for t in dirty])
                for session in dirty:
                    session.dirty = False
            self._recover_unknown(conn, work)
        self._ask_for_missing(work)
        self._retry_commits(work)
        self._forget(now)
        self._send(work)

    def _recover_unknown(self, conn: Connection, work: _Batch) -> None:
        """Sessions a box still holds uncommitted that the collector is not following.

        Its status lists them. One the database has (complete, or partly stored) is
        loaded, and the usual paths finish it (resend of what is missing, committed
        again). One the collector never saw at all, because the broker lost every
        document of it (restarted without persistence, a full queue, a broker that
        keeps no offline sessions), is asked for whole: ``resend`` from seq 0, once it
        has been listed for ``tail_grace`` without any of its documents arriving.
        """
        now = work.now
        wanted: list[tuple[str, str]] = []
        for rig in self.boxes.values():
            if not rig.online:
                continue  # it replays and reports again when it is back
            for session_id in rig.uncommitted:
                if session_id in self.tracks or session_id == rig.session_id:
                    continue
                asked = self._asked_unknown.get(session_id)
                if asked is not None and now - asked < self.settings.resend_interval:
                    continue
                wanted.append((rig.box, session_id))
        if not wanted:
            return
        ids = [session_id for _, session_id in wanted]
        known = set(
            conn.execute(select(SESSIONS.c.session_id).where(SESSIONS.c.session_id.in_(ids)))
            .scalars()
            .all()
        ) | set(
            conn.execute(
                select(DOCUMENTS.c.session_id).where(DOCUMENTS.c.session_id.in_(ids)).distinct()
            )
            .scalars()
            .all()
        )
        for box, session_id in wanted:
            if session_id in known:
                self._track(conn, session_id, box)  # stored before: the usual paths take over
                continue
            # A box coming back publishes its status first and replays its documents right
            # after: give them the time to arrive before asking for the whole session.
            since = self._unknown_since.setdefault(session_id, now)
            if now - since < self.settings.tail_grace:
                continue
            self._asked_unknown[session_id] = now
            log.info(
                "box %s holds session %s, which never reached the collector; asking for all of it",
                box,
                session_id,
            )
            work.outgoing.append(
                (box, ResendCommand(request_id=_request_id(), session_id=session_id, from_seq=0))
            )
        for seen in (self._asked_unknown, self._unknown_since):
            if len(seen) > 10_000:  # bounded: keep the newest half
                newest = sorted(seen.items(), key=lambda item: item[1])[5_000:]
                seen.clear()
                seen.update(newest)

    def _ask_for_missing(self, work: _Batch) -> None:
        now = work.now
        for track in self.tracks.values():
            if track.complete or track.failed or track.imported:
                continue
            box = self.boxes.get(track.box)
            if box is None or not box.online:
                continue  # it replays what it has when it comes back
            gap = track.missing()
            if gap is None:
                track.gap_since = None
                if track.last_seq is not None or box.session_id == track.session_id:
                    continue
                # The box has moved on, but the session's end never arrived.
                if now - track.last_doc_at < self.settings.tail_grace:
                    continue
                first, last = track.max_seq + 1, None
            else:
                if track.gap_since is None:
                    track.gap_since = now
                if now - track.gap_since < self.settings.gap_grace:
                    continue
                first, last = gap
            if (
                track.last_resend_at is not None
                and now - track.last_resend_at < self.settings.resend_interval
            ):
                continue
            track.last_resend_at = now
            log.info(
                "session %s: documents %d-%s missing; asking box %s to resend them",
                track.session_id,
                first,
                "end" if last is None else last,
                track.box,
            )
            work.outgoing.append(
                (
                    track.box,
                    ResendCommand(
                        request_id=_request_id(),
                        session_id=track.session_id,
                        from_seq=first,
                        to_seq=last,
                    ),
                )
            )

    def _retry_commits(self, work: _Batch) -> None:
        for track in self.tracks.values():
            if not track.complete or track.committed or track.imported:
                continue
            box = self.boxes.get(track.box)
            if box is None or not box.online:
                continue
            self._commit_again(track, work, min_interval=self.settings.commit_retry)

    def _forget(self, now: float) -> None:
        done = [
            sid
            for sid, track in self.tracks.items()
            if track.complete
            and (track.committed or track.imported)
            and now - (track.completed_at or 0.0) > self.settings.forget_after
        ]
        for session_id in done:
            del self.tracks[session_id]
        expired = [
            rid
            for rid, request in self.requests.items()
            if now - request.sent_at > self.settings.request_timeout
        ]
        for request_id in expired:
            del self.requests[request_id]

    def _send(self, work: _Batch) -> None:
        for box in work.came_online:
            # A box back online may hold sessions whose committed it never got.
            for track in self.tracks.values():
                if track.box == box and track.complete and not track.committed:
                    self._commit_again(track, work, min_interval=2.0)
        for box, command in work.outgoing:
            self.requests[command.request_id] = _Request(
                command=command.command, session_id=command.session_id, box=box, sent_at=work.now
            )
            try:
                self.sink.send(box, command)
            except Exception:  # the transport's failure must not lose the batch already stored
                log.exception("could not send %s to box %s", command.command, box)


_SQLITE_INSERT_DOCUMENT = (
    "INSERT INTO documents (session_id, seq, kind, box, t, received_at, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, seq) DO NOTHING"
)

#: Box times are written when they moved at least this much (and by every tick).
BOX_TIME_RESOLUTION_S = 1.0

_UPDATE_BOX_TIMES = (
    update(BOXES)
    .where(BOXES.c.id == bindparam("box_id"))
    .values(
        last_seen=func.coalesce(bindparam("seen"), BOXES.c.last_seen),
        last_event_at=func.coalesce(bindparam("event"), BOXES.c.last_event_at),
    )
)
_UPDATE_PROGRESS = (
    update(SESSIONS)
    .where(SESSIONS.c.session_id == bindparam("sid"))
    .values(
        trial_count=bindparam("trials"),
        reward_count=bindparam("rewards"),
        last_seq=bindparam("last"),
        status=bindparam("end_status"),
    )
)


def _progress_row(track: SessionTrack) -> dict[str, Any]:
    return {
        "sid": track.session_id,
        "trials": track.trials,
        "rewards": track.rewards,
        "last": track.last_seq,
        "end_status": track.status,
    }


def _request_id() -> str:
    return uuid.uuid4().hex[:16]


def _status_or_none(text: str | None) -> Status | None:
    if not text:
        return None
    try:
        return parse_status(text)
    except ProtocolError:
        return None


def status_payload(text: str | None) -> dict[str, Any] | None:
    """A stored status as a dict, or None when there is none (or it is unreadable)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
