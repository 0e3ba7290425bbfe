"""``labctl demo`` end to end in short configurations: real broker, collector and rigs.

Every demo runs as a real subprocess. Afterwards nothing it started may survive: the pids
in its ``processes.json`` (broker included) are gone and the broker's port is closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.demo.broker import MosquittoBroker
from shared.sessionfile import read_sessions

from .conftest import REPO
from .waiting import wait_until

pytestmark = pytest.mark.slow

DEMO = [sys.executable, "-m", "controller.cli", "demo"]


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append((int(entry.name), cmdline))
    return found


def running(pid: int, argv: list[str] | None) -> bool:
    """True while ``pid`` is a live (not zombie) process with this command line."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return argv is None or cmdline.split(b"\0")[:-1] == [a.encode() for a in argv]


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def read_record(lab_dir: Path) -> dict[str, Any]:
    record = json.loads((lab_dir / "processes.json").read_text(encoding="utf-8"))
    assert isinstance(record, dict)
    return record


def assert_nothing_left(lab_dir: Path) -> None:
    """No process the demo started is alive, the broker included, and its port is closed."""
    record = read_record(lab_dir)
    broker = record["broker"]
    assert broker is not None and broker["port"]
    if broker["kind"] == "mosquitto":
        assert broker["pid"] and broker["argv"]
        assert not running(broker["pid"], broker["argv"]), "the demo's mosquitto is still running"
    assert not port_open(broker["port"]), f"the broker's port {broker['port']} is still open"
    assert {"collector", "rig-1", "rig-2"} <= set(record["processes"])
    for name, child in record["processes"].items():
        assert not running(child["pid"], child["argv"]), f"{name} (pid {child['pid']}) survived"
    assert processes_mentioning(str(lab_dir)) == []


