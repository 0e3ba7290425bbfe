"""Benchmark of ``labctl web``: status message to browser update, and the idle server's cost.

A real ``labctl web`` process serves the rigs page for ``--boxes`` simulated
boxes whose retained statuses this bench publishes itself (QoS 1, as the agents
do). A headless Chromium (the system's, through Playwright) shows the page; a
MutationObserver in the page stamps each change of a card's trial count with the
wall clock.

1. **Latency**: every box sends a new status once a second (the agents' most
   frequent status rate while a session runs), spread over the second, for
   ``--seconds`` s. Each message's publish time (just before ``publish``) is
   paired with the time its trial count appeared in the page's DOM: median, p99
   and max, and how many arrived at all. The baseline, measured in the same run:
   the same messages' arrival at a plain paho subscriber (the broker alone).
2. **Idle**: ``--viewers`` pages open on the rigs page, nothing published, for
   ``--idle`` s: the server's CPU (user + system, all threads, from
   ``/proc/<pid>/stat``) as a share of one core, and its resident memory.
3. **Cohort** (run first; alone with ``--only cohort``, which needs no broker
   and no browser): a cohort of ``--mice`` mice with ``--sessions`` stored
   sessions each (``--trials`` trials), imported into SQLite. The cohort's JSON
   (``/api/cohort?name=``, what the cohort page draws) is timed in-process
   without the curve cache (a cache of size 0, the path every request took when
   the cohort had more mice than the old per-mouse cache held), cold (the first
   request of a new server) and warm (median of 5 after it); then over HTTP from
   a real ``labctl web``: the cohort page, and its JSON cold and warm, with the
   server's resident memory before and after the cold request (the cache).

Every process the bench starts, it stops. Needs the web extra, playwright and a
Chromium (``/usr/bin/chromium`` or ``REACHLAB_CHROMIUM``).

Run: ``python bench/bench_web.py [--boxes 100] [--seconds 10] [--viewers 5] [--idle 20]
[--mice 600] [--sessions 20] [--trials 60] [--only live|cohort]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx2 as httpx  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from measure import cpu_seconds, percentile, rss_mb  # noqa: E402  # bench/ is the script's folder
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from controller.db import open_database  # noqa: E402
from controller.demo.broker import find_free_port, start_local_broker  # noqa: E402
from controller.files import import_sessions  # noqa: E402
from controller.lab import create_cohort  # noqa: E402
from controller.web.pages import Pages  # noqa: E402
from shared.broker_url import parse_broker_url  # noqa: E402
from shared.protocol import Status, Topics, encode  # noqa: E402

#: Stamps every change of a card's trial count: window.__seen["box/trial"] = wall ms.
OBSERVER = """
() => {
  window.__seen = {};
  const cards = document.getElementById('cards');
  new MutationObserver((records) => {
    const t = performance.timeOrigin + performance.now();
    for (const r of records) {
      const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const dd = node && node.closest('[data-f="trial"]');
      if (!dd) continue;
      const box = dd.closest('article').dataset.box;
      const key = box + '/' + dd.textContent;
      if (!(key in window.__seen)) window.__seen[key] = t;
    }
  }).observe(cards, { subtree: true, childList: true, characterData: true });
}
"""


def chromium() -> str:
    path = os.environ.get("REACHLAB_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).is_file():
        raise SystemExit(f"bench_web: no Chromium at {path} (apt-get install chromium)")
    return path


class Publisher:
    """The boxes: one paho client publishing every box's retained status; a second one
    subscribed to them stamps their arrival, the baseline (the broker alone)."""

    def __init__(self, url: str, topics: Topics) -> None:
        settings = parse_broker_url(url)
        self.topics = topics
        self.arrived: dict[str, float] = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4()}")
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()
        self.baseline = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"base-{uuid.uuid4()}")
        self.baseline.on_message = self._arrived
        self.baseline.connect(settings.host, settings.port)
        self.baseline.subscribe(topics.all_rigs("status"), qos=1)
        self.baseline.loop_start()

    def _arrived(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        now = time.time()
        if message.payload:
            status = json.loads(message.payload)
            self.arrived.setdefault(f"{status['box']}/{status['trial']}", now)

    def status(self, box: str, trial: int) -> float:
        status = Status(
            box=box, state="running", mouse=f"Mouse{box}", session_id=f"bench-{box}",
            trial=trial, rewards=trial // 2, clock=time.time(),
        )  # fmt: skip
        payload = encode(status)
        sent = time.time()
        self.client.publish(self.topics.status(box), payload, qos=1, retain=True)
        return sent

    def clear(self, boxes: list[str]) -> None:
        for box in boxes:
            self.client.publish(self.topics.status(box), b"", qos=1, retain=True).wait_for_publish(
                5
            )
        for client in (self.client, self.baseline):
            client.disconnect()
            client.loop_stop()


def wait(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_web: timed out waiting for {what}")
        time.sleep(0.05)  # polling another process; there is no event to wait on


def open_rigs(page: Page, url: str, boxes: int) -> None:
    page.goto(f"{url}/rigs")
    page.wait_for_function(
        f"document.querySelectorAll('article.card').length >= {boxes}", timeout=60_000
    )


def heap_mb(page: Page) -> float:
    """The page's live JavaScript heap after a full garbage collection (Chrome DevTools)."""
    session = page.context.new_cdp_session(page)
    try:
        session.send("HeapProfiler.collectGarbage")
        session.send("Performance.enable")
        metrics = session.send("Performance.getMetrics")["metrics"]
    finally:
        session.detach()
    return float(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize")) / 2**20


def measure_latency(
    page: Page, publisher: Publisher, boxes: list[str], seconds: float, pid: int
) -> None:
    heap_before, rss_before = heap_mb(page), rss_mb(pid)
    page.evaluate(OBSERVER)
    sent: dict[str, float] = {}
    gap = 1.0 / len(boxes)
    start = time.monotonic()
    trial = 1
    while time.monotonic() - start < seconds:
        for box in boxes:
            sent[f"{box}/{trial}"] = publisher.status(box, trial)
            target = start + (trial - 1) + (boxes.index(box) + 1) * gap
            pause = target - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the publisher at one status per box per second
        trial += 1
    last = max(sent, key=lambda key: sent[key])
    wait(lambda: page.evaluate(f"'{last}' in window.__seen"), "the last update to show", 30)
    time.sleep(1.0)  # let stragglers land before reading the stamps
    seen: dict[str, float] = page.evaluate("window.__seen")
    latencies = [seen[key] - sent[key] * 1000 for key in sent if key in seen]
    arrived = publisher.arrived
    baseline = [(arrived[key] - sent[key]) * 1000 for key in sent if key in arrived]
    print(f"status message -> rigs page DOM, {len(boxes)} boxes x 1 status/s, {seconds:g} s")
    print(f"  messages: {len(sent)}, shown: {len(latencies)}")
    print(
        f"  latency ms: median {statistics.median(latencies):.1f}, "
        f"p99 {percentile(latencies, 99):.1f}, max {max(latencies):.1f} (target < 1000)"
    )
    print(
        f"  baseline, the same messages to a paho subscriber: median "
        f"{statistics.median(baseline):.2f}, p99 {percentile(baseline, 99):.2f} ms"
    )
    page.evaluate("window.__seen = {}")  # the bench's own stamps are not the page's memory
    print(
        f"  page JS heap after GC: {heap_before:.1f} MB before, {heap_mb(page):.1f} MB after; "
        f"server RSS {rss_before:.1f} MB before, {rss_mb(pid):.1f} MB after"
    )


def measure_idle(pages: list[Page], pid: int, seconds: float) -> None:
    time.sleep(2.0)  # the pages' first loads settle
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # the window being measured
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - t0
    for page in pages:
        page.wait_for_function("document.getElementById('live').textContent === 'live'")
    print(f"idle server, {len(pages)} viewers on the rigs page, {seconds:g} s window (pid {pid})")
    print(f"  CPU: {100 * used / elapsed:.2f} % of one core; RSS {rss_mb(pid):.1f} MB")


# ---------------------------------------------------------------- the cohort page


def sessions_of(mouse: int, count: int, trials: int) -> list[dict[str, Any]]:
    """A mouse's stored history in the original file shape, better day by day."""
    rng = random.Random(mouse)
    out = []
    for number in range(count):
        start = 1_700_000_000.0 + mouse * 7 + number * 86400
        rate = min(0.95, 0.3 + 0.05 * number)
        rows = []
        for n in range(trials):
            roll = rng.random()
            outcome = 1 if roll < rate else (2 if roll < rate + (1 - rate) / 2 else 0)
            t = start + 20 * n
            rows.append({"start": t, "end": t + 1.5, "spout": rng.randint(0, 1),
                         "cue_duration": 10000.0 * 0.99**number, "outcome": outcome,
                         "spout_position": [1 + number // 2, 1 + number // 3],
                         "shaping": False})  # fmt: skip
        out.append({"trainer": "bench", "notes": "", "trials": rows, "resets": [],
                    "spontaneous_reaches": [], "start_time": start, "end_time": start + 20 * trials,
                    "date": time.strftime("%Y-%m-%d", time.gmtime(start))})  # fmt: skip
    return out


def timed(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def measure_cohort(scratch: Path, mice: int, sessions: int, trials: int) -> None:
    db_url = f"sqlite:///{scratch / 'cohort.db'}"
    db = open_database(db_url)
    names = [f"M{n:04d}" for n in range(1, mice + 1)]
    t0 = time.perf_counter()
    with db.engine.begin() as conn:
        for n, mouse in enumerate(names, 1):
            import_sessions(conn, mouse, sessions_of(n, sessions, trials))
    with db.session() as tx:
        create_cohort(tx, "BIG", names)
    print(f"cohort page: {mice} mice x {sessions} sessions x {trials} trials "
          f"({time.perf_counter() - t0:.0f} s to import; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")  # fmt: skip
    try:
        uncached = [timed(lambda: Pages(db, cache_limit=0).cohort_json("BIG")) for _ in range(3)]
        pages = Pages(db)
        cold = timed(lambda: pages.cohort_json("BIG"))
        warm = [timed(lambda: pages.cohort_json("BIG")) for _ in range(5)]
        base, hot = statistics.median(uncached), statistics.median(warm)
        print(f"  in-process, the cohort's JSON: uncached median {base:.2f} s; cold {cold:.2f} s; "
              f"warm median {hot:.3f} s, max {max(warm):.3f} s; uncached / warm = "
              f"{base / hot:.0f}x; {pages.cached} session points cached")  # fmt: skip
    finally:
        db.close()
    port = find_free_port()
    env = {**os.environ, "LABCTL_DB": db_url, "LABCTL_BROKER": "mqtt://127.0.0.1:1"}
    web = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "web", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    site = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: answers(site), "labctl web to answer")
        with httpx.Client(timeout=120) as client:

            def get(path: str) -> None:
                assert client.get(f"{site}{path}").status_code == 200

            page = timed(lambda: get("/cohort?name=BIG"))
            before = rss_mb(web.pid)
            cold = timed(lambda: get("/api/cohort?name=BIG"))
            after = rss_mb(web.pid)
            warm = [timed(lambda: get("/api/cohort?name=BIG")) for _ in range(5)]
            size = len(client.get(f"{site}/api/cohort?name=BIG").content) / 2**20
        print(
            f"  over HTTP from labctl web: /cohort page {1000 * page:.1f} ms; /api/cohort "
            f"({size:.1f} MB of JSON) cold {cold:.2f} s, warm median "
            f"{statistics.median(warm):.3f} s, max {max(warm):.3f} s (target < 0.5 s); "
            f"server RSS {before:.0f} MB before the cold request, {after:.0f} MB after"
        )
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=15)


def answers(site: str) -> bool:
    try:
        return httpx.get(f"{site}/api/info", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--boxes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--viewers", type=int, default=5)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--broker", help="an mqtt:// URL (default: a private broker)")
    parser.add_argument("--mice", type=int, default=600)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--only", choices=("live", "cohort"))
    args = parser.parse_args()
    if args.only != "live":
        with tempfile.TemporaryDirectory() as scratch:
            measure_cohort(Path(scratch), args.mice, args.sessions, args.trials)
    if args.only == "cohort":
        return 0
    browser_path = chromium()
    broker = None if args.broker else start_local_broker()
    url = args.broker or (broker.url if broker else "")
    topics = Topics(f"bench-web-{uuid.uuid4().hex[:8]}")
    boxes = [str(n) for n in range(1, args.boxes + 1)]
    web: subprocess.Popen[bytes] | None = None
    publisher = Publisher(url, topics)
    try:
        for box in boxes:
            publisher.status(box, 0)
        with tempfile.TemporaryDirectory() as scratch:
            db_url = f"sqlite:///{Path(scratch) / 'lab.db'}"
            open_database(db_url).close()
            port = find_free_port()
            env = {**os.environ, "LABCTL_DB": db_url, "LABCTL_BROKER": url,
                   "LABCTL_PREFIX": topics.prefix}  # fmt: skip
            web = subprocess.Popen(
                [sys.executable, "-m", "controller.cli", "web", "--port", str(port)],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            site = f"http://127.0.0.1:{port}"
            wait(lambda: answers(site), "labctl web to answer")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
                try:
                    page = browser.new_page()
                    open_rigs(page, site, len(boxes))
                    measure_latency(page, publisher, boxes, args.seconds, web.pid)
                    viewers = [page]
                    for _ in range(args.viewers - 1):
                        viewer = browser.new_page()
                        open_rigs(viewer, site, len(boxes))
                        viewers.append(viewer)
                    measure_idle(viewers, web.pid, args.idle)
                finally:
                    browser.close()
    finally:
        if web is not None and web.poll() is None:
            web.send_signal(signal.SIGTERM)
            web.wait(timeout=15)
        publisher.clear(boxes)
        if broker is not None:
            broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
