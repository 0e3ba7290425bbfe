"""Benchmark of the collector: sustained ingest against a bare subscriber, and commit latency.

All on one broker, in one run:

1. **Bare subscriber**: a paho client in its own process that only counts the
   documents of 50 publishers (QoS 1, each a box publishing one session as
   fast as it can). Its rate is what the machine can carry at all.
2. **Collector**: the same 50 publishers into a real ``labctl serve`` process
   with a fresh SQLite database. Its sustained rate is documents stored per
   second, measured from the moment the publishers start until the database
   holds every document (read from outside, as any reader would see them).
   Target: at least 0.8 of the bare subscriber's rate (the median over
   ``--rounds`` rounds, each a bare run then a collector run), and no
   document lost. Each round then runs the same into one ``labctl serve`` on a
   fresh PostgreSQL database (``--databases sqlite,postgres``), with the same
   target, and counts what it stored twice (must be 0).
3. **Latency** at ``--rate`` documents per second (default 1,000, spread over
   the 50 publishers): from the publish call to the row being committed and
   visible in the database, found by polling the database every
   ``--poll-ms``. Target: p99 under 50 ms.

4. **Several collectors on PostgreSQL**: for 1, 2 and 3 ``labctl serve``
   processes in one shared-subscription group (``--group``) into a fresh
   PostgreSQL database, ``--group-publishers`` (100) publishers; each row is
   the collectors' rate as a ratio against the bare subscriber measured just
   before it, in the same run, with the documents lost (must be 0) and stored
   twice (must be 0). On 2 cores the ratio need not grow with collectors; it
   must not fall below 0.8 of one collector's.

The broker is ``--broker URL`` if given, else a private mosquitto started here;
PostgreSQL is the server of ``--postgres`` (each run makes its own database and
drops it). Every process the bench starts, it stops.

Run: ``python bench/bench_ingest.py [--publishers 50] [--docs 600] [--rate 1000]``
(``--parts throughput`` for parts 1 and 2 alone, ``--parts groups`` or ``--only-groups``
for part 4).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from controller.demo.broker import MosquittoBroker, start_local_broker  # noqa: E402
from shared.broker_url import BrokerSettings  # noqa: E402
from shared.broker_url import broker_settings as parse_broker_url  # noqa: E402
from shared.documents import dump_document  # noqa: E402
from shared.protocol import Status, Topics, encode  # noqa: E402
from tests.fakes import synthetic_session  # noqa: E402

PUBLISHER_PROCESSES = 5


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def client(broker: BrokerSettings, name: str) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}")
    c.max_queued_messages_set(0)
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    return c


# ---------------------------------------------------------------- publishers


def documents_for(box: str, docs: int, seed: int) -> list[Any]:
    """About ``docs`` documents of one session on ``box``, ending with its session_end."""
    trials = max(1, int(docs / 3.2))
    stream = synthetic_session(mouse=f"BenchMouse{box}", box=box, trials=trials, seed=seed)
    return stream


def publisher_process(
    url: str,
    prefix: str,
    boxes: list[str],
    docs: int,
    rate_per_box: float | None,
    ready: Any,
    go: Any,
    counts: Any,
    box_offsets: list[float],
    go_time: Any,
) -> None:
    """Publish one session per box, as fast as possible or at ``rate_per_box`` documents/s."""
    broker = parse_broker_url(url)
    topics = Topics(prefix)
    clients = {box: client(broker, f"bench-rig-{box}") for box in boxes}
    streams = {box: documents_for(box, docs, seed=int(box)) for box in boxes}
    ready.release()
    go.wait()
    infos = []
    if rate_per_box is None:
        # Round-robin over the boxes, so all 50 publishers are busy at once.
        longest = max(len(s) for s in streams.values())
        for index in range(longest):
            for box in boxes:
                if index < len(streams[box]):
                    payload = dump_document(streams[box][index]).encode()
                    infos.append(clients[box].publish(topics.events(box), payload, qos=1))
    else:
        # Each box publishes every 1/rate_per_box s, the boxes spread evenly over that
        # period (and the processes over each other), so the total is a steady stream.
        start = go_time.value
        interval = 1.0 / rate_per_box
        slots = sorted(
            (start + (index + offset) * interval, box, index)
            for offset, box in zip(box_offsets, boxes, strict=True)
            for index in range(len(streams[box]))
        )
        for due, box, index in slots:
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)  # pacing the publishers is the point here
            # t carries the publish time, so the reader can compute the latency.
            doc = streams[box][index].model_copy(update={"t": time.time()})
            payload = dump_document(doc).encode()
            infos.append(clients[box].publish(topics.events(box), payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    with counts.get_lock():
        counts.value += len(infos)
    for c in clients.values():
        c.disconnect()
        c.loop_stop()


def run_publishers(
    url: str, prefix: str, publishers: int, docs: int, rate: float | None
) -> tuple[list[mp.Process], Go, int]:
    """Start the publisher processes, connected and ready; returns (processes, go, total)."""
    boxes = [str(n) for n in range(1, publishers + 1)]
    groups = [boxes[i::PUBLISHER_PROCESSES] for i in range(PUBLISHER_PROCESSES)]
    groups = [g for g in groups if g]
    ready = mp.Semaphore(0)
    go = mp.Event()
    go_time = mp.Value("d", 0.0)
    counts = mp.Value("i", 0)
    per_box = None if rate is None else rate / publishers
    offset = {box: number / publishers for number, box in enumerate(boxes)}
    procs = [
        mp.Process(
            target=publisher_process,
            args=(
                url,
                prefix,
                g,
                docs,
                per_box,
                ready,
                go,
                counts,
                [offset[b] for b in g],
                go_time,
            ),
        )
        for g in groups
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    total = sum(len(documents_for(b, docs, int(b))) for b in boxes)
    return procs, Go(go, go_time), total


class Go:
    """Releases the publishers, telling them the common start time."""

    def __init__(self, event: Any, when: Any) -> None:
        self.event, self.when = event, when

    def set(self) -> None:
        self.when.value = time.time() + 0.05
        self.event.set()


def join(procs: list[mp.Process]) -> None:
    for p in procs:
        p.join(120)
        if p.is_alive():
            p.kill()


# ---------------------------------------------------------------- 1. bare subscriber


def bare_subscriber(url: str, prefix: str, expected: int, subscribed: Any, out: Any) -> None:
    broker = parse_broker_url(url)
    topics = Topics(prefix)
    done = threading.Event()
    state = {"count": 0, "last": 0.0}

    def on_connect(c: paho.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        c.subscribe(topics.all_rigs("events"), 1)

    def on_subscribe(c: paho.Client, u: Any, mid: int, rcs: Any, p: Any) -> None:
        subscribed.set()

    def on_message(c: paho.Client, u: Any, m: paho.MQTTMessage) -> None:
        state["count"] += 1
        if state["count"] >= expected:
            state["last"] = time.time()
            done.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{uuid.uuid4().hex[:6]}")
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    done.wait(300)
    out.put((state["count"], state["last"], cpu_seconds(os.getpid())))
    c.disconnect()
    c.loop_stop()


def measure_bare(url: str, publishers: int, docs: int) -> tuple[float, int, int, float]:
    prefix = f"bench-bare-{uuid.uuid4().hex[:6]}"
    procs, go, total = run_publishers(url, prefix, publishers, docs, None)
    subscribed = mp.Event()
    out: Any = mp.Queue()
    sub = mp.Process(target=bare_subscriber, args=(url, prefix, total, subscribed, out))
    sub.start()
    subscribed.wait(30)
    busy0 = machine_busy()
    started = time.time()
    go.set()
    count, last, cpu = out.get(timeout=300)
    busy1 = machine_busy()
    print(f"  machine busy {(busy1[0] - busy0[0]) / (busy1[1] - busy0[1]):.0%}")
    join(procs)
    sub.join(30)
    return count / (last - started), count, total, cpu


# ---------------------------------------------------------------- 2. and 3. the collector


class SqliteStore:
    """A fresh SQLite file, read from outside with sqlite3 (as any reader would)."""

    kind = "SQLite"

    def __init__(self, folder: Path, prefix: str) -> None:
        self.path = folder / f"{prefix}.db"
        self.url = f"sqlite:///{self.path}"
        self._reader: sqlite3.Connection | None = None

    def query(self, sql: str) -> list[Any]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def poll(self, sql: str) -> Any:
        """One value, on a connection kept open between polls (a fresh snapshot each time)."""
        if self._reader is None:
            self._reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        self._reader.rollback()
        return self._reader.execute(sql).fetchone()[0]

    def drop(self) -> None:
        if self._reader is not None:
            self._reader.close()


class PostgresStore:
    """A fresh database on the PostgreSQL server of ``server``, dropped at the end."""

    kind = "PostgreSQL"

    def __init__(self, server: str) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        self.admin = create_engine(make_url(server), isolation_level="AUTOCOMMIT")
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = make_url(server).set(database=self.name).render_as_string(False)
        self.engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        self._reader: Any = None

    def query(self, sql: str) -> list[Any]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return list(conn.execute(text(sql)).all())

    def poll(self, sql: str) -> Any:
        from sqlalchemy import text

        if self._reader is None:
            self._reader = self.engine.connect()
        return self._reader.execute(text(sql)).scalar()

    def drop(self) -> None:
        from sqlalchemy import text

        if self._reader is not None:
            self._reader.close()
        self.engine.dispose()
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


Store = SqliteStore | PostgresStore


class Serve:
    """``count`` ``labctl serve`` processes on ``store`` (in one group when ``group``),
    stopped by pid; the store is dropped with them."""

    def __init__(
        self,
        url: str,
        prefix: str,
        store: Store,
        folder: Path,
        *,
        count: int = 1,
        group: str | None = None,
    ) -> None:
        self.store = store
        self.url = url
        self.prefix = prefix
        env = {
            **os.environ,
            "LABCTL_DB": store.url,
            "LABCTL_BROKER": url,
            "LABCTL_PREFIX": prefix,
            "PYTHONPATH": str(REPO),
        }
        if group is not None:
            env["LABCTL_GROUP"] = group
        self.log_paths = [folder / f"{prefix}-{n}.log" for n in range(count)]
        self.logs = [open(path, "wb") for path in self.log_paths]  # noqa: SIM115  (closed in stop)
        subprocess.run(
            [sys.executable, "-m", "controller.cli", "mouse", "list"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip  (creates the schema before serve starts)
        ids = [] if count == 1 and group is None else [f"bench-{n}" for n in range(count)]
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controller.cli",
                    "serve",
                    *(["--client-id", ids[n]] if ids else []),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for n, log in enumerate(self.logs)
        ]
        try:
            if group is None:
                self.wait_probe()
            else:
                self.wait_collectors(count)
        except BaseException:
            self.stop()
            raise

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.procs[0]

    def _failed(self) -> SystemExit:
        for log in self.logs:
            log.flush()
        tail = self.log_paths[0].read_text(errors="replace").strip().splitlines() or [""]
        return SystemExit(f"labctl serve did not start: {tail[-1]}")

    def wait_probe(self) -> None:
        """A retained status reaching the database shows the collector has subscribed."""
        broker = parse_broker_url(self.url)
        c = client(broker, "bench-probe")
        status = Status(box="probe", state="idle")
        c.publish(Topics(self.prefix).status("probe"), encode(status), qos=1, retain=True)
        deadline = time.monotonic() + 30
        while not self.store.query("SELECT 1 FROM boxes WHERE id = 'probe'"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise self._failed()
            time.sleep(0.05)  # another process's effect: nothing to wait on but the table
        c.publish(Topics(self.prefix).status("probe"), b"", qos=1, retain=True).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()

    def wait_collectors(self, count: int) -> None:
        """Every collector has announced itself online (retained) and leased the database."""
        deadline = time.monotonic() + 60
        while int(self.store.query("SELECT count(*) FROM collectors")[0][0]) < count:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise self._failed()
            time.sleep(0.05)  # another process's effect: nothing to wait on but the table
        time.sleep(1.0)  # the lease is taken just before subscribing: let them subscribe

    def count(self) -> int:
        return int(self.store.query("SELECT count(*) FROM documents")[0][0])

    def wait_stored(self, total: int, deadline: float) -> None:
        """Until ``total`` documents are stored. The highest row id first, O(1) unlike
        count(*), so polling costs next to nothing (the bench shares the machine's CPU
        with what it measures); PostgreSQL's ids can skip (a conflict takes one), so the
        count confirms."""
        while time.monotonic() < deadline:
            if int(self.store.poll("SELECT coalesce(max(id), 0) FROM documents")) >= total and (
                self.store.kind == "SQLite"
                or int(self.store.poll("SELECT count(*) FROM documents")) >= total
            ):
                return
            time.sleep(0.02)  # polling the database from outside, as any reader would

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in self.logs:
            log.close()
        self.store.drop()


def new_store(kind: str, folder: Path, prefix: str, server: str) -> Store:
    return SqliteStore(folder, prefix) if kind == "sqlite" else PostgresStore(server)


def measure_collector(
    url: str, publishers: int, docs: int, store: Store, folder: Path
) -> tuple[float, int, int, int, float]:
    prefix = f"bench-serve-{uuid.uuid4().hex[:6]}"
    serve = Serve(url, prefix, store, folder)
    try:
        procs, go, total = run_publishers(url, prefix, publishers, docs, None)
        cpu_before = cpu_seconds(serve.proc.pid)
        busy0 = machine_busy()
        started = time.time()
        go.set()
        deadline = time.monotonic() + 300
        serve.wait_stored(total, deadline)
        finished = time.time()
        complete_sql = "SELECT count(*) FROM sessions WHERE complete"
        while int(store.poll(complete_sql)) < publishers and time.monotonic() < deadline:
            time.sleep(0.02)  # the same: another process's effect
        all_complete = time.time() - started
        stored = serve.count()
        cpu = cpu_seconds(serve.proc.pid) - cpu_before
        busy1 = machine_busy()
        print(f"  machine busy {(busy1[0] - busy0[0]) / (busy1[1] - busy0[1]):.0%}")
        join(procs)
        unique = store.query(
            "SELECT count(*) FROM (SELECT DISTINCT session_id, seq FROM documents) d"
        )
        complete = store.query(complete_sql)[0][0]
        print(f"  every session rebuilt and stored {all_complete:.2f} s after the start")
        return stored / (finished - started), stored, int(unique[0][0]), int(complete), cpu
    finally:
        serve.stop()


def measure_latency(
    url: str, publishers: int, rate: float, seconds: float, folder: Path, poll_ms: float
) -> tuple[list[float], int, int]:
    prefix = f"bench-lat-{uuid.uuid4().hex[:6]}"
    store = SqliteStore(folder, prefix)
    serve = Serve(url, prefix, store, folder)
    docs = max(4, int(rate * seconds / publishers))
    try:
        procs, go, total = run_publishers(url, prefix, publishers, docs, rate)
        latencies: list[float] = []
        conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, timeout=30)
        last_id = 0
        go.set()
        deadline = time.monotonic() + seconds * 3 + 60
        seen = 0
        while seen < total and time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT id, t FROM documents WHERE id > ? ORDER BY id", (last_id,)
            ).fetchall()
            now = time.time()
            for row_id, t in rows:
                last_id = max(last_id, row_id)
                seen += 1
                latencies.append(now - t)
            conn.rollback()  # a new snapshot on the next read
            time.sleep(poll_ms / 1000)
        conn.close()
        join(procs)
        return latencies, seen, total
    finally:
        serve.stop()


# ---------------------------------------------------------------- 4. several collectors


def measure_group(
    url: str, server: str, count: int, publishers: int, docs: int, folder: Path
) -> tuple[float, int, int, int]:
    """(documents/s, stored, stored twice, expected) for ``count`` collectors."""
    prefix = f"bench-group-{uuid.uuid4().hex[:6]}"
    store = PostgresStore(server)
    serve = Serve(url, prefix, store, folder, count=count, group="bench")
    try:
        procs, go, total = run_publishers(url, prefix, publishers, docs, None)
        started = time.time()
        go.set()
        serve.wait_stored(total, time.monotonic() + 300)
        finished = time.time()
        join(procs)
        stored = serve.count()
        unique = int(
            store.query("SELECT count(*) FROM (SELECT DISTINCT session_id, seq FROM documents) d")[
                0
            ][0]
        )
        return stored / (finished - started), stored, stored - unique, total
    finally:
        serve.stop()


def report_groups(url: str, server: str, publishers: int, docs: int, folder: Path) -> None:
    print(f"several collectors on PostgreSQL, {publishers} publishers x {docs} documents")
    ratios: dict[int, float] = {}
    for count in (1, 2, 3):
        bare, received, total, _ = measure_bare(url, publishers, docs)
        rate, stored, twice, expected = measure_group(url, server, count, publishers, docs, folder)
        ratios[count] = rate / bare
        print(
            f"{count} collector(s): {rate:8.0f} docs/s; bare subscriber {bare:8.0f} docs/s "
            f"({received}/{total}); ratio {rate / bare:.2f}; lost {expected - stored}, "
            f"stored twice {twice}"
        )
    floor = 0.8 * ratios[1]
    worst = min(ratios[2], ratios[3])
    print(
        f"2 and 3 collectors against 0.8 of one collector's ratio ({floor:.2f}): "
        f"{'ok' if worst >= floor else 'MISSED'}"
    )


def report_throughput(
    url: str, publishers: int, docs: int, rounds: int, kinds: list[str], server: str, folder: Path
) -> None:
    """Each round the bare subscriber, then one collector on each database kind, back to
    back; every collector's rate as a ratio to that round's bare subscriber."""
    ratios: dict[str, list[float]] = {kind: [] for kind in kinds}
    for number in range(1, rounds + 1):
        load = os.getloadavg()[0]
        bare, received, total, cpu = measure_bare(url, publishers, docs)
        print(
            f"round {number} (load average {load:.1f})\n"
            f"bare subscriber   : {bare:8.0f} docs/s  ({received}/{total} received, "
            f"{cpu / received * 1e6:.0f} µs CPU per document)"
        )
        for kind in kinds:
            store = new_store(kind, folder, f"bench-{kind}-{uuid.uuid4().hex[:6]}", server)
            rate, stored, unique, complete, cpu = measure_collector(
                url, publishers, docs, store, folder
            )
            ratios[kind].append(rate / bare)
            print(
                f"serve {store.kind:<11} : {rate:8.0f} docs/s  ratio {rate / bare:.2f}  "
                f"({stored}/{total} stored, lost {total - stored}, stored twice "
                f"{stored - unique}, {complete}/{publishers} sessions complete, "
                f"{cpu / max(stored, 1) * 1e6:.0f} µs CPU per document)"
            )
    # Each round pairs measurements taken back to back, so a round's ratio is the least
    # disturbed by whatever else the machine was doing; the median over rounds is the figure.
    for kind, per_round in ratios.items():
        ratio = statistics.median(per_round)
        print(
            f"ratio {kind} collector/bare per round: "
            f"{', '.join(f'{r:.2f}' for r in per_round)}; median {ratio:.2f}, range "
            f"{min(per_round):.2f}-{max(per_round):.2f}  "
            f"(target >= 0.80: {'ok' if ratio >= 0.8 else 'MISSED'})"
        )


def report_latency(url: str, publishers: int, rate: float, seconds: float, folder: Path,
                   poll_ms: float) -> None:  # fmt: skip
    latencies, seen, total = measure_latency(url, publishers, rate, seconds, folder, poll_ms)
    ms = [x * 1000 for x in latencies]
    p99 = percentile(ms, 99)
    print(
        f"latency at {rate:g} docs/s, publish -> committed row ({seen}/{total} docs, "
        f"poll {poll_ms:g} ms): median {statistics.median(ms):.1f} ms, "
        f"p99 {p99:.1f} ms, max {max(ms):.1f} ms "
        f"(target p99 < 50 ms: {'ok' if p99 < 50 else 'MISSED'})"
    )


PARTS = ("throughput", "latency", "groups")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", help="broker URL (default: a private mosquitto)")
    parser.add_argument("--publishers", type=int, default=50)
    parser.add_argument("--docs", type=int, default=600, help="documents per publisher")
    parser.add_argument("--rate", type=float, default=1000.0, help="documents/s for latency")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run length")
    parser.add_argument("--poll-ms", type=float, default=1.0, help="database poll period")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument(
        "--databases",
        default="sqlite,postgres",
        help="the throughput rounds' collectors, comma-separated: sqlite, postgres",
    )
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server (URL of any database on it); each run makes its own database",
    )
    parser.add_argument("--group-publishers", type=int, default=100)
    parser.add_argument("--group-docs", type=int, default=300, help="documents per publisher")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"which parts, comma-separated: {', '.join(PARTS)}"
    )
    parser.add_argument("--only-groups", action="store_true", help="part 4 alone (--parts groups)")
    args = parser.parse_args()
    parts = ["groups"] if args.only_groups else [p.strip() for p in args.parts.split(",")]
    kinds = [k.strip() for k in args.databases.split(",")]
    for name, given, known in (("part", parts, PARTS), ("database", kinds, ("sqlite", "postgres"))):
        unknown = sorted(set(given) - set(known))
        if unknown:
            parser.error(f"unknown {name} {unknown[0]!r}: choose from {', '.join(known)}")

    broker: Any = None
    url = args.broker
    if url is None:
        broker = start_local_broker()
        url = broker.url
    kind = "mosquitto" if isinstance(broker, MosquittoBroker) else "given/amqtt"
    print(f"broker {url} ({kind}); {args.publishers} publishers at QoS 1")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            folder = Path(tmp)
            if "throughput" in parts:
                report_throughput(
                    url, args.publishers, args.docs, args.rounds, kinds, args.postgres, folder
                )
            if "latency" in parts:
                report_latency(url, args.publishers, args.rate, args.seconds, folder, args.poll_ms)
            if "groups" in parts:
                report_groups(url, args.postgres, args.group_publishers, args.group_docs, folder)
    finally:
        if broker is not None:
            broker.stop()
            if isinstance(broker, MosquittoBroker):
                broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
