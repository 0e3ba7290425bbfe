"""The layering of DESIGN §2: agent and controller never import each other, and the agent
stays light (a Pi installs it without SQLAlchemy, typer or rich)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO

AGENT_MODULES = [
    "agent", "agent.cli", "agent.daemon", "agent.journal", "agent.mqtt", "agent.settings",
    "agent.train", "agent.utilities", "agent.runtime",
]  # fmt: skip
CONTROLLER_MODULES = [
    "controller.cli", "controller.collector", "controller.ingest", "controller.db",
    "controller.demo", "controller.views", "controller.testing", "controller.broker",
]  # fmt: skip


def imported_after(modules: list[str]) -> set[str]:
    """Top-level packages loaded by importing ``modules`` in a fresh interpreter."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_the_agent_imports_neither_the_controller_nor_its_heavy_dependencies() -> None:
    loaded = imported_after(AGENT_MODULES)
    assert "agent" in loaded and "shared" in loaded
    assert not loaded & {"controller", "sqlalchemy", "alembic", "typer", "rich", "amqtt"}


@pytest.mark.parametrize("module", CONTROLLER_MODULES)
def test_the_controller_never_imports_the_agent(module: str) -> None:
    assert "agent" not in imported_after([module])


def test_shared_imports_neither_side() -> None:
    loaded = imported_after(
        ["shared.config", "shared.protocol", "shared.documents", "shared.analysis"]
    )
    assert not loaded & {"agent", "controller"}