@dataclass
class Demo:
    """A ``labctl demo`` subprocess with its output in files (a full pipe would block it)."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")

    def check_alive(self) -> None:
        """The ``alive`` of a wait on the demo: fails at once, with its output, if it exited."""
        if self.process.poll() is not None:
            pytest.fail(f"the demo exited ({self.process.returncode}):\n"
                        f"{self.output()[-3000:]}\n{self.errors()[-3000:]}")  # fmt: skip

    def wait_exit(self, timeout: float) -> int:
        started = time.monotonic()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not exit within {timeout:g} s:\n{self.output()[-3000:]}")
        print(f"demo exited with {code} after {time.monotonic() - started:.1f} s")
        return code


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    """Starts ``labctl demo --dir LAB_DIR ARGS``; at teardown, after the test's own checks,
    stops it and anything it left behind, by pid, should the test have failed."""
    started: list[tuple[Demo, Path]] = []

    def start(lab_dir: Path, *args: str) -> Demo:
        stdout, stderr = tmp_path / "demo.out", tmp_path / "demo.err"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = subprocess.Popen(
                [*DEMO, "--dir", str(lab_dir), *args],
                cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        started.append((Demo(process, stdout, stderr), lab_dir))
        return started[-1][0]

    yield start
    for run, lab_dir in started:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait(timeout=10)
        # pytest shows this only for a failed test: what every part of the demo logged.
        print(f"--- demo stdout (tail)\n{run.output()[-2000:]}\n--- demo stderr\n{run.errors()}")
        for log in sorted((lab_dir / "logs").glob("*.log")):
            print(f"--- {log.name} (tail)\n{log.read_text(errors='replace')[-1500:]}")
        with contextlib.suppress(OSError, ValueError):
            record = read_record(lab_dir)
            for child in [*record["processes"].values(), record["broker"] or {}]:
                if child.get("argv") and running(child["pid"], child["argv"]):
                    os.kill(child["pid"], signal.SIGKILL)


def trials_stored(lab_dir: Path, sessions: int, trials: int) -> bool:
    """True once the collector stored ``trials`` trial_end documents of each of ``sessions``."""
    db = lab_dir / "lab.db"
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=1)) as conn:
            rows = conn.execute(
                "SELECT session_id, COUNT(*) FROM documents WHERE kind = 'trial_end' "
                "GROUP BY session_id"
            ).fetchall()
    except sqlite3.Error:  # not created yet, or busy
        return False
    return sum(1 for _, count in rows if count >= trials) >= sessions


@pytest.mark.parametrize(
    ("options", "broker"),
    [
        ([], "mosquitto" if MosquittoBroker.available() else "amqtt"),
        # What a machine without mosquitto gets: the broker embedded in the demo itself.
        (["--embedded-broker"], "amqtt"),
    ],
)
def test_demo_runs_a_lab_exports_every_mouse_and_leaves_no_process(
    tmp_path: Path, start_demo: Callable[..., Demo], options: list[str], broker: str
) -> None:
    lab_dir = tmp_path / "lab"
    run = start_demo(lab_dir, "--rigs", "2", "--minutes", "2", "--time-scale", "60", *options)
    code = run.wait_exit(timeout=240)
    assert code == 0, run.output()[-3000:] + run.errors()[-3000:]
    for mouse in ("DemoMouse1", "DemoMouse2"):
        sessions = read_sessions(lab_dir / "export" / f"{mouse}.json")
        assert len(sessions) == 1
        session = sessions[0]
        assert session["status"] == "complete"
        assert session["duration"] >= 120
        assert len(session["trials"]) > 3
        assert session["box"] == mouse.removeprefix("DemoMouse")
        # the agent's own copy of the same session is identical
        (agent_copy,) = read_sessions(
            lab_dir / "rigs" / f"box-{session['box']}" / "data" / f"{mouse}.json"
        )
        assert agent_copy == session
    assert "DemoMouse1" in run.output() and "d'" in run.output()
    assert f"broker: {broker}" in run.output()
    assert run.errors() == ""  # the embedded broker's warnings too go to logs/broker.log
    assert_nothing_left(lab_dir)


def test_ctrl_c_stops_the_sessions_exports_them_and_leaves_no_process(
    tmp_path: Path, start_demo: Callable[..., Demo]
) -> None:
    lab_dir = tmp_path / "lab"
    # 30-minute sessions at 60x: 30 s of wall time, far longer than the test waits.
    run = start_demo(lab_dir, "--rigs", "2", "--minutes", "30", "--time-scale", "60")
    wait_until(
        lambda: trials_stored(lab_dir, 2, 2), 90, "trials to be stored", alive=run.check_alive
    )
    run.process.send_signal(signal.SIGINT)
    code = run.wait_exit(timeout=60)
    assert code == 130, run.output()[-3000:] + run.errors()[-3000:]
    assert "interrupted: stopping the sessions" in run.output()
    assert "stopping now" not in run.output()
    assert "all demo processes stopped" in run.output()
    assert run.errors() == ""
    for mouse in ("DemoMouse1", "DemoMouse2"):
        (session,) = read_sessions(lab_dir / "export" / f"{mouse}.json")
        assert session["status"] == "stopped"
        assert 0 < session["duration"] < 30 * 60
        assert len(session["trials"]) >= 2
    assert_nothing_left(lab_dir)


def test_a_second_ctrl_c_stops_waiting_but_still_exports_and_stops_everything(
    tmp_path: Path, start_demo: Callable[..., Demo]
) -> None:
    lab_dir = tmp_path / "lab"
    run = start_demo(lab_dir, "--rigs", "2", "--minutes", "30", "--time-scale", "60")
    wait_until(
        lambda: trials_stored(lab_dir, 2, 1), 90, "trials to be stored", alive=run.check_alive
    )
    run.process.send_signal(signal.SIGINT)
    wait_until(lambda: "interrupted:" in run.output(), 30, "the wrap-up", alive=run.check_alive)
    run.process.send_signal(signal.SIGINT)
    code = run.wait_exit(timeout=60)
    assert code == 130, run.output()[-3000:] + run.errors()[-3000:]
    assert "stopping now" in run.output()
    assert run.errors() == ""
    for mouse in ("DemoMouse1", "DemoMouse2"):  # what the database held, exported
        assert read_sessions(lab_dir / "export" / f"{mouse}.json")
    assert_nothing_left(lab_dir)


def test_a_failed_step_is_one_line_on_stderr_and_leaves_no_process(
    tmp_path: Path, start_demo: Callable[..., Demo], monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_dir = tmp_path / "lab"
    # Every rig refuses this profile and exits, after the broker and the collector started.
    monkeypatch.setenv("LABAGENT_SIM_MOUSE", "hit=0.5")
    run = start_demo(lab_dir, "--rigs", "2", "--minutes", "1", "--no-monitor")
    code = run.wait_exit(timeout=120)
    assert code == 2, run.output()[-3000:] + run.errors()[-3000:]
    (line,) = run.errors().splitlines()
    assert line.startswith("labctl: error: rig-"), line
    assert " exited with 2; see " in line, line
    # The error is said first, before the wrap-up's output.
    output = run.output()
    assert output.index("the demo failed: rig-") < output.index("all demo processes stopped")
    assert "all demo processes stopped" in run.output()
    assert_nothing_left(lab_dir)


def refused_demo(rigs: str, lab_dir: Path) -> subprocess.CompletedProcess[str]:
    """``labctl demo --rigs RIGS --dir LAB_DIR`` run to its end, for a demo meant to be
    refused before it starts anything (so nothing is left to stop)."""
    return subprocess.run(
        [*DEMO, "--rigs", rigs, "--dir", str(lab_dir)],
        cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip


def test_a_bad_option_is_one_line_on_stderr(tmp_path: Path) -> None:
    result = refused_demo("0", tmp_path / "lab")
    assert result.returncode == 2
    assert result.stderr == "labctl: error: --rigs must be between 1 and 32, got 0\n"
    assert not (tmp_path / "lab").exists()


def test_a_second_demo_in_the_same_folder_starts_a_fresh_lab(
    tmp_path: Path, start_demo: Callable[..., Demo]
) -> None:
    lab_dir = tmp_path / "lab"
    options = ("--rigs", "2", "--minutes", "1", "--time-scale", "30", "--no-monitor")
    first = start_demo(lab_dir, *options)
    assert first.wait_exit(timeout=180) == 0, first.output()[-3000:] + first.errors()[-3000:]
    (before,) = read_sessions(lab_dir / "export" / "DemoMouse1.json")

    again = start_demo(lab_dir, *options)
    code = again.wait_exit(timeout=180)
    output = again.output()
    assert code == 0, output[-3000:] + again.errors()[-3000:]
    assert again.errors() == ""
    assert "a fresh lab: removed the previous demo's files (" in output.splitlines()[1]
    assert "cohort demo already exists" not in output
    for mouse in ("DemoMouse1", "DemoMouse2"):
        (session,) = read_sessions(lab_dir / "export" / f"{mouse}.json")
        assert session["status"] == "complete"
    (after,) = read_sessions(lab_dir / "export" / "DemoMouse1.json")
    assert after["session_id"] != before["session_id"]
    assert_nothing_left(lab_dir)


def test_a_folder_holding_other_files_is_refused_before_anything_starts(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    (lab_dir / "lab.db").mkdir()  # a demo's name, but a demo makes it a file
    (lab_dir / "lab.db" / "kept").write_bytes(b"kept")
    (lab_dir / "thesis.tex").write_text("kept", encoding="utf-8")
    result = refused_demo("1", lab_dir)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"labctl: error: --dir {lab_dir} holds files a demo did not make (lab.db, thesis.tex); "
        "give an empty or new folder\n"
    )
    assert sorted(p.name for p in lab_dir.iterdir()) == ["lab.db", "thesis.tex"]
    assert (lab_dir / "lab.db" / "kept").read_bytes() == b"kept"


def test_a_demo_still_running_in_the_folder_is_an_error_and_its_files_are_kept(
    tmp_path: Path,
) -> None:
    lab_dir = tmp_path / "lab"
    (lab_dir / "rigs").mkdir(parents=True)
    # Stands in for a rig of a demo that was killed: it runs until its stdin closes.
    argv = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    rig = subprocess.Popen(argv, stdin=subprocess.PIPE)
    try:
        record = {
            "demo": None,
            "broker": None,
            "processes": {"rig-1": {"pid": rig.pid, "argv": argv}},
        }
        (lab_dir / "processes.json").write_text(json.dumps(record), encoding="utf-8")
        result = refused_demo("1", lab_dir)
    finally:
        assert rig.stdin is not None
        rig.stdin.close()
        rig.wait(timeout=10)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"labctl: error: a demo in {lab_dir} is still running: rig-1 (pid {rig.pid}); "
        "stop it (Ctrl-C in its terminal) or give another --dir\n"
    )
    assert sorted(p.name for p in lab_dir.iterdir()) == ["processes.json", "rigs"]


def test_a_dashboard_that_lost_its_port_is_started_on_another_and_the_demo_goes_on(
    tmp_path: Path,
) -> None:
    """Two demos starting at once both found 8080 free; the second's ``labctl web`` could
    not listen and the demo failed ("web exited with 2", 2 runs in 5 of the real-process
    suites). Now the dashboard moves to another port, once."""
    import io

    from controller.demo.broker import LOOPBACK, wait_for_port
    from controller.demo.lab import DemoError, DemoLab

    out = io.StringIO()
    lab = DemoLab(directory=tmp_path / "lab", rigs=1, out=out)
    try:
        lab.start_services(time_scale=60, seed=1)  # broker, collector, web, one rig
        web = lab.processes["web"]
        web.kill()  # losing the race looks like this: exited, and said why in its log
        web.wait()
        log = lab.directory / "logs" / "web.log"
        with log.open("a") as file:
            file.write("labctl: error: cannot listen on 127.0.0.1:8080: Address already in use\n")
        lab.check_alive()  # no DemoError
        moved = out.getvalue().splitlines()[-1]
        assert moved.startswith("dashboard: its port was taken meanwhile; now http://"), moved
        port = int(moved.rsplit(":", 1)[1].strip("/"))
        assert lab.processes["web"] is not web
        assert wait_for_port(LOOPBACK, port, timeout=60), log.read_text()
        lab.processes["web"].kill()  # a second death is a failure, as any other child's
        lab.processes["web"].wait()
        with pytest.raises(DemoError, match="web exited"):
            lab.check_alive()
    finally:
        lab.stop_all()
