"""``labctl serve``: the collector's transport. paho in, :class:`~controller.ingest.Ingest` out.

Threads: paho's network thread only puts each message on a queue. One writer
thread takes messages off it in batches (up to ``batch_size``, or whatever
is there when the queue runs dry), has the ingest store each batch in one
transaction, and only then acknowledges the batch's messages to the broker.

Nothing is lost to a crash: the collector connects with a persistent session
(``clean_session=False``, a fixed client id) and acknowledges (PUBACK) a
message only after its transaction has committed. A message stored but not
acknowledged is delivered again and de-duplicated by ``(session_id, seq)``;
a message acknowledged is on disk. While the collector is away, the broker
keeps what arrives for it.

The database going away does not stop the collector: the batch is retried
until the database is back, unacknowledged, so the broker keeps the rest.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from sqlalchemy.exc import SQLAlchemyError

from controller.db import Checkpointer, Database
from controller.ingest import Incoming, Ingest, IngestSettings, RigCommand
from controller.mqtt import BrokerSettings, ack_all, make_client
from shared.protocol import QOS, Topics, encode

log = logging.getLogger("labctl.collector")

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
#: How long the writer waits before retrying a batch the database refused.
DB_RETRY_S = 2.0
#: The cyclic garbage collector's thresholds while the collector runs. paho leaves a few
#: objects of cyclic garbage per message (its topic matcher's recursive closure), so with
#: Python's default (700, 10, 10) a young collection ran every ~150 messages, each going
#: over the messages queued and the documents of the sessions being collected; the full
#: collections went over every object of the process. Measured: about a sixth of the
#: collector's time at full rate, now a few per cent.
GC_THRESHOLDS = (20_000, 50, 50)


def collector_client_id(prefix: str) -> str:
    """The fixed client id of the collector for ``prefix``: the persistent session's name."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in prefix)
    return f"labctl-collector-{safe}"


class _Received(NamedTuple):
    message: Incoming
    mid: int
    qos: int
    generation: int


