"""``labctl demo`` end to end in a short configuration: real broker, collector and rigs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.sessionfile import read_sessions

from .conftest import REPO

pytestmark = pytest.mark.slow


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


def test_demo_runs_a_lab_exports_every_mouse_and_leaves_no_process(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "demo",
         "--rigs", "2", "--minutes", "2", "--time-scale", "60", "--dir", str(lab_dir)],
        cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
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
    assert "DemoMouse1" in result.stdout and "d'" in result.stdout
    assert processes_mentioning(str(lab_dir)) == []
