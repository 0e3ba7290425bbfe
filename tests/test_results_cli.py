"""labctl results: the original's d' per session and per day by one rule, and each session's status.

Only a database is needed (a SQLite file); the sessions come in through
``labctl import``. Numbers are hand-computed with the original library's
definitions (docs/analysis.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from controller.cli import app
from shared.sessionfile import read_sessions

from .cli_runner import CliRunner
from .conftest import SAMPLES
from .labctl import Labctl

Z = NormalDist().inv_cdf
T0 = 1_700_000_000.0


def session(date: str, spec: list[tuple[int, int]], **extra: Any) -> dict[str, Any]:
    trials = [
        {"start": T0 + 100 * n, "end": T0 + 100 * n + 1.5, "spout": s, "shaping": False,
         "cue_duration": 10000.0, "outcome": o, "spout_position": [1, 1]}
        for n, (s, o) in enumerate(spec, 1)
    ]  # fmt: skip
    return {"trials": trials, "resets": [], "spontaneous_reaches": [], "date": date, **extra}


SESSIONS = [
    # One day of three sessions without a touch: d' 0.0 each (both rates 0.5).
    session("2024-05-01", [(0, 0)], status="complete"),
    session("2024-05-01", [(1, 0)], status="stopped"),
    session("2024-05-01", [(1, 0)], status="complete"),
    session("2024-05-02", [], status="aborted"),  # no trials: no d'
    # L hit, R correct: H = 1.5 / 2, FA = 0.5 / 2 ; one trial cut short by Ctrl-C
    session("2024-05-03", [(0, 1), (1, 1)]) | {"trials_note": "imported"},
]
SESSIONS[4]["trials"].append({"start": T0 + 900})


@pytest.fixture
def labctl(tmp_path: Path) -> Any:
    env = {"LABCTL_DB": f"sqlite:///{tmp_path / 'lab.db'}", "LABCTL_MQTT_USERNAME": None}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    (tmp_path / "M1.json").write_text(json.dumps(SESSIONS))
    run("import", str(tmp_path / "M1.json"))
    return run


def test_per_session_rows_show_status_and_the_originals_d_prime(labctl: Any) -> None:
    rows = json.loads(labctl("results", "M1", "--json"))
    assert [r["d_prime"] for r in rows] == [
        0.0, 0.0, 0.0, None, pytest.approx(Z(0.75) - Z(0.25))
    ]  # fmt: skip
    assert [r["status"] for r in rows] == ["complete", "stopped", "complete", "aborted", None]
    assert [r["trials_skipped"] for r in rows] == [0, 0, 0, 0, 1]
    lines = labctl("results", "M1").splitlines()
    assert lines[0].split()[:4] == ["mouse", "date", "status", "trials"]
    assert [line.split()[2] for line in lines[2:7]] == [
        "complete", "stopped", "complete", "aborted", "-"
    ]  # fmt: skip
    d_column = lines[0].split().index("d'")
    assert [line.split()[d_column] for line in lines[2:7]] == [
        "0.00", "0.00", "0.00", "-", "1.35"
    ]  # fmt: skip
    assert lines[7] == (
        "1 trial(s) not counted (empty, cut short or cancelled); 'trials' includes them"
    )


def test_days_follow_the_per_session_rule(labctl: Any) -> None:
    days = json.loads(labctl("results", "M1", "--days", "--json"))
    assert [(d["date"], d["sessions"]) for d in days] == [
        ("2024-05-01", 3),
        ("2024-05-02", 1),
        ("2024-05-03", 1),
    ]
    # A day without touches gets the d' its sessions get (0.0), never a number made
    # from its missed trials (before: -0.29 beside three sessions showing none); a day
    # without trials gets none.
    assert [d["d_prime"] for d in days] == [0.0, None, pytest.approx(Z(0.75) - Z(0.25))]
    assert [d["status"] for d in days] == ["complete/stopped", "aborted", None]
    table = labctl("results", "M1", "--days").splitlines()
    d_column = table[0].split().index("d'")
    assert [line.split()[d_column] for line in table[2:5]] == ["0.00", "-", "1.35"]


def test_results_are_the_shared_analysis_of_the_stored_sessions(tmp_path: Path) -> None:
    from shared.analysis import mouse_results

    labctl = Labctl(f"sqlite:///{tmp_path / 'lab.db'}", "mqtt://127.0.0.1:1", "unused")  # no broker

    labctl.ok("import", str(SAMPLES / "legacy-clock-times.json"))
    rows = json.loads(labctl.ok("results", "legacy-clock-times", "--json"))
    expected = mouse_results(
        "legacy-clock-times", read_sessions(SAMPLES / "legacy-clock-times.json")
    )
    assert [r["d_prime"] for r in rows] == [e.d_prime for e in expected]
    assert [r["water_ul"] for r in rows] == [e.water_ul for e in expected]
    table = labctl.ok("results", "legacy-clock-times")
    assert "d'" in table and "2020-02-07" in table
