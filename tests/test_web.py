"""``labctl web``: the dashboard's HTTP API, its live stream, and its pages in a real Chromium.

The plain HTTP tests use Starlette's TestClient (the app in this process, a real
broker, a real SQLite database). The stream and browser tests run real
processes (``labctl serve``, ``labagent run --sim``, ``labctl web``), each
stopped by pid. The browser tests drive the system's Chromium
(``/usr/bin/chromium``, Debian's ``chromium`` package, or ``REACHLAB_CHROMIUM``)
through Playwright's ``executable_path``, so nothing is downloaded; without one
they skip and say why. Screenshots go to ``test-artifacts/web/``; with
``REACHLAB_WRITE_DOCS_IMG=1`` they are also written to ``docs/img/``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from controller.broker import find_free_port
from controller.cli import app as labctl_app
from controller.db import open_database
from shared.errors import ConfigError
from shared.protocol import Status, Topics, encode

from . import waiting
from .conftest import REPO

pytest.importorskip("starlette", reason="the web extra is not installed")

from starlette.testclient import TestClient

from controller.mqtt import parse_broker_url
from controller.web.app import create_app, plotly_js
from controller.web.control import read_token

TOKEN = "test-token-" + "x" * 16
TIMEOUT = 60.0
ARTIFACTS = REPO / "test-artifacts" / "web"
DOCS_IMG = REPO / "docs" / "img"


def wait_until(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll another process's effect until the deadline (there is no event to wait on)."""
    return waiting.wait_until(condition, timeout, what)


# ---------------------------------------------------------------- a lab's history


