"""Several writer threads in one collector (``labctl serve --writers N``): each box's messages
on one writer, in order; every document stored once; whole sessions rebuilt off the writers."""

from __future__ import annotations

import random
import threading
from collections import defaultdict

import pytest

from controller.collector.service import Collector, default_writers
from controller.collector.writers import WriterPool, box_of
from controller.db import Database, StoredDocument
from controller.transport import Received
from shared.broker_url import BrokerSettings
from shared.protocol import Topics
from tests.fakes import FakeRig, session_dict, synthetic_session
from tests.test_collector import FAST, Running

pytestmark = pytest.mark.broker
TIMEOUT = 20.0


def _message(topics: Topics, box: str, n: int) -> Received:
    return Received(topics.events(box), str(n).encode(), False, 0.0, n, 1, 1)


def test_the_box_is_read_from_the_topic() -> None:
    topics = Topics("lab/a")
    assert box_of(topics.events("box-3")) == "box-3"
    assert box_of(topics.status("7")) == "7"


def test_two_writers_store_at_once_each_box_on_one_of_them_in_order() -> None:
    topics = Topics("t")
    stopping = threading.Event()
    both_in = threading.Barrier(2, timeout=TIMEOUT)
    lock = threading.Lock()
    stored: dict[str, list[tuple[str, int]]] = defaultdict(list)  # box -> (thread, n)
    total = 0
    done = threading.Event()
    expected = 600

    def store(batch: list[Received], behind: bool) -> None:
        nonlocal total
        name = threading.current_thread().name
        with lock:
            first = not any(thread == name for rows in stored.values() for thread, _ in rows)
        if first:
            both_in.wait()  # the first batch of each writer: both are storing at the same time
        with lock:
            for message in batch:
                stored[box_of(message.topic)].append((name, int(message.payload)))
            total += len(batch)
            if total >= expected:
                done.set()

    pool = WriterPool(2, store, stopping, batch_size=50)
    pool.start()
    try:
        rng = random.Random(3)
        boxes = [str(n) for n in range(6)]
        messages = [_message(topics, rng.choice(boxes), n) for n in range(expected)]
        for start in range(0, expected, 40):
            assert pool.put(messages[start : start + 40], behind=False)
        assert done.wait(TIMEOUT), "not every message was stored"
    finally:
        stopping.set()
        pool.join(TIMEOUT)
    assert total == expected
    threads = set()
    for box, rows in stored.items():
        assert len({thread for thread, _ in rows}) == 1, f"box {box} went to two writers"
        threads.add(rows[0][0])
        numbers = [n for _, n in rows]
        assert numbers == sorted(numbers), f"box {box}'s messages out of order"
    assert len(threads) == 2
    assert sorted(n for rows in stored.values() for _, n in rows) == list(range(expected))


def test_a_stopped_pool_does_not_wait_on_a_full_writer() -> None:
    topics = Topics("t")
    stopping = threading.Event()
    release = threading.Event()

    def store(batch: list[Received], behind: bool) -> None:
        release.wait(TIMEOUT)

    pool = WriterPool(1, store, stopping, batch_size=1, depth=1)
    pool.start()
    try:
        for n in range(3):  # one being stored, one queued, the third waits for room
            if n == 2:
                stopping.set()
            assert pool.put([_message(topics, "1", n)], behind=False) is (n < 2)
    finally:
        stopping.set()
        release.set()
        pool.join(TIMEOUT)


def test_a_writer_that_fails_stops_the_others() -> None:
    """As a lone writer's error ends the collector: no writer is left dead while the
    dispatching thread waits on its full queue for ever."""
    topics = Topics("t")
    stopping = threading.Event()

    def store(batch: list[Received], behind: bool) -> None:
        raise KeyError("a bug")

    pool = WriterPool(2, store, stopping, batch_size=10)
    pool.start()
    try:
        assert pool.put([_message(topics, "1", 1)], behind=False)
        assert stopping.wait(TIMEOUT), "the failed writer did not stop the pool"
    finally:
        stopping.set()
        pool.join(TIMEOUT)
    assert isinstance(pool.failed, KeyError)


def test_postgresql_gets_two_writers_and_sqlite_one(db: Database) -> None:
    assert default_writers(db) == (2 if db.dialect == "postgresql" else 1)


def test_a_collector_with_two_writers_stores_every_box_s_sessions_once(
    db: Database, broker: BrokerSettings, topics: Topics
) -> None:
    running = Running(db, broker, topics)
    running.collector = Collector(
        db,
        broker,
        topics=topics,
        settings=FAST,
        tick_interval=0.1,
        on_batch=running._on_batch,
        batch_size=20,
        writers=2,
    )
    assert running.collector.writers == 2
    rigs = [FakeRig(broker, topics, str(n)).__enter__() for n in range(4)]
    running.start()
    try:
        sessions = {
            str(n): synthetic_session(mouse=f"M{n}", box=str(n), trials=15, seed=n)
            for n in range(4)
        }
        for n, rig in enumerate(rigs):
            docs = sessions[str(n)]
            rig.publish(docs + docs[5:12])  # a replay after a reconnect: stored once
        running.wait(
            lambda: all(running.complete(docs[0].session_id) for docs in sessions.values()),
            "every session to be complete",
        )
        for n, rig in enumerate(rigs):
            docs = sessions[str(n)]
            assert running.exported(f"M{n}") == [session_dict(docs)]
            assert rig.wait(lambda: docs[0].session_id in rig.committed)  # noqa: B023
        assert running.count(StoredDocument) == sum(len(d) for d in sessions.values())
        assert running.collector.ingest.stored_documents == running.count(StoredDocument)
    finally:
        running.stop()
        for rig in rigs:
            rig.__exit__(None, None, None)


@pytest.mark.parametrize("writers", [0, -1])
def test_a_collector_needs_a_writer(
    db: Database, broker: BrokerSettings, topics: Topics, writers: int
) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Collector(db, broker, topics=topics, writers=writers)


def test_a_failing_upkeep_thread_stops_the_collector(
    db: Database, broker: BrokerSettings, topics: Topics
) -> None:
    """A bug in rebuilding sessions or in the tick ends the collector, as it does a lone
    writer's loop, rather than leave it storing documents no session is completed from."""
    collector = Collector(db, broker, topics=topics, tick_interval=0.05, writers=2)

    def broken(completions: int | None = None) -> None:
        raise KeyError("a bug")

    collector.ingest.tick = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="upkeep") as raised:
        collector.run()
    assert isinstance(raised.value.__cause__, KeyError)
