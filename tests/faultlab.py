"""The lab the fault-injection suite (tests/test_faults.py) breaks: real processes, stopped by pid.

:class:`FaultLab` runs ``labctl serve`` and ``labagent run --sim`` rigs on one
broker and one database and judges them only through labctl's commands and the
rigs' own files; :class:`PrivatePostgres` is a PostgreSQL server of a test's
own that it may stop and start; :func:`record_recovery` prints and keeps each
scenario's recovery time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.journal import Journal
from controller.cli import app
from controller.demo.broker import MosquittoBroker, find_free_port, wait_for_port
from shared.errors import ReachlabError
from shared.sessionfile import read_sessions

from .cli_runner import CliRunner
from .conftest import REPO
from .processes import Processes
from .waiting import wait_until

BOXES = ("1", "2")
TIME_SCALE = 600
#: Task seconds per session: six wall seconds at TIME_SCALE, long enough to break something
#: in the middle of it.
SESSION = 3600
#: An upper bound for one step, not a wait: reconnect back-offs and resend rounds add up.
TIMEOUT = 60.0
REPORT = Path(
    os.environ.get("REACHLAB_FAULTS_REPORT") or Path(tempfile.gettempdir()) / "reachlab-faults.json"
)

#: Runs ``labagent run`` with the machine's clock read ``OFFSET`` seconds off, as on a rig
#: whose clock is wrong: everything in the agent that reads the time reads ``time.time``.
SKEWED_AGENT = """\
import sys, time
offset = float(sys.argv.pop(1))
wall = time.time
time.time = lambda: wall() + offset
from agent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def record_recovery(scenario: str, seconds: float) -> None:
    """Print the recovery time and add it to the report file."""
    print(f"\nRECOVERY {scenario}: {seconds:.2f} s")
    # The suite's workers (pytest-xdist) record at the same time: one at a time, under a lock
    # file, each through its own partial file, so no worker's entry is lost.
    with REPORT.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            report = json.loads(REPORT.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = {}
        report[scenario] = round(seconds, 2)
        partial = REPORT.with_suffix(f".partial-{os.getpid()}")
        partial.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
        partial.replace(REPORT)


class FaultLab:
    """A collector, rigs and labctl on one broker and one database, all stopped by pid."""

    def __init__(
        self,
        folder: Path,
        broker_url: str,
        db_url: str,
        procs: Processes,
        *,
        rig_broker_url: str | None = None,
        time_scale: float = TIME_SCALE,
    ) -> None:
        self.folder = folder
        self.broker_url = broker_url
        #: The rigs' broker: the collector's and labctl's unless they are in another building.
        self.rig_broker_url = rig_broker_url or broker_url
        self.time_scale = time_scale
        self.db_url = db_url
        self.procs = procs
        self.prefix = f"faults-{uuid.uuid4().hex[:8]}"
        self.cli_env = {
            "LABCTL_DB": db_url,
            "LABCTL_BROKER": broker_url,
            "LABCTL_PREFIX": self.prefix,
        }
        self.env = {**os.environ, **self.cli_env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        self.runner = CliRunner()
        self.starts: dict[str, int] = {}

    # ------------------------------------------------------------ processes

    def _name(self, base: str) -> str:
        self.starts[base] = self.starts.get(base, 0) + 1
        return base if self.starts[base] == 1 else f"{base}-{self.starts[base]}"

    def start_collector(self) -> str:
        name = self._name("collector")
        self.procs.start(name, [sys.executable, "-m", "controller.cli", "serve"], self.env)
        return name

    def rig_dir(self, box: str) -> Path:
        return self.folder / f"rig{box}"

    def start_rig(self, box: str, clock_offset: float = 0.0) -> str:
        rig = self.rig_dir(box)
        agent = [
            "run", "--box", box, "--broker", self.rig_broker_url, "--prefix", self.prefix,
            "--sim", "--time-scale", f"{self.time_scale:g}", "--seed", box, "--heartbeat", "1",
            "--journal", str(rig / "journal.db"), "--data-dir", str(rig / "data"),
        ]  # fmt: skip
        if clock_offset:
            argv = [sys.executable, "-c", SKEWED_AGENT, str(clock_offset), *agent]
        else:
            argv = [sys.executable, "-m", "agent.cli", *agent]
        name = self._name(f"rig{box}")
        self.procs.start(name, argv, self.env)
        return name

    def kill(self, name: str) -> None:
        """SIGKILL by pid; the process leaves the list of children that must stay alive."""
        process = self.procs.children.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    # ------------------------------------------------------------ labctl

    def labctl(self, *args: str, expect: int = 0) -> str:
        result = self.runner.invoke(app, list(args), env=self.cli_env)
        if result.exit_code != expect and result.exc_info is not None:
            traceback.print_exception(*result.exc_info)  # pytest shows it with the failure
        assert result.exit_code == expect, (
            f"labctl {' '.join(args)}: {result.output}{result.exception!r}"
        )
        return result.stdout

    def status(self) -> dict[str, Any]:
        report = json.loads(self.labctl("status", "--json"))
        assert isinstance(report, dict)
        return report

    def boxes(self) -> dict[str, dict[str, Any]]:
        return {row["box"]: row for row in self.status()["boxes"]}

    # ------------------------------------------------------------ the cohort

    @staticmethod
    def mouse(box: str) -> str:
        return f"FaultMouse{box}"

    def wait_ready(self, boxes: tuple[str, ...] = BOXES) -> None:
        """Every rig idle on the broker and seen by the collector."""

        def ready() -> bool:
            rows = self.boxes()
            return all(
                rows.get(b, {}).get("state") == "idle"
                and rows.get(b, {}).get("last_seen_age") is not None
                for b in boxes
            )

        wait_until(
            ready, TIMEOUT, "every rig online and seen by the collector",
            alive=self.procs.check_alive, detail=self.procs.all_logs, interval=0.1,
        )  # fmt: skip

    def start_cohort(self, boxes: tuple[str, ...] = BOXES, duration: float = SESSION) -> None:
        if "cohort" not in self.starts:
            self.starts["cohort"] = 1
            for box in boxes:
                self.labctl("assign", self.mouse(box), "--box", box)
            self.labctl("cohort", "create", "F", *(self.mouse(b) for b in boxes))
        out = self.labctl("start", "--cohort", "F", "--duration", f"{duration:g}")
        assert f"{len(boxes)} of {len(boxes)} session(s) started" in out, out

    def wait_trials(self, trials: int, boxes: tuple[str, ...] = BOXES) -> dict[str, int]:
        """Until every box runs a session with ``trials`` trials; box -> its trial count."""
        seen: dict[str, int] = {}

        def far_enough() -> bool:
            rows = self.boxes()
            seen.update({b: int(rows.get(b, {}).get("trial") or 0) for b in boxes})
            return all(
                rows.get(b, {}).get("state") == "running" and seen[b] >= trials for b in boxes
            )

        wait_until(
            far_enough, TIMEOUT, f"{trials} trials on every box",
            alive=self.procs.check_alive, detail=self.procs.all_logs, interval=0.1,
        )  # fmt: skip
        return seen

    def local_copy(self, box: str) -> list[dict[str, Any]]:
        """The rig's own per-mouse file, which it writes when a session ends."""
        path = self.rig_dir(box) / "data" / f"{self.mouse(box)}.json"
        return read_sessions(path) if path.exists() else []

    def journal_sessions(self, box: str) -> list[str] | None:
        """Session ids the rig's journal still holds (None while it cannot be read)."""
        try:
            with Journal.open_readonly(self.rig_dir(box) / "journal.db") as journal:
                return [info.session_id for info in journal.sessions()]
        except (ReachlabError, sqlite3.Error):  # the agent may be writing it this moment
            return None

    def wait_sessions_ended(self, sessions: int, boxes: tuple[str, ...] = BOXES) -> None:
        wait_until(
            lambda: all(len(self.local_copy(b)) >= sessions for b in boxes),
            TIMEOUT,
            f"{sessions} session(s) ended on every rig (their local copies)",
            alive=self.procs.check_alive,
            detail=self.procs.all_logs,
            interval=0.1,
        )

    def export(self) -> dict[str, list[dict[str, Any]]]:
        scratch = Path(tempfile.mkdtemp(dir=self.folder, prefix="export-"))
        try:
            self.labctl("export", "--all", "--out", str(scratch))
            return {f.stem: read_sessions(f) for f in sorted(scratch.glob("*.json"))}
        finally:
            shutil.rmtree(scratch)

    def export_matches(self, boxes: tuple[str, ...] = BOXES) -> bool:
        exported = self.export()
        return all(exported.get(self.mouse(b), []) == self.local_copy(b) != [] for b in boxes)

    def wait_recovered(self, scenario: str, since: float, boxes: tuple[str, ...] = BOXES) -> None:
        """Until the export equals every rig's local copy; records the time from ``since``."""
        wait_until(
            lambda: self.export_matches(boxes), TIMEOUT,
            "the export to equal the rigs' local copies",
            alive=self.procs.check_alive, detail=self.procs.all_logs, interval=0.1,
        )  # fmt: skip
        record_recovery(scenario, time.monotonic() - since)

    def assert_lab_is_whole(self, sessions: int, boxes: tuple[str, ...] = BOXES) -> None:
        """Exactly once, equal to the local copies, and a status true about every box."""
        exported = self.export()
        for box in boxes:
            mouse = self.mouse(box)
            ids = [s.get("session_id") for s in exported.get(mouse, [])]
            assert len(ids) == sessions and len(set(ids)) == sessions, (mouse, ids)
            assert exported[mouse] == self.local_copy(box)
        # The sessions have ended and every rig is up: the status must say exactly that.
        wait_until(
            lambda: all(
                r.get("online") and r.get("state") == "idle"
                for b, r in self.boxes().items()
                if b in boxes
            ),
            TIMEOUT,
            "every box shown online and idle",
            alive=self.procs.check_alive,
            detail=self.procs.all_logs,
            interval=0.1,
        )
        # And the loop is closed: the collector committed every session, so the rigs pruned them.
        wait_until(
            lambda: all(self.journal_sessions(b) == [] for b in boxes),
            TIMEOUT,
            "every session committed and pruned from the rigs' journals",
            alive=self.procs.check_alive,
            detail=self.procs.all_logs,
            interval=0.1,
        )
        report = self.status()
        assert report["broker_reachable"] is True
        rows = {r["box"]: r for r in report["boxes"]}
        assert set(boxes) <= set(rows)
        for box in boxes:
            row = rows[box]
            assert (row["online"], row["state"], row["session_id"]) == (True, "idle", None), row
            assert row["assigned"] == self.mouse(box), row
            assert row["last_seen_age"] is not None and row["last_seen_age"] < 30, row


class PrivatePostgres:
    """A PostgreSQL server of this test's own, in a temporary folder, stopped and started
    at will (the shared server on 5432 must not be)."""

    def __init__(self) -> None:
        binaries = [Path("/usr/local/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"))]
        found = [b for b in binaries if (b / "initdb").exists() and (b / "pg_ctl").exists()]
        if not found:
            pytest.skip("needs PostgreSQL's initdb and pg_ctl")
        self.bin = found[0]
        self.port = find_free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="reachlab-pg-"))
        self.data = self.folder / "data"
        # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            try:
                account = pwd.getpwnam(self.user)
            except KeyError:
                pytest.skip("running as root and there is no postgres user to run PostgreSQL")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        result = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]], user=self.user, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"{' '.join(argv)} failed: {result.stderr.strip()}\n{tail}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        assert wait_for_port("127.0.0.1", self.port)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def private_broker(folder: Path, persistence: bool) -> MosquittoBroker:
    """A mosquitto of the test's own, optionally saving its clients' sessions on disk."""
    if not MosquittoBroker.available():
        pytest.skip("needs the mosquitto binary: this test stops and restarts the broker")
    extra = ""
    if persistence:
        store = folder / "mosquitto-store"
        store.mkdir()
        # `user root`: started as root, mosquitto would drop to a user that cannot write here.
        extra = f"user root\npersistence true\npersistence_location {store}/\n"
    return MosquittoBroker(extra_config=extra)
