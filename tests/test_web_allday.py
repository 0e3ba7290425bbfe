"""The dashboard a lab leaves open all day, in a real Chromium: a rig card keeps its last
session after it ends; curves drawn against the date as well as the session number; a
cohort of 30 mice stays legible (distinct colours, a mouse picker instead of a legend).

Real processes (``labctl serve``, one ``labagent run --sim`` rig, ``labctl web``), each
stopped by pid; the system's Chromium as in tests/test_web.py. Screenshots go to
``test-artifacts/web/``, and to ``docs/img/`` with ``REACHLAB_WRITE_DOCS_IMG=1``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from controller.db import open_database
from controller.demo.broker import find_free_port
from shared.protocol import Topics

from .mqttclient import MqttClient
from .test_web import TOKEN, screenshot
from .test_web_care import chromium_browser  # noqa: F401  # the `browser` fixture
from .waiting import wait_until
from .weblab import TIMEOUT, WebLab, import_history, labctl

pytest.importorskip("starlette", reason="the web extra is not installed")
pytestmark = [pytest.mark.browser, pytest.mark.broker, pytest.mark.slow]

MICE = [f"C{n:02d}" for n in range(1, 31)]


@pytest.fixture(scope="module")
def day_lab(tmp_path_factory: pytest.TempPathFactory, broker_url: str) -> Iterator[WebLab]:
    """30 mice with 3-7 stored sessions each in cohort C30; box 1 ran one short session
    of C01 to its end."""
    root = tmp_path_factory.mktemp("allday-lab")
    lab = WebLab(root, broker_url, f"allday-{uuid.uuid4().hex[:8]}", find_free_port())
    try:
        open_database(lab.env["LABCTL_DB"]).close()
        import_history(lab.env, root / "files", {m: 3 + i % 5 for i, m in enumerate(MICE)})
        labctl(lab.env, "cohort", "create", "C30", *MICE)
        lab.start("collector", [sys.executable, "-m", "controller.cli", "serve"])
        lab.rig("1", time_scale=30)
        wait_until(lambda: lab.idle_and_known("1"), TIMEOUT, "rig idle")
        labctl(lab.env, "assign", "C01", "--box", "1")
        labctl(lab.env, "start", "C01", "--duration", "90")
        wait_until(
            lambda: (lab.boxes()["1"].get("last_session") or {}).get("status") == "complete",
            TIMEOUT,
            "C01's session stored complete",
        )
        lab.web(TOKEN)
        yield lab
    finally:
        lab.processes.stop_all()
        with MqttClient.at(broker_url) as mqtt:
            mqtt.clear_retained(Topics(lab.prefix).status("1"))


def new_page(browser: Any) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT * 1000)
    return page


def test_a_rig_card_keeps_its_last_sessions_outcome_after_it_ends(
    browser: Any, day_lab: WebLab
) -> None:
    ended = day_lab.boxes()["1"]["last_session"]
    page = new_page(browser)
    try:
        page.goto(f"{day_lab.url}/rigs")
        card = page.locator("article.card[data-box='1']")
        card.locator("[data-f='mouse']", has_text="C01 (complete)").wait_for()
        assert card.locator("[data-f='trial']").inner_text() == str(ended["trials"])
        assert card.locator("[data-f='rewards']").inner_text() == str(ended["rewards"])
        assert card.locator("[data-f='correct']").inner_text().endswith("%")
        assert card.locator("[data-f='ended']").inner_text().startswith("complete")
        screenshot(page, "rigs-ended")
    finally:
        page.close()


def test_thirty_mice_get_distinct_colours_and_a_picker_instead_of_a_legend(
    browser: Any, day_lab: WebLab
) -> None:
    page = new_page(browser)
    try:
        page.goto(f"{day_lab.url}/cohort?name=C30")
        page.wait_for_function("document.getElementById('plot-correct').data?.length === 30")
        plot = "document.getElementById('plot-correct')"
        colours = page.evaluate(f"{plot}.data.map((t) => t.line.color)")
        assert len(set(colours)) == 30
        assert page.evaluate(f"{plot}.layout.showlegend") is False
        assert page.locator("#mouse-picker label").count() == 30
        page.click("#pick-none")
        page.locator("#mouse-picker input[data-mouse='C07']").check()
        visible = page.evaluate(
            f"{plot}.data.filter((t) => t.visible !== false).map((t) => t.name)"
        )
        assert visible == ["C07"]
        page.click("#pick-all")
        page.wait_for_function(f"{plot}.data.every((t) => t.visible !== false)")
        screenshot(page, "cohort-30")
        page.select_option("#x-by", "date")
        page.wait_for_function(f"{plot}.layout.xaxis.type === 'date'")
        first = page.evaluate(f"{plot}.data[0].x[0]")
        assert isinstance(first, str) and first.count("-") == 2  # YYYY-MM-DD
        # The choice is kept: a mouse page opens with its curves against the date too.
        page.goto(f"{day_lab.url}/mouse/C05")
        page.wait_for_function(f"{plot}.data?.length === 1 && {plot}.layout.xaxis.type === 'date'")
        page.select_option("#x-by", "session")
        page.wait_for_function(f"{plot}.layout.xaxis.type !== 'date'")
        assert page.evaluate(f"{plot}.data[0].x") == [1, 2, 3, 4, 5, 6, 7]  # C05: 7 sessions
    finally:
        page.close()
