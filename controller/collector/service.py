"""``labctl serve``: one collector; the transport's messages in, the ingest's rows out.

Threads: the transport's (paho's) thread only puts each message on a queue.
One writer thread takes messages off it in batches (up to ``batch_size``, or
whatever is there when the queue runs dry), has the ingest store each batch
in one transaction, and only then acknowledges the batch to the broker. With
``writers`` > 1 (the default on PostgreSQL) that thread splits each batch by box
onto as many writer threads (:mod:`controller.collector.writers`), and whole
sessions are rebuilt, and the tick run, on a thread of their own, so neither
holds up the documents.

Nothing is lost to a crash: a lone collector connects with a persistent
session (``clean_session=False``, its own fixed client id) and acknowledges a
message only after its transaction has committed. A message stored but not
acknowledged is delivered again and de-duplicated by ``(session_id, seq)``.

Several collectors share the rigs in an MQTT shared-subscription ``group``
(``$share/<group>/<prefix>/rigs/+/...``): the broker hands each message to one
of them, and every decision is taken in the database, so any of them may stop
or die. Group members use clean sessions, so a dead one leaves the group at
once; what it held unacknowledged, and what was published while no member
was connected, the agents still hold in their journals: the survivors find
the gaps (or the box lists the session as uncommitted) and ask for them.

Each collector announces itself on a retained presence topic with a Last
Will, and holds a lease in the database (one collector per client id; one at
all on SQLite).

The database going away does not stop the collector: the batch is retried
until the database is back, unacknowledged, so the broker keeps the rest.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from controller.collector.ingest import Incoming, Ingest, IngestSettings, RigCommand
from controller.collector.leases import (
    RENEW_S,
    CollectorStatus,
    Lease,
    collector_client_id,
    drop_lease,
    encode_status,
    renew_lease,
    take_lease,
)
from controller.collector.writers import WriterPool
from controller.db import Checkpointer, Database
from controller.lab import database_identity
from controller.transport import Received, Transport, Will
from shared.broker_url import BrokerSettings
from shared.protocol import Topics, encode

log = logging.getLogger("labctl.collector")

#: How long the writer waits before retrying a batch the database refused.
DB_RETRY_S = 2.0
#: The cyclic garbage collector's thresholds while the collector runs. paho leaves a few
#: objects of cyclic garbage per message (its topic matcher's recursive closure), so with
#: Python's default (700, 10, 10) a young collection ran every ~150 messages. Measured:
#: about a sixth of the collector's time at full rate, now a few per cent.
GC_THRESHOLDS = (20_000, 50, 50)
#: While the writer is behind (its last batch was full): whole sessions a tick rebuilds,
#: and how many tick intervals pass between ticks.
BEHIND_COMPLETIONS = 1
BEHIND_TICK_FACTOR = 4
#: Writer threads by default, per database kind. SQLite has one writer at a time anyway.
DEFAULT_WRITERS = {"sqlite": 1, "postgresql": 2}


def default_writers(db: Database) -> int:
    """How many writer threads a collector on ``db`` runs unless told."""
    return DEFAULT_WRITERS.get(db.dialect, 1)


def subscriptions(topics: Topics, group: str | None) -> list[str]:
    """The collector's filters: every rig's status, events and replies, shared in ``group``."""
    share = f"$share/{group}/" if group else ""
    return [share + topics.all_rigs(kind) for kind in ("status", "events", "reply")]


class Collector:
    """Subscribes to every rig and feeds the ingest; :meth:`run` blocks, :meth:`start` threads."""

    def __init__(
        self,
        db: Database,
        broker: BrokerSettings,
        *,
        topics: Topics | None = None,
        client_id: str | None = None,
        group: str | None = None,
        settings: IngestSettings | None = None,
        batch_size: int | None = None,
        tick_interval: float = 0.5,
        on_batch: Callable[[int], None] | None = None,
        max_queued: int = 10_000,
        fast: bool | None = None,
        writers: int | None = None,
    ) -> None:
        self.db = db
        self.broker = broker
        self.topics = topics or Topics()
        self.group = group
        self.client_id = client_id or collector_client_id(self.topics.prefix, group)
        # A batch costs a transaction, a read and a write of the streams it touches and a
        # commit whatever its size, which at 100 messages was half of a document's CPU:
        # batches of 500 took about 14 µs per document against 30 µs (SQLite, 50 sessions).
        self.batch_size = batch_size or 500
        self.tick_interval = tick_interval
        self.on_batch = on_batch
        self.writers = default_writers(db) if writers is None else writers
        if self.writers < 1:
            raise ValueError(f"writers must be at least 1, not {self.writers}")
        #: Several writers: set when a session may have become whole (the upkeep thread's cue),
        #: and whether the last batch taken off the queue was full.
        self._whole = threading.Event()
        self._lagging = False
        self._upkeep_failed: BaseException | None = None
        self.queue: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease: Lease | None = None
        self._renewed = 0.0
        self.started_at = time.time()
        #: Announced in the presence message: labctl refuses to command rigs from another.
        self.lab_id = database_identity(db)
        # One whole session rebuilt per batch at most, so a cohort's sessions ending together
        # do not hold up the documents of the boxes still running.
        # With several writers, none: the upkeep thread rebuilds them (see _upkeep_loop).
        self.ingest = Ingest(
            db,
            self,
            topics=self.topics,
            settings=settings,
            completions_per_batch=1 if self.writers == 1 else 0,
        )
        self.presence_topic = self.topics.collector_status(self.client_id)
        # A broker holds back QoS 1 messages for a subscriber that has not acknowledged the
        # earlier ones only as far as its own in-flight limit goes, so with the database
        # stalled the queue could grow without end: past max_queued the transport waits.
        # Alone, a persistent session: the broker keeps what arrives while the collector is
        # away. In a group, a clean one: mosquitto goes on handing a shared subscription's
        # messages to a member's persistent session after it died (they wait there for it),
        # while a clean session leaves the group at once and the others get everything.
        self.transport = Transport(
            broker,
            client_id=self.client_id,
            clean_session=group is not None,
            manual_ack=True,
            inbox=self.queue,
            max_queued=max_queued,
            will=Will(self.presence_topic, encode_status(self._status("offline"))),
            fast=fast,
        )
        self.transport.subscribe(subscriptions(self.topics, group))
        self.transport.on_connected = self._on_connected
        self.checkpointer = Checkpointer(db)

    @property
    def connected(self) -> threading.Event:
        return self.transport.connected

    @property
    def subscribed(self) -> threading.Event:
        """Set once the broker has confirmed the subscriptions: from then on nothing is missed."""
        return self.transport.subscribed

    def _status(self, state: str) -> CollectorStatus:
        return CollectorStatus(
            collector=self.client_id,
            state=state,
            group=self.group,
            host=socket.gethostname(),
            pid=os.getpid(),
            database=self.db.url,
            lab_id=self.lab_id,
            started_at=self.started_at,
        )

    def _on_connected(self, session_present: bool) -> None:
        self.transport.publish(
            self.presence_topic, encode_status(self._status("online")), retain=True
        )
        log.info(
            "connected to broker %s (%s session)",
            self.broker.url,
            "resumed" if session_present else "new",
        )

    # ------------------------------------------------------------ CommandSink

    def send(self, box: str, command: RigCommand) -> None:
        self.transport.publish(self.topics.cmd(box), encode(command))

    # ------------------------------------------------------------ lifecycle

    def claim(self) -> None:
        """Take this collector's lease on the database; CollectorRefused says who is in the way."""
        if self._lease is None:
            self._lease = take_lease(self.db, self.client_id, self.group)

    def run(self) -> None:
        """Connect (retrying in the background) and store until :meth:`stop`."""
        self.claim()
        log.info(
            "collector %s%s: broker %s, prefix %r, database %s",
            self.client_id,
            f" (group {self.group})" if self.group else "",
            self.broker.url,
            self.topics.prefix,
            self.db.url,
        )
        self.checkpointer.start()
        thresholds = gc.get_threshold()
        gc.freeze()  # what is loaded so far lives as long as the process: never scan it again
        gc.set_threshold(*GC_THRESHOLDS)
        self.transport.connect_in_background()
        try:
            if self.writers == 1:
                self._write_loop()
            else:
                self._dispatch_loop()
        finally:
            if self.transport.connected.is_set():
                self.transport.publish(
                    self.presence_topic, encode_status(self._status("offline")), retain=True, wait=5
                )
            self.transport.close()
            self.checkpointer.stop()
            if self._lease is not None:
                try:
                    drop_lease(self.db, self._lease)
                except SQLAlchemyError as exc:
                    log.warning("could not drop the collector's lease: %s", _first_line(exc))
                self._lease = None
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            log.info(
                "collector stopped: %d documents stored, %d dead letters",
                self.ingest.stored_documents,
                self.ingest.dead_letters,
            )

    def start(self) -> None:
        """Run on a background thread (tests, the demo); :meth:`stop` ends it."""
        self.claim()  # refused here, on the caller's thread, rather than in the thread
        self._thread = threading.Thread(target=self.run, name="collector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ------------------------------------------------------------ the writer

    def _write_loop(self) -> None:
        last_tick = time.monotonic()
        while not self.stopping.is_set():
            batch = self._next_batch()
            # A full batch: more were waiting, in the queue or at the broker (whose in-flight
            # window, 1000 in the shipped configuration, is larger than a batch). Presence then
            # times no box out until the collector has caught up (controller.collector.
            # presence), and the documents go first: rebuilding whole sessions waits (one a
            # tick, so it never stops), and so does the tick (its queries a quarter as
            # often). Profiled on PostgreSQL at full rate, the rebuilds of sessions ending
            # together took a fifth to a quarter of the writer's time while their boxes'
            # last documents queued behind them, the tick another eighth. A box's journal
            # keeps its session until ``committed``; what looks missing while messages
            # queue is most often in the queue.
            behind = self._behind(batch)
            if batch:
                self._store(batch)
            else:
                self._complete_sessions(None)  # nothing waiting: finish every whole session
            interval = self.tick_interval * (BEHIND_TICK_FACTOR if behind else 1)
            if time.monotonic() - last_tick >= interval:
                last_tick = time.monotonic()
                self._tick(BEHIND_COMPLETIONS if behind else None)

    def _dispatch_loop(self) -> None:
        """Several writers: batches split by box onto them; completions and the tick on a
        thread of their own, on their own connection."""
        pool = WriterPool(self.writers, self._store, self.stopping, batch_size=self.batch_size)
        upkeep = threading.Thread(target=self._upkeep_loop, name="collector-upkeep", daemon=True)
        pool.start()
        upkeep.start()
        try:
            while not self.stopping.is_set():
                batch = self._next_batch()
                self._lagging = self._behind(batch)
                if batch:
                    self.transport.drained()
                    if not pool.put(batch, self._lagging):
                        break
        finally:
            self.stopping.set()
            pool.join()
            upkeep.join()
        if pool.failed is not None:
            raise RuntimeError("a writer thread failed") from pool.failed
        if self._upkeep_failed is not None:
            raise RuntimeError("the upkeep thread failed") from self._upkeep_failed

    def _upkeep_loop(self) -> None:
        """Whole sessions rebuilt as they become whole, and the tick, until stopped. While
        the writers are behind, one session at a time and the tick less often, as a lone
        writer does (see :meth:`_write_loop`): they share the machine's cores."""
        last_tick = time.monotonic()
        try:
            while not self.stopping.is_set():
                self._whole.wait(self.tick_interval)
                self._whole.clear()
                behind = self._lagging
                self._complete_sessions(BEHIND_COMPLETIONS if behind else None)
                interval = self.tick_interval * (BEHIND_TICK_FACTOR if behind else 1)
                if time.monotonic() - last_tick >= interval:
                    last_tick = time.monotonic()
                    self._tick(0)  # completions: just done
        except BaseException as exc:
            # As the lone writer's loop would, a bug here ends the collector rather than
            # leaving it storing documents that no session is ever completed from.
            log.exception("the collector's upkeep thread failed; stopping")
            self._upkeep_failed = exc
            self.stopping.set()

    def _tick(self, completions: int | None = None) -> None:
        try:
            self.ingest.tick(completions)
            now = time.time()
            if self._lease is not None and now - self._renewed >= RENEW_S:
                with self.db.engine.begin() as conn:
                    renew_lease(conn, self._lease, now)
                self._renewed = now
        except SQLAlchemyError as exc:
            log.error("database %s: %s", self.db.url, _first_line(exc))

    def _complete_sessions(self, limit: int | None) -> None:
        try:
            self.ingest.complete_sessions(limit)
        except SQLAlchemyError as exc:
            log.error("database %s: %s", self.db.url, _first_line(exc))

    def _next_batch(self) -> list[Received]:
        try:
            first = self.queue.get(timeout=self.tick_interval)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _behind(self, batch: list[Received]) -> bool:
        """A full batch: more messages were waiting (see :meth:`_write_loop`)."""
        return len(batch) >= self.batch_size

    def _store(self, batch: list[Received], behind: bool | None = None) -> None:
        """Store ``batch`` (retrying while the database refuses it), then acknowledge it."""
        self.transport.drained()
        messages = [Incoming(m.topic, m.payload, m.received_at, m.retained) for m in batch]
        if behind is None:
            behind = self._behind(batch)
        while True:
            try:
                if self.ingest.handle(messages, behind=behind):
                    self._whole.set()
                break
            except SQLAlchemyError as exc:
                log.error(
                    "database %s refused a batch (%s); retrying in %g s",
                    self.db.url,
                    _first_line(exc),
                    DB_RETRY_S,
                )
                if self.stopping.wait(DB_RETRY_S):
                    return  # unacknowledged: the broker delivers them again
            except Exception:
                # A bug must not stop the lab's data: store one by one, and keep the
                # message that trips it as a dead letter rather than retry it forever.
                log.exception("could not store a batch of %d messages", len(messages))
                self._store_one_by_one(messages)
                break
        self.transport.ack(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch))

    def _store_one_by_one(self, messages: list[Incoming]) -> None:
        for message in messages:
            try:
                self.ingest.handle([message])
            except SQLAlchemyError:
                raise
            except Exception as exc:
                log.exception("message on %s could not be stored", message.topic)
                self.ingest.handle_unusable(message, f"internal error: {exc!r}")


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
