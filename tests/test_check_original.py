"""docs/check_original.py: only import lines (and run_mock.py's data folder) are changed.

With ``REACHLAB_ORIGINAL_REPO`` naming a checkout of m-col/reach, the whole
check runs too: the original's tests and merge script against agent.compat.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import REPO


def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_original", REPO / "docs" / "check_original.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_the_import_lines_change(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import reach\n"
        "import reach.session\n"
        "from reach import Mouse\n"
        "from reach.backends.raspberrypi import RaspberryPi\n"
        "    from reach.session import (\n"
        "x = reach.session.Targets.LEFT  # import reach stays in a comment\n"
        "data_dir = '/home/mcol/reach_data'\n"
    )
    changes = checker().rewrite(script, data_dir=tmp_path / "data")
    assert script.read_text().splitlines() == [
        "import agent.compat as reach",
        "import agent.compat as reach",
        "from agent.compat import Mouse",
        "from agent.compat.backends.raspberrypi import RaspberryPi",
        "    from agent.compat.session import (",
        "x = reach.session.Targets.LEFT  # import reach stays in a comment",
        f"data_dir = {str(tmp_path / 'data')!r}",
    ]
    assert len(changes) == 6


ORIGINAL = os.environ.get("REACHLAB_ORIGINAL_REPO")


@pytest.mark.skipif(not ORIGINAL, reason="REACHLAB_ORIGINAL_REPO names no checkout of m-col/reach")
def test_the_original_tests_and_merge_script_pass() -> None:
    done = subprocess.run(
        [sys.executable, "docs/check_original.py", str(ORIGINAL), "--skip-mock"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
