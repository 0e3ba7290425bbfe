"""``labctl`` through typer's CliRunner: what a person sees, and what reaches the boxes.

Errors must be one line on stderr (``labctl: error: ...``) and exit status 2,
never a traceback. Commands that talk to boxes run against a real broker
with :class:`~tests.fakes.FakeRig` boxes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from controller.cli import app
from controller.db import open_database
from controller.files import import_files
from shared.broker_url import BrokerSettings
from shared.carryover import carry_over_from
from shared.config import TaskConfig
from shared.protocol import StartCommand, StopCommand, Topics
from shared.sessionfile import dumps_sessions, read_sessions, write_sessions
from tests.fakes import FakeRig, session_dict, synthetic_session

from .conftest import REPO, SAMPLES
from .terminal import Terminal
from .waiting import wait_until


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
    assert "unknown box '99'" in labctl.error("stop", "--box", "99")


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
    labctl.ok("assign", "M1", "--box", "1")
    line = labctl.error("--broker", "http://lab:1883", "start", "M1")
    assert "invalid broker URL 'http://lab:1883'" in line
    port = unused_port()
    line = labctl.error("--broker", f"mqtt://127.0.0.1:{port}", "start", "M1")
    assert f"cannot reach MQTT broker mqtt://127.0.0.1:{port}" in line


def test_bad_start_options_are_refused_before_anything_is_sent(
    labctl: Labctl, tmp_path: Path
) -> None:
    labctl.ok("assign", "M1", "--box", "1")
    assert "--config: no such file" in labctl.error("start", "M1", "--config", "missing.ini")
    bad = tmp_path / "bad.ini"
    bad.write_text("[Settings]\ncue_duraton = 5000\n")
    assert "unknown key 'cue_duraton'" in labctl.error("start", "M1", "--config", str(bad))
    assert "expected KEY=VALUE" in labctl.error("start", "M1", "--meta", "trainer")
    assert "exactly one" in labctl.error("start", "M1", "--all")
    assert "--duration must be positive" in labctl.error("start", "M1", "--duration", "-5")


def test_importing_an_unusable_file_imports_nothing_of_it(labctl: Labctl, tmp_path: Path) -> None:
    broken = tmp_path / "Broken.json"
    broken.write_text('[{"trials": [}]')
    assert "Broken.json: not valid JSON" in labctl.error("import", str(broken))
    misnamed = tmp_path / "bad name!.json"
    misnamed.write_text("[]")
    assert "file name must be <mouse id>.json" in labctl.error("import", str(misnamed))
    assert "no such file" in labctl.error("import", str(tmp_path / "absent.json"))
    assert "no mice yet" in labctl.ok("mouse", "list")
    # With a good file beside it: the good one is imported, the bad one still refused (exit 1).
    good = tmp_path / "Good.json"
    shutil.copy(SAMPLES / "later-float-times.json", good)
    result = labctl("import", str(good), str(broken))
    assert result.exit_code == 1, result.output
    assert (
        result.stderr.strip()
        == f"labctl: error: {broken}: not valid JSON: Expecting value (line 1, column 14)"
    )
    assert (
        "1 session(s) imported, 0 already stored, from 1 file(s); 1 file(s) refused"
        in result.stdout
    )
    assert [m["mouse"] for m in json.loads(labctl.ok("mouse", "list", "--json"))] == ["Good"]


# ---------------------------------------------------------------- assign, mice, cohorts


def test_assign_works_on_an_empty_database_and_says_it_created_the_mouse(labctl: Labctl) -> None:
    out = labctl.ok("assign", "ExampleMouse1", "--box", "1")
    assert "created mouse ExampleMouse1" in out and "assigned ExampleMouse1 to box 1" in out
    assert "already on box 1" in labctl.ok("assign", "ExampleMouse1", "--box", "1")
    line = labctl.error("assign", "ExampleMouse1", "--box", "2")
    assert "is on box 1; pass --move" in line
    assert "moved ExampleMouse1 from box 1 to box 2" in labctl.ok(
        "assign", "ExampleMouse1", "--box", "2", "--move"
    )
    shown = json.loads(labctl.ok("mouse", "show", "ExampleMouse1", "--json"))
    assert [a["box"] for a in shown["assignments"]] == ["1", "2"]
    assert shown["assignments"][0]["until"] is not None


def test_mice_and_cohorts(labctl: Labctl) -> None:
    assert "created mouse A" in labctl.ok("mouse", "add", "A", "B", "--notes", "cage 4")
    out = labctl.ok("cohort", "create", "C1", "A", "B", "C", "--create")
    assert "created mouse C" in out and "created mouse A" not in out
    assert "already exists" in labctl.error("cohort", "create", "C1", "A")
    assert labctl.ok("cohort", "list").strip() == "C1: A B C"
    labctl.ok("cohort", "remove", "C1", "B")
    assert json.loads(labctl.ok("cohort", "list", "--json")) == [
        {"cohort": "C1", "mice": ["A", "C"]}
    ]
    labctl.ok("assign", "A", "--box", "3")
    assert "A  box 3" in labctl.ok("cohort", "show", "C1")
    mice = json.loads(labctl.ok("mouse", "list", "--json"))
    assert [(m["mouse"], m["box"], m["notes"]) for m in mice] == [
        ("A", "3", "cage 4"),
        ("B", None, "cage 4"),
        ("C", None, ""),
    ]


def test_a_cohort_of_unknown_mice_is_refused_naming_them_unless_create_is_given(
    labctl: Labctl,
) -> None:
    labctl.ok("mouse", "add", "M1")
    line = labctl.error("cohort", "create", "C1", "M1", "M2", "Mx3")
    assert "unknown mice M2, Mx3" in line and "--create" in line, line
    # Nothing was created: neither the cohort nor any mouse.
    assert json.loads(labctl.ok("cohort", "list", "--json")) == []
    assert [m["mouse"] for m in json.loads(labctl.ok("mouse", "list", "--json"))] == ["M1"]
    labctl.ok("cohort", "create", "C1", "M1")
    assert "unknown mouse M4" in labctl.error("cohort", "add", "C1", "M4")
    assert labctl.ok("cohort", "list").strip() == "C1: M1"
    out = labctl.ok("cohort", "add", "C1", "M4", "--create")
    assert "created mouse M4" in out
    assert labctl.ok("cohort", "list").strip() == "C1: M1 M4"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize(("answer", "created"), [(b"y", True), (b"", False)])
def test_on_a_terminal_cohort_create_asks_before_creating_unknown_mice(
    labctl: Labctl, answer: bytes, created: bool
) -> None:
    env = {k: v for k, v in {**os.environ, **labctl.env}.items() if v is not None}
    term = Terminal("controller.cli", ["cohort", "create", "C1", "M7"], env, typing=True)
    try:
        term.read_until(b"M7 not in the lab yet: create them? [y/N]:")
        os.write(term.master, answer + b"\n")
        term.read_until_exit(30, "labctl cohort create did not finish")
    finally:
        term.close()
    mice = [m["mouse"] for m in json.loads(labctl.ok("mouse", "list", "--json"))]
    if created:
        assert term.process.returncode == 0, term.text()
        assert "created mouse M7" in term.text() and mice == ["M7"]
    else:
        assert term.process.returncode == 2, term.text()
        assert "unknown mouse M7" in term.text() and mice == []


def test_config_init_writes_the_defaults_and_never_overwrites_silently(
    labctl: Labctl, tmp_path: Path
) -> None:
    path = tmp_path / "reach.ini"
    assert str(path) in labctl.ok("config", "init", str(path))
    from shared.config import read_config

    assert read_config(path) == TaskConfig()
    assert "already exists" in labctl.error("config", "init", str(path))
    labctl.ok("config", "init", str(path), "--force")


def test_config_show_reports_every_bad_key_in_one_line(labctl: Labctl, tmp_path: Path) -> None:
    path = tmp_path / "reach.ini"
    path.write_text(
        "[Settings]\nwindow = 0\ncue_duraton = 5000\ntimeout = true\nshaping = sometimes\n"
    )
    line = labctl.error("config", "show", str(path))
    assert str(path) in line
    for problem in ("key 'window'", "unknown key 'cue_duraton'", "key 'timeout'", "key 'shaping'"):
        assert problem in line, line


# ---------------------------------------------------------------- files


def test_import_then_export_returns_the_sample_files_byte_for_byte(
    db_url: str, tmp_path: Path, broker_url: str
) -> None:
    labctl = Labctl(db_url, broker_url, "unused")
    samples = sorted(SAMPLES.glob("*.json"))
    assert samples
    labctl.ok("import", *map(str, samples))
    out = labctl.ok("import", *map(str, samples))  # twice: nothing changes
    assert "0 session(s) imported, 3 already stored, from 2 file(s)" in out
    labctl.ok("export", "--all", "--out", str(tmp_path / "out"))
    for sample in samples:
        assert (tmp_path / "out" / sample.name).read_bytes() == sample.read_bytes()
    assert "unchanged" in labctl.ok("export", "--all", "--out", str(tmp_path / "out"))


def test_import_keeps_the_file_order_even_when_the_times_disagree(
    labctl: Labctl, tmp_path: Path
) -> None:
    sessions = read_sessions(SAMPLES / "legacy-clock-times.json")
    later, earlier = sessions[1], sessions[0]
    odd = [later, earlier, {**earlier, "notes": "no times at all", "date": None}]
    odd[2].pop("start_time")
    write_sessions(tmp_path / "Odd.json", odd)
    labctl.ok("import", str(tmp_path / "Odd.json"))
    labctl.ok("export", "Odd", "--out", str(tmp_path / "out"))
    assert (tmp_path / "out" / "Odd.json").read_text() == dumps_sessions(odd)


def test_recorded_sessions_and_imported_ones_export_in_training_order(
    labctl: Labctl, tmp_path: Path
) -> None:
    old = read_sessions(SAMPLES / "later-float-times.json")  # 2022
    write_sessions(tmp_path / "M1.json", old)
    recorded = synthetic_session(mouse="M1", trials=5)  # 2023
    db = open_database(labctl.env["LABCTL_DB"])
    from controller.collector.ingest import Incoming, Ingest
    from shared.documents import dump_document

    class Sink:
        def send(self, box: str, command: Any) -> None:
            pass

    Ingest(db, Sink()).handle(
        [Incoming(Topics().events("1"), dump_document(d).encode(), 0.0) for d in recorded]
    )
    import_files(db, [tmp_path / "M1.json"])  # imported after, but older
    db.close()
    labctl.ok("export", "M1", "--out", str(tmp_path / "out"))
    assert read_sessions(tmp_path / "out" / "M1.json") == [*old, session_dict(recorded)]


def test_export_never_drops_sessions_a_file_already_holds(labctl: Labctl, tmp_path: Path) -> None:
    out = tmp_path / "out"
    labctl.ok("import", str(SAMPLES / "later-float-times.json"))
    labctl.ok("export", "later-float-times", "--out", str(out))
    target = out / "later-float-times.json"
    extra = {**read_sessions(target)[0], "notes": "written by hand on the rig"}
    write_sessions(target, [*read_sessions(target), extra])
    before = target.read_bytes()
    result = labctl("export", "later-float-times", "--out", str(out))
    assert result.exit_code == 1
    assert "holds 1 session(s) the database does not have" in result.stderr
    assert target.read_bytes() == before
    labctl.ok("export", "later-float-times", "--out", str(out), "--force")
    assert target.read_bytes() == (SAMPLES / "later-float-times.json").read_bytes()


def test_results_are_the_shared_analysis_of_the_stored_sessions(labctl: Labctl) -> None:
    from shared.analysis import mouse_results

    labctl.ok("import", str(SAMPLES / "legacy-clock-times.json"))
    rows = json.loads(labctl.ok("results", "legacy-clock-times", "--json"))
    expected = mouse_results(
        "legacy-clock-times", read_sessions(SAMPLES / "legacy-clock-times.json")
    )
    assert [r["d_prime"] for r in rows] == [e.d_prime for e in expected]
    assert [r["water_ul"] for r in rows] == [e.water_ul for e in expected]
    table = labctl.ok("results", "legacy-clock-times")
    assert "d'" in table and "2020-02-07" in table


# ---------------------------------------------------------------- dead letters


def test_dead_letters_lists_what_the_collector_could_not_use_newest_first(
    db_url: str, broker_url: str
) -> None:
    from controller.collector.ingest import Incoming, Ingest
    from shared.protocol import Status, encode

    labctl = Labctl(db_url, broker_url, "unused")
    assert labctl.ok("dead-letters").strip() == "no dead letters"
    assert json.loads(labctl.ok("dead-letters", "--json")) == []

    class Sink:
        def send(self, box: str, command: Any) -> None:
            pass

    topics = Topics()
    long_garbage = b"[bold]not markup[/bold] \n\t" + b"x" * 500 + b"\xff"
    db = open_database(db_url)
    try:
        Ingest(db, Sink()).handle(
            [
                Incoming(topics.events("1"), b"{not json", 1_000.0),
                Incoming(topics.status("2"), encode(Status(box="3", state="idle")), 2_000.0),
                Incoming(f"{topics.prefix}/rigs/1/elsewhere", long_garbage, 3_000.0),
            ]
        )
    finally:
        db.close()

    rows = json.loads(labctl.ok("dead-letters", "--json"))
    assert [(r["received_at"], r["topic"]) for r in rows] == [
        (3_000.0, f"{topics.prefix}/rigs/1/elsewhere"),
        (2_000.0, topics.status("2")),
        (1_000.0, topics.events("1")),
    ]
    assert "status of box '3' on the topic of box '2'" in rows[1]["reason"]
    assert rows[2]["payload_preview"] == "{not json" and rows[2]["payload_bytes"] == 9
    garbage = rows[0]
    assert garbage["payload_bytes"] == len(long_garbage)
    assert garbage["payload_preview"].startswith("[bold]not markup[/bold] xxx")
    assert len(garbage["payload_preview"]) == 60 and garbage["payload_preview"].endswith("\u2026")

    newest = json.loads(labctl.ok("dead-letters", "--limit", "1", "--json"))
    assert [r["topic"] for r in newest] == [f"{topics.prefix}/rigs/1/elsewhere"]

    table = labctl.ok("dead-letters")
    assert "newest first (all 3)" in table
    assert table.index(f"{topics.prefix}/rigs/1/elsewhere") < table.index(topics.status("2"))
    assert table.index(topics.status("2")) < table.index(topics.events("1"))
    assert "[bold]not markup[/bold]" in table  # a payload is shown, never read as markup
    assert "{not json (9 B)" in table
    assert "the newest 2 of 3" in labctl.ok("dead-letters", "-n", "2")
    assert "--limit must be at least 1, got 0" in labctl.error("dead-letters", "--limit", "0")


# ---------------------------------------------------------------- boxes


@pytest.fixture
def boxes(broker: BrokerSettings, topic_prefix: str) -> Iterator[dict[str, FakeRig]]:
    topics = Topics(topic_prefix)
    with FakeRig(broker, topics, "1") as one, FakeRig(broker, topics, "2", state="running") as two:
        yield {"1": one, "2": two}


@pytest.mark.broker
def test_start_sends_config_carry_over_and_metadata_and_reports_what_did_not_start(
    labctl: Labctl, boxes: dict[str, FakeRig], tmp_path: Path
) -> None:
    # M1 on an idle box, with a previous session; M2 on a busy box; M3 on a box with no
    # agent; M4 on no box at all.
    previous = session_dict(synthetic_session(mouse="M1", trials=20, seed=9))
    write_sessions(tmp_path / "M1.json", [previous])
    labctl.ok("import", str(tmp_path / "M1.json"))
    for mouse, box in (("M1", "1"), ("M2", "2"), ("M3", "3")):
        labctl.ok("assign", mouse, "--box", box)
    labctl.ok("mouse", "add", "M4")
    labctl.ok("cohort", "create", "C1", "M1", "M2", "M3", "M4")
    result = labctl(
        "start", "--cohort", "C1", "--duration", "600", "--meta", "trainer=Matt",
        "--meta", "weight=24.5", "--timeout", "5",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "1 of 4 session(s) started" in result.stdout
    assert "box 2 is busy" in result.stdout
    assert "box 3 is offline" in result.stdout
    assert "no box assigned" in result.stdout
    assert boxes["1"].wait(lambda: any(isinstance(c, StartCommand) for c in boxes["1"].commands))
    (command,) = [c for c in boxes["1"].commands if isinstance(c, StartCommand)]
    assert command.mouse == "M1"
    assert command.config == TaskConfig(duration=600)
    assert command.metadata == {"trainer": "Matt", "weight": 24.5}
    assert command.carry_over == carry_over_from(previous, TaskConfig().window)
    assert command.session_id in result.stdout
    assert not [c for c in boxes["2"].commands if isinstance(c, StartCommand)]


@pytest.mark.broker
def test_start_of_idle_boxes_succeeds_and_a_second_start_finds_them_busy(
    labctl: Labctl, broker: BrokerSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    with FakeRig(broker, topics, "1") as one, FakeRig(broker, topics, "2") as two:
        labctl.ok("assign", "A", "--box", "1")
        labctl.ok("assign", "B", "--box", "2")
        out = labctl.ok("start", "--all")
        assert "2 of 2 session(s) started" in out
        assert one.state == two.state == "running"
        one.publish_status()  # the box says so, as the agent does after starting
        result = labctl("start", "A")
        assert result.exit_code == 1 and "busy" in result.stdout
        stopped = labctl.ok("stop", "A")
        assert "yes" in stopped
        assert any(isinstance(c, StopCommand) for c in one.commands)


@pytest.mark.broker
def test_status_merges_the_live_statuses_with_the_database(
    labctl: Labctl, boxes: dict[str, FakeRig]
) -> None:
    labctl.ok("assign", "M1", "--box", "1")
    labctl.ok("assign", "M9", "--box", "9")  # a box that never reported
    boxes["2"].publish_status(
        mouse="M2", session_id="s2", trial=12, rewards=7, session_started=1000.0,
        session_duration=1800.0, clock=1900.0,
    )  # fmt: skip
    report = json.loads(labctl.ok("status", "--json"))
    assert report["broker_reachable"] is True
    rows = {row["box"]: row for row in report["boxes"]}
    assert rows["1"]["online"] and rows["1"]["state"] == "idle" and rows["1"]["assigned"] == "M1"
    assert rows["2"]["state"] == "running" and rows["2"]["mouse"] == "M2"
    assert (rows["2"]["trial"], rows["2"]["rewards"]) == (12, 7)
    assert rows["2"]["progress"] == pytest.approx(0.5)
    assert not rows["9"]["online"] and rows["9"]["state"] == "offline"
    table = labctl.ok("status")
    assert "M2" in table and "50%" in table


def test_status_without_the_broker_shows_the_database_and_warns(labctl: Labctl) -> None:
    labctl.ok("assign", "M1", "--box", "1")
    port = unused_port()
    result = labctl("--broker", f"mqtt://127.0.0.1:{port}", "status", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["broker_reachable"] is False
    assert f"cannot reach MQTT broker mqtt://127.0.0.1:{port}" in result.stderr


@pytest.mark.broker
def test_monitor_once_or_for_a_while_shows_every_box(
    labctl: Labctl, boxes: dict[str, FakeRig]
) -> None:
    out = labctl.ok("monitor", "--once")
    assert "recent events" in out and "running" in out and "idle" in out
    # --duration ends the live view by itself and leaves its last picture.
    out = labctl.ok("monitor", "--duration", "0.3", "--refresh", "0.1")
    assert "running" in out and "idle" in out and "Ctrl-C to leave" in out


def labctl_on_terminal(labctl: Labctl, *args: str) -> Terminal:
    """labctl as a person runs it: live views redraw and progress bars show on a terminal."""
    env = {k: v for k, v in {**os.environ, **labctl.env}.items() if v is not None}
    env.update(TERM="xterm", COLUMNS="160", LINES="60")
    return Terminal("controller.cli", args, env, split_stderr=True)


@pytest.mark.broker
@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_monitor_shows_events_live_and_leaves_cleanly_on_ctrl_c(
    labctl: Labctl, boxes: dict[str, FakeRig]
) -> None:
    term = labctl_on_terminal(labctl, "monitor", "--refresh", "0.1")
    try:
        # Events are not retained, so one sent before the monitor subscribed is lost: the rig
        # keeps sending the session's start until the live view shows it.
        start = synthetic_session(mouse="M1", box="1", trials=1)[:1]

        def shown() -> bool:
            boxes["1"].publish(start, hold=False)
            term.read(0.2)  # this is the pause between two checks
            return b"session started: M1" in term.screen

        def alive() -> None:
            assert term.process.poll() is None, f"labctl monitor exited: {term.process.returncode}"

        wait_until(
            shown, 30, "the event on the monitor's screen", alive=alive, interval=0,
            detail=lambda: repr(term.screen[-2000:]),
        )  # fmt: skip
        term.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        term.read_until_exit(20, "labctl monitor did not leave on SIGINT")
    finally:
        term.close()
    assert term.process.returncode == 0, term.errors
    assert b"Traceback" not in term.screen
    assert term.errors == ""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_exporting_many_mice_on_a_terminal_shows_a_progress_bar(
    labctl: Labctl, tmp_path: Path
) -> None:
    sessions = read_sessions(SAMPLES / "later-float-times.json")
    files = []
    for number in range(5):
        path = tmp_path / "in" / f"Mouse{number}.json"
        write_sessions(path, sessions)
        files.append(str(path))
    labctl.ok("import", *files)
    term = labctl_on_terminal(labctl, "export", "--all", "--out", str(tmp_path / "out"))
    try:
        term.read_until_exit(60, "labctl export did not finish")
    finally:
        term.close()
    assert term.process.returncode == 0, term.errors
    text = term.text()
    assert re.search(r"exporting ━+ 5/5 Mouse4", text), text  # the bar, counting the mice
    for number in range(5):
        assert f"Mouse{number}: 1 session(s) ->" in text
        assert read_sessions(tmp_path / "out" / f"Mouse{number}.json") == sessions
    # Not a terminal: no bar, only the lines (as in every other test here).
    plain = labctl.ok("export", "--all", "--out", str(tmp_path / "out"))
    assert "/5" not in plain and plain.count("unchanged") == 5


@pytest.mark.broker
def test_unassigning_a_mouse_whose_session_runs_is_refused_unless_it_is_stopped_first(
    labctl: Labctl, broker: BrokerSettings, topic_prefix: str
) -> None:
    with FakeRig(broker, Topics(topic_prefix), "1", state="running") as rig:
        rig.publish_status(mouse="M1", session_id="s1", trial=3)
        labctl.ok("assign", "M1", "--box", "1")
        line = labctl.error("unassign", "M1")
        assert "M1 has a session running on box 1" in line and "--stop" in line, line
        assert json.loads(labctl.ok("mouse", "show", "M1", "--json"))["box"] == "1"
        assert not [c for c in rig.commands if isinstance(c, StopCommand)]
        out = labctl.ok("unassign", "M1", "--stop")
        assert "stopped M1's session on box 1" in out and "took M1 off box 1" in out
        assert len([c for c in rig.commands if isinstance(c, StopCommand)]) == 1
        assert json.loads(labctl.ok("mouse", "show", "M1", "--json"))["box"] is None


def test_without_the_broker_unassign_judges_by_the_box_s_last_recorded_status(
    labctl: Labctl,
) -> None:
    from controller.db import Box
    from shared.protocol import Status, encode

    labctl.ok("assign", "M1", "--box", "1")
    db = open_database(labctl.env["LABCTL_DB"])
    with db.session() as session:
        box = session.get(Box, "1")
        assert box is not None
        box.state = "running"
        box.status = encode(Status(box="1", state="running", mouse="M1")).decode()
    db.close()
    away = {"LABCTL_BROKER": f"mqtt://127.0.0.1:{unused_port()}"}
    result = labctl("unassign", "M1", env=away)
    assert result.exit_code == 2, result.output
    assert "labctl: error: mouse M1 has a session running on box 1" in result.stderr
    assert "last recorded states" in result.stderr  # and it says what it judged by


@pytest.mark.broker
def test_stop_mouse_finds_its_session_by_the_session_s_mouse_when_it_is_on_no_box(
    labctl: Labctl, broker: BrokerSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    with FakeRig(broker, topics, "1") as one, FakeRig(broker, topics, "2") as two:
        # M1 is on no box, yet box 1 runs a session of M1 (started before its assignment
        # ended, e.g. while the broker was away): stop M1 finds it there.
        labctl.ok("assign", "M1", "--box", "1")
        labctl.ok("unassign", "M1")
        one.state = "running"
        one.publish_status(mouse="M1", session_id="s1", trial=3)
        out = labctl.ok("stop", "M1")
        assert re.search(r"M1\s.*1\s.*yes", out), out
        assert len([c for c in one.commands if isinstance(c, StopCommand)]) == 1
        # M2 is on box 2 now, but its session runs on box 1: it is stopped where it runs.
        labctl.ok("assign", "M2", "--box", "2")
        one.state = "running"
        one.publish_status(mouse="M2", session_id="s2", trial=1)
        labctl.ok("stop", "M2")
        assert len([c for c in one.commands if isinstance(c, StopCommand)]) == 2
        assert not [c for c in two.commands if isinstance(c, StopCommand)]
        # Nothing runs and no box: one clear line.
        labctl.ok("mouse", "add", "M3")
        assert "M3 has no running session and is not on any box" in labctl.error("stop", "M3")


@pytest.mark.broker
def test_assign_neither_moves_nor_replaces_a_mouse_whose_session_runs(
    labctl: Labctl, broker: BrokerSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    with FakeRig(broker, topics, "1", state="running") as one, FakeRig(broker, topics, "2"):
        labctl.ok("assign", "M1", "--box", "1")
        one.publish_status(mouse="M1", session_id="s1", trial=3)
        for args in (("M1", "--box", "2", "--move"), ("M2", "--box", "1", "--replace")):
            line = labctl.error("assign", *args)
            assert "mouse M1 has a session running on box 1: stop it first" in line, line
        rows = {m["mouse"]: m["box"] for m in json.loads(labctl.ok("mouse", "list", "--json"))}
        assert rows == {"M1": "1"}  # nothing changed, and M2 was not created
        labctl.ok("stop", "M1")
        one.publish_status()  # idle: the session ended
        assert "moved M1 from box 1 to box 2" in labctl.ok("assign", "M1", "--box", "2", "--move")


@pytest.mark.broker
def test_stop_all_with_nothing_running_says_so(labctl: Labctl, broker: BrokerSettings) -> None:
    prefix = labctl.env["LABCTL_PREFIX"]
    assert prefix is not None
    with FakeRig(broker, Topics(prefix), "1"):
        assert "no session is running" in labctl.ok("stop", "--all")


# ---------------------------------------------------------------- serve


def poll(condition: Any, what: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Wait for another process's effect (there is no event to wait on)."""

    def alive() -> None:
        assert proc.poll() is None, f"labctl serve exited with {proc.returncode}"

    wait_until(condition, timeout, what, alive=alive)


