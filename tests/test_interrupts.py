"""Ctrl-C at any moment of labctl and labagent: exit 130, one line, never a traceback.

Real processes (the installed console scripts) get SIGINT right after exec, in the
middle of their start-up imports (found by ``-X importtime``'s lines, not by sleeping)
and while the command runs. ``labagent train --config`` with a missing file is refused
as ``labctl start --config`` is, before a session runs on the default settings.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import reap
from tests.waiting import wait_until

BIN = Path(sys.executable).parent
SIGINT_DEATH = -signal.SIGINT  # before Python's own start-up installed a handler


def _sigint_as_at_a_terminal() -> None:
    # A command typed at a terminal starts with SIGINT at its default; a job started in the
    # background of a non-interactive shell (as CI runs the suite) inherits it ignored, and
    # a Ctrl-C sent before the command's own handler would then be dropped, not tested.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run(
    argv: list[str], tmp_path: Path, importtime: bool = False
) -> tuple[subprocess.Popen[bytes], Path]:
    err = tmp_path / f"stderr-{len(list(tmp_path.glob('stderr-*')))}.txt"
    python = [sys.executable, "-X", "importtime"] if importtime else [sys.executable]
    with err.open("wb") as sink:
        child = subprocess.Popen(
            [*python, str(BIN / argv[0]), *argv[1:]],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink, cwd=tmp_path,
            preexec_fn=_sigint_as_at_a_terminal,
        )  # fmt: skip
    return child, err


def _own_lines(err: Path) -> str:
    return "\n".join(
        line for line in err.read_text(errors="replace").splitlines()
        if not line.startswith("import time:")
    )  # fmt: skip


COMMANDS = {
    "labctl": ["labctl", "--db", "sqlite:///lab.db", "status"],
    "labagent": ["labagent", "train", "M1", "--data-dir", "data", "--sim"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_ctrl_c_right_after_exec_never_prints_a_traceback(tmp_path: Path, command: str) -> None:
    child, err = _run(COMMANDS[command], tmp_path)
    child.send_signal(signal.SIGINT)
    status = reap(child)
    assert status in (130, SIGINT_DEATH), _own_lines(err)
    assert "Traceback" not in _own_lines(err)


@pytest.mark.parametrize(
    ("command", "module"),
    [
        ("labctl", "shared.entry"),
        ("labctl", "typer"),
        ("labctl", "controller.cli.app"),
        ("labagent", "shared.entry"),
        ("labagent", "pydantic"),
        ("labagent", "agent.cli"),
    ],
)
def test_ctrl_c_during_the_start_up_imports_exits_130_with_one_line(
    tmp_path: Path, command: str, module: str
) -> None:
    child, err = _run(COMMANDS[command], tmp_path, importtime=True)
    try:
        wait_until(
            lambda: re.search(rf"\|\s+{re.escape(module)}$", err.read_text(errors="replace"), re.M),
            timeout=30, what=f"{command} importing {module}",
        )  # fmt: skip
        child.send_signal(signal.SIGINT)
    finally:
        status = reap(child)
    own = _own_lines(err)
    assert status == 130, own
    assert "Traceback" not in own
    assert f"{command}: interrupted (Ctrl-C)" in own


def test_ctrl_c_while_labagent_train_runs_ends_the_session_and_keeps_it(tmp_path: Path) -> None:
    child, err = _run(COMMANDS["labagent"], tmp_path)
    try:
        wait_until(lambda: "started (Ctrl-C ends it)" in err.read_text(), 60, "the session")
        child.send_signal(signal.SIGINT)
    finally:
        status = reap(child)
    assert status == 0, err.read_text()
    assert "Traceback" not in err.read_text()
    assert (tmp_path / "data" / "M1.json").exists()


def test_labagent_train_refuses_a_missing_config_file_and_runs_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "labagent"), "train", "M1", "--data-dir", "data", "--sim",
         "--time-scale", "max", "--config", "nosuch.ini"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "labagent: error: --config: no such file nosuch.ini (labagent config init writes one)"
    )
    assert not (tmp_path / "data" / "M1.json").exists()
