"""controller.control: start and stop composed once, for labctl, the dashboard and later callers.

The request's rules are refused as problems before anything is asked; a caller with
its own link (as the alerts and schedules will be) gets typed outcomes and warnings,
not labctl's text; ``labctl start`` and ``POST /api/start`` go through the same
function and get the same outcome, each worded in its own terms (the dashboard's
mistakes named by its JSON fields, not by labctl's flags). And the task config is
one model: the controller that builds the start command and the agent that receives
it refuse a bad one with the same words, and the schema docs show it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast, get_args

import pytest
from pydantic import BaseModel, ValidationError

from agent.commands import Commands, RigAgent
from controller import control
from controller.cli import app as labctl_app
from controller.cli import sessions as cli_sessions
from controller.control import (
    Outcome,
    OutcomeCode,
    Problem,
    RequestError,
    StartRequest,
    StartResult,
    StopRequest,
)
from controller.db import Database, open_database
from controller.husbandry.boxes import add_box
from controller.husbandry.days import today
from controller.lab import add_mouse, assign
from controller.mqtt import BrokerLink
from controller.web import control as web_control
from shared.config import TaskConfig
from shared.documents import SessionStart, build_session
from shared.errors import ConfigError
from shared.protocol import Reply, StartCommand, Status

from .cli_runner import CliRunner

REPO = Path(__file__).resolve().parents[1]
TOKEN = "control-test-token-" + "x" * 8


# ---------------------------------------------------------------- the request's rules


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "choose_mice"),
        ({"mice": ["M1"], "cohort": "C1"}, "choose_mice"),
        ({"cohort": "C1", "every": True}, "choose_mice"),
        ({"mice": ["M1"], "weight": 24.0, "metadata": {"weight": 24}}, "weight_twice"),
        ({"mice": ["M1", "M2"], "weight": 24.0}, "weight_one_mouse"),
        ({"cohort": "C1", "weight": 24.0}, "weight_one_mouse"),
        ({"mice": ["M1"], "shift": 1}, "shift_needs_cohort"),
        ({"cohort": "C1", "every": True, "shift": 1}, "shift_needs_cohort"),
        ({"mice": ["M1"], "force": True, "reason": "  "}, "force_needs_reason"),
    ],
)
def test_a_start_request_that_breaks_a_rule_is_refused_as_its_problem(
    fields: dict[str, Any], problem: Problem
) -> None:
    with pytest.raises(RequestError) as refused:
        StartRequest(by="test", **fields)
    assert refused.value.problem == problem


def test_a_start_request_with_metadata_a_session_cannot_store_is_refused() -> None:
    with pytest.raises(ConfigError, match="'notes' must be text"):
        StartRequest(mice=["M1"], metadata={"notes": 42}, by="t")
    with pytest.raises(TypeError):
        StartRequest(mice="M1", by="t")


def test_a_start_request_within_the_rules_is_built() -> None:
    assert StartRequest(mice=["M1", "M1"], weight=24.0, by="t").weight == 24.0
    assert StartRequest(cohort="C1", shift=2, by="t").shift == 2
    assert StartRequest(every=True, force=True, reason="vet", by="t").force


@pytest.mark.parametrize(
    "fields", [{}, {"mice": ["M1"], "boxes": ["1"]}, {"cohort": "C1", "every": True}]
)
def test_a_stop_request_names_exactly_one_choice(fields: dict[str, Any]) -> None:
    with pytest.raises(RequestError) as refused:
        StopRequest(**fields)
    assert refused.value.problem == "choose_stop"


def test_every_problem_is_worded_by_labctl_in_flags_and_by_the_dashboard_in_fields() -> None:
    problems = set(get_args(Problem))
    assert set(cli_sessions.REQUEST_WORDS) == problems
    assert set(web_control.REQUEST_WORDS) == problems
    for problem in ("choose_mice", "choose_stop"):
        cli, web = cli_sessions.REQUEST_WORDS[problem], web_control.REQUEST_WORDS[problem]
        assert "--all" in cli and "MOUSE..." in cli
        assert '"mice"' in web and '"cohort"' in web and "--" not in web
    codes = set(get_args(OutcomeCode))
    assert set(cli_sessions.HINTS) <= codes and set(web_control.HINTS) == set(cli_sessions.HINTS)


# ---------------------------------------------------------------- a caller with its own link


class StubLink:
    """What :func:`controller.control.start` uses of a BrokerLink: statuses, send, replies."""

    def __init__(self, statuses: dict[str, Status]) -> None:
        self.statuses = statuses
        self.sent: list[tuple[str, BaseModel]] = []

    def online_collectors(self) -> list[Any]:
        return []

    def send(self, box: str, command: BaseModel) -> None:
        self.sent.append((box, command))

    def wait_replies(self, request_ids: set[str], timeout: float) -> dict[str, Reply]:
        replies = {}
        for _, command in self.sent:
            request_id = getattr(command, "request_id", "")
            if request_id in request_ids:
                name = str(getattr(command, "command", ""))
                replies[request_id] = Reply(request_id=request_id, command=name, ok=True)
        return replies


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Database]:
    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    with db.session() as tx:
        for box in ("1", "2"):
            add_box(tx, box, by="test")
        assign(tx, "M1", "1")
        assign(tx, "M2", "2")
        add_mouse(tx, "M3")  # on no box
    yield db
    db.close()


def opener(link: StubLink) -> control.LinkOpener:
    @contextmanager
    def open_link() -> Iterator[BrokerLink]:
        yield cast(BrokerLink, link)

    return open_link


def test_a_caller_with_its_own_link_gets_typed_outcomes_and_warnings_not_labctls_text(
    lab: Database,
) -> None:
    link = StubLink(
        {
            "1": Status(box="1", state="idle"),
            "2": Status(box="2", state="running", mouse="M9"),
        }
    )
    config = TaskConfig(duration=60)
    request = StartRequest(mice=["M1", "M2", "M3"], config=config, by="alerts", timeout=1)
    result = control.start(lab, opener(link), request)
    assert [(o.mouse, o.box, o.ok, o.code) for o in result.outcomes] == [
        ("M1", "1", True, "ok"),
        ("M2", "2", False, "box_unavailable"),
        ("M3", None, False, "no_box"),
    ]
    assert result.outcomes[2].reason == "no box assigned"  # the hint is the caller's to add
    assert result.outcomes[1].reason == "box 2 is busy: a session with M9 is running"
    assert [w.kind for w in result.warnings] == ["no_collector"]
    assert result.started == 1 and not result.ok
    ((box, command),) = link.sent
    assert box == "1" and isinstance(command, StartCommand)
    assert command.config == config and command.session_id == result.outcomes[0].session_id

    stopped = control.stop(lab, opener(StubLink({})), StopRequest(every=True))
    assert stopped.nothing_running and stopped.outcomes == []


# ---------------------------------------------------------------- labctl and the dashboard


@pytest.fixture
def lab_env(tmp_path: Path, broker_url: str, topic_prefix: str) -> dict[str, str]:
    db_url = f"sqlite:///{tmp_path / 'lab.db'}"
    db = open_database(db_url)
    with db.session() as tx:
        add_box(tx, "1", by="test")  # the lab's box (no collector runs here)
    db.close()
    return {"LABCTL_DB": db_url, "LABCTL_BROKER": broker_url, "LABCTL_PREFIX": topic_prefix,
            "LABCTL_USER": "desk"}  # fmt: skip


@contextmanager
def dashboard(env: dict[str, str]) -> Iterator[Any]:
    pytest.importorskip("starlette", reason="the web extra is not installed")
    from starlette.testclient import TestClient

    from controller.web.app import create_app
    from shared.broker_url import broker_settings
    from shared.protocol import Topics

    db = open_database(env["LABCTL_DB"])
    application = create_app(
        db, broker_settings(env["LABCTL_BROKER"]), Topics(env["LABCTL_PREFIX"]),
        token=TOKEN, database_display="test", reply_timeout=2.0,
    )  # fmt: skip
    try:
        with TestClient(application, base_url="http://localhost") as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            yield client
    finally:
        db.close()


def labctl(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(labctl_app, list(args), env=env)


@pytest.mark.broker
def test_the_same_refusal_reaches_labctl_and_the_dashboard_as_one_outcome(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for argv in (["assign", "M1", "--box", "1"], ["mouse", "baseline", "M1", "25"]):
        assert labctl(lab_env, *argv).exit_code == 0
    calls: list[tuple[StartRequest, StartResult]] = []
    real_start = control.start

    def spy(db: Database, open_link: control.LinkOpener, request: StartRequest) -> StartResult:
        result = real_start(db, open_link, request)
        calls.append((request, result))
        return result

    monkeypatch.setattr(control, "start", spy)
    cli = labctl(lab_env, "start", "M1", "--timeout", "2")
    with dashboard(lab_env) as client:
        answer = client.post("/api/start", json={"mice": ["M1"]})
    assert len(calls) == 2, "both went through controller.control.start"
    (cli_request, cli_result), (web_request, web_result) = calls
    assert (list(cli_request.mice), cli_request.by) == (["M1"], "desk")
    assert (list(web_request.mice), web_request.by) == (["M1"], web_control.BY)
    refusal = Outcome("M1", "1", False, f"weight check: M1 has not been weighed on {today()}",
                      code="weight_check")  # fmt: skip
    assert cli_result.outcomes == web_result.outcomes == [refusal]
    # labctl words it for the terminal, the dashboard for its JSON.
    assert cli.exit_code == 1 and "weight check" in cli.stdout
    assert "0 of 1 session(s) started" in cli.stdout
    assert answer.status_code == 207
    (row,) = answer.json()["outcomes"]
    assert row["code"] == "weight_check"
    assert row["reason"] == refusal.reason + web_control.HINTS["weight_check"]
    assert row["reason"] != refusal.reason + cli_sessions.HINTS["weight_check"]


@pytest.mark.broker
def test_the_dashboards_mistakes_are_named_by_its_json_fields_not_labctls_flags(
    lab_env: dict[str, str],
) -> None:
    assert labctl(lab_env, "assign", "M1", "--box", "1").exit_code == 0
    with dashboard(lab_env) as client:
        for body, words in (
            ({"mice": ["M1"], "duration": "long"},
             "duration must be a number of seconds, got 'long'"),
            ({"mice": ["M1"], "duration": -5},
             "duration must be a positive number of seconds, got -5"),
            ({}, web_control.REQUEST_WORDS["choose_mice"]),
            ({"mice": ["M1"], "cohort": "C1"}, web_control.REQUEST_WORDS["choose_mice"]),
        ):  # fmt: skip
            answer = client.post("/api/start", json=body)
            assert answer.status_code == 400, body
            assert answer.json()["error"] == f"labctl: error: {words}"
            assert "--" not in answer.json()["error"]
        answer = client.post("/api/stop", json={"mice": []})
        assert (
            answer.json()["error"] == f"labctl: error: {web_control.REQUEST_WORDS['choose_stop']}"
        )
    # labctl keeps its own words for the same mistakes.
    cli = labctl(lab_env, "start", "M1", "--duration", "-5")
    assert cli.exit_code == 2 and "labctl: error: --duration must be positive, got -5" in cli.output
    cli = labctl(lab_env, "start")
    assert cli.exit_code == 2
    assert f"labctl: error: {cli_sessions.REQUEST_WORDS['choose_mice']}" in cli.output


# ---------------------------------------------------------------- one task config model


BAD_CONFIG = {"duration": 60, "bogus": 1, "timeout": "long"}


def test_the_controller_and_the_agent_refuse_a_bad_config_with_the_same_words() -> None:
    with pytest.raises(ConfigError) as from_file:
        TaskConfig.from_dict(BAD_CONFIG, source="config")
    problems = str(from_file.value).removeprefix("config: ")
    assert "unknown key 'bogus'" in problems and "key 'timeout'" in problems
    # The controller cannot build the command ...
    with pytest.raises(ValidationError) as controller_side:
        StartCommand(request_id="r1", session_id="s1", mouse="M1", config=BAD_CONFIG)
    assert problems in str(controller_side.value)
    # ... and the agent refuses it from the wire, with the same words.
    payload = {"schema_version": 1, "command": "start", "request_id": "r1",
               "session_id": "s1", "mouse": "M1", "config": BAD_CONFIG}  # fmt: skip
    reply = Commands(cast(RigAgent, SimpleNamespace())).handle(json.dumps(payload).encode())
    assert (reply.ok, reply.code) == (False, "invalid")
    assert reply.error == f"invalid command: start.config: {problems}"
    # A wrong type the model refuses on both sides (true is not a window of trials).
    with pytest.raises(ValidationError, match="key 'window'"):
        StartCommand(request_id="r2", session_id="s2", mouse="M1", config={"window": True})
    reply = Commands(cast(RigAgent, SimpleNamespace())).handle(
        json.dumps({**payload, "config": {"window": True}}).encode()
    )
    assert reply.error is not None and "key 'window'" in reply.error


def test_the_typed_config_keeps_the_wire_and_the_session_as_the_original_wrote_them() -> None:
    command = StartCommand(request_id="r1", session_id="s1", mouse="M1", config=TaskConfig())
    wire = json.loads(command.model_dump_json())
    assert wire["config"] == TaskConfig().settings()
    assert isinstance(wire["config"]["duration"], int) and wire["config"]["duration"] == 1800
    settings = TaskConfig(cue_duration=9000.5)
    start = SessionStart(
        session_id="s1", box="1", seq=0, t=1.0, mouse="M1", settings=settings, software_version="x"
    )
    session = build_session([start])
    assert {k: session[k] for k in TaskConfig.model_fields} == settings.settings()
    assert session["duration"] == 1800 and isinstance(session["duration"], int)
    assert session["cue_duration"] == 9000.5


def test_the_schema_docs_show_the_task_config_in_the_command_and_the_session() -> None:
    def stored(name: str) -> dict[str, Any]:
        schema: dict[str, Any] = json.loads((REPO / "docs" / "schema" / name).read_text())
        return schema

    config = stored("task-config.json")
    assert set(config["properties"]) == set(TaskConfig.model_fields)
    assert config["additionalProperties"] is False
    command = stored("command.json")["$defs"]
    assert command["StartCommand"]["properties"]["config"]["$ref"] == "#/$defs/TaskConfig"
    assert command["TaskConfig"]["properties"] == config["properties"]
    document = stored("session-document.json")["$defs"]
    assert document["SessionStart"]["properties"]["settings"]["$ref"] == "#/$defs/TaskConfig"


# ---------------------------------------------------------------- the layout


def test_start_and_stop_have_one_home_and_the_controller_root_stays_small() -> None:
    root = sorted(p.name for p in (REPO / "controller").glob("*.py"))
    assert "rigs.py" not in root and "control.py" in root
    assert len(root) <= 12, root
    for caller in ("controller/cli/sessions.py", "controller/web/control.py"):
        text = (REPO / caller).read_text(encoding="utf-8")
        for step in ("prepare_start", "finish_start", "start_sessions(", "stop_boxes(",
                     "online_collectors", "select_mice("):  # fmt: skip
            assert step not in text, f"{caller} composes {step} itself"
