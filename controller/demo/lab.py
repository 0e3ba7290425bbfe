"""The processes of one ``labctl demo``: the broker, the collector, the rigs, and their record.

:class:`DemoLab` starts each child in its own session (so Ctrl-C reaches only the
demo), writes every pid to ``DIR/processes.json``, runs labctl commands as a
person would type them, and stops everything by pid. :mod:`controller.demo.run`
drives it through the demo's steps.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from controller.demo.broker import AmqttBroker, BrokerStartError, MosquittoBroker, find_free_port
from shared.errors import ReachlabError

#: Where the demo's dashboard listens when the port is free (else any free port).
DASHBOARD_PORT = 8080


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _lost_its_port(log: Path) -> bool:
    """Whether ``labctl web`` logged that it could not listen: its port was taken."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "cannot listen on" in text and "in use" in text


#: After SIGTERM, how long the children get before SIGKILL.
STOP_GRACE_S = 15.0
#: In the demo's directory: the pid (and argv) of every process it started, and the broker's port.
PROCESS_RECORD = "processes.json"
#: Everything a demo writes in its directory (SQLite adds its -wal and -shm files).
DEMO_FILES = frozenset(
    {
        "lab.db",
        "lab.db-wal",
        "lab.db-shm",
        "lab.db-journal",
        PROCESS_RECORD,
        f"{PROCESS_RECORD}.partial",
    }
)
DEMO_FOLDERS = frozenset({"logs", "rigs", "export"})


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


def one_line(text: str) -> str:
    """The last non-empty line of a command's stderr, without labctl's own prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].removeprefix("labctl: error: ") if lines else "no message"


@dataclass
class DemoLab:
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
    #: The dashboard lost its port to another process and was started on another one.
    web_moved: bool = False

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
            raise DemoError(f"labctl {' '.join(args)} failed: {one_line(result.stderr)}")
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
        self.start_dashboard()
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

    def start_dashboard(self) -> None:
        """``labctl web`` (read-only) while the lab runs, where the web extra is installed."""
        if any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "plotly")):
            self.say("dashboard: not started (pip install 'reachlab[web]' for labctl web)")
            return
        port = DASHBOARD_PORT if port_is_free(DASHBOARD_PORT) else find_free_port()
        self.spawn("web", self.labctl_argv("web", "--port", str(port)))
        self.say(f"dashboard: http://127.0.0.1:{port}/ (labctl web, read-only)")

    def check_alive(self) -> None:
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                log = self.directory / "logs" / f"{name}.log"
                if name == "web" and not self.web_moved and _lost_its_port(log):
                    self.web_moved = True  # once: a later death is a failure, as any other
                    # Free when looked at, taken before labctl web bound it (another demo
                    # or dashboard starting at the same moment): the lab goes on elsewhere.
                    port = find_free_port()
                    self.spawn("web", self.labctl_argv("web", "--port", str(port)))
                    self.say(
                        f"dashboard: its port was taken meanwhile; now http://127.0.0.1:{port}/"
                    )
                    continue
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


def _alive(pid: int, argv: list[str] | None) -> bool:
    """True while ``pid`` is a live (not zombie) process started with ``argv``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
        return False
    return argv is None or cmdline.split(b"\0")[:-1] == [a.encode() for a in argv]


def _still_running(directory: Path) -> list[str]:
    """What a previous demo in ``directory`` left running, from its process record."""
    try:
        record = json.loads((directory / PROCESS_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict):
        return []
    found: list[str] = []
    demo_pid = record.get("demo")
    if isinstance(demo_pid, int) and demo_pid != os.getpid():
        try:
            cmdline = Path(f"/proc/{demo_pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if b"demo" in cmdline and _alive(demo_pid, None):
            found.append(f"the demo (pid {demo_pid})")
    children = record.get("processes")
    broker = record.get("broker")
    entries = list(children.items()) if isinstance(children, dict) else []
    if isinstance(broker, dict) and broker.get("kind") == "mosquitto":
        entries.append(("broker", broker))
    for name, child in entries:
        if not isinstance(child, dict):
            continue
        pid, argv = child.get("pid"), child.get("argv")
        if isinstance(pid, int) and isinstance(argv, list) and _alive(pid, argv):
            found.append(f"{name} (pid {pid})")
    return found


def _made_by_a_demo(path: Path) -> bool:
    if path.is_symlink():
        return False
    if path.is_dir():
        # tmp*: the scratch exports of a demo killed before it could remove them.
        return path.name in DEMO_FOLDERS or path.name.startswith("tmp")
    return path.name in DEMO_FILES


def clear_previous_run(directory: Path) -> list[str]:
    """Remove a previous demo's files from ``directory``; returns what was removed.

    A second ``labctl demo`` in the same folder starts a fresh lab there. Before
    anything is removed or started, :class:`DemoError` when the folder is not a
    folder, holds files a demo does not make (they may be someone's data), or a
    demo started there still runs.
    """
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise DemoError(f"--dir {directory} is a file, not a folder")
    names = sorted(entry.name for entry in directory.iterdir())
    strangers = [n for n in names if not _made_by_a_demo(directory / n)]
    if strangers:
        listed = ", ".join(strangers[:5]) + (", ..." if len(strangers) > 5 else "")
        raise DemoError(
            f"--dir {directory} holds files a demo did not make ({listed}); "
            "give an empty or new folder"
        )
    running = _still_running(directory)
    if running:
        raise DemoError(
            f"a demo in {directory} is still running: {', '.join(running)}; "
            "stop it (Ctrl-C in its terminal) or give another --dir"
        )
    for name in names:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return names
