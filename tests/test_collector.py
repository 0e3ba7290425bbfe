"""The collector against a real broker and real databases (SQLite, and PostgreSQL when reachable).

A :class:`~tests.fakes.FakeRig` plays the box: it publishes documents
in whatever order (and with whatever losses) the test says, and answers
``resend`` and ``committed`` from what it holds, as the agent does. Each
test has its own topic prefix, so tests sharing the broker never meet.
Nothing sleeps: tests wait for conditions, woken after every stored batch.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from controller.collector.ingest import IngestSettings
from controller.collector.presence import LAST_WILL
from controller.collector.service import Collector
from controller.db import Box, Database, DeadLetter, StoredDocument, TrainingSession
from controller.store import complete_session_texts
from controller.transport import Received, Transport
from shared.broker_url import BrokerSettings
from shared.protocol import CommittedCommand, ResendCommand, Status, Topics, encode
from tests.fakes import FakeRig, session_dict, synthetic_session

pytestmark = pytest.mark.broker
TIMEOUT = 20.0
FAST = IngestSettings(heartbeat_timeout=30, gap_grace=0.2, resend_interval=1.0, tail_grace=1.0)


class Running:
    """A collector on a thread, with a way to wait for what it stores."""

    def __init__(
        self, db: Database, broker: BrokerSettings, topics: Topics, fast: bool | None = None
    ) -> None:
        self.db = db
        self.cond = threading.Condition()
        self.batches = 0
        self.collector = Collector(
            db,
            broker,
            topics=topics,
            settings=FAST,
            tick_interval=0.1,
            on_batch=self._on_batch,
            fast=fast,
        )

    def _on_batch(self, size: int) -> None:
        with self.cond:
            self.batches += 1
            self.cond.notify_all()

    def start(self) -> Running:
        self.collector.start()
        assert self.collector.subscribed.wait(TIMEOUT), "the collector did not subscribe"
        return self

    def stop(self) -> None:
        self.collector.stop()

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        """Check ``predicate`` after every stored batch (and every 0.2 s) until it holds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            with self.cond:
                self.cond.wait(min(left, 0.2))

    # what is in the database
    def count(self, model: type[Any]) -> int:
        with self.db.reader() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    def complete(self, session_id: str) -> bool:
        with self.db.reader() as session:
            row = session.scalar(
                select(TrainingSession).where(TrainingSession.session_id == session_id)
            )
            return bool(row is not None and row.complete)

    def exported(self, mouse: str) -> list[dict[str, Any]]:
        with self.db.reader_engine.connect() as conn:
            return [json.loads(t) for t in complete_session_texts(conn, mouse)]


@pytest.fixture
def running(db: Database, broker: BrokerSettings, topics: Topics) -> Iterator[Running]:
    collector = Running(db, broker, topics).start()
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture
def rig(broker: BrokerSettings, topics: Topics) -> Iterator[FakeRig]:
    with FakeRig(broker, topics, "1") as fake:
        yield fake


def test_a_session_with_duplicates_and_out_of_order_documents_is_stored_and_committed(
    running: Running, rig: FakeRig
) -> None:
    docs = synthetic_session(mouse="M1", box="1", trials=30, seed=4)
    stream = docs + docs[10:20]  # a replay after a reconnect
    random.Random(2).shuffle(stream)
    rig.publish(stream)
    sid = docs[0].session_id
    running.wait(lambda: running.complete(sid), "the session to be complete")
    assert rig.wait(lambda: sid in rig.committed), "no committed reached the box"
    assert running.exported("M1") == [session_dict(docs)]
    assert running.count(StoredDocument) == len(docs)


def test_the_collector_stores_everything_on_paho_s_plain_public_api_too(
    db: Database, broker: BrokerSettings, topics: Topics, rig: FakeRig
) -> None:
    """The fallback path of the transport (no paho internals), as on a paho release the
    fast path does not know: the same session stored whole, committed, acknowledged."""
    plain = Running(db, broker, topics, fast=False).start()
    try:
        assert not plain.collector.transport.fast
        docs = synthetic_session(mouse="M1", box="1", trials=20, seed=8)
        rig.publish(docs + docs[:5])
        sid = docs[0].session_id
        plain.wait(lambda: plain.complete(sid), "the session to be complete")
        assert rig.wait(lambda: sid in rig.committed), "no committed reached the box"
        assert plain.exported("M1") == [session_dict(docs)]
        assert plain.count(StoredDocument) == len(docs)
    finally:
        plain.stop()


def test_a_gap_is_repaired_by_asking_the_box_to_resend(running: Running, rig: FakeRig) -> None:
    docs = synthetic_session(mouse="M2", box="1", trials=12, seed=6)
    lost = docs[7:13]
    rig.hold(lost)  # the network lost these; the box still has them
    rig.publish(docs[:7] + docs[13:])
    sid = docs[0].session_id
    running.wait(lambda: running.complete(sid), "the gap to be repaired")
    resends = [c for c in rig.commands if isinstance(c, ResendCommand)]
    assert resends and (resends[0].from_seq, resends[0].to_seq) == (7, 12)
    assert running.exported("M2") == [session_dict(docs)]
    assert rig.wait(lambda: sid in rig.committed)


