"""Soak benchmark: 20 rigs running back-to-back short sessions for an hour; memory and journal.

Rig 1 is a real ``labagent run --sim`` process (the agent whose memory is
watched); rigs 2-20 are real agents in one fleet process (:mod:`agent.fleet`).
One ``labctl serve`` stores into a fresh PostgreSQL database, and one ``labctl
web`` serves the dashboard, its rigs page and a mouse page read every sample (as
a lab's screen would). Rounds follow each other for ``--minutes``: every mouse
starts a ``--duration`` session, and the next round starts once every session of
this one is stored whole.

Every ``--every`` seconds the bench samples the resident memory (RSS) of the
collector, the web server, the agent and the fleet, and the size of the agent's
journal (its file with the WAL). It prints the samples and, per process, the
growth after the first ten minutes (``--settle``): the highest RSS after it over
the RSS at it. It passes when no process grew beyond 10 %, the journal's size at
the end is no more than 10 % over its peak in the first ten minutes (bounded: an
SQLite file grows by whole pages, so a page or two over that peak is not growth),
and no session was lost or duplicated. Every process the bench starts, it stops.

Run: ``python bench/bench_soak.py [--minutes 60] [--duration 60] [--every 30]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import bench_load  # bench/ is the script's folder
from bench_load import REPO, Phase, mouse
from measure import rss_mb

from controller.demo.broker import LOOPBACK, find_free_port, wait_for_port

RIGS = 20
#: The journal's size in the first ten minutes may be exceeded by this much at the end.
GROWTH_LIMIT = 0.10


class Soak(Phase):
    """The load bench's phase with rig 1 on its own agent process and a web server added."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        super().__init__("soak", args, folder)
        self.web_port = find_free_port()

    def start(self) -> None:
        self.spawn("collector1", [sys.executable, "-m", "controller.cli", "serve"])
        self.spawn(
            "web",
            [sys.executable, "-m", "controller.cli", "web", "--port", str(self.web_port)],
        )
        rig = self.folder / "rig1"
        self.spawn(
            "agent",
            [
                sys.executable, "-m", "agent.cli", "run", "--sim", "--box", "1",
                "--broker", self.broker.url, "--prefix", self.prefix,
                "--journal", str(rig / "journal.db"), "--data-dir", str(rig / "data"),
                "--seed", "1",
            ],
        )  # fmt: skip
        self.spawn(
            "worker1",
            [
                sys.executable, str(Path(bench_load.__file__).resolve()), "worker",
                "--broker", f"{LOOPBACK}:{self.broker.port}",
                "--prefix", self.prefix, "--folder", str(self.folder),
                "--boxes", ",".join(self.boxes[1:]),
            ],
        )  # fmt: skip
        if not wait_for_port(LOOPBACK, self.web_port, 60):
            raise RuntimeError("labctl web did not listen within 60 s")

    def journal_bytes(self) -> int:
        rig = self.folder / "rig1"
        return sum(f.stat().st_size for f in rig.glob("journal.db*") if f.is_file())

    def read_pages(self) -> None:
        """What a screen in the lab reads: the dashboard, the rigs and one mouse's page."""
        base = f"http://{LOOPBACK}:{self.web_port}"
        for page in ("/rigs", "/api/rigs", f"/mouse/{mouse('1')}", f"/api/mouse/{mouse('1')}"):
            try:
                with urllib.request.urlopen(base + page, timeout=30) as response:
                    response.read()
            except OSError as exc:  # a page that fails is reported, not fatal to the soak
                print(f"  GET {page}: {exc}", flush=True)

    def soak(self) -> dict[str, Any]:
        self.start()
        self.wait("every rig online and seen", lambda: self.seen_boxes() == len(self.boxes))
        for box in self.boxes:
            self.labctl("assign", mouse(box), "--box", box)
        self.labctl("cohort", "create", "Soak", *(mouse(b) for b in self.boxes))
        watched = ("collector1", "web", "agent", "worker1")
        pids = {name: self.children[name].pid for name in watched}
        started = time.monotonic()
        end = started + self.args.minutes * 60
        samples: list[dict[str, Any]] = []
        next_sample = started
        rounds = 0
        while time.monotonic() < end:
            rounds += 1
            self.labctl(
                "start",
                "--cohort",
                "Soak",
                "--duration",
                f"{self.args.duration:g}",
                "--timeout",
                "60",
            )
            target = rounds * len(self.boxes)

            def round_stored(target: int = target) -> bool:
                nonlocal next_sample
                if time.monotonic() >= next_sample:
                    self.read_pages()
                    sample = {
                        "minute": round((time.monotonic() - started) / 60, 2),
                        **{name: round(rss_mb(pid), 1) for name, pid in pids.items()},
                        "journal_kb": round(self.journal_bytes() / 1024, 1),
                        "sessions": self.sessions_stored()[0],
                        "load": round(os.getloadavg()[0], 1),
                    }
                    samples.append(sample)
                    print("  " + json.dumps(sample), flush=True)
                    next_sample += self.args.every
                return self.sessions_stored()[0] >= target

            self.wait(f"round {rounds} stored whole", round_stored)
        self.wait("the export to equal the local copies", lambda: self.compare()[0] == 0, 300)
        lost, duplicated = self.compare()
        return self.verdict(samples, rounds, lost, duplicated)

    def verdict(
        self, samples: list[dict[str, Any]], rounds: int, lost: int, duplicated: int
    ) -> dict[str, Any]:
        settle = min(self.args.settle, self.args.minutes / 3)
        before = [s for s in samples if s["minute"] <= settle]
        after = [s for s in samples if s["minute"] > settle]
        growth: dict[str, float | None] = {}
        for name in ("collector1", "web", "agent", "worker1"):
            if before and after and before[-1][name] > 0:
                growth[name] = round(max(s[name] for s in after) / before[-1][name] - 1, 3)
            else:
                growth[name] = None
        journal_early = max((s["journal_kb"] for s in before), default=0.0)
        journal_end = samples[-1]["journal_kb"] if samples else 0.0
        journal_max = max((s["journal_kb"] for s in samples), default=0.0)
        ok = (
            lost == duplicated == 0
            and all(g is not None and g <= GROWTH_LIMIT for g in growth.values())
            and journal_end <= journal_early * (1 + GROWTH_LIMIT)
        )
        return {
            "minutes": self.args.minutes,
            "settle_minute": settle,
            "rigs": len(self.boxes),
            "session_s": self.args.duration,
            "rounds": rounds,
            "sessions_stored": self.sessions_stored()[0],
            "rss_growth_after_settle": growth,
            "journal_kb_max_first_part": journal_early,
            "journal_kb_max": journal_max,
            "journal_kb_end": journal_end,
            "sessions_lost": lost,
            "sessions_duplicated": duplicated,
            "passed": ok,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60, help="how long to soak")
    parser.add_argument("--duration", type=float, default=60, help="seconds per session")
    parser.add_argument("--every", type=float, default=30, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=10, help="minutes before growth counts")
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/test",
        help="admin URL of the PostgreSQL server; the soak gets a fresh database on it",
    )
    parser.add_argument("--json", help="also write the samples and the verdict to this file")
    args = parser.parse_args(argv)
    args.rigs = RIGS
    args.inflight = None
    folder = Path(tempfile.mkdtemp(prefix="reachlab-soak-"))
    print(
        f"soak: {RIGS} rigs, {args.duration:g} s sessions back to back for {args.minutes:g} min, "
        f"files in {folder}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    soak = Soak(args, folder)
    try:
        result = soak.soak()
    finally:
        soak.close()
    shutil.rmtree(folder)  # kept, with the logs, only when the soak failed
    print(json.dumps(result, indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
