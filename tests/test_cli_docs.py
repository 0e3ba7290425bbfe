"""docs/cli.md must be exactly what the code generates, so the reference cannot drift."""

from __future__ import annotations

import os
import sys

import pytest

from .conftest import REPO

sys.path.insert(0, str(REPO / "docs"))
from generate_cli import DOC, generate


def test_cli_reference_matches_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # help text wraps to the terminal width otherwise
    monkeypatch.setenv("TERM", "dumb")
    os.environ.pop("FORCE_COLOR", None)
    assert DOC.read_text(encoding="utf-8") == generate(), (
        "docs/cli.md is stale: run `python docs/generate_cli.py`"
    )


def test_cli_reference_covers_every_documented_command() -> None:
    text = DOC.read_text(encoding="utf-8")
    for command in ("assign", "start", "stop", "status", "monitor", "export", "import",
                    "results", "serve", "demo", "mouse", "cohort", "config"):  # fmt: skip
        assert f"`labctl {command}" in text
    for command in ("run", "train", "status", "config", "test-sensors", "dispense"):
        assert f"`labagent {command}" in text
