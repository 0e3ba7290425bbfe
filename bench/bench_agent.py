"""Benchmark of the rig agent: idle cost, and document-to-PUBACK latency through the journal.

1. A real ``labagent run --sim`` process, connected and idle for ``--idle`` seconds:
   its CPU use (from ``/proc/<pid>/stat``), resident memory (``/proc/<pid>/status``)
   and wake-ups (context switches), against the targets idle CPU < 1 %,
   RSS < 60 MB and no busy polling.
2. The agent's own delivery path at ``--rate`` documents per second on the
   real-time task loop: each document is committed to the SQLite journal
   (synchronous=FULL), published at QoS 1 through paho by the outbox, and its
   PUBACK recorded back in the journal. The latency is from the document's
   creation to that record (target p99 < 20 ms on loopback).

The broker is ``--broker URL`` if given, else a private mosquitto (or the
embedded amqtt broker) started here. Every process the bench starts, it stops.

Run: ``python bench/bench_agent.py [--idle 10] [--docs 1000] [--rate 100] [--broker URL]``
"""

from __future__ import annotations

import argparse
import os
import signal
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
from measure import cpu_seconds, percentile  # noqa: E402  # bench/ is the script's folder
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.clock import EventLoop  # noqa: E402
from agent.journal import Journal, JournalEntry  # noqa: E402
from agent.mqtt import MqttLink, Outbox  # noqa: E402
from agent.settings import BrokerSettings  # noqa: E402
from controller.demo.broker import start_local_broker  # noqa: E402
from shared.broker_url import parse_broker_url  # noqa: E402
from shared.documents import Reward, SessionStart  # noqa: E402
from shared.protocol import Topics, parse_status  # noqa: E402

# ---------------------------------------------------------------- 1. idle agent


def proc_status(pid: int) -> dict[str, str]:
    rows = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (row.partition(":") for row in rows)}


