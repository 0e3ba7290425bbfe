"""``labctl web``'s HTTP API with Starlette's TestClient: no browser, a real broker and SQLite.

Pages load their scripts from the server itself; read-only refuses control;
control needs the token and answers with labctl's own error lines; token files
must be private; without the extra, ``labctl web`` names it; the mouse and
cohort JSON hold one point per stored session with ``labctl results``' numbers.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from controller.cli import app as labctl_app
from controller.db import open_database
from controller.husbandry.boxes import add_box
from shared.analysis.table import TABLE_COLUMNS
from shared.errors import ConfigError
from shared.protocol import Topics

from .cli_runner import CliRunner

pytest.importorskip("starlette", reason="the web extra is not installed")

from starlette.testclient import TestClient

from controller.web.app import create_app, plotly_js
from controller.web.control import read_token
from shared.broker_url import broker_settings as parse_broker_url

from .weblab import import_history, labctl

TOKEN = "test-token-" + "x" * 16


@pytest.fixture
def lab_env(tmp_path: Path, broker_url: str, topic_prefix: str) -> dict[str, str]:
    db_url = f"sqlite:///{tmp_path / 'lab.db'}"
    db = open_database(db_url)
    with db.session() as tx:
        add_box(tx, "1", by="test")  # the lab's box (no collector runs here)
    db.close()
    return {"LABCTL_DB": db_url, "LABCTL_BROKER": broker_url, "LABCTL_PREFIX": topic_prefix}


def client_for(env: dict[str, str], token: str | None = None) -> TestClient:
    db = open_database(env["LABCTL_DB"])
    application = create_app(
        db,
        parse_broker_url(env["LABCTL_BROKER"]),
        Topics(env["LABCTL_PREFIX"]),
        token=token,
        database_display="test",
        reply_timeout=2.0,
    )
    return TestClient(application, base_url="http://localhost")


@pytest.mark.broker
def test_pages_load_their_scripts_from_the_server_itself(lab_env: dict[str, str]) -> None:
    with client_for(lab_env) as client:
        for path in ("/rigs", "/mouse/M1", "/cohort"):
            page = client.get(path)
            assert page.status_code == 200
            assert 'src="/static/plotly.min.js"' in page.text
            assert "http://" not in page.text and "https://" not in page.text  # no CDN
        plotly = client.get("/static/plotly.min.js")
        assert plotly.status_code == 200
        assert plotly.content == plotly_js().read_bytes()
        assert client.get("/static/dashboard.js").status_code == 200
        assert client.get("/", follow_redirects=False).headers["location"] == "/rigs"


@pytest.mark.broker
def test_read_only_dashboard_says_so_and_refuses_control(lab_env: dict[str, str]) -> None:
    labctl(lab_env, "assign", "M1", "--box", "1")
    with client_for(lab_env) as client:
        assert client.get("/api/info").json()["mode"] == "read-only"
        for action in ("start", "stop"):
            answer = client.post(f"/api/{action}", json={"mice": ["M1"]})
            assert answer.status_code == 403
            assert answer.json()["error"].startswith("labctl: error: control is off: ")


@pytest.mark.broker
def test_control_needs_the_token_and_gives_labctls_own_error_lines(
    lab_env: dict[str, str],
) -> None:
    labctl(lab_env, "assign", "M1", "--box", "1")
    labctl(lab_env, "cohort", "create", "C1", "M1")
    with client_for(lab_env, token=TOKEN) as client:
        assert client.get("/api/info").json()["mode"] == "control"
        assert client.post("/api/start", json={"mice": ["M1"]}).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token-at-all"}
        assert client.post("/api/start", json={"mice": ["M1"]}, headers=wrong).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for body, argv in (
            ({"mice": ["Nobody"]}, ["start", "Nobody"]),
            ({"cohort": "C9"}, ["start", "--cohort", "C9"]),
            ({"mice": ["Nobody"]}, ["stop", "Nobody"]),
        ):
            cli = CliRunner().invoke(labctl_app, argv, env=lab_env)
            assert cli.exit_code == 2
            action = "start" if argv[0] == "start" else "stop"
            answer = client.post(f"/api/{action}", json=body, headers=auth)
            assert answer.status_code == 400
            assert answer.json()["error"] == cli.output.strip().splitlines()[-1]
        # Box 1 has never reported: labctl's reason, per mouse, and nothing started.
        answer = client.post("/api/start", json={"mice": ["M1"]}, headers=auth)
        assert answer.status_code == 207
        result = answer.json()
        assert result["summary"] == "0 of 1 session(s) started"
        assert "box 1 is offline" in result["outcomes"][0]["reason"]


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="can be read by others"):
        read_token(token_file, {})
    token_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert read_token(token_file, {}) == TOKEN
    assert read_token(None, {"LABCTL_WEB_TOKEN": TOKEN}) == TOKEN
    assert read_token(None, {}) is None
    with pytest.raises(ConfigError, match="at least 16 characters"):
        read_token(None, {"LABCTL_WEB_TOKEN": "short"})
    token_file.chmod(0o640)
    result = CliRunner().invoke(labctl_app, ["web", "--token-file", str(token_file)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("labctl: error: --token-file ")
    assert len(result.output.strip().splitlines()) == 1


def test_without_the_web_extra_labctl_web_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "controller.web.app" or m.startswith("starlette")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "starlette", None)  # an import of it now fails
    result = CliRunner().invoke(labctl_app, ["web"])
    assert result.exit_code == 2
    assert (
        result.output
        == "labctl: error: labctl web needs the web extra: pip install 'reachlab[web]'\n"
    )


@pytest.mark.broker
def test_mouse_and_cohort_api_give_one_point_per_stored_session(
    lab_env: dict[str, str], tmp_path: Path
) -> None:
    import_history(lab_env, tmp_path / "files", {"M1": 5, "M2": 3})
    labctl(lab_env, "cohort", "create", "C1", "M1", "M2")
    expected = json.loads(labctl(lab_env, "results", "M1", "--json"))
    with client_for(lab_env) as client:
        mouse = client.get("/api/mouse/M1").json()
        assert [p["index"] for p in mouse["sessions"]] == [1, 2, 3, 4, 5]
        for point, row in zip(mouse["sessions"], expected, strict=True):
            judged = sum(row["correct"]) + sum(row["incorrect"]) + sum(row["missed"])
            assert point["trials"] == row["trials"]
            assert point["correct_pct"] == round(100 * sum(row["correct"]) / judged, 1)
            assert point["d_prime"] == pytest.approx(row["d_prime"], abs=1e-3)
        assert mouse["sessions"][4]["spout_left"] == 3 and mouse["sessions"][4]["spout_right"] == 2
        assert client.get("/api/mouse/Nobody").status_code == 404
        cohort = client.get("/api/cohort", params={"name": "C1"}).json()
        assert [r["mouse"] for r in cohort["rows"]] == ["M1", "M2"]
        assert [r["sessions"] for r in cohort["rows"]] == [5, 3]
        assert cohort["rows"][0]["latest"]["trials"] == expected[-1]["trials"]
        # The table is labctl results' own: its columns, and its cells for the latest session.
        table = labctl(lab_env, "results", "M1").splitlines()
        assert cohort["columns"] == list(TABLE_COLUMNS)
        latest_line = [line for line in table if line.startswith("M1 ")][-1]
        assert cohort["rows"][0]["cells"] == latest_line.split()
        assert {m: len(c) for m, c in cohort["curves"].items()} == {"M1": 5, "M2": 3}
        assert client.get("/api/cohort", params={"name": "C9"}).status_code == 404
