"""``labctl`` through typer's CliRunner, for the tests of its commands.

:class:`Labctl` runs commands against one database, broker and prefix and checks
that an error is one clear line; ``labctl_on_terminal`` runs it on a pseudo-terminal
as a person does. The ``labctl`` and ``boxes`` (two :class:`~tests.fakes.FakeRig`
boxes) fixtures are imported by name where they are used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.cli import app
from shared.broker_url import BrokerSettings
from shared.protocol import Topics
from tests.fakes import FakeRig

from .cli_runner import CliRunner, Result
from .terminal import Terminal


class Labctl:
    """Runs labctl commands against one database, broker and prefix."""

    def __init__(self, db_url: str, broker_url: str, prefix: str) -> None:
        self.env = {
            "LABCTL_DB": db_url,
            "LABCTL_BROKER": broker_url,
            "LABCTL_PREFIX": prefix,
            "LABCTL_MQTT_USERNAME": None,
            "LABCTL_MQTT_PASSWORD": None,
        }
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, Any] | None = None) -> Result:
        return self.runner.invoke(app, list(args), env={**self.env, **(env or {})})

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    def add_boxes(self, *boxes: str) -> None:
        """``labctl box add`` each box: what a lab does for a rig that has not reported yet."""
        for box in boxes:
            self.ok("box", "add", box)

    def error(self, *args: str, env: dict[str, Any] | None = None) -> str:
        """Run a command that must fail with one clear line; return that line."""
        result = self(*args, env=env)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("labctl: error: ")
        return lines[0]


@pytest.fixture
def labctl(tmp_path: Path, broker_url: str, topic_prefix: str) -> Labctl:
    return Labctl(f"sqlite:///{tmp_path / 'lab.db'}", broker_url, topic_prefix)


def unused_port() -> int:
    from controller.demo.broker import find_free_port

    return find_free_port()


# ---------------------------------------------------------------- boxes


@pytest.fixture
def boxes(
    broker: BrokerSettings, topic_prefix: str, labctl: Labctl
) -> Iterator[dict[str, FakeRig]]:
    """Box 1 idle and box 2 running, known to ``labctl``'s lab as a collector makes a box
    known on its first status (no collector runs in these tests)."""
    labctl.add_boxes("1", "2")
    topics = Topics(topic_prefix)
    with FakeRig(broker, topics, "1") as one, FakeRig(broker, topics, "2", state="running") as two:
        yield {"1": one, "2": two}


def labctl_on_terminal(labctl: Labctl, *args: str) -> Terminal:
    """labctl as a person runs it: live views redraw and progress bars show on a terminal."""
    env = {k: v for k, v in {**os.environ, **labctl.env}.items() if v is not None}
    env.update(TERM="xterm", COLUMNS="160", LINES="60")
    return Terminal("controller.cli", args, env, split_stderr=True)