def test_malformed_messages_go_to_dead_letters_while_valid_traffic_continues(
    running: Running, rig: FakeRig, topics: Topics
) -> None:
    docs = synthetic_session(mouse="M3", box="1", trials=10, seed=7)
    bad = [
        (topics.events("1"), b"{this is not json"),
        (topics.events("1"), b'{"kind": "trial_end", "session_id": "x"}'),
        (topics.status("1"), b'{"box": "1", "state": "sleeping"}'),
        (topics.reply("1"), b"42"),
    ]
    for number, doc in enumerate(docs):
        rig.publish([doc])
        if number % 5 == 0 and bad:
            rig.publish_raw(*bad.pop())
    sid = docs[0].session_id
    running.wait(lambda: running.complete(sid) and running.count(DeadLetter) == 4, "all stored")
    with running.db.reader() as session:
        reasons = sorted(letter.reason for letter in session.scalars(select(DeadLetter)))
    assert len(reasons) == 4
    assert any("invalid status" in r for r in reasons)
    assert running.exported("M3") == [session_dict(docs)]


def test_documents_published_while_the_collector_is_down_are_stored_when_it_returns(
    db: Database,
    broker: BrokerSettings,
    topics: Topics,
    rig: FakeRig,
    broker_keeps_offline_messages: bool,
) -> None:
    first = Running(db, broker, topics).start()  # makes the broker keep a session for it
    first.stop()
    docs = synthetic_session(mouse="M4", box="1", trials=8, seed=8)
    rig.publish(docs)
    rig.publish_status()  # as the agent does when a session ends: it lists it, uncommitted
    second = Running(db, broker, topics).start()
    try:
        sid = docs[0].session_id
        second.wait(lambda: second.complete(sid), "the queued documents to be stored")
        assert second.exported("M4") == [session_dict(docs)]
        resends = [c for c in rig.commands if isinstance(c, ResendCommand)]
        if broker_keeps_offline_messages:
            assert resends == []  # the broker kept them: nothing had to be asked for
        else:
            # The broker dropped them; the box's status named the session, which was
            # then asked for whole.
            assert [(c.session_id, c.from_seq) for c in resends][:1] == [(sid, 0)]
        rig.wait(lambda: sid in rig.committed)
    finally:
        second.stop()


def test_box_status_is_tracked_and_the_last_will_marks_it_offline(
    running: Running, broker: BrokerSettings, topics: Topics
) -> None:
    rig = FakeRig(broker, topics, "7").__enter__()

    def row() -> tuple[str, str | None, str | None] | None:
        with running.db.reader() as session:
            box = session.get(Box, "7")
            return (box.state, box.status, box.offline_reason) if box is not None else None

    running.wait(lambda: (row() or ("",))[0] == "idle", "the box's status")
    idle = row()
    assert idle is not None and idle[2] is None
    assert idle[1] is not None and json.loads(idle[1])["state"] == "idle"  # kept as received
    # The rig dies: its connection drops without a DISCONNECT and without an offline status,
    # so only the broker's publishing of its Last Will can tell the collector.
    rig.client.loop_stop()
    sock = rig.client.socket()
    assert sock is not None
    sock.close()
    running.wait(lambda: (row() or ("",))[0] == "offline", "the box's Last Will")
    offline = row()
    assert offline is not None and offline[2] == LAST_WILL
    assert offline[1] is not None
    will = json.loads(offline[1])
    assert (will["box"], will["state"]) == ("7", "offline")


def test_two_boxes_interleaved_are_kept_apart(
    running: Running, broker: BrokerSettings, topics: Topics
) -> None:
    with FakeRig(broker, topics, "1") as one, FakeRig(broker, topics, "2") as two:
        a = synthetic_session(mouse="A", box="1", trials=10, seed=1)
        b = synthetic_session(mouse="B", box="2", trials=10, seed=2)
        for x, y in zip(a, b, strict=False):
            one.publish([x])
            two.publish([y])
        one.publish(a[len(b) :])
        two.publish(b[len(a) :])
        running.wait(
            lambda: running.complete(a[0].session_id) and running.complete(b[0].session_id),
            "both sessions",
        )
        assert running.exported("A") == [session_dict(a)]
        assert running.exported("B") == [session_dict(b)]
        assert one.wait(lambda: a[0].session_id in one.committed)
        assert two.wait(lambda: b[0].session_id in two.committed)
        assert all(
            not isinstance(c, CommittedCommand) or c.session_id == a[0].session_id
            for c in one.commands
        )


