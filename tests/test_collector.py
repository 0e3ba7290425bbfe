"""The collector against a real broker and real databases (SQLite, and PostgreSQL when reachable).

A :class:`~controller.testing.FakeRig` plays the box: it publishes documents
in whatever order (and with whatever losses) the test says, and answers
``resend`` and ``committed`` from what it holds, as the agent does. Each
test has its own topic prefix, so tests sharing the broker never meet.
Nothing sleeps: tests wait for conditions, woken after every stored batch.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from controller.collector import Collector
from controller.db import Box, Database, DeadLetter, TrainingSession
from controller.db import Document as DocumentRow
from controller.ingest import IngestSettings
from controller.mqtt import BrokerSettings, ack_all, make_client, parse_broker_url
from controller.store import complete_session_texts
from controller.testing import FakeRig, session_dict, synthetic_session
from shared.protocol import CommittedCommand, ResendCommand, Topics

pytestmark = pytest.mark.broker
TIMEOUT = 20.0
FAST = IngestSettings(heartbeat_timeout=30, gap_grace=0.2, resend_interval=1.0, tail_grace=1.0)


class Running:
    """A collector on a thread, with a way to wait for what it stores."""

    def __init__(self, db: Database, broker: BrokerSettings, topics: Topics) -> None:
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
        import time

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
def broker(broker_url: str) -> BrokerSettings:
    return parse_broker_url(broker_url)


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    return Topics(topic_prefix)


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
    assert running.count(DocumentRow) == len(docs)


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

    def state() -> str | None:
        with running.db.reader() as session:
            box = session.get(Box, "7")
            return box.state if box is not None else None

    running.wait(lambda: state() == "idle", "the box's status")
    rig.close(clean=True)  # publishes "offline", as the agent's shutdown (or Last Will) does
    running.wait(lambda: state() == "offline", "the box to be offline")


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
    import paho.mqtt.client as paho

    collector = Collector(db, broker, topics=topics, max_queued=2)

    def message(mid: int) -> paho.MQTTMessage:
        m = paho.MQTTMessage(mid=mid, topic=topics.events("1").encode())
        m.payload, m.qos = b"{}", 1
        return m

    collector._on_message(collector._client, None, message(1))
    collector._on_message(collector._client, None, message(2))
    third = threading.Thread(
        target=collector._on_message, args=(collector._client, None, message(3))
    )
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third message was queued past the bound"
    collector._store(collector._next_batch())  # the writer stores (and frees) the first two
    third.join(10)
    assert not third.is_alive()
    assert collector.queue.qsize() == 1


# ---------------------------------------------------------------- acknowledgements


class _ManualAckSubscriber:
    """A persistent-session client built as the collector's is (manual acks, buffered
    reads); it records every message the broker delivers, payloads as ints."""

    def __init__(self, broker: BrokerSettings, topic: str, client_id: str) -> None:
        self.topic = topic
        self.cond = threading.Condition()
        self.received: list[tuple[int, int]] = []
        self.subscribed = threading.Event()
        self.unsubscribed = threading.Event()
        self.client = make_client(
            broker, client_id=client_id, clean_session=False, manual_ack=True, buffered_reads=True
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_unsubscribe = lambda *_: self.unsubscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(TIMEOUT), "the subscriber did not subscribe"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic != self.topic:  # amqtt replays other topics' retained messages
            return
        with self.cond:
            self.received.append((message.mid, int(message.payload)))
            self.cond.notify_all()

    def wait_for(self, count: int) -> list[tuple[int, int]]:
        with self.cond:
            arrived = self.cond.wait_for(lambda: len(self.received) >= count, TIMEOUT)
            assert arrived, f"{len(self.received)} of {count} messages arrived"
            return list(self.received)

    def close(self) -> None:
        # The broker reads a connection's packets in order: once it has answered the
        # UNSUBSCRIBE it has read every PUBACK sent before it. (Closing straight away can
        # reset the connection while the broker still has unread PUBACKs; those messages
        # then come again, which is harmless but not what this test is about.)
        self.client.unsubscribe(self.topic)
        assert self.unsubscribed.wait(TIMEOUT)
        self.client.disconnect()
        self.client.loop_stop()


def test_a_batch_acknowledged_in_one_write_is_never_delivered_again(
    broker: BrokerSettings, topic_prefix: str, broker_keeps_offline_messages: bool
) -> None:
    """The collector acknowledges a stored batch in one write (ack_all): the broker must
    take every PUBACK in it, and deliver again exactly the messages left unacknowledged."""
    if not broker_keeps_offline_messages:
        pytest.skip("this broker delivers nothing again to a returning persistent session")
    topic = f"{topic_prefix}/acks"
    client_id = f"acks-{topic_prefix}"
    first = _ManualAckSubscriber(broker, topic, client_id)
    publisher = make_client(broker, client_id=f"pub-{topic_prefix}")
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    try:
        for n in range(50):
            publisher.publish(topic, f"{n}".encode(), qos=1).wait_for_publish(TIMEOUT)
        stored = first.wait_for(10)[:10]  # a batch of ten, "stored", then acknowledged
        ack_all(first.client, [mid for mid, _ in stored])
        first.close()
        acked = {n for _, n in stored}
        assert len(acked) == 10

        again = _ManualAckSubscriber(broker, topic, client_id)
        try:
            seen: set[int] = set()
            done = 0
            while seen != set(range(50)) - acked:
                batch = again.wait_for(done + 1)[done:]
                done += len(batch)
                seen |= {n for _, n in batch}
                assert not seen & acked, f"acknowledged messages came again: {seen & acked}"
                ack_all(again.client, [mid for mid, _ in batch])
        finally:
            again.close()
    finally:
        publisher.disconnect()
        publisher.loop_stop()
