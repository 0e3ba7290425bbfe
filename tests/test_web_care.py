"""The animal-care page (``/care`` of ``labctl web``) in a real Chromium: today's table as
``labctl today`` has it, red where action is needed, weight curves with the threshold,
and a weighing recorded from the page only with the lab's token, through the CLI's
checks and lines.

``labctl web`` is a real process, stopped by pid; the browser is the system's Chromium
(as in tests/test_web.py). Screenshots go to ``test-artifacts/web/``, and to
``docs/img/`` with ``REACHLAB_WRITE_DOCS_IMG=1``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from controller.db import open_database
from controller.demo.broker import find_free_port

from .test_web import TOKEN, chromium_path, screenshot
from .weblab import TIMEOUT, WebLab, labctl

pytest.importorskip("starlette", reason="the web extra is not installed")
pytestmark = [pytest.mark.browser, pytest.mark.broker]

DAY = 86400.0


@pytest.fixture(scope="module", name="browser")
def chromium_browser() -> Iterator[Any]:
    """The system's Chromium through Playwright (as tests/test_web.py's); skips without."""
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
def care_lab(tmp_path_factory: pytest.TempPathFactory, broker_url: str) -> Iterator[WebLab]:
    """``labctl web`` with the token over a lab of four restricted mice with a week of
    weighings: Heavy (fine), Light (under its threshold today), Late (not weighed today)
    and Fresh (in its grace days, under 80 % but over the grace 70 %)."""
    root = tmp_path_factory.mktemp("care-lab")
    lab = WebLab(root, broker_url, f"caretest-{uuid.uuid4().hex[:8]}", find_free_port())
    try:
        open_database(lab.env["LABCTL_DB"]).close()
        env = {**lab.env, "LABCTL_USER": "setup"}
        now = time.time()

        def at(days: float) -> str:
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(now - days * DAY))

        for mouse, weights in {
            "Heavy": [25.1, 24.0, 23.6, 23.2, 22.9, 22.4, 22.0],
            "Light": [24.8, 23.0, 22.1, 21.0, 20.5, 20.0, 19.1],
            "Late": [25.0, 24.1, 23.0, 22.8, 22.1, 21.9],
        }.items():
            labctl(env, "mouse", "add", mouse)
            labctl(env, "mouse", "baseline", mouse, "25", "--at", at(8))
            for days, grams in zip(range(len(weights) - 1, -1, -1), weights, strict=True):
                offset = days + (1 if mouse == "Late" else 0)
                labctl(env, "weigh", mouse, f"{grams:g}", "--at", at(offset + 0.001))
        labctl(env, "lab", "set", "grace_days", "5")
        labctl(env, "mouse", "add", "Fresh")
        labctl(env, "mouse", "baseline", "Fresh", "25", "--at", at(1))
        labctl(env, "weigh", "Fresh", "18.5", "--at", at(0.001))
        labctl(env, "water", "Heavy", "600")
        lab.web(TOKEN)
        yield lab
    finally:
        lab.processes.stop_all()


def today_row(lab: WebLab, mouse: str) -> dict[str, Any]:
    rows = json.loads(labctl(lab.env, "today", "--json"))["mice"]
    return next(r for r in rows if r["mouse"] == mouse)


def open_care(browser: Any, lab: WebLab) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT * 1000)
    page.goto(f"{lab.url}/care")
    page.wait_for_selector("#care tbody tr[data-mouse='Late']")
    return page


def row_cells(page: Any, mouse: str) -> list[str]:
    cells = page.locator(f"#care tbody tr[data-mouse='{mouse}'] td")
    return [cells.nth(i).inner_text().strip() for i in range(cells.count())]


def test_the_care_page_shows_todays_table_red_where_action_is_needed(
    browser: Any, care_lab: WebLab
) -> None:
    page = open_care(browser, care_lab)
    try:
        for mouse in ("Heavy", "Light", "Late", "Fresh"):
            row = today_row(care_lab, mouse)
            cells = row_cells(page, mouse)
            shown = "not weighed" if row["weight_g"] is None else f"{row['weight_g']:g}"
            assert cells[2] == shown, (mouse, cells)
            assert cells[8] == f"{row['owed_ul']:.0f}", (mouse, cells)

        def need(mouse: str) -> int:
            return int(page.locator(f"tr[data-mouse='{mouse}'] td.need").count())

        assert need("Light") >= 2 and need("Late") >= 1  # under threshold; not weighed
        assert row_cells(page, "Fresh")[4] == "70 %"  # the grace threshold, in its first days
        assert "Light weighs 19.1 g" in row_cells(page, "Light")[9]
        page.wait_for_function(
            "document.querySelectorAll('#care-curves .plot .scatterlayer .trace').length >= 8"
        )
        screenshot(page, "care")
    finally:
        page.close()


def test_a_weighing_recorded_on_the_page_appears_in_labctl_today(
    browser: Any, care_lab: WebLab
) -> None:
    page = open_care(browser, care_lab)
    try:
        page.fill("#token", TOKEN)
        page.fill("#care-by", "Kim")
        page.fill("input[data-mouse='Late'][data-kind='weigh']", "22.4")
        page.press("input[data-mouse='Late'][data-kind='weigh']", "Enter")
        result = page.locator("#care-result")
        result.get_by_text("Late: 22.4 g, 89.6 % of its baseline 25 g (weighing").wait_for()
        row = today_row(care_lab, "Late")
        assert (row["weight_g"], row["weight_pct"]) == (22.4, 89.6)
        records = labctl(care_lab.env, "records", "Late")
        assert "22.4 g" in records.splitlines()[-1] and "by Kim" in records.splitlines()[-1]
        page.wait_for_function(
            "document.querySelector(\"tr[data-mouse='Late'] td:nth-child(3)\").textContent"
            " === '22.4'"
        )
        # The CLI's checks and line, on the page: a weight no mouse has.
        page.fill("input[data-mouse='Heavy'][data-kind='weigh']", "500")
        page.press("input[data-mouse='Heavy'][data-kind='weigh']", "Enter")
        result.get_by_text("labctl: error: invalid weight 500 g: expected 1 to 200 g").wait_for()
        assert today_row(care_lab, "Heavy")["weight_g"] == 22.0
    finally:
        page.close()


def test_without_the_token_the_page_records_nothing(browser: Any, care_lab: WebLab) -> None:
    before = today_row(care_lab, "Heavy")
    page = open_care(browser, care_lab)
    try:
        page.fill("#token", "")
        page.fill("input[data-mouse='Heavy'][data-kind='water']", "300")
        page.press("input[data-mouse='Heavy'][data-kind='water']", "Enter")
        page.locator("#care-result").get_by_text(
            "labctl: error: wrong or missing token: control needs the lab's token"
        ).wait_for()
        screenshot(page, "care-refused")
    finally:
        page.close()
    refused = httpx.post(
        f"{care_lab.url}/api/care/weigh", json={"mouse": "Heavy", "grams": 21}, timeout=10
    )
    assert refused.status_code == 401
    assert today_row(care_lab, "Heavy") == before


def test_the_mouse_page_draws_its_weight_against_the_threshold(
    browser: Any, care_lab: WebLab
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT * 1000)
    try:
        page.goto(f"{care_lab.url}/mouse/Light")
        page.wait_for_function(
            "document.querySelectorAll('#plot-weight .scatterlayer .trace').length === 2"
        )
        weights = page.evaluate("document.getElementById('plot-weight').data.map((t) => t.y)")
        # 70 % of 25 g in its first five (grace) days of restriction, then 80 %.
        assert weights[0][-1] == 19.1 and (weights[1][0], weights[1][-1]) == (17.5, 20.0)
        screenshot(page, "mouse-weight")
    finally:
        page.close()


def test_water_over_the_labs_limit_is_stored_only_when_confirmed(
    browser: Any, care_lab: WebLab
) -> None:
    """labctl water's rule (over 1500 µL at once asks first) holds on the page too: the
    server refuses it unconfirmed (409, the line says so), the page asks, and only a
    confirmed entry is stored."""
    before = today_row(care_lab, "Fresh")["given_ul"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    water = f"{care_lab.url}/api/care/water"
    refused = httpx.post(water, json={"mouse": "Fresh", "ul": 2000}, headers=headers, timeout=10)
    assert refused.status_code == 409
    assert refused.json()["error"] == (
        "labctl: error: 2000 µL is over the lab's limit of 1500 µL at once (a mistake for "
        "µL and mL?): nothing stored; confirm it to store it"
    )
    wrong = {"mouse": "Fresh", "ul": 2000, "confirm": "yes"}
    assert httpx.post(water, json=wrong, headers=headers, timeout=10).status_code == 400
    assert today_row(care_lab, "Fresh")["given_ul"] == before
    page = open_care(browser, care_lab)
    answers: list[str] = []
    try:
        page.fill("#token", TOKEN)
        page.fill("#care-by", "Kim")
        box = "input[data-mouse='Fresh'][data-kind='water']"

        def dismiss(dialog: Any) -> None:
            answers.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        page.fill(box, "2000")
        page.press(box, "Enter")
        page.locator("#care-result").get_by_text("nothing stored; confirm it").wait_for()
        assert "over the lab's limit of 1500 µL" in answers[0]
        assert today_row(care_lab, "Fresh")["given_ul"] == before
        screenshot(page, "care-water-confirm")
        page.once("dialog", lambda dialog: dialog.accept())
        page.press(box, "Enter")
        page.locator("#care-result").get_by_text("given 2000 ul by hand").wait_for()
        assert today_row(care_lab, "Fresh")["given_ul"] == before + 2000
        assert "by Kim" in labctl(care_lab.env, "records", "Fresh").splitlines()[-1]
    finally:
        page.close()
