"""The collector's core: batches of rig messages in, database rows and rig commands out.

No broker here, and no memory of what the database holds: any number of
collectors may run this against one database, each taking any share of the
messages. :meth:`Ingest.handle` stores one batch in one transaction:

* :mod:`controller.collector.decode` sorts it and keeps what cannot be used as dead letters;
* :mod:`controller.collector.presence` writes what it says about boxes;
* :mod:`controller.collector.assembly` stores the documents, once each, into their streams;
* :mod:`controller.collector.resend` asks boxes for what is missing (from the tick);
* replies confirm a ``committed`` (:mod:`controller.collector.completion`) or end a resend.

Commands (``resend``, ``committed``) go out through a :class:`CommandSink` only
after the transaction that claimed them has committed. :meth:`Ingest.tick` times
boxes out and asks for what is missing; :meth:`Ingest.complete_sessions`
rebuilds whole sessions, one transaction each. Tests drive this class with a
temp database, a list as the sink and a clock they move.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.exc import SQLAlchemyError

from controller.collector.assembly import Assembly, copy_counts
from controller.collector.completion import (
    commit_again,
    complete_one,
    on_commit_reply,
    unconfirmed_of,
)
from controller.collector.decode import (
    CommandSink,
    Decoded,
    Decoder,
    Incoming,
    IngestSettings,
    RigCommand,
    dead_letter,
)
from controller.collector.presence import Presence
from controller.collector.resend import Resender
from controller.db import Database
from controller.models import DeadLetter
from shared.protocol import Topics

__all__ = ["CommandSink", "Incoming", "Ingest", "IngestSettings", "RigCommand"]

log = logging.getLogger("labctl.collector")

DEAD_LETTERS: Table = DeadLetter.__table__  # type: ignore[assignment]
#: After a failed completion, wait this long before trying again.
COMPLETION_PAUSE_S = 2.0
#: ``committed`` again this soon to a box that replays a stored session or comes back.
RECOMMIT_S = 2.0


class Ingest:
    """One collector's way into the database. :meth:`handle` may run on several threads at
    once (the collector's writers, each with the messages of its own boxes); :meth:`tick`
    and :meth:`complete_sessions` on one thread at a time."""

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
        self.decoder = Decoder(self.topics, self.settings)
        self.presence = Presence(self.settings.heartbeat_timeout, clock())
        self.assembly = Assembly(self.topics, self.settings)
        self.resender = Resender(self.settings)
        self._completions_paused_until = 0.0
        self._counts_copied = 0.0
        #: Whole sessions completed after each batch (None: all there are).
        self.completions_per_batch = completions_per_batch
        self.stored_documents = 0
        self.dead_letters = 0
        #: Writers share the counts and the presence's judging state.
        self._lock = threading.Lock()

    # ------------------------------------------------------------ batches

    def handle(self, batch: Sequence[Incoming], *, behind: bool = False) -> bool:
        """Store one batch in one transaction, then send the commands it calls for; returns
        whether a session it stored into is now whole.

        ``behind``: more messages were waiting than this batch took (the caller's queue,
        or the broker's): no box is timed out until a batch comes that is not behind
        (:meth:`Presence.suspend <controller.collector.presence.Presence.suspend>`), and
        the documents go first: the batch rebuilds none of the sessions it made whole
        (the tick does, see :meth:`tick`); otherwise up to ``completions_per_batch``.

        Raises the database's error if the transaction fails; nothing of the batch is
        then stored, so the caller may simply retry it.
        """
        now = self.clock()
        decoded = self.decoder.decode(list(batch))
        try:
            with self.db.ingest_engine.begin() as conn:
                outgoing, whole, new = self._store(conn, decoded, now)
        except SQLAlchemyError:
            with self._lock:
                self.presence.suspend(now)
            raise
        with self._lock:
            if behind:
                self.presence.suspend(now)
            else:
                self.presence.resume(self.clock())  # boxes get a full timeout from now
            self.stored_documents += new
            self.dead_letters += len(decoded.dead)
        self._send(outgoing)
        if whole and not behind:
            self.complete_sessions(self.completions_per_batch)
        return whole

    def _store(
        self, conn: Connection, decoded: Decoded, now: float
    ) -> tuple[list[tuple[str, RigCommand]], bool, int]:
        came_online = self.presence.store(conn, decoded, now)
        new, replayed, whole = self.assembly.store(conn, decoded.documents, now, decoded.dead)
        if decoded.dead:
            conn.execute(DEAD_LETTERS.insert(), decoded.dead)
        outgoing: list[tuple[str, RigCommand]] = []
        for box, reply in decoded.replies:
            if reply.command == "committed":
                on_commit_reply(conn, box, reply, now)
            elif reply.command == "resend":
                self.resender.on_resend_reply(
                    conn, box, reply.request_id, reply.ok, reply.code, reply.error,
                    reply.data.get("count", "?"),
                )  # fmt: skip
        # A box replaying a stored session, or back online, missed our committed.
        again = set(replayed)
        if came_online:
            again.update(unconfirmed_of(conn, came_online))
        outgoing += commit_again(conn, again, now, RECOMMIT_S)
        listed: set[str] = set()
        for box, (status, _) in sorted(decoded.statuses.items()):
            if status.uncommitted:
                listed.update(self.resender.list_unknown(conn, box, status.uncommitted, now))
        outgoing += commit_again(conn, listed, now, self.settings.commit_retry)
        return outgoing, whole, new

    def handle_unusable(self, message: Incoming, reason: str) -> None:
        """Keep a message the collector failed on as a dead letter, so it is not retried."""
        row = dead_letter(
            message.topic, message.payload, message.received_at, reason, self.settings.max_payload
        )
        with self.db.ingest_engine.begin() as conn:
            conn.execute(DEAD_LETTERS.insert(), [row])
        with self._lock:
            self.dead_letters += 1

    # ------------------------------------------------------------ periodic work

    def tick(self, completions: int | None = None) -> None:
        """Heartbeat timeouts, gaps, lost session tails and unconfirmed commits, in one short
        transaction; then up to ``completions`` whole sessions rebuilt (None: all)."""
        now = self.clock()
        with self.db.ingest_engine.begin() as conn:
            copy_counts(conn, self._counts_copied - 1.0)
            self._counts_copied = now
            self.presence.time_out(conn, now)
            online = self.presence.online(conn)
            outgoing = self.resender.ask_for_missing(conn, now, online)
            retry = self.settings.commit_retry
            due = unconfirmed_of(conn, online, sent_before=now - retry) if online else []
            outgoing += commit_again(conn, due, now, retry)
        self._send(outgoing)
        # A batch completes at most completions_per_batch; under a steady stream the queue
        # may never run dry, so the tick finishes what else is whole (a backlogged collector
        # asks for a few at a time: see Collector._write_loop).
        self.complete_sessions(completions)

    def complete_sessions(self, limit: int | None = None) -> int:
        """Rebuild and store whole sessions (at most ``limit``), each in its own durable
        transaction, and send their ``committed``; returns how many were completed.

        Separate from the batches so that finishing a long session does not hold up the
        documents of the boxes still running. A database error is logged and completion
        waits two seconds.
        """
        done = 0
        while limit is None or done < limit:
            if self.clock() < self._completions_paused_until:
                break
            try:
                # Durable: once it commits, the box is told it may delete its own copy.
                with self.db.durable_engine.begin() as conn:
                    result = complete_one(conn, self.clock())
            except SQLAlchemyError as exc:
                self._completions_paused_until = self.clock() + COMPLETION_PAUSE_S
                log.error("could not store a whole session: %s", exc)
                break
            if result is None:
                break
            self._send(result[1])
            done += 1
        return done

    def _send(self, outgoing: list[tuple[str, RigCommand]]) -> None:
        for box, command in outgoing:
            try:
                self.sink.send(box, command)
            except Exception:  # the transport's failure must not lose the batch already stored
                log.exception("could not send %s to box %s", command.command, box)
