"""The collector's writer threads: each batch's messages sharded by box onto several writers.

With more than one writer (``labctl serve --writers N``), the thread that takes
messages off the transport's inbox splits each batch by box (the box id in the
topic) and hands each part to the writer thread of that box, which stores it
(in its own transaction, on its own database connection) and acknowledges it.
While one writer waits for the database, another decodes and prepares its
batch: on PostgreSQL the documents' INSERT was a third of a lone writer's time.

A box's messages go through one writer, in the order they arrived, as with a
lone writer: its statuses are written in order (the last one stays), and two
writers never lock the same box's rows (streams, box row) against each other.
Nothing else rests on the sharding: writers are like the collectors of a group,
every decision taken in the database.

A writer merges what waits in its queue up to ``batch_size`` messages. The
queues hold at most ``depth`` parts each: past that the dispatching thread
waits, and with it the transport's inbox, so the broker holds the rest.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from controller.transport import Received

log = logging.getLogger("labctl.collector")

#: How long a blocked hand-over waits before it looks at ``stopping`` again.
_POLL_S = 0.2


def box_of(topic: str) -> str:
    """The box id of a rig's topic (``<prefix>/rigs/<box>/<kind>``)."""
    parts = topic.rsplit("/", 2)
    return parts[1] if len(parts) == 3 else topic


class WriterPool:
    """``count`` writer threads, each storing the messages of its share of the boxes in order.

    ``store(batch, behind)`` stores and acknowledges one batch (``behind``: more messages
    were waiting than it took); it is called on the writers' threads, several at once.
    """

    def __init__(
        self,
        count: int,
        store: Callable[[list[Received], bool], None],
        stopping: threading.Event,
        *,
        batch_size: int,
        depth: int = 8,
    ) -> None:
        if count < 1:
            raise ValueError(f"writers must be at least 1, not {count}")
        self.count = count
        self.store = store
        self.stopping = stopping
        self.batch_size = batch_size
        self._queues: list[queue.Queue[tuple[list[Received], bool]]] = [
            queue.Queue(maxsize=depth) for _ in range(count)
        ]
        #: What ended a writer that failed (it sets ``stopping``: the collector stops).
        self.failed: BaseException | None = None
        self._shards: dict[str, int] = {}
        self._boxes: dict[str, int] = {}
        self._threads = [
            threading.Thread(target=self._run, args=(n,), name=f"writer-{n}", daemon=True)
            for n in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the writers to end (they end once ``stopping`` is set)."""
        for thread in self._threads:
            thread.join(timeout)

    def shard(self, topic: str) -> int:
        """The writer of ``topic``'s box: the boxes dealt out in the order they first came."""
        found = self._shards.get(topic)
        if found is None:
            box = box_of(topic)
            # Dealt out in turn rather than hashed: a few boxes spread evenly over the writers.
            found = self._boxes.setdefault(box, len(self._boxes) % self.count)
            self._shards[topic] = found
        return found

    def put(self, batch: list[Received], behind: bool) -> bool:
        """Hand ``batch`` to the writers, split by box; False if stopped before it was."""
        if self.count == 1:
            parts = [batch]
        else:
            parts = [[] for _ in range(self.count)]
            shard = self.shard
            for message in batch:
                parts[shard(message.topic)].append(message)
        for part, inbox in zip(parts, self._queues, strict=True):
            if not part:
                continue
            while True:
                try:
                    inbox.put((part, behind), timeout=_POLL_S)
                    break
                except queue.Full:
                    if self.stopping.is_set():
                        return False  # unacknowledged: the broker delivers them again
        return True

    def _run(self, n: int) -> None:
        try:
            self._write(self._queues[n])
        except BaseException as exc:
            # As a lone writer's error ends the collector, so does one writer's: the others
            # stop, and what they held unacknowledged the broker delivers again.
            log.exception("writer %d failed; stopping the collector", n)
            self.failed = exc
            self.stopping.set()

    def _write(self, inbox: queue.Queue[tuple[list[Received], bool]]) -> None:
        while not self.stopping.is_set():
            try:
                batch, behind = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            while len(batch) < self.batch_size:
                try:
                    more, more_behind = inbox.get_nowait()
                except queue.Empty:
                    break
                batch = batch + more
                behind = behind or more_behind
            self.store(batch, behind or not inbox.empty())
