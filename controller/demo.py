"""``labctl demo``: a whole simulated lab on this machine.

It starts an MQTT broker (mosquitto when installed, else the embedded amqtt
broker), the collector on a SQLite file, and N real ``labagent run --sim``
processes; creates a cohort with one mouse per box, starts it, shows the live
monitor while the sessions run, then exports the per-mouse JSON files and
prints a results table. Every step is the real command a lab would type, so
the demo is also a tour.

``--minutes`` is the session length in task time; unless ``--time-scale`` is
given, the time scale makes the sessions last about two minutes of wall time
(shorter sessions run in real time).

Ctrl-C (or SIGTERM) at any point stops the sessions, still exports what was
collected, and stops every process it started, by pid. The signals are only
counted, never raised as ``KeyboardInterrupt`` in the middle of a step, so
nothing can skip that cleanup; a second Ctrl-C only cuts the waiting for the
last documents short ("stopping now") and exports what the database holds.
The pids and the broker's port are written to ``DIR/processes.json``.

Exit status: 0 when the sessions ran to their end; 130 after Ctrl-C or SIGTERM
(the export is still written); 2 on an error, reported by labctl as one line
on stderr (``labctl: error: ...``) after everything was stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TextIO

import typer

from controller.broker import AmqttBroker, BrokerStartError, MosquittoBroker
from shared.analysis import cohort_results, format_table
from shared.errors import ReachlabError
from shared.sessionfile import read_sessions

COHORT = "demo"
STARTUP_TIMEOUT_S = 60.0
#: How long the wrap-up waits for the stopped sessions, then for their last documents.
STOP_TIMEOUT_S = 20.0
COLLECT_TIMEOUT_S = 30.0
#: After SIGTERM, how long the children get before SIGKILL.
STOP_GRACE_S = 15.0
EXIT_INTERRUPTED = 130
#: In the demo's directory: the pid (and argv) of every process it started, and the broker's port.
PROCESS_RECORD = "processes.json"


def default_time_scale(minutes: float) -> float:
    """Task seconds per wall second so that the sessions take about two minutes."""
    return max(1.0, minutes * 60 / 120)


class DemoError(ReachlabError):
    """A step of the demo failed; the message says which and where to look.

    A :class:`ReachlabError`, so labctl prints it as one ``labctl: error:`` line on stderr.
    """


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived: stop waiting (raised only where the demo waits)."""


