"""Benchmark of the alerts: a rig's SIGKILL mid-session to the alert at the receiver, and
the alerting process's idle cost.

A private broker, a SQLite lab, ``labctl serve``, one ``labagent run --sim`` rig and
``labctl watch`` (its default ``--every 10``) sending to a local JSON webhook through
Apprise. Each run starts a session, SIGKILLs the rig mid-session, and times from the
kill to the ``rig-offline`` message's arrival at the webhook; the rig is then started
again (its session closed as aborted, the alert cleared) for the next run. Then the
lab idles (rig online, idle) and the watch process's CPU and resident memory are read
from /proc over ``--idle`` seconds. Every process the bench starts, it stops by pid.

Run: ``python bench/bench_alerts.py [--runs 5] [--idle 30]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from measure import cpu_seconds, rss_mb  # noqa: E402  # bench/ is the script's folder

from controller.demo.broker import start_local_broker  # noqa: E402
from tests.receivers import WebhookReceiver, titles  # noqa: E402

BOX = "1"
MOUSE = "BenchMouse"


class Lab:
    def __init__(self, folder: Path, broker_url: str) -> None:
        self.folder = folder
        self.broker_url = broker_url
        self.env = {
            **os.environ, "LABCTL_DB": f"sqlite:///{folder / 'lab.db'}",
            "LABCTL_BROKER": broker_url, "LABCTL_PREFIX": f"bench-{uuid.uuid4().hex[:6]}",
            "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.folder / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, *argv], cwd=REPO, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.children[name] = proc
        return proc

    def start_rig(self) -> subprocess.Popen[bytes]:
        rig = self.folder / "rig"
        return self.start("rig", [
            "-m", "agent.cli", "run", "--box", BOX, "--broker", self.broker_url,
            "--prefix", self.env["LABCTL_PREFIX"], "--sim", "--time-scale", "60",
            "--heartbeat", "2", "--journal", str(rig / "journal.db"),
            "--data-dir", str(rig / "data"),
        ])  # fmt: skip

    def labctl(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "controller.cli", *args], cwd=REPO, env=self.env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"labctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def box(self) -> dict[str, object]:
        rows = json.loads(self.labctl("status", "--json"))["boxes"]
        return next((r for r in rows if r["box"] == BOX), {})

    def stop_all(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.children.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _more_than(hook: WebhookReceiver, count: int) -> bool:
    return titles(hook).count("reachlab rig-offline") > count


def wait(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_alerts: timed out waiting for {what}")
        time.sleep(0.05)  # another process's state: there is nothing to wait on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args()
    broker = start_local_broker()
    hook = WebhookReceiver()
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp), broker.url)
        try:
            lab.labctl("alerts", "add", hook.url, "--only", "rig-offline")
            lab.labctl("assign", MOUSE, "--box", BOX)
            lab.start("collector", ["-m", "controller.cli", "serve"])
            lab.start_rig()
            wait(lambda: lab.box().get("state") == "idle", "the rig idle")
            watch = lab.start("watch", ["-m", "controller.cli", "watch"])
            latencies = []
            for run in range(1, args.runs + 1):
                lab.labctl("start", MOUSE, "--duration", "36000")
                wait(lambda: lab.box().get("trial") not in (None, 0), "a trial")
                before = titles(hook).count("reachlab rig-offline")
                rig = lab.children.pop("rig")
                killed = time.time()
                os.kill(rig.pid, signal.SIGKILL)
                rig.wait(timeout=10)
                wait(partial(_more_than, hook, before), "the alert")
                with hook.cond:
                    arrived = [m for m in hook.messages if m.title == "reachlab rig-offline"][-1]
                latencies.append(arrived.at - killed)
                print(f"run {run}: SIGKILL -> alert at the webhook {latencies[-1]:.3f} s")
                lab.start_rig()
                wait(lambda: lab.box().get("state") == "idle", "the rig idle again")
            print(
                f"SIGKILL -> alert: median {statistics.median(latencies):.3f} s, "
                f"max {max(latencies):.3f} s over {len(latencies)} runs"
            )
            time.sleep(5)  # let the last clearing and the aborted session settle first
            cpu0, t0 = cpu_seconds(watch.pid), time.monotonic()
            time.sleep(args.idle)  # the measured idle period itself
            cpu1, t1 = cpu_seconds(watch.pid), time.monotonic()
            print(
                f"labctl watch idle ({args.idle:g} s, one rig online): CPU "
                f"{100 * (cpu1 - cpu0) / (t1 - t0):.2f} % of a core, RSS {rss_mb(watch.pid):.1f} MB"
            )
        finally:
            lab.stop_all()
            hook.close()
            broker.stop()


if __name__ == "__main__":
    main()
