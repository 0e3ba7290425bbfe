"""What the programs print at start-up: one line per thing worth saying, not a library's chatter.

A collector starting on a new database says once that it upgraded the schema, not
Alembic's seven INFO lines; a rig without GPIO says so in one line, not after eight
lines of gpiozero fallback warnings.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.db import create_database_engine, upgrade_schema

from .conftest import REPO


def test_a_schema_upgrade_logs_one_line_and_none_of_alembic_s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        with caplog.at_level(logging.DEBUG):
            upgrade_schema(engine)
    finally:
        engine.dispose()
    said = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert len(said) == 1, said
    name, message = said[0]
    assert name == "labctl.db" and message.startswith("upgrading database"), said


def test_labagent_without_gpio_says_so_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "test-sensors"],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    if result.returncode == 0:
        pytest.skip("this machine has GPIO")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("labagent: error: no GPIO available ("), line
    assert line.endswith("; on a machine that is not a Raspberry Pi use --sim"), line
    assert "lgpio" in line  # which pin libraries were tried, in that one line
