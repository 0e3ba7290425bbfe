"""The dashboard tests' lab: a lab's history, labctl in-process, and real processes by pid.

:func:`history` makes per-mouse sessions in the original file shape that get
better day by day; :class:`WebLab` starts ``labctl serve``, ``labagent run --sim``
rigs and ``labctl web`` as children and stops each by pid.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from controller.cli import app as labctl_app
from shared.protocol import Status, Topics, encode

from .cli_runner import CliRunner
from .mqttclient import MqttClient
from .processes import Processes
from .waiting import wait_until

TIMEOUT = 60.0


# ---------------------------------------------------------------- a lab's history


def history(mouse: str, sessions: int, seed: int) -> list[dict[str, Any]]:
    """Per-mouse sessions in the original file shape, getting better from day to day."""
    rng = random.Random(seed)
    out = []
    t0 = 1_700_000_000.0 + seed * 1000
    for number in range(sessions):
        rate = min(0.95, 0.3 + 0.1 * number)
        start = t0 + number * 86400
        trials = []
        t = start
        for _ in range(40 + 5 * number):
            spout = rng.randint(0, 1)
            roll = rng.random()
            outcome = 1 if roll < rate else (2 if roll < rate + (1 - rate) / 2 else 0)
            trials.append(
                {
                    "start": t,
                    "end": t + 1.5,
                    "spout": spout,
                    "cue_duration": 10000.0 * 0.99**number,
                    "outcome": outcome,
                    "spout_position": [1 + number // 2, 1 + number // 3],
                    "shaping": False,
                }
            )
            t += 20
        out.append(
            {
                "trainer": "test",
                "notes": "",
                "trials": trials,
                "resets": [],
                "spontaneous_reaches": [],
                "start_time": start,
                "end_time": t,
                "date": time.strftime("%Y-%m-%d", time.localtime(start)),
            }
        )
    return out


def labctl(env: dict[str, str], *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(labctl_app, list(args), env=env)
    assert result.exit_code == expect, result.output
    return result.stdout  # warnings (no collector yet, ...) go to stderr


def import_history(env: dict[str, str], folder: Path, mice: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (mouse, count) in enumerate(mice.items(), 1):
        path = folder / f"{mouse}.json"
        path.write_text(json.dumps(history(mouse, count, seed)), encoding="utf-8")
        labctl(env, "import", str(path))


def publish_status(broker: str, topics: Topics, status: Status) -> None:
    """Leave ``status`` retained on the broker, as a box does."""
    with MqttClient.at(broker) as client:
        client.publish(topics.status(status.box), encode(status), retain=True)


@dataclass
class WebLab:
    """A collector, simulated rigs and ``labctl web``: children of this test, stopped by pid."""

    root: Path
    broker: str
    prefix: str
    port: int
    processes: Processes = field(init=False)

    def __post_init__(self) -> None:
        self.processes = Processes(self.root / "logs")

    @property
    def env(self) -> dict[str, str]:
        return {
            "LABCTL_DB": f"sqlite:///{self.root / 'lab.db'}",
            "LABCTL_BROKER": self.broker,
            "LABCTL_PREFIX": self.prefix,
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.processes.start(name, argv, env)

    def rig(self, box: str, time_scale: float) -> None:
        rig = self.root / f"rig{box}"
        self.start(
            f"rig{box}",
            [
                sys.executable, "-m", "agent.cli", "run", "--box", box, "--broker", self.broker,
                "--prefix", self.prefix, "--sim", "--time-scale", f"{time_scale:g}",
                "--seed", box, "--journal", str(rig / "journal.db"),
                "--data-dir", str(rig / "data"),
            ],
        )  # fmt: skip

    def web(self, token: str | None) -> None:
        self.start(
            "web",
            [sys.executable, "-m", "controller.cli", "web", "--port", str(self.port)],
            {"LABCTL_WEB_TOKEN": token} if token else None,
        )
        wait_until(self.web_answers, TIMEOUT, "labctl web to answer")

    def web_answers(self) -> bool:
        self.processes.check_alive()
        try:
            return httpx.get(f"{self.url}/api/info", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def boxes(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(labctl(self.env, "status", "--json"))["boxes"]
        return {r["box"]: r for r in rows}

    def idle_and_known(self, *boxes: str) -> bool:
        """Each box idle on the broker and seen by the collector (so known to the lab)."""
        rows = self.boxes()
        return all(
            rows.get(b, {}).get("state") == "idle" and rows[b].get("last_seen_age") is not None
            for b in boxes
        )
