"""``labctl web`` in a real Chromium, and its live stream from a real server process.

The stream and browser tests run real processes (``labctl serve``,
``labagent run --sim``, ``labctl web``; :class:`tests.weblab.WebLab`), each
stopped by pid. The browser tests drive the system's Chromium
(``/usr/bin/chromium``, Debian's ``chromium`` package, or ``REACHLAB_CHROMIUM``)
through Playwright's ``executable_path``, so nothing is downloaded; without one
they skip and say why. Screenshots go to ``test-artifacts/web/``; with
``REACHLAB_WRITE_DOCS_IMG=1`` they are also written to ``docs/img/``. The plain
HTTP tests are in ``test_web_api.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from controller.cli import app as labctl_app
from controller.db import open_database
from controller.demo.broker import find_free_port
from shared.protocol import Status, Topics

from .cli_runner import CliRunner
from .conftest import REPO
from .mqttclient import MqttClient
from .waiting import wait_until
from .weblab import (
    TIMEOUT,
    WebLab,
    import_history,
    labctl,
    publish_status,
)

pytest.importorskip("starlette", reason="the web extra is not installed")

TOKEN = "test-token-" + "x" * 16
ARTIFACTS = REPO / "test-artifacts" / "web"
DOCS_IMG = REPO / "docs" / "img"


@pytest.mark.broker
@pytest.mark.slow
def test_the_stream_sends_a_boxs_card_as_its_status_arrives(
    tmp_path: Path, broker_url: str, topic_prefix: str
) -> None:
    lab = WebLab(tmp_path, broker_url, topic_prefix, find_free_port())
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
            assert httpx.get(f"{lab.url}/api/info").json()["viewers"] == 1
        # A page that goes away leaves nothing behind on the server.
        wait_until(
            lambda: httpx.get(f"{lab.url}/api/info").json()["viewers"] == 0,
            TIMEOUT,
            "the closed stream to be let go",
        )
        proc = lab.processes.children["web"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0  # a clean stop even with a stream just open
    finally:
        lab.processes.stop_all()
        with MqttClient.at(broker_url) as mqtt:
            mqtt.clear_retained(Topics(topic_prefix).status("7"))


def wait_for_event(lines: Iterator[str], kind: str) -> dict[str, Any]:
    current = None
    for line in lines:
        if line.startswith("event: "):
            current = line.removeprefix("event: ")
        elif line.startswith("data: ") and current == kind:
            data: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return data
    raise AssertionError(f"the stream ended before a {kind} event")


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
def browser_lab(tmp_path_factory: pytest.TempPathFactory, broker_url: str) -> Iterator[WebLab]:
    """Two simulated rigs (boxes 1, 2), a collector and ``labctl web`` with the token;
    mice M1, M2 on the boxes and M3 without one, each with stored sessions; cohort C1."""
    root = tmp_path_factory.mktemp("web-lab")
    lab = WebLab(root, broker_url, f"webtest-{uuid.uuid4().hex[:8]}", find_free_port())
    try:
        open_database(lab.env["LABCTL_DB"]).close()
        import_history(lab.env, root / "files", {"M1": 4, "M2": 6, "M3": 8})
        lab.start("collector", [sys.executable, "-m", "controller.cli", "serve"])
        for box in ("1", "2"):
            lab.rig(box, time_scale=20)
        wait_until(
            lambda: lab.idle_and_known("1", "2"),
            TIMEOUT,
            "both rigs to report idle",
        )
        labctl(lab.env, "assign", "M1", "--box", "1")
        labctl(lab.env, "assign", "M2", "--box", "2")
        labctl(lab.env, "cohort", "create", "C1", "M1", "M2", "M3")
        lab.web(TOKEN)
        yield lab
    finally:
        lab.processes.stop_all()
        for box in ("1", "2"):
            with MqttClient.at(broker_url) as mqtt:
                mqtt.clear_retained(Topics(lab.prefix).status(box))


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
    browser: Any, browser_lab: WebLab
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

        wait_until(trials_grew, TIMEOUT, "the card's trial count to change three times")
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
def test_a_mouse_page_draws_one_point_per_stored_session(browser: Any, browser_lab: WebLab) -> None:
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
def test_starting_from_the_page_needs_the_token(browser: Any, browser_lab: WebLab) -> None:
    wait_until(lambda: browser_lab.boxes()["2"]["state"] == "idle", TIMEOUT, "box 2 to be idle")
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
        wait_until(lambda: browser_lab.boxes()["2"]["state"] == "running", TIMEOUT, "box 2 to run")
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
    browser: Any, browser_lab: WebLab
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


@pytest.mark.browser
@pytest.mark.broker
@pytest.mark.slow
def test_an_open_rigs_page_comes_back_by_itself_after_the_server_restarts(
    browser: Any, tmp_path: Path, broker_url: str, topic_prefix: str
) -> None:
    lab = WebLab(tmp_path, broker_url, topic_prefix, find_free_port())
    topics = Topics(topic_prefix)
    page = browser.new_page()
    try:
        open_database(lab.env["LABCTL_DB"]).close()
        publish_status(broker_url, topics, Status(box="5", state="running", mouse="M5",
                                                   session_id="s5", trial=1))  # fmt: skip
        lab.web(None)
        page.goto(f"{lab.url}/rigs")
        page.wait_for_function(f"{trial_js('5')} === '1'")
        page.evaluate("window.__sameDocument = true")
        web = lab.processes.children.pop("web")
        web.send_signal(signal.SIGTERM)
        assert web.wait(timeout=15) == 0
        page.wait_for_function("document.getElementById('live').textContent !== 'live'")
        publish_status(broker_url, topics, Status(box="5", state="running", mouse="M5",
                                                   session_id="s5", trial=2))  # fmt: skip
        lab.web(None)  # the same port
        page.wait_for_function(f"{trial_js('5')} === '2'", timeout=TIMEOUT * 1000)
        assert page.inner_text("#live") == "live"
        assert page.evaluate("window.__sameDocument") is True  # no reload
    finally:
        page.close()
        lab.processes.stop_all()
        with MqttClient.at(broker_url) as mqtt:
            mqtt.clear_retained(topics.status("5"))


@pytest.mark.browser
@pytest.mark.slow
def test_a_page_refused_its_stream_comes_back_once_a_slot_frees(
    browser: Any, tmp_path: Path
) -> None:
    # No broker needed: the dashboard serves without one.
    lab = WebLab(tmp_path, "mqtt://127.0.0.1:1", "refused", find_free_port())
    page = browser.new_page(viewport={"width": 1000, "height": 400})
    try:
        open_database(lab.env["LABCTL_DB"]).close()
        lab.start("web", [sys.executable, "-m", "controller.cli", "web",
                          "--port", str(lab.port), "--max-streams", "1"])  # fmt: skip
        wait_until(lab.web_answers, TIMEOUT, "labctl web to answer")
        with httpx.stream("GET", f"{lab.url}/api/stream", timeout=10) as held:
            lines = held.iter_lines()  # kept: httpx closes the stream when it is dropped
            wait_for_event(lines, "snapshot")
            page.goto(f"{lab.url}/rigs")
            # Refused (503): the page says so and waits, longer each time; meanwhile it
            # is drawn once from the plain JSON.
            page.wait_for_function(
                "document.getElementById('live').textContent.startsWith('no live stream')"
            )
            page.wait_for_function("document.getElementById('rig-count').textContent !== ''")
            assert page.inner_text("#rig-count") == "0 of 0 online"
            assert httpx.get(f"{lab.url}/api/info").json()["viewers"] == 1
            page.screenshot(path=str(tmp_path / "refused.png"))
        # The other stream has ended: the page's next try gets the slot.
        page.wait_for_function(
            "document.getElementById('live').textContent === 'live'", timeout=TIMEOUT * 1000
        )
        assert httpx.get(f"{lab.url}/api/info").json()["viewers"] == 1
        page.screenshot(path=str(tmp_path / "recovered.png"))
    finally:
        page.close()
        lab.processes.stop_all()


def trial_js(box: str) -> str:
    return (
        f'document.querySelector(\'article.card[data-box="{box}"] [data-f="trial"]\')?.textContent'
    )