def box_known(db_url: str, box: str) -> bool:
    from controller.db import Box

    check = open_database(db_url)
    try:
        with check.reader() as session:
            return session.get(Box, box) is not None
    finally:
        check.close()


@pytest.mark.broker
def test_serve_stores_a_session_and_stops_cleanly_on_sigterm(
    tmp_path: Path, broker_url: str, broker: BrokerSettings, topic_prefix: str
) -> None:
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    env = {
        **os.environ,
        "LABCTL_DB": db,
        "LABCTL_BROKER": broker_url,
        "LABCTL_PREFIX": topic_prefix,
    }
    open_database(db).close()  # schema first, so the test can look while serve runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "serve"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with FakeRig(broker, Topics(topic_prefix), "1") as rig:
            # The box's retained status reaching the database shows the collector has subscribed.
            poll(lambda: box_known(db, "1"), "the collector to subscribe", proc)
            docs = synthetic_session(mouse="M1", box="1", trials=5)
            rig.publish(docs)
            assert rig.wait(lambda: docs[0].session_id in rig.committed, 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert "collector stopped" in output and "Traceback" not in output
    check = open_database(db)
    with check.reader_engine.connect() as conn:
        from controller.store import mouse_sessions

        assert mouse_sessions(conn, "M1") == [session_dict(docs)]
    check.close()
