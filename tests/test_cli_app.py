"""labctl's app (controller.cli.app): every mistake is one clear line, never a traceback.

Errors must be one line on stderr (``labctl: error: ...``) and exit status 2,
never a traceback; help names values, not Python types.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.cli import app

from .cli_runner import CliRunner
from .labctl import Labctl, boxes, labctl, unused_port

__all__ = ["boxes", "labctl"]  # fixtures, used by name


# ---------------------------------------------------------------- errors


def test_an_unknown_mouse_is_one_clear_line(labctl: Labctl) -> None:
    for args in (
        ["mouse", "show", "Nobody"],
        ["results", "Nobody"],
        ["export", "Nobody", "--out", "x"],
        ["unassign", "Nobody"],
    ):
        assert "unknown mouse 'Nobody'" in labctl.error(*args)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["results", "M1", "--bogus"], "No such option: --bogus (see 'labctl results --help')"),
        (["--bogus", "status"], "No such option: --bogus"),
        (["assign"], "Missing argument 'MOUSE'. (see 'labctl assign --help')"),
        (["dead-letters", "-n", "x"], "Invalid value for '--limit' / '-n'"),
        (["mouse", "frob"], "No such command 'frob'. (see 'labctl mouse --help')"),
    ],
)
def test_a_command_line_mistake_is_one_line_not_click_s_usage_block(
    labctl: Labctl, args: list[str], expected: str
) -> None:
    assert expected in labctl.error(*args)


def command_paths(command: Any, path: list[str]) -> Iterator[list[str]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from command_paths(sub, [*path, name])


def test_help_names_values_not_python_types() -> None:
    import typer

    paths = list(command_paths(typer.main.get_command(app), []))
    assert ["cohort", "create"] in paths and ["stop"] in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, result.output
        text = result.stdout
        where = f"labctl {' '.join(path)} --help"
        assert not re.search(r"<(str|int|float|path|list|Path)\b|list\[", text), (where, text)
        assert not re.search(r"\{[A-Za-z_]", text), (where, text)  # typer's {mouse} usage
    start = CliRunner().invoke(app, ["start", "--help"]).stdout
    assert "Usage: labctl start [OPTIONS] [MOUSE...]" in start and "--cohort NAME" in start
    stop = CliRunner().invoke(app, ["stop", "--help"]).stdout
    assert "-b, --box BOX" in stop
    create = CliRunner().invoke(app, ["cohort", "create", "--help"]).stdout
    assert "Usage: labctl cohort create [OPTIONS] NAME MOUSE..." in create


def test_an_invalid_mouse_or_box_id_names_the_value(labctl: Labctl) -> None:
    assert "invalid mouse id 'bad/mouse'" in labctl.error("assign", "bad/mouse", "--box", "1")
    assert "invalid box id 'box 1!'" in labctl.error("assign", "M1", "--box", "box 1!")
    assert "invalid cohort name" in labctl.error("cohort", "create", "no such!", "M1")


def test_an_unknown_cohort_or_box_is_one_clear_line(labctl: Labctl) -> None:
    assert "unknown cohort 'C9'" in labctl.error("start", "--cohort", "C9")
    assert "no box 99: it has never reported" in labctl.error("stop", "--box", "99")


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ("nonsense://x", "invalid database URL nonsense://x"),
        ("not a url", "invalid database URL 'not a url'"),
        ("postgresql+psycopg2://lab@127.0.0.1:1/lab", "cannot open database .*127.0.0.1:1/lab"),
    ],
)
def test_a_bad_or_unreachable_database_says_which_and_where(
    labctl: Labctl, db: str, message: str
) -> None:
    import re

    line = labctl.error("mouse", "list", env={"LABCTL_DB": db})
    assert re.search(message, line), line


def test_a_postgresql_url_without_its_driver_says_which_url_and_extra_to_use(
    labctl: Labctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bare postgresql:// asks SQLAlchemy for its default driver; make sure it is missing.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    line = labctl.error("mouse", "list", env={"LABCTL_DB": "postgresql://lab:secret@db/lab"})
    assert "driver 'psycopg' is not installed" in line, line
    assert "use postgresql+psycopg2://lab:***@db/lab" in line, line
    assert "pip install 'reachlab[postgres]'" in line
    assert "secret" not in line


def test_a_bad_or_unreachable_broker_says_which_and_where(labctl: Labctl) -> None:
    labctl.add_boxes("1")
    labctl.ok("assign", "M1", "--box", "1")
    line = labctl.error("--broker", "http://lab:1883", "start", "M1")
    assert "invalid broker URL 'http://lab:1883'" in line
    port = unused_port()
    line = labctl.error("--broker", f"mqtt://127.0.0.1:{port}", "start", "M1")
    assert f"cannot reach MQTT broker mqtt://127.0.0.1:{port}" in line


def test_bad_start_options_are_refused_before_anything_is_sent(
    labctl: Labctl, tmp_path: Path
) -> None:
    labctl.add_boxes("1")
    labctl.ok("assign", "M1", "--box", "1")
    assert "--config: no such file" in labctl.error("start", "M1", "--config", "missing.ini")
    bad = tmp_path / "bad.ini"
    bad.write_text("[Settings]\ncue_duraton = 5000\n")
    assert "unknown key 'cue_duraton'" in labctl.error("start", "M1", "--config", str(bad))
    assert "expected KEY=VALUE" in labctl.error("start", "M1", "--meta", "trainer")
    assert "exactly one" in labctl.error("start", "M1", "--all")
    assert "--duration must be positive" in labctl.error("start", "M1", "--duration", "-5")
