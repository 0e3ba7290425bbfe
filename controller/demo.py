"""``labctl demo``: a whole simulated lab on this machine.

It starts an MQTT broker (mosquitto when installed, else the embedded amqtt
broker), the collector on a SQLite file, and N real ``labagent run --sim``
processes; creates a cohort with one mouse per box, starts it, shows the live
monitor while the sessions run, then exports the per-mouse JSON files and
prints a results table. Every step is the real command a lab would type, so
the demo is also a tour. Ctrl-C at any point stops the sessions, still
exports what was collected, and stops every process it started, by pid.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from controller.broker import AmqttBroker, MosquittoBroker, start_local_broker
from shared.analysis import cohort_results, format_table
from shared.sessionfile import read_sessions

COHORT = "demo"
STARTUP_TIMEOUT_S = 60.0


def default_time_scale(minutes: float) -> float:
    """Task seconds per wall second so that the sessions take about two minutes."""
    return max(1.0, minutes * 60 / 120)


@dataclass
class Lab:
    """The processes of one demo and where their files go."""

    directory: Path
    rigs: int
    out: TextIO = sys.stdout
    broker: MosquittoBroker | AmqttBroker | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.directory / 'lab.db'}"

    @property
    def export_dir(self) -> Path:
        return self.directory / "export"

    @property
    def boxes(self) -> list[str]:
        return [str(n) for n in range(1, self.rigs + 1)]

    @staticmethod
    def mouse(box: str) -> str:
        return f"DemoMouse{box}"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # ------------------------------------------------------------- processes

    def labctl_argv(self, *args: str) -> list[str]:
        assert self.broker is not None
        return [
            sys.executable, "-m", "controller.cli",
            "--db", self.db_url, "--broker", self.broker.url, *args,
        ]  # fmt: skip

    def labctl(self, *args: str, check: bool = True, show: bool = True) -> str:
        """Run one labctl command, echoing it as a person would type it."""
        if show:
            self.say(f"$ labctl {' '.join(args)}")
        result = subprocess.run(
            self.labctl_argv(*args),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        if show and result.stdout.strip():
            self.say(result.stdout.rstrip())
        if check and result.returncode != 0:
            raise DemoError(f"labctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def spawn(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start a long-running child in its own session, so Ctrl-C reaches only the demo."""
        logs = self.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def start_services(self, time_scale: float, seed: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.broker = start_local_broker()
        kind = "mosquitto" if isinstance(self.broker, MosquittoBroker) else "amqtt (embedded)"
        self.say(f"broker: {kind} on {self.broker.url}")
        self.spawn("collector", self.labctl_argv("serve"))
        self.say(f"collector: labctl serve, database {self.db_url}")
        for box in self.boxes:
            rig_dir = self.directory / "rigs" / f"box-{box}"
            self.spawn(
                f"rig-{box}",
                [
                    sys.executable, "-m", "agent.cli", "run",
                    "--box", box, "--broker", self.broker.url, "--sim",
                    "--time-scale", f"{time_scale:g}", "--seed", str(seed + int(box)),
                    "--journal", str(rig_dir / "journal.db"),
                    "--data-dir", str(rig_dir / "data"),
                ],
            )  # fmt: skip
        self.say(f"rigs: {self.rigs} x labagent run --sim --time-scale {time_scale:g}")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = self.directory / "logs" / f"{name}.log"
                raise DemoError(f"{name} exited with {process.returncode}; see {log}")

    def box_states(self) -> dict[str, str]:
        """Box id -> state, from ``labctl status --json``."""
        text = self.labctl("status", "--json", show=False, check=False)
        with contextlib.suppress(json.JSONDecodeError):
            rows = json.loads(text)
            if isinstance(rows, dict):
                rows = rows.get("boxes", [])
            return {str(r.get("box")): str(r.get("state", "")) for r in rows if isinstance(r, dict)}
        return {}

    def wait_until(self, what: str, condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.25)  # polling other processes' state; there is no event to wait on

    def stop_all(self) -> None:
        """Stop every child by pid (SIGTERM, then SIGKILL), rigs first, then the collector."""
        order = [n for n in self.processes if n.startswith("rig-")] + [
            n for n in self.processes if not n.startswith("rig-")
        ]
        for name in order:
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name in order:
            process = self.processes[name]
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self.broker is not None:
            self.broker.stop()
            if isinstance(self.broker, MosquittoBroker):
                self.broker.close()


class DemoError(Exception):
    """A step of the demo failed; the message says which and where to look."""


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so a killed demo still cleans up."""

    def raise_interrupt(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(
    *,
    rigs: int = 4,
    minutes: float = 30.0,
    time_scale: float | None = None,
    directory: Path | None = None,
    seed: int = 1,
    out: TextIO = sys.stdout,
    monitor: bool = True,
) -> int:
    """Run the whole demo; returns the exit code."""
    if rigs < 1 or rigs > 32:
        raise DemoError(f"--rigs must be between 1 and 32, got {rigs}")
    if minutes <= 0:
        raise DemoError(f"--minutes must be positive, got {minutes:g}")
    scale = time_scale or default_time_scale(minutes)
    lab = Lab(directory=(directory or Path("reachlab-demo")).resolve(), rigs=rigs, out=out)
    wall = minutes * 60 / scale
    lab.say(
        f"reachlab demo: {rigs} simulated rigs, {minutes:g}-minute sessions at {scale:g}x "
        f"(about {wall:.0f} s), files in {lab.directory}"
    )
    interrupted = False
    with interrupts_as_keyboard():
        try:
            lab.start_services(scale, seed)
            lab.wait_until(
                "every rig to come online",
                lambda: all(lab.box_states().get(b) == "idle" for b in lab.boxes),
                STARTUP_TIMEOUT_S,
            )
            mice = [lab.mouse(b) for b in lab.boxes]
            for box, mouse in zip(lab.boxes, mice, strict=True):
                lab.labctl("assign", mouse, "--box", box)
            lab.labctl("cohort", "create", COHORT, *mice)
            lab.labctl("start", "--cohort", COHORT, "--duration", f"{minutes * 60:g}")
            if monitor:
                watch_until_done(lab, wall)
            else:
                lab.wait_until("the sessions to end", lambda: sessions_done(lab), wall * 3 + 60)
        except KeyboardInterrupt:
            interrupted = True
            lab.say("\ninterrupted: stopping the sessions and exporting what was collected")
            with contextlib.suppress(Exception):
                lab.labctl("stop", "--all", check=False)
                lab.wait_until("the stopped sessions to be stored", lambda: sessions_done(lab), 20)
        except DemoError as exc:
            lab.say(f"demo: {exc}")
            interrupted = True
        finally:
            with contextlib.suppress(Exception), interrupts_as_keyboard():
                finish(lab)
            lab.stop_all()
    lab.say("all demo processes stopped")
    return 130 if interrupted else 0


def sessions_done(lab: Lab) -> bool:
    return all(state in ("idle", "offline") for state in lab.box_states().values())


def watch_until_done(lab: Lab, wall: float) -> None:
    """Show ``labctl monitor`` in this terminal until every rig is idle again."""
    monitor = subprocess.Popen(lab.labctl_argv("monitor"), stdin=subprocess.DEVNULL)
    try:
        # A rig may not have reported "running" yet; give it a moment before judging "idle".
        with contextlib.suppress(DemoError):
            lab.wait_until(
                "the sessions to start",
                lambda: all(s == "running" for s in lab.box_states().values()),
                15,
            )
        lab.wait_until("the sessions to end", lambda: sessions_done(lab), wall * 3 + 60)
    finally:
        monitor.send_signal(signal.SIGINT)
        try:
            monitor.wait(timeout=10)
        except subprocess.TimeoutExpired:
            monitor.kill()
            monitor.wait()
        lab.say("")  # the monitor's last line has no newline of its own


def collected(lab: Lab) -> bool:
    """True when every mouse's session is stored whole (judged from a scratch export)."""
    with tempfile.TemporaryDirectory(dir=lab.directory) as scratch:
        lab.labctl("export", "--all", "--out", scratch, check=False, show=False)
        for box in lab.boxes:
            file = Path(scratch) / f"{lab.mouse(box)}.json"
            sessions = read_sessions(file) if file.exists() else []
            if not sessions or "status" not in sessions[-1]:
                return False
    return True


def finish(lab: Lab) -> None:
    """Export every mouse and print where the files are and a results table."""
    if lab.broker is None or not (lab.directory / "lab.db").exists():
        return
    with contextlib.suppress(DemoError):
        lab.wait_until("the last documents to be stored", lambda: collected(lab), 30)
    lab.labctl("export", "--all", "--out", str(lab.export_dir), check=False)
    files = sorted(lab.export_dir.glob("*.json"))
    if not files:
        lab.say("no sessions were collected")
        return
    lab.say(f"\nper-mouse JSON files in {lab.export_dir}:")
    for file in files:
        lab.say(f"  {file}")
    mice = {f.stem: read_sessions(f) for f in files}
    lab.say("")
    lab.say(format_table(cohort_results(mice)))