def history(mouse: str, sessions: int, seed: int) -> list[dict[str, Any]]:
    """Per-mouse sessions in the original file shape, getting better from day to day."""
    rng = random.Random(seed)
    out = []
    t0 = 1_700_000_000.0 + seed * 1000
    for number in range(sessions):
        rate = min(0.95, 0.3 + 0.1 * number)
        start = t0 + number * 86400
        trials = []
        t = start
        for _ in range(40 + 5 * number):
            spout = rng.randint(0, 1)
            roll = rng.random()
            outcome = 1 if roll < rate else (2 if roll < rate + (1 - rate) / 2 else 0)
            trials.append(
                {
                    "start": t,
                    "end": t + 1.5,
                    "spout": spout,
                    "cue_duration": 10000.0 * 0.99**number,
                    "outcome": outcome,
                    "spout_position": [1 + number // 2, 1 + number // 3],
                    "shaping": False,
                }
            )
            t += 20
        out.append(
            {
                "trainer": "test",
                "notes": "",
                "trials": trials,
                "resets": [],
                "spontaneous_reaches": [],
                "start_time": start,
                "end_time": t,
                "date": time.strftime("%Y-%m-%d", time.localtime(start)),
            }
        )
    return out


def labctl(env: dict[str, str], *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(labctl_app, list(args), env=env)
    assert result.exit_code == expect, result.output
    return result.stdout  # warnings (no collector yet, ...) go to stderr


def import_history(env: dict[str, str], folder: Path, mice: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (mouse, count) in enumerate(mice.items(), 1):
        path = folder / f"{mouse}.json"
        path.write_text(json.dumps(history(mouse, count, seed)), encoding="utf-8")
        labctl(env, "import", str(path))


def publish_status(broker: str, topics: Topics, status: Status) -> None:
    settings = parse_broker_url(broker)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        client.publish(
            topics.status(status.box), encode(status), qos=1, retain=True
        ).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


# ---------------------------------------------------------------- plain HTTP, no browser


@pytest.fixture
def lab_env(tmp_path: Path, broker_url: str, topic_prefix: str) -> dict[str, str]:
    db_url = f"sqlite:///{tmp_path / 'lab.db'}"
    open_database(db_url).close()
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
    return TestClient(application)


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
        assert {m: len(c) for m, c in cohort["curves"].items()} == {"M1": 5, "M2": 3}
        assert client.get("/api/cohort", params={"name": "C9"}).status_code == 404


# ---------------------------------------------------------------- real processes


@dataclass
class Lab:
    """A collector, simulated rigs and ``labctl web``: children of this test, stopped by pid."""

    root: Path
    broker: str
    prefix: str
    port: int
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            "LABCTL_DB": f"sqlite:///{self.root / 'lab.db'}",
            "LABCTL_BROKER": self.broker,
            "LABCTL_PREFIX": self.prefix,
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        with open(logs / f"{name}.log", "wb") as log:
            self.children[name] = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def rig(self, box: str, time_scale: float) -> None:
        rig = self.root / f"rig{box}"
        self.start(
            f"rig{box}",
            [
                sys.executable, "-m", "agent.cli", "run", "--box", box, "--broker", self.broker,
                "--prefix", self.prefix, "--sim", "--time-scale", f"{time_scale:g}",
                "--seed", box, "--journal", str(rig / "journal.db"),
                "--data-dir", str(rig / "data"),
            ],
        )  # fmt: skip

    def web(self, token: str | None) -> None:
        self.start(
            "web",
            [sys.executable, "-m", "controller.cli", "web", "--port", str(self.port)],
            {"LABCTL_WEB_TOKEN": token} if token else None,
        )
        wait_until(self.web_answers, "labctl web to answer")

    def web_answers(self) -> bool:
        self.check_alive()
        try:
            return httpx.get(f"{self.url}/api/info", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                log = (self.root / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{log}")

    def boxes(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(labctl(self.env, "status", "--json"))["boxes"]
        return {r["box"]: r for r in rows}

    def stop_all(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.children.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.mark.broker
@pytest.mark.slow
def test_the_stream_sends_a_boxs_card_as_its_status_arrives(
    tmp_path: Path, broker_url: str, topic_prefix: str
) -> None:
    lab = Lab(tmp_path, broker_url, topic_prefix, find_free_port())
    try:
        open_database(lab.env["LABCTL_DB"]).close()
        lab.web(None)
        topics = Topics(topic_prefix)
        status = Status(box="7", state="running", mouse="M7", session_id="s-7", trial=3, clock=1.0)
        with httpx.stream("GET", f"{lab.url}/api/stream", timeout=10) as stream:
            lines = stream.iter_lines()
            assert wait_for_event(lines, "snapshot")["boxes"] == []
            publish_status(broker_url, topics, status)
            card = wait_for_event(lines, "box")
            assert (card["box"], card["state"], card["mouse"], card["trial"]) == (
                "7", "running", "M7", 3,
            )  # fmt: skip
            publish_status(broker_url, topics, status.model_copy(update={"trial": 4}))
            assert wait_for_event(lines, "box")["trial"] == 4
        proc = lab.children["web"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0  # a clean stop even with a stream just open
    finally:
        lab.stop_all()
        publish_empty_retained(broker_url, Topics(topic_prefix).status("7"))


def wait_for_event(lines: Iterator[str], kind: str) -> dict[str, Any]:
    current = None
    for line in lines:
        if line.startswith("event: "):
            current = line.removeprefix("event: ")
        elif line.startswith("data: ") and current == kind:
            data: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return data
    raise AssertionError(f"the stream ended before a {kind} event")


def publish_empty_retained(broker: str, topic: str) -> None:
    settings = parse_broker_url(broker)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    client.connect(settings.host, settings.port)
    client.loop_start()
    client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


# ---------------------------------------------------------------- in a real browser


def chromium_path() -> str | None:
    explicit = os.environ.get("REACHLAB_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).is_file():
            return candidate
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium installed (apt-get install chromium, or set REACHLAB_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def browser_lab(tmp_path_factory: pytest.TempPathFactory, broker_url: str) -> Iterator[Lab]:
    """Two simulated rigs (boxes 1, 2), a collector and ``labctl web`` with the token;
    mice M1, M2 on the boxes and M3 without one, each with stored sessions; cohort C1."""
    root = tmp_path_factory.mktemp("web-lab")
    lab = Lab(root, broker_url, f"webtest-{uuid.uuid4().hex[:8]}", find_free_port())
    try:
        open_database(lab.env["LABCTL_DB"]).close()
        import_history(lab.env, root / "files", {"M1": 4, "M2": 6, "M3": 8})
        lab.start("collector", [sys.executable, "-m", "controller.cli", "serve"])
        for box in ("1", "2"):
            lab.rig(box, time_scale=20)
        wait_until(
            lambda: all(lab.boxes().get(b, {}).get("state") == "idle" for b in ("1", "2")),
            "both rigs to report idle",
        )
        labctl(lab.env, "assign", "M1", "--box", "1")
        labctl(lab.env, "assign", "M2", "--box", "2")
        labctl(lab.env, "cohort", "create", "C1", "M1", "M2", "M3")
        lab.web(TOKEN)
        yield lab
    finally:
        lab.stop_all()
        for box in ("1", "2"):
            publish_empty_retained(broker_url, Topics(lab.prefix).status(box))


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"web-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a drawn page, not a blank one
    if os.environ.get("REACHLAB_WRITE_DOCS_IMG") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / path.name)


def trial_on_card(page: Any, box: str) -> str:
    text: str = page.inner_text(f'article.card[data-box="{box}"] [data-f="trial"]')
    return text


@pytest.mark.browser
@pytest.mark.broker
@pytest.mark.slow
def test_the_rigs_page_counts_a_running_sessions_trials_live(
    browser: Any, browser_lab: Lab
) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    try:
        page.goto(f"{browser_lab.url}/rigs")
        page.wait_for_selector('article.card[data-box="1"].online')
        page.evaluate("window.__sameDocument = true")
        assert trial_on_card(page, "1") == "-"
        labctl(browser_lab.env, "start", "M1", "--duration", "900")
        seen: list[int] = []

        def trials_grew() -> bool:
            text = trial_on_card(page, "1")
            if text.isdigit() and (not seen or int(text) != seen[-1]):
                seen.append(int(text))
            return len(seen) >= 3

        wait_until(trials_grew, "the card's trial count to change three times")
        assert seen == sorted(seen) and seen[-1] > seen[0]
        assert page.evaluate("window.__sameDocument") is True  # no reload
        card = page.locator('article.card[data-box="1"]')
        assert card.locator('[data-f="mouse"]').inner_text() == "M1"
        assert card.locator('[data-f="state"]').inner_text() == "running"
        assert "%" in card.locator('[data-f="correct"]').inner_text()
        assert page.inner_text("#mode") == "control: token needed to start/stop"
        screenshot(page, "rigs")
    finally:
        CliRunner().invoke(labctl_app, ["stop", "M1"], env=browser_lab.env)
        page.close()


@pytest.mark.browser
@pytest.mark.broker
@pytest.mark.slow
def test_a_mouse_page_draws_one_point_per_stored_session(browser: Any, browser_lab: Lab) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(f"{browser_lab.url}/mouse/M3")
        for plot in ("correct", "dprime", "trials", "cue"):
            page.wait_for_function(
                f"document.querySelectorAll('#plot-{plot} .points path.point').length === 8"
            )
        # Left and right spouts: two traces of eight points.
        assert page.locator("#plot-spout .points path.point").count() == 16
        assert page.inner_text("#session-count") == "8 stored session(s)"
        screenshot(page, "mouse-history")
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.broker
@pytest.mark.slow
def test_starting_from_the_page_needs_the_token(browser: Any, browser_lab: Lab) -> None:
    wait_until(lambda: browser_lab.boxes()["2"]["state"] == "idle", "box 2 to be idle")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(f"{browser_lab.url}/mouse/M2")
        page.wait_for_function("!document.getElementById('start').disabled")
        page.fill("#duration", "600")
        page.click("#start")
        page.wait_for_selector("#control-result .bad")
        assert "wrong or missing token" in page.inner_text("#control-result")
        assert browser_lab.boxes()["2"]["state"] == "idle"  # nothing was sent
        page.fill("#token", TOKEN)
        page.click("#start")
        page.wait_for_function(
            "document.getElementById('control-result').innerText.includes('session(s) started')"
        )
        assert "1 of 1 session(s) started" in page.inner_text("#control-result")
        wait_until(lambda: browser_lab.boxes()["2"]["state"] == "running", "box 2 to run")
        # The running session's outcomes arrive on the page trial by trial.
        page.wait_for_function(
            "document.querySelectorAll('#plot-current .points path.point').length >= 8",
            timeout=TIMEOUT * 1000,
        )
        screenshot(page, "mouse")
    finally:
        CliRunner().invoke(labctl_app, ["stop", "M2"], env=browser_lab.env)
        page.close()


@pytest.mark.browser
@pytest.mark.broker
@pytest.mark.slow
def test_the_cohort_page_lists_every_mouse_and_overlays_their_curves(
    browser: Any, browser_lab: Lab
) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    try:
        page.goto(f"{browser_lab.url}/cohort?name=C1")
        page.wait_for_selector("#results tbody tr")
        rows = page.locator("#results tbody tr")
        assert [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())] == [
            "M1", "M2", "M3",
        ]  # fmt: skip
        page.wait_for_function(
            "document.querySelectorAll('#plot-correct .scatterlayer .trace').length === 3"
        )
        screenshot(page, "cohort")
    finally:
        page.close()