def wakeups(pid: int) -> int:
    """Context switches of every thread of ``pid``: how often it woke up."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = _task_status(task)
        total += int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
    return total


def _task_status(task: Path) -> dict[str, str]:
    rows = (task / "status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (row.partition(":") for row in rows)}


def wait_for_idle_status(url: str, prefix: str, box: str, timeout: float = 30.0) -> None:
    """Block until the agent's retained status says idle: it is up and connected."""
    address = parse_broker_url(url)
    ready = threading.Event()

    def on_message(client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        if parse_status(bytes(message.payload)).state == "idle":
            ready.set()

    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(Topics(prefix).status(box), 1)
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        if not ready.wait(timeout):
            raise SystemExit(f"the agent did not come up within {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()


def bench_idle(url: str, seconds: float, folder: Path) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    argv = [
        sys.executable, "-m", "agent.cli", "run", "--box", "bench", "--sim",
        "--broker", url, "--prefix", prefix,
        "--journal", str(folder / "journal.sqlite3"), "--data-dir", str(folder / "data"),
    ]  # fmt: skip
    log = open(folder / "agent.log", "wb")  # noqa: SIM115  # closed below, after the process
    process = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for_idle_status(url, prefix, "bench")
        pid = process.pid
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        switches0 = wakeups(pid)
        time.sleep(seconds)  # the measurement window itself
        cpu1, wall1 = cpu_seconds(pid), time.monotonic()
        switches1 = wakeups(pid)
        status = proc_status(pid)
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        cpu_percent = (cpu1 - cpu0) / (wall1 - wall0) * 100
        rss_mb = int(status["VmRSS"].split()[0]) / 1024
        print(f"idle agent (labagent run --sim, connected, {seconds:g} s window, pid {pid})")
        print(f"  CPU: {cpu_percent:.2f} % of one core (target < 1 %)")
        peak_mb = int(status["VmHWM"].split()[0]) / 1024
        print(f"  RSS: {rss_mb:.1f} MB (target < 60 MB); peak {peak_mb:.1f} MB")
        print(
            f"  threads: {len(tasks)}; wake-ups of all threads: "
            f"{(switches1 - switches0) / (wall1 - wall0):.1f}/s (a busy poll would be thousands)"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


# ---------------------------------------------------------------- 2. document -> PUBACK


class _Forward:
    """The link's listener: hands connection changes and PUBACKs to the outbox."""

    def __init__(self, outbox_ref: list[Outbox], connected: threading.Event) -> None:
        self._outbox = outbox_ref
        self._connected = connected

    def link_connected(self) -> None:
        self._outbox[0].connected()
        self._connected.set()

    def link_disconnected(self, reason: str) -> None:
        self._outbox[0].disconnected()

    def link_message(self, topic: str, payload: bytes, retained: bool) -> None:
        pass

    def link_acked(self, mids: list[int]) -> None:
        self._outbox[0].acked(mids)


def bench_latency(url: str, count: int, rate: float, folder: Path) -> None:
    address = parse_broker_url(url)
    loop = EventLoop(time_scale=1.0)
    journal = Journal.open(folder / "latency.sqlite3")
    topics = Topics(f"bench-{uuid.uuid4().hex[:8]}")
    created: dict[int, float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def on_acked(entries: list[JournalEntry]) -> None:
        now = time.perf_counter()
        for entry in entries:
            start = created.pop(entry.id, None)
            if start is not None:
                latencies.append(now - start)
        if len(latencies) >= count:
            done.set()
            loop.stop()

    outbox_ref: list[Outbox] = []
    connected = threading.Event()
    link = MqttLink(
        BrokerSettings(host=address.host, port=address.port),
        client_id=f"bench-{uuid.uuid4().hex[:8]}",
        will=(topics.status("bench"), b"{}"),
        subscriptions=[],
        dispatch=loop.call_soon_threadsafe,
        listener=_Forward(outbox_ref, connected),
    )
    outbox = Outbox(journal, link, topics.events("bench"), on_acked=on_acked)
    outbox_ref.append(outbox)
    session_id = uuid.uuid4().hex
    seq = 0

    def emit() -> None:
        nonlocal seq
        t0 = time.perf_counter()
        if seq == 0:
            doc: Any = SessionStart(
                session_id=session_id, box="bench", seq=0, t=loop.now(), mouse="BenchMouse",
                settings={}, software_version="bench",
            )  # fmt: skip
        else:
            doc = Reward(
                session_id=session_id, box="bench", seq=seq, t=loop.now(), spout=0, duration_ms=70
            )
        seq += 1
        entry = journal.append(doc)  # on disk (fsync) before it is published
        created[entry.id] = t0
        outbox.pump()

    thread = threading.Thread(target=loop.run, kwargs={"idle_exit": False}, daemon=True)
    thread.start()
    link.start()
    if not connected.wait(15):
        raise SystemExit(f"could not connect to {url}")
    for i in range(count):
        loop.call_later(0.2 + i / rate, emit)
    finished = done.wait(count / rate + 30)
    loop.stop()
    thread.join(5)
    link.close()
    journal.close()
    if not finished:
        raise SystemExit(f"only {len(latencies)} of {count} documents were acknowledged")
    ms = [v * 1000 for v in latencies]
    print(f"document created -> journalled (FULL) -> QoS 1 PUBACK recorded, {rate:g} docs/s")
    print(f"  documents: {len(ms)}, broker {url}")
    print(
        f"  latency: median {statistics.median(ms):.2f} ms, p90 {percentile(ms, 90):.2f} ms, "
        f"p99 {percentile(ms, 99):.2f} ms (target < 20 ms), max {max(ms):.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--idle", type=float, default=10.0, help="idle window in seconds")
    parser.add_argument("--docs", type=int, default=1000, help="documents for the latency run")
    parser.add_argument("--rate", type=float, default=100.0, help="documents per second")
    parser.add_argument("--broker", metavar="URL", help="use this broker instead of starting one")
    args = parser.parse_args()

    broker = None
    url = args.broker
    if url is None:
        broker = start_local_broker()
        url = broker.url
    try:
        with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
            if args.idle > 0:
                bench_idle(url, args.idle, Path(tmp))
            if args.docs > 0:
                bench_latency(url, args.docs, args.rate, Path(tmp))
    finally:
        if broker is not None:
            broker.stop()
            close = getattr(broker, "close", None)
            if close is not None:
                close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