class Interrupts:
    """Counts SIGINT and SIGTERM instead of raising ``KeyboardInterrupt`` wherever they land.

    The demo's waits call :meth:`check`, which raises :class:`Interrupted` once more signals
    have arrived than are ``tolerated``; so no signal can cut a cleanup step in half.
    """

    def __init__(self) -> None:
        self.count = 0
        self.tolerated = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1

    def check(self) -> None:
        if self.count > self.tolerated:
            raise Interrupted

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _one_line(text: str) -> str:
    """The last non-empty line of a command's stderr, without labctl's own prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].removeprefix("labctl: error: ") if lines else "no message"


@dataclass
class Lab:
    """The processes of one demo and where their files go."""

    directory: Path
    rigs: int
    out: TextIO = sys.stdout
    broker: MosquittoBroker | AmqttBroker | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: The live monitor: stopped with the rest, but its exit is not a failure.
    monitor: subprocess.Popen[bytes] | None = None
    interrupts: Interrupts = field(default_factory=Interrupts)
    started: bool = False
    #: Use the embedded amqtt broker even where a mosquitto binary is installed.
    embedded_broker: bool = False

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
        """Run one labctl command, echoing it as a person would type it.

        In its own session, so a Ctrl-C in the terminal does not cut it short.
        """
        if show:
            self.say(f"$ labctl {' '.join(args)}")
        try:
            result = subprocess.run(
                self.labctl_argv(*args),
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=120,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise DemoError(f"labctl {' '.join(args)} did not finish in 120 s") from None
        if show and result.stdout.strip():
            self.say(result.stdout.rstrip())
        if check and result.returncode != 0:
            raise DemoError(f"labctl {' '.join(args)} failed: {_one_line(result.stderr)}")
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
        self.write_record()
        return process

    def write_record(self) -> None:
        """Write DIR/processes.json: every child's pid and argv, and the broker's pid and port."""
        record: dict[str, Any] = {"demo": os.getpid(), "broker": None, "processes": {}}
        if isinstance(self.broker, MosquittoBroker):
            process = self.broker.process
            argv = (
                [str(a) for a in process.args]
                if process and isinstance(process.args, list)
                else None
            )
            record["broker"] = {
                "kind": "mosquitto", "pid": self.broker.pid, "argv": argv,
                "port": self.broker.port, "url": self.broker.url,
            }  # fmt: skip
        elif isinstance(self.broker, AmqttBroker):  # a thread of this process
            record["broker"] = {
                "kind": "amqtt", "pid": os.getpid(), "argv": None,
                "port": self.broker.port, "url": self.broker.url,
            }  # fmt: skip
        children = dict(self.processes)
        if self.monitor is not None:
            children["monitor"] = self.monitor
        for name, process in children.items():
            argv = process.args if isinstance(process.args, list) else [str(process.args)]
            record["processes"][name] = {"pid": process.pid, "argv": [str(a) for a in argv]}
        path = self.directory / PROCESS_RECORD
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(record, indent=2), encoding="utf-8")
        partial.replace(path)

    def start_services(self, time_scale: float, seed: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Known before it starts, so stop_all stops it whatever happens next.
        use_mosquitto = MosquittoBroker.available() and not self.embedded_broker
        self.broker = (
            MosquittoBroker()
            if use_mosquitto
            else AmqttBroker(log_file=self.directory / "logs" / "broker.log")
        )
        try:
            self.broker.start()
        except BrokerStartError as exc:
            raise DemoError(str(exc)) from None
        self.write_record()
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

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        """Poll ``condition``; :class:`Interrupted` on Ctrl-C, DemoError on a timeout or a death."""
        deadline = time.monotonic() + timeout
        while True:
            self.interrupts.check()
            if condition():
                return
            self.interrupts.check()
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.25)  # polling other processes' state; there is no event to wait on

    def stop_all(self, grace: float = STOP_GRACE_S) -> None:
        """Stop every child by pid: SIGTERM to the monitor, the rigs and the collector, SIGKILL
        to any still running after ``grace`` s; then the broker. One failure skips nothing."""
        rigs = [p for n, p in self.processes.items() if n.startswith("rig-")]
        others = [p for n, p in self.processes.items() if not n.startswith("rig-")]
        order = ([self.monitor] if self.monitor is not None else []) + rigs + others
        for process in order:
            with contextlib.suppress(OSError):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in order:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    process.kill()
                    process.wait(timeout=5)
        if self.broker is not None:
            with contextlib.suppress(Exception):
                self.broker.close()


def run_demo(
    *,
    rigs: int = 4,
    minutes: float = 30.0,
    time_scale: float | None = None,
    directory: Path | None = None,
    seed: int = 1,
    out: TextIO = sys.stdout,
    monitor: bool = True,
    embedded_broker: bool = False,
) -> int:
    """Run the whole demo; returns 0, or 130 after Ctrl-C/SIGTERM.

    Raises :class:`DemoError` when a step fails, after every process was stopped.
    """
    if rigs < 1 or rigs > 32:
        raise DemoError(f"--rigs must be between 1 and 32, got {rigs}")
    if minutes <= 0:
        raise DemoError(f"--minutes must be positive, got {minutes:g}")
    if time_scale is not None and time_scale <= 0:
        raise DemoError(f"--time-scale must be positive, got {time_scale:g}")
    scale = time_scale or default_time_scale(minutes)
    lab = Lab(
        directory=(directory or Path("reachlab-demo")).resolve(),
        rigs=rigs,
        out=out,
        embedded_broker=embedded_broker,
    )
    wall = minutes * 60 / scale
    lab.say(
        f"reachlab demo: {rigs} simulated rigs, {minutes:g}-minute sessions at {scale:g}x "
        f"(about {wall:.0f} s), files in {lab.directory}"
    )
    failure: DemoError | None = None
    with lab.interrupts.installed():
        try:
            run_lab(lab, minutes, scale, seed, monitor)
        except Interrupted:
            pass
        except DemoError as exc:
            failure = exc
        finally:
            wrap_up(lab, failed=failure is not None)
    if failure is not None:
        raise failure
    return EXIT_INTERRUPTED if lab.interrupts.count else 0


def run_lab(lab: Lab, minutes: float, scale: float, seed: int, monitor: bool) -> None:
    """Start the lab and the cohort and wait for the sessions; Interrupted on Ctrl-C."""
    lab.start_services(scale, seed)
    lab.wait_until(
        "every rig to come online",
        lambda: all(lab.box_states().get(b) == "idle" for b in lab.boxes),
        STARTUP_TIMEOUT_S,
    )
    mice = [lab.mouse(b) for b in lab.boxes]
    for box, mouse in zip(lab.boxes, mice, strict=True):
        lab.labctl("assign", mouse, "--box", box)
        lab.interrupts.check()
    lab.labctl("cohort", "create", COHORT, *mice)
    lab.interrupts.check()
    lab.started = True
    lab.labctl("start", "--cohort", COHORT, "--duration", f"{minutes * 60:g}")
    wall = minutes * 60 / scale
    if monitor:
        watch_until_done(lab, wall)
    else:
        lab.wait_until("the sessions to end", lambda: sessions_done(lab), wall * 3 + 60)


def wrap_up(lab: Lab, failed: bool = False) -> None:
    """Stop the sessions (after Ctrl-C or a failure), export, report, stop every process.

    Signals are still only counted here: another Ctrl-C ends the waiting ("stopping now"),
    and the export and :meth:`Lab.stop_all` run whatever happens.
    """
    interrupts = lab.interrupts
    interrupts.tolerated = interrupts.count  # from here on, only a further Ctrl-C counts
    try:
        if interrupts.count:
            lab.say(
                "\ninterrupted: stopping the sessions and exporting what was collected"
                " (Ctrl-C again to stop now)"
            )
        if lab.broker is not None and (lab.directory / "lab.db").exists():
            try:
                if lab.started and (interrupts.count or failed):
                    lab.labctl("stop", "--all", check=False)
                    lab.wait_until(
                        "the stopped sessions", lambda: sessions_done(lab), STOP_TIMEOUT_S
                    )
                if lab.started and not failed:
                    lab.wait_until(
                        "the last documents to be stored", lambda: collected(lab), COLLECT_TIMEOUT_S
                    )
            except Interrupted:
                lab.say("\nstopping now: exporting what the database holds")
            except Exception as exc:  # a dead collector, a timeout: export what there is
                lab.say(f"not waiting any longer: {exc}")
            export(lab)
    finally:
        lab.stop_all()
        lab.say("all demo processes stopped")


def sessions_done(lab: Lab) -> bool:
    return all(state in ("idle", "offline") for state in lab.box_states().values())


def watch_until_done(lab: Lab, wall: float) -> None:
    """Show ``labctl monitor`` in this terminal until every rig is idle again."""
    lab.monitor = subprocess.Popen(lab.labctl_argv("monitor"), stdin=subprocess.DEVNULL)
    lab.write_record()
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
        # SIGTERM, not SIGINT: a monitor still starting (importing) when the sessions end
        # would print a KeyboardInterrupt traceback; SIGTERM ends it quietly there, and
        # once its live view runs it leaves cleanly on either.
        lab.monitor.send_signal(signal.SIGTERM)
        try:
            lab.monitor.wait(timeout=10)
        except subprocess.TimeoutExpired:
            lab.monitor.kill()
            lab.monitor.wait()
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


def export(lab: Lab) -> None:
    """Export every mouse and print where the files are and a results table."""
    lab.labctl("export", "--all", "--out", str(lab.export_dir), check=False)
    files = sorted(lab.export_dir.glob("*.json"))
    if not files:
        lab.say("no sessions were collected")
        return
    lab.say(f"\nper-mouse JSON files in {lab.export_dir}:")
    for file in files:
        lab.say(f"  {file}")
    try:
        mice = {f.stem: read_sessions(f) for f in files}
    except ReachlabError as exc:
        lab.say(f"cannot read the exported files: {exc}")
        return
    lab.say("")
    lab.say(format_table(cohort_results(mice)))


def demo_command(
    rigs: Annotated[int, typer.Option("--rigs", help="simulated rigs, one mouse each")] = 4,
    minutes: Annotated[
        float,
        typer.Option(
            "--minutes",
            metavar="M",
            help="session length in task minutes; the default time scale plays it in about "
            "two minutes of wall time",
        ),
    ] = 30.0,
    time_scale: Annotated[
        float | None,
        typer.Option(
            "--time-scale",
            metavar="X",
            help="task seconds per wall second (default: M/2, at least 1)",
            show_default=False,
        ),
    ] = None,
    directory: Annotated[Path, typer.Option("--dir", help="where the demo's files go")] = Path(
        "reachlab-demo"
    ),
    seed: Annotated[int, typer.Option("--seed", help="seed of the simulated mice")] = 1,
    no_monitor: Annotated[
        bool, typer.Option("--no-monitor", help="do not show the live monitor")
    ] = False,
    embedded_broker: Annotated[
        bool,
        typer.Option(
            "--embedded-broker",
            help="use the embedded amqtt broker even if mosquitto is installed",
        ),
    ] = False,
) -> None:
    """A whole simulated lab on this machine: broker, collector, rigs and a cohort.

    Ctrl-C stops the sessions, still exports what was collected and stops every process
    the demo started (a second Ctrl-C stops waiting for the last documents). Exit status:
    0 when the sessions ran to their end, 130 after Ctrl-C or SIGTERM (the export is
    still written), 2 on an error.
    """
    code = run_demo(
        rigs=rigs,
        minutes=minutes,
        time_scale=time_scale,
        directory=directory,
        seed=seed,
        monitor=not no_monitor,
        embedded_broker=embedded_broker,
    )
    raise typer.Exit(code)
