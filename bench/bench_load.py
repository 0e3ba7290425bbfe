"""Load benchmark: N simulated rigs (default 1000) against one collector, then two sharing them.

Each rig is a real :class:`agent.daemon.Agent` (``labagent run --sim``'s own
code: engine, simulated mouse, journal, commit check, MQTT link with its Last
Will) at real session timing (time scale 1); 100 of them share one worker
process and its task loop (:class:`agent.fleet.Fleet`, ``bench_load.py worker``)
so that 1000 fit on a small machine. One cohort of one mouse per rig is started
with ``labctl start``, and the bench watches from outside, as any reader would,
until every session is stored whole. A phase then prints:

* **documents/s**: documents stored, over the time from ``labctl start`` to the
  last one stored;
* **ingest lag**, p50 and p99 over every document: from the rig's handing it to
  its broker link (``time.time()`` in the rig's process, the rig's wall clock) to
  its commit in the database. The commit time is when the bench's reader first
  sees the row (it polls every ``POLL_S``): a row is visible only once committed,
  so this is the commit time or a little after, and never before the sending;
* **collector CPU** (% of one core, over the phase) and **peak RSS**, per collector;
* **broker queue depth**: peak of mosquitto's ``$SYS/broker/store/messages/count``
  (messages held for clients, retained ones included);
* **lost / duplicated**: sessions whose export differs from the rig's local
  copy or is missing, and sessions exported more than once;
* **batches refused** and **deadlocks**: the collectors' logged ``refused a batch``
  (each retried) and ``deadlock detected`` lines, counted before the folder goes.

Phase ``one``: one ``labctl serve``. Phase ``two``: two ``labctl serve --group``
processes on an MQTT shared subscription. Both on a fresh PostgreSQL database
each (``--postgres``, default the local server's ``test`` database as the admin
connection) and a private mosquitto with the shipped configuration's queue and
message size limits and MosquittoBroker's in-flight window of 1000 per client
(``--inflight`` changes it; mosquitto's own default is 20).
Every process the bench starts, it stops.

Run: ``python bench/bench_load.py [--rigs 1000] [--phases one,two] [--duration 120]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
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
from measure import cpu_seconds, percentile, rss_mb  # noqa: E402  # bench/ is the script's folder
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from controller.demo.broker import LOOPBACK, MosquittoBroker  # noqa: E402
from shared.sessionfile import read_sessions  # noqa: E402

RIGS_PER_WORKER = 100
TIMEOUT_S = 900.0
#: Seconds between the commit watcher's reads of the documents table.
POLL_S = 0.2


def mouse(box: str) -> str:
    return f"LoadMouse{box}"


# ---------------------------------------------------------------- worker: many agents


def run_worker(args: argparse.Namespace) -> int:
    """Serve ``args.boxes`` rigs in one fleet until SIGTERM; write each document's send time
    to ``args.sent`` when given (the load bench's lags), kept in memory until the end."""
    import logging

    from agent.fleet import serve
    from agent.journal import JournalEntry
    from agent.settings import AgentSettings, BrokerSettings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    host, port = args.broker.rsplit(":", 1)
    folder = Path(args.folder)
    settings = [
        AgentSettings(
            box=box,
            broker=BrokerSettings(host=host, port=int(port)),
            journal=folder / f"rig{box}" / "journal.db",
            data_dir=folder / f"rig{box}" / "data",
            prefix=args.prefix,
            sim=True,
            seed=int(box),
            heartbeat=10.0,
        )
        for box in args.boxes.split(",")
    ]
    if args.sent is None:  # the soak: no lags to measure, so no record that grows per document
        serve(settings)
        return 0
    sent: dict[tuple[str, int], float] = {}

    def on_sent(box: str, entry: JournalEntry) -> None:
        sent.setdefault((entry.session_id, entry.seq), time.time())  # the first sending counts

    serve(settings, on_sent=on_sent)
    rows = [[sid, seq, at] for (sid, seq), at in sent.items()]
    Path(args.sent).write_text(json.dumps(rows), encoding="utf-8")
    return 0


# ---------------------------------------------------------------- measuring from outside


class BrokerQueue:
    """The peak of mosquitto's stored-message count, from its ``$SYS`` topics."""

    def __init__(self, host: str, port: int) -> None:
        self.peak = 0
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-sys-{uuid.uuid4().hex[:6]}"
        )
        self.client.on_message = self._on_message
        self.client.connect(host, port, 30)
        self.client.subscribe("$SYS/broker/store/messages/count")
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):
            self.peak = max(self.peak, int(message.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class CommitWatch:
    """When each document first becomes visible in the database: its commit time, or just after.

    Rows are read by id from a little below the highest id seen (``WINDOW``): two
    collectors commit interleaved batches, so a lower id can become visible after a
    higher one.
    """

    WINDOW = 5000

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.seen: dict[tuple[str, int], float] = {}
        self._top = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commit-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        query = text("SELECT id, session_id, seq FROM documents WHERE id > :low")
        with self.engine.connect() as conn:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):  # the table appears with the collector
                    rows = conn.execute(query, {"low": self._top - self.WINDOW}).fetchall()
                    now = time.time()
                    conn.commit()
                    for row_id, session_id, seq in rows:
                        self.seen.setdefault((session_id, seq), now)
                        self._top = max(self._top, row_id)
                if conn.in_transaction():
                    conn.rollback()
                self._stop.wait(POLL_S)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.engine.dispose()


class Phase:
    """One run: broker, collectors, workers, a fresh database; everything stopped by pid."""

    def __init__(self, name: str, args: argparse.Namespace, folder: Path) -> None:
        self.name = name
        self.args = args
        self.folder = folder
        self.collectors = 2 if name == "two" else 1
        self.boxes = [str(n) for n in range(1, args.rigs + 1)]
        self.prefix = f"load-{uuid.uuid4().hex[:6]}"
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.timed_out = ""
        admin_url = make_url(args.postgres)
        self.db_name = f"reachlab_load_{uuid.uuid4().hex[:8]}"
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        self.db_url = admin_url.set(database=self.db_name).render_as_string(hide_password=False)
        self.db = create_engine(self.db_url)
        # The shipped broker's queue and size limits (docker/mosquitto/mosquitto.conf); the
        # in-flight window is MosquittoBroker's (1000) unless --inflight says otherwise.
        config = "sys_interval 1\nmax_queued_messages 100000\nmessage_size_limit 262144\n"
        if args.inflight is not None:
            config += f"max_inflight_messages {args.inflight}\n"
        self.broker = MosquittoBroker(extra_config=config)
        self.broker.start()
        self.env = {
            **os.environ,
            "LABCTL_DB": self.db_url,
            "LABCTL_BROKER": self.broker.url,
            "LABCTL_PREFIX": self.prefix,
            "PYTHONPATH": str(REPO),
        }

    def spawn(self, name: str, argv: list[str]) -> None:
        logs = self.folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "wb") as log:
            self.children[name] = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def labctl(self, *args: str) -> str:
        """A labctl command, run in this process (typer's runner), as a person would type it."""
        from typer.testing import CliRunner

        from controller.cli import app

        env = {k: self.env[k] for k in ("LABCTL_DB", "LABCTL_BROKER", "LABCTL_PREFIX")}
        result = CliRunner().invoke(app, list(args), env=env)
        if result.exit_code != 0:
            raise RuntimeError(f"labctl {' '.join(args[:3])} failed: {result.output.strip()}")
        return result.stdout

    def setup_mice(self) -> None:
        """One mouse per rig, on its box, and cohort ``Load`` of them all, in one transaction.

        Through the lab's own functions (controller.lab, what ``labctl assign`` and ``labctl
        cohort create`` call), so every rule of theirs holds; a labctl command per mouse took
        1 to 2 s each on a loaded machine, half an hour for 1000 rigs."""
        from controller.db import open_database
        from controller.lab import assign, create_cohort

        started = time.monotonic()
        db = open_database(self.db_url)
        try:
            with db.session() as tx:
                for box in self.boxes:
                    assign(tx, mouse(box), box)
                create_cohort(tx, "Load", [mouse(box) for box in self.boxes])
        finally:
            db.close()
        print(f"  {len(self.boxes)} mice assigned in {time.monotonic() - started:.1f} s")

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                log = (self.folder / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {child.returncode}:\n{log}")

    def wait(self, what: str, condition: Any, timeout: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.5)  # polling other processes: there is no event to wait on

    def start(self) -> None:
        for n in range(1, self.collectors + 1):
            argv = [sys.executable, "-m", "controller.cli", "serve"]
            if self.collectors > 1:
                argv += ["--group", "load", "--client-id", f"{self.prefix}-collector{n}"]
            self.spawn(f"collector{n}", argv)
        for start in range(0, len(self.boxes), RIGS_PER_WORKER):
            chunk = self.boxes[start : start + RIGS_PER_WORKER]
            self.spawn(
                f"worker{start // RIGS_PER_WORKER + 1}",
                [
                    sys.executable, str(Path(__file__).resolve()), "worker",
                    "--broker", f"{LOOPBACK}:{self.broker.port}",
                    "--prefix", self.prefix, "--folder", str(self.folder),
                    "--sent", str(self.folder / f"sent{start // RIGS_PER_WORKER + 1}.json"),
                    "--boxes", ",".join(chunk),
                ],
            )  # fmt: skip

    def seen_boxes(self) -> int:
        rows = json.loads(self.labctl("status", "--json"))["boxes"]
        return sum(1 for r in rows if r["state"] == "idle" and r["last_seen_age"] is not None)

    def sessions_stored(self) -> tuple[int, int]:
        """(sessions whose every document 0..session_end is stored, documents stored)."""
        query = text(
            "SELECT COUNT(*), MAX(seq), SUM(CASE WHEN kind = 'session_end' THEN 1 ELSE 0 END) "
            "FROM documents GROUP BY session_id"
        )
        with self.db.connect() as conn:
            rows = conn.execute(query).fetchall()
        whole = sum(1 for count, top, ends in rows if ends and count == top + 1)
        return whole, sum(int(r[0]) for r in rows)

    def local_copy(self, box: str) -> Path:
        return self.folder / f"rig{box}" / "data" / f"{mouse(box)}.json"

    def run(self) -> dict[str, Any]:
        queue = BrokerQueue(LOOPBACK, self.broker.port)
        self.watch = CommitWatch(self.db_url)
        try:
            self.start()
            self.wait("every rig online and seen", lambda: self.seen_boxes() == len(self.boxes))
            self.setup_mice()
            pids = {n: c.pid for n, c in self.children.items() if n.startswith("collector")}
            cpu_before = {n: cpu_seconds(p) for n, p in pids.items()}
            peak_rss = dict.fromkeys(pids, 0.0)
            started = time.time()
            out = self.labctl(
                "start",
                "--cohort",
                "Load",
                "--duration",
                f"{self.args.duration:g}",
                "--timeout",
                "60",
            )
            print(f"  {out.strip().splitlines()[-1]}")
            whole = 0

            def all_stored() -> bool:
                nonlocal whole
                for n, p in pids.items():
                    peak_rss[n] = max(peak_rss[n], rss_mb(p))
                whole, _ = self.sessions_stored()
                return whole >= len(self.boxes)

            try:
                self.wait("every session stored whole", all_stored)
                self.timed_out = ""
            except TimeoutError as exc:  # reported with the figures reached, not as a crash
                self.timed_out = str(exc)
            wall = time.time() - started
            cpu = {n: (cpu_seconds(p) - cpu_before[n]) / wall * 100 for n, p in pids.items()}
            return self.figures(started, wall, cpu, peak_rss, queue.peak)
        finally:
            queue.close()
            self.watch.close()

    def figures(
        self, started: float, wall: float, cpu: dict[str, float], rss: dict[str, float], peak: int
    ) -> dict[str, Any]:
        with self.db.connect() as conn:
            documents = int(conn.execute(text("SELECT COUNT(*) FROM documents")).scalar() or 0)
            last = float(conn.execute(text("SELECT MAX(received_at) FROM documents")).scalar() or 0)
        whole, _ = self.sessions_stored()
        # Judged by the commands: the export against the rigs' own copies.
        if not self.timed_out:
            self.wait("the export to equal the local copies", lambda: self.compare()[0] == 0, 120)
        lost, duplicated = self.compare()
        logs = [self.folder / "logs" / f"{n}.log" for n in self.children if n.startswith("coll")]
        texts = [log.read_text(errors="replace") for log in logs]
        drops = sum(t.count("lost the broker") for t in texts)
        # Each retried, none lost; counted because the logs go with the phase's folder.
        refused = sum(t.count("refused a batch") for t in texts)
        deadlocks = sum(t.count("deadlock detected") for t in texts)
        sent = self.stop_workers()
        lags = [self.watch.seen[key] - at for key, at in sent.items() if key in self.watch.seen]
        return {
            "phase": self.name,
            "rigs": len(self.boxes),
            "collectors": self.collectors,
            "documents": documents,
            "documents_per_s": round(documents / max(1e-9, last - started), 1),
            "ingest_lag_p50_s": round(statistics.median(lags), 3) if lags else None,
            "ingest_lag_p99_s": round(percentile(lags, 99), 3) if lags else None,
            "ingest_lag_min_s": round(min(lags), 3) if lags else None,
            "lag_documents": len(lags),
            "documents_sent": len(sent),
            "collector_cpu_percent": {n: round(v, 1) for n, v in cpu.items()},
            "collector_peak_rss_mb": {n: round(v, 1) for n, v in rss.items()},
            "broker_queue_peak": peak,
            "sessions_stored_whole": whole,
            "collector_reconnects": drops,
            "batches_refused": refused,
            "deadlocks": deadlocks,
            "timed_out": self.timed_out or None,
            "sessions_lost": lost,
            "sessions_duplicated": duplicated,
            "wall_s": round(wall, 1),
            "load_average_1min_at_end": round(os.getloadavg()[0], 1),
        }

    def stop_workers(self) -> dict[tuple[str, int], float]:
        """Stop the rigs' processes; the send time of every document they published."""
        workers = {n: c for n, c in self.children.items() if n.startswith("worker")}
        for child in workers.values():
            child.send_signal(signal.SIGTERM)
        sent: dict[tuple[str, int], float] = {}
        for name, child in workers.items():
            child.wait(timeout=120)
            for session_id, seq, at in json.loads(
                (self.folder / f"sent{name[6:]}.json").read_text()
            ):
                sent[(session_id, seq)] = at
        return sent

    def compare(self) -> tuple[int, int]:
        """(sessions missing or unequal in the export, sessions exported more than once)."""
        out = Path(tempfile.mkdtemp(dir=self.folder, prefix="export-"))
        self.labctl("export", "--all", "--out", str(out))
        lost = duplicated = 0
        for box in self.boxes:
            exported = out / f"{mouse(box)}.json"
            ours = read_sessions(exported) if exported.exists() else []
            theirs = read_sessions(self.local_copy(box))
            ids = [s.get("session_id") for s in ours]
            duplicated += len(ids) - len(set(ids))
            lost += sum(1 for s in theirs if s not in ours)
        return lost, duplicated

    def close(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
        self.broker.close()
        self.db.dispose()
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        self.admin.dispose()


def run_bench(args: argparse.Namespace) -> int:
    results = []
    for name in args.phases.split(","):
        folder = Path(tempfile.mkdtemp(prefix=f"reachlab-load-{name}-"))
        print(f"phase {name}: {args.rigs} rigs, {args.duration:g} s sessions in real time, "
              f"files in {folder}, load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        phase = Phase(name, args, folder)
        try:
            results.append(phase.run())
        finally:
            phase.close()
        if not results[-1]["timed_out"]:
            shutil.rmtree(folder)  # kept, with the logs, when the phase failed or timed out
        print(json.dumps(results[-1], indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    ok = all(r["sessions_lost"] == r["sessions_duplicated"] == 0 for r in results)
    return 0 if ok and not any(r["timed_out"] for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    worker = sub.add_parser("worker", help="(internal) serve some of the rigs")
    worker.add_argument("--broker", required=True)
    worker.add_argument("--prefix", required=True)
    worker.add_argument("--folder", required=True)
    worker.add_argument(
        "--sent", help="file for the documents' send times (none kept without it: the soak)"
    )
    worker.add_argument("--boxes", required=True)
    parser.add_argument("--rigs", type=int, default=1000)
    parser.add_argument("--phases", default="one,two", help="one, two or one,two")
    parser.add_argument("--duration", type=float, default=120, help="seconds per session")
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/test",
        help="admin URL of the PostgreSQL server; each phase gets a fresh database on it",
    )
    parser.add_argument(
        "--inflight",
        type=int,
        help="the broker's max_inflight_messages per client (default: MosquittoBroker's, 1000)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.mode == "worker":
        return run_worker(args)
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