def test_a_full_queue_holds_paho_back_until_the_writer_catches_up(
    db: Database, broker: BrokerSettings, topics: Topics
) -> None:
    collector = Collector(db, broker, topics=topics, max_queued=2)
    deliver = collector.transport.deliver
    deliver(topics.events("1"), b"{}", mid=1, qos=1)
    deliver(topics.events("1"), b"{}", mid=2, qos=1)
    third = threading.Thread(
        target=deliver, args=(topics.events("1"), b"{}"), kwargs={"mid": 3, "qos": 1}
    )
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third message was queued past the bound"
    collector._store(collector._next_batch())  # the writer stores (and frees) the first two
    third.join(10)
    assert not third.is_alive()
    assert collector.queue.qsize() == 1


def test_a_full_batch_holds_the_heartbeat_timeout_back_until_the_writer_catches_up(
    db: Database, broker: BrokerSettings, topics: Topics
) -> None:
    """Behind its queue, the collector reads every box's messages late: it must not take
    that for the boxes' silence (1000 rigs: every box marked offline and back)."""
    collector = Collector(db, broker, topics=topics, settings=FAST, batch_size=2)
    clock = [time.time()]
    collector.ingest.clock = lambda: clock[0]

    def status(box: str, mid: int) -> None:
        collector.transport.deliver(
            topics.status(box), encode(Status(box=box, state="idle")), mid=mid, qos=1
        )

    def state(box: str) -> str:
        with db.reader() as session:
            row = session.get(Box, box)
            assert row is not None
            return row.state

    status("1", 1)
    collector._store(collector._next_batch())
    clock[0] += 40  # box 1 said nothing since, but three messages came at once
    for mid in (2, 3, 4):
        status("2", mid)
    collector._store(collector._next_batch())  # a full batch: one more is waiting
    collector.ingest.tick()
    assert state("1") == "idle"
    collector._store(collector._next_batch())  # the last one: caught up
    clock[0] += 29
    collector.ingest.tick()
    assert state("1") == "idle"
    clock[0] += 2  # a whole timeout after catching up, box 1 is silent indeed
    collector.ingest.tick()
    assert state("1") == "offline"


# ---------------------------------------------------------------- acknowledgements


class _ManualAckSubscriber:
    """A persistent-session transport built as the collector's is (manual acks, the fast
    path or the plain one); it records every message the broker delivers."""

    def __init__(self, broker: BrokerSettings, topic: str, client_id: str, fast: bool) -> None:
        import queue

        self.topic = topic
        self.inbox: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self.received: list[Received] = []
        self.transport = Transport(
            broker,
            client_id=client_id,
            clean_session=False,
            manual_ack=True,
            inbox=self.inbox,
            fast=fast,
        )
        assert self.transport.fast == fast
        self.transport.subscribe([topic])
        self.transport.connect(TIMEOUT)
        assert self.transport.subscribed.wait(TIMEOUT), "the subscriber did not subscribe"

    def wait_for(self, count: int) -> list[Received]:
        import queue

        while len(self.received) < count:
            try:
                message = self.inbox.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"{len(self.received)} of {count} messages arrived") from None
            if message.topic == self.topic:  # amqtt replays other topics' retained messages
                self.received.append(message)
        return list(self.received)

    def close(self) -> None:
        # The broker reads a connection's packets in order: once it has answered a later
        # packet it has read every PUBACK sent before it. A QoS 1 publish to a topic of our
        # own, acknowledged by the broker, is that packet.
        assert self.transport.publish(f"{self.topic}/flush", b"", wait=TIMEOUT)
        self.transport.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "public-api"])
def test_a_batch_acknowledged_at_once_is_never_delivered_again(
    broker: BrokerSettings, topic_prefix: str, broker_keeps_offline_messages: bool, fast: bool
) -> None:
    """The collector acknowledges a stored batch at once (on the fast path in one write):
    the broker must take every PUBACK, and deliver again exactly the ones left unacked."""
    if not broker_keeps_offline_messages:
        pytest.skip("this broker delivers nothing again to a returning persistent session")
    topic = f"{topic_prefix}/acks"
    client_id = f"acks-{topic_prefix}"
    first = _ManualAckSubscriber(broker, topic, client_id, fast)
    publisher = Transport(broker, client_id=f"pub-{topic_prefix}")
    publisher.connect(TIMEOUT)
    try:
        for n in range(50):
            assert publisher.publish(topic, f"{n}".encode(), wait=TIMEOUT)
        stored = first.wait_for(10)[:10]  # a batch of ten, "stored", then acknowledged
        first.transport.ack(stored)
        first.close()
        acked = {int(m.payload) for m in stored}
        assert len(acked) == 10

        again = _ManualAckSubscriber(broker, topic, client_id, fast)
        try:
            seen: set[int] = set()
            done = 0
            while seen != set(range(50)) - acked:
                batch = again.wait_for(done + 1)[done:]
                done += len(batch)
                seen |= {int(m.payload) for m in batch}
                assert not seen & acked, f"acknowledged messages came again: {seen & acked}"
                again.transport.ack(batch)
        finally:
            again.close()
    finally:
        publisher.close()
