"""Secrets never on a command line and never in an error line.

A broker or database URL with a password given as an option (``ps`` shows it to
everyone on the machine) is refused by labctl and labagent, pointing to the
environment or a file; the same URL from the environment still works. Every error
line that shows a URL shows its password as ``***``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import cli as agent_cli
from controller.cli import app as labctl_app
from shared.broker_url import redact_url

from .cli_runner import CliRunner

SECRET = "hunter2secret"

CLEAN_ENV = {
    "LABCTL_DB": None,
    "LABCTL_BROKER": None,
    "LABCTL_MQTT_USERNAME": None,
    "LABCTL_MQTT_PASSWORD": None,
}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"mqtt://lab:{SECRET}@broker:1883", "mqtt://lab:***@broker:1883"),
        (f"postgresql+psycopg2://u:{SECRET}@db/lab", "postgresql+psycopg2://u:***@db/lab"),
        ("mqtt://lab@broker", "mqtt://lab@broker"),
        ("sqlite:////tmp/lab.db", "sqlite:////tmp/lab.db"),
        ("mqtt://[::1]:1883", "mqtt://[::1]:1883"),
    ],
)
def test_a_urls_password_is_shown_as_stars(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def _labctl(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        labctl_app,
        list(args),
        env={**CLEAN_ENV, "LABCTL_DB": f"sqlite:///{tmp_path / 'lab.db'}", **env},
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("option", "url", "fix"),
    [
        ("--broker", f"mqtt://lab:{SECRET}@127.0.0.1:1", "LABCTL_MQTT_PASSWORD"),
        ("--db", f"postgresql://u:{SECRET}@127.0.0.1/lab", "LABCTL_DB"),
    ],
)
def test_labctl_refuses_a_password_in_a_url_option_without_showing_it(
    tmp_path: Path, option: str, url: str, fix: str
) -> None:
    code, output = _labctl(tmp_path, option, url, "status")
    assert code == 2
    (line,) = output.strip().splitlines()
    assert line.startswith(f"labctl: error: {option} ") and "shows in `ps`" in line
    assert fix in line
    assert SECRET not in output


def test_labctl_takes_the_same_url_from_the_environment_and_never_prints_the_password(
    tmp_path: Path,
) -> None:
    _, output = _labctl(tmp_path, "status", LABCTL_BROKER=f"mqtt://lab:{SECRET}@127.0.0.1:1")
    assert "shows in `ps`" not in output
    assert "cannot reach MQTT broker" in output
    assert SECRET not in output


def test_a_bad_database_url_is_named_without_its_password(tmp_path: Path) -> None:
    code, output = _labctl(tmp_path, "status", LABCTL_DB=f"foo+bar://u:{SECRET}@x:notaport/db")
    assert code == 2
    assert SECRET not in output
    assert "u:***@" in output


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("LABAGENT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LABAGENT_JOURNAL", str(tmp_path / "journal.sqlite3"))
    monkeypatch.setenv("LABAGENT_DATA_DIR", str(tmp_path / "data"))


def test_labagent_refuses_a_password_in_the_broker_option_without_showing_it(
    agent_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status = agent_cli.main(["run", "--box", "1", "--sim", "--broker", f"mqtt://r1:{SECRET}@h"])
    captured = capsys.readouterr()
    assert status == 2
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("labagent: error: --broker mqtt://r1:***@h: ")
    assert "LABAGENT_MQTT_PASSWORD" in line
    assert SECRET not in captured.out + captured.err


def test_labagent_names_a_bad_broker_url_from_the_environment_without_its_password(
    agent_env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABAGENT_BROKER", f"mqtt://r1:{SECRET}@h:99999")
    status = agent_cli.main(["run", "--box", "1", "--sim"])
    captured = capsys.readouterr()
    assert status == 2
    assert "invalid broker URL 'mqtt://r1:***@h:99999'" in captured.err
    assert SECRET not in captured.out + captured.err