class Collector:
    """Subscribes to every rig and feeds the ingest; :meth:`run` blocks, :meth:`start` threads."""

    def __init__(
        self,
        db: Database,
        broker: BrokerSettings,
        *,
        topics: Topics | None = None,
        client_id: str | None = None,
        settings: IngestSettings | None = None,
        batch_size: int = 100,
        tick_interval: float = 0.5,
        on_batch: Callable[[int], None] | None = None,
        max_queued: int = 10_000,
    ) -> None:
        self.db = db
        self.broker = broker
        self.topics = topics or Topics()
        self.client_id = client_id or collector_client_id(self.topics.prefix)
        self.batch_size = batch_size
        self.tick_interval = tick_interval
        self.on_batch = on_batch
        self.queue: queue.SimpleQueue[_Received] = queue.SimpleQueue()
        # A broker holds back QoS 1 messages for a subscriber that has not acknowledged the
        # earlier ones only as far as its own in-flight limit goes (mosquitto's
        # max_inflight_messages: 20 by default, 0 for none), so with the database stalled
        # the queue could grow without end. Past max_queued, paho's
        # thread waits: the socket fills and the broker keeps the rest (nothing is
        # acknowledged that is not stored). A size check per message, not a semaphore: it
        # is on the hot path of every document.
        self.max_queued = max_queued
        self._drained = threading.Event()
        self.connected = threading.Event()
        #: Set once the broker has confirmed the subscriptions: from then on nothing is missed.
        self.subscribed = threading.Event()
        self.stopping = threading.Event()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._failures = 0
        # One whole session rebuilt per batch at most, so a cohort's sessions ending together
        # do not hold up the documents of the boxes still running.
        self.ingest = Ingest(
            db, self, topics=self.topics, settings=settings, completions_per_batch=1
        )
        self._client = make_client(
            broker,
            client_id=self.client_id,
            clean_session=False,
            manual_ack=True,
            buffered_reads=True,
        )
        self._client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        self.checkpointer = Checkpointer(db)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # ------------------------------------------------------------ CommandSink

    def send(self, box: str, command: RigCommand) -> None:
        self._client.publish(self.topics.cmd(box), encode(command), qos=QOS)

    # ------------------------------------------------------------ lifecycle

    def run(self) -> None:
        """Connect (retrying in the background) and store until :meth:`stop`."""
        log.info(
            "collector %s: broker %s, prefix %r, database %s",
            self.client_id,
            self.broker.url,
            self.topics.prefix,
            self.db.url,
        )
        self.checkpointer.start()
        thresholds = gc.get_threshold()
        gc.freeze()  # what is loaded so far lives as long as the process: never scan it again
        gc.set_threshold(*GC_THRESHOLDS)
        self._client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive)
        self._client.loop_start()
        try:
            self._write_loop()
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            self.checkpointer.stop()
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            log.info(
                "collector stopped: %d documents stored, %d dead letters",
                self.ingest.stored_documents,
                self.ingest.dead_letters,
            )

    def start(self) -> None:
        """Run on a background thread (tests, the demo); :meth:`stop` ends it."""
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
            if batch:
                self._store(batch)
            else:
                self._complete_sessions()  # nothing waiting: finish every whole session
            if time.monotonic() - last_tick >= self.tick_interval:
                last_tick = time.monotonic()
                try:
                    self.ingest.tick()
                except SQLAlchemyError as exc:
                    log.error("database %s: %s", self.db.url, _first_line(exc))

    def _complete_sessions(self) -> None:
        try:
            self.ingest.complete_sessions()
        except SQLAlchemyError as exc:
            log.error("database %s: %s", self.db.url, _first_line(exc))

    def _next_batch(self) -> list[_Received]:
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

    def _store(self, batch: list[_Received]) -> None:
        if not self._drained.is_set():
            self._drained.set()  # wake paho's thread if it waits for room
        messages = [item.message for item in batch]
        while True:
            try:
                self.ingest.handle(messages)
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
        self._ack(batch)
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

    def _ack(self, batch: list[_Received]) -> None:
        # A message of an earlier connection is delivered again on this one: not acked.
        generation = self._generation
        ack_all(
            self._client,
            [item.mid for item in batch if item.qos == 1 and item.generation == generation],
        )
        for item in batch:
            if item.qos == 2 and item.generation == generation:  # not used by reachlab
                self._client.ack(item.mid, item.qos)

    # ------------------------------------------------------------ paho's thread

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the collector: %s", self.broker.url, reason_code)
            return
        self._generation += 1
        self._failures = 0
        # Subscribing again on every connect is harmless with a persistent session and
        # needed when the broker has lost it (restarted without persistence).
        client.subscribe([(self.topics.all_rigs(k), QOS) for k in ("status", "events", "reply")])
        log.info(
            "connected to broker %s (%s session)",
            self.broker.url,
            "resumed" if getattr(flags, "session_present", False) else "new",
        )
        self.connected.set()

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        failed = [code for code in reason_codes if code.is_failure]
        if failed:
            log.error("broker %s refused the subscriptions: %s", self.broker.url, failed)
            return
        self.subscribed.set()

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "cannot reach broker %s; retrying", self.broker.url)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self.stopping.is_set():
            log.warning("lost the broker %s (%s); reconnecting", self.broker.url, reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        while self.queue.qsize() >= self.max_queued:
            self._drained.clear()
            if self.stopping.is_set():
                return  # not acknowledged: the broker delivers it again
            self._drained.wait(1.0)
        payload = message.payload
        self.queue.put(
            _Received(
                Incoming(
                    topic=message.topic,
                    # paho hands over bytes; copy only the odd bytearray, off the hot path.
                    payload=payload if isinstance(payload, bytes) else bytes(payload),
                    received_at=time.time(),
                    retained=bool(message.retain),
                ),
                mid=message.mid,
                qos=message.qos,
                generation=self._generation,
            )
        )


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
