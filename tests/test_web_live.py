"""The dashboard's live layer for a page left open all day, and the demo's dashboard.

:class:`~controller.web.live.LiveLab` is fed here the way paho's thread feeds
it (statuses and documents), without a broker; the broker-away test points the
app at a port where nothing listens; the demo test runs a real ``labctl demo``
and reads its dashboard while the simulated lab runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")

import httpx2 as httpx
from starlette.testclient import TestClient

from controller.db import Database, open_database
from controller.demo.broker import find_free_port
from controller.web.app import create_app
from controller.web.live import LiveLab, Subscriber
from shared.broker_url import broker_settings
from shared.documents import SessionStart, TrialEnd
from shared.protocol import Status, Topics

from .conftest import REPO
from .waiting import wait_until


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path / 'lab.db'}")


def live_lab(db: Database) -> LiveLab:
    lab = LiveLab(db, broker_settings("mqtt://127.0.0.1:1"), Topics("t"))
    lab.broker_up = True  # as once the link is open
    return lab


def running(box: str, session_id: str, trial: int, mouse: str = "M1") -> Status:
    return Status(
        box=box, state="running", mouse=mouse, session_id=session_id, trial=trial, clock=0.0
    )


def start(session_id: str, box: str, mouse: str) -> SessionStart:
    return SessionStart(
        session_id=session_id, box=box, seq=0, t=0.0, mouse=mouse, settings={},
        software_version="test",
    )  # fmt: skip


def test_a_page_that_falls_behind_is_dropped_instead_of_buffered() -> None:
    subscriber = Subscriber(limit=3)
    for number in range(10):
        subscriber.put("box", {"n": number})
    assert subscriber.dropped
    # Only the "reconnect" marker waits: nothing of the backlog is kept.
    assert subscriber.queue.qsize() == 1
    assert subscriber.queue.get_nowait() is None
    subscriber.put("box", {"n": 11})
    assert subscriber.queue.empty()


def test_cards_count_the_current_session_only(sqlite_db: Database) -> None:
    lab = live_lab(sqlite_db)
    for number in range(50):  # a day of sessions on one box
        session_id = f"s{number}"
        lab._on_event("1", start(session_id, "1", "M1"))
        for trial in range(number % 7 + 1):
            end = TrialEnd(session_id=session_id, box="1", seq=trial + 1, t=1.0, trial=trial,
                           outcome=1 if trial % 2 == 0 else 2)  # fmt: skip
            lab._on_event("1", end)
            lab._on_event("1", end)  # a duplicate delivery counts once
        lab._on_status("1", running("1", session_id, number % 7 + 1))
    card = lab.card("1")
    # Session s49 had 49 % 7 + 1 = 1 trial, a correct one.
    assert (card["session_id"], card["judged"], card["correct"], card["correct_pct"]) == (
        "s49", 1, 1, 100.0,
    )  # fmt: skip
    assert len(lab._boxes) == 1
    current = lab._boxes["1"].session
    assert current is not None and len(current.outcomes) == 1


def test_a_box_known_only_from_the_broker_shows_offline_while_the_broker_is_away(
    sqlite_db: Database,
) -> None:
    lab = live_lab(sqlite_db)
    lab._on_status("9", running("9", "s9", 4))
    assert (lab.card("9")["online"], lab.card("9")["trial"]) == (True, 4)
    lab.broker_up, lab.broker_note = False, "lost the broker; reconnecting"
    card = lab.card("9")
    assert (card["online"], card["state"], card["note"]) == (
        False, "offline", "lost the broker; reconnecting",
    )  # fmt: skip


def test_without_a_broker_the_dashboard_serves_the_database_and_says_why(
    sqlite_db: Database,
) -> None:
    port = find_free_port()  # nothing listens there
    app = create_app(sqlite_db, broker_settings(f"mqtt://127.0.0.1:{port}"), Topics("t"))
    with TestClient(app, base_url="http://localhost") as client:

        def attempted() -> dict[str, Any]:
            broker: dict[str, Any] = client.get("/api/info").json()["broker"]
            return broker if broker["note"] != "connecting" else {}  # {}: not yet

        # The server's connect attempt runs on its own thread.
        broker = wait_until(attempted, 10, "the dashboard's first connect attempt")
        assert broker["connected"] is False
        assert f"127.0.0.1:{port}" in broker["note"] and "retrying every 2 s" in broker["note"]
        assert client.get("/api/rigs").json()["boxes"] == []
        assert client.get("/rigs").status_code == 200


@pytest.mark.slow
@pytest.mark.broker
def test_the_demo_prints_the_dashboards_url_and_serves_it_while_the_lab_runs(
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo.out"
    with open(out, "wb") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", "--rigs", "2", "--minutes", "2",
             "--time-scale", "6", "--dir", str(tmp_path / "demo"), "--no-monitor"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:

        def text() -> str:
            assert demo.poll() is None, out.read_text()
            return out.read_text()

        line = wait_until(
            lambda: next((x for x in text().splitlines() if "dashboard:" in x), None),
            60, "the dashboard's view", interval=0.1,
        )  # fmt: skip
        assert line is not None  # wait_until returns only a true value
        url = line.split()[1]
        assert url.startswith("http://127.0.0.1:") and line.endswith("(labctl web, read-only)")

        def running_boxes() -> list[str]:
            try:
                boxes = httpx.get(f"{url}api/rigs", timeout=2).json()["boxes"]
            except httpx.HTTPError:
                return []
            return [b["box"] for b in boxes if b["state"] == "running" and b["mouse"]]

        assert wait_until(
            lambda: running_boxes() == ["1", "2"] or None, 60, "the dashboard's view",
            interval=0.1,
        )  # fmt: skip
        assert "read-only" in httpx.get(f"{url}api/info").json()["mode"]
        record = json.loads((tmp_path / "demo" / "processes.json").read_text())
        web_pid = record["processes"]["web"]["pid"]
        assert demo.wait(timeout=120) == 0, out.read_text()
        with pytest.raises(ProcessLookupError):
            os.kill(web_pid, 0)  # the demo stopped its dashboard too
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            demo.wait(timeout=60)


@pytest.mark.broker
def test_a_start_from_the_page_passes_labctls_weight_gate(
    tmp_path: Path, broker_url: str, topic_prefix: str
) -> None:
    from controller.cli import app as labctl_app

    from .cli_runner import CliRunner

    db_url = f"sqlite:///{tmp_path / 'lab.db'}"
    env = {"LABCTL_DB": db_url, "LABCTL_BROKER": broker_url, "LABCTL_PREFIX": topic_prefix}
    runner = CliRunner()
    for argv in (["box", "add", "1"], ["assign", "M1", "--box", "1"],
                 ["mouse", "baseline", "M1", "25"]):  # fmt: skip
        assert runner.invoke(labctl_app, argv, env=env).exit_code == 0
    token = "t" * 20
    db = open_database(db_url)
    app = create_app(db, broker_settings(broker_url), Topics(topic_prefix), token=token)
    with TestClient(app, base_url="http://localhost") as client:
        answer = client.post(
            "/api/start", json={"mice": ["M1"]}, headers={"Authorization": f"Bearer {token}"}
        )
    result = answer.json()
    assert answer.status_code == 207 and result["summary"] == "0 of 1 session(s) started"
    (outcome,) = result["outcomes"]
    # Not weighed today: refused by the weight check before anything is sent, as labctl does.
    assert (outcome["mouse"], outcome["ok"]) == ("M1", False)
    assert outcome["reason"].startswith("weight check: ")
    assert (
        "labctl: warning: " + outcome["reason"].removeprefix("weight check: ").split(" (")[0]
        in result["warnings"]
    )
    cli = runner.invoke(labctl_app, ["start", "M1"], env=env)
    assert cli.exit_code == 1 and "weight check:" in cli.output


@pytest.mark.broker
def test_the_dashboard_follows_the_broker_away_and_back(sqlite_db: Database) -> None:
    from controller.demo.broker import MosquittoBroker

    from .weblab import publish_status

    if not MosquittoBroker.available():
        pytest.skip("needs a mosquitto binary to stop and start a private broker")
    broker = MosquittoBroker()
    broker.start()
    try:
        topics = Topics("t")
        app = create_app(sqlite_db, broker_settings(broker.url), topics)
        with TestClient(app, base_url="http://localhost") as client:

            def broker_up() -> bool:
                return bool(client.get("/api/info").json()["broker"]["connected"])

            wait_until(broker_up, 10, "the dashboard's view", interval=0.1)
            publish_status(broker.url, topics, running("3", "s3", 1))
            wait_until(lambda: trial_of(client, "3") == 1, 10, "the dashboard's view", interval=0.1)
            broker.close()  # the broker goes away; another comes up on the same port
            wait_until(lambda: not broker_up(), 20, "the dashboard's view", interval=0.1)
            note = client.get("/api/info").json()["broker"]["note"]
            assert "reconnecting" in note
            broker = MosquittoBroker(broker.port)
            broker.start()
            wait_until(broker_up, 30, "the dashboard's view", interval=0.1)
            # Resubscribed: a new status reaches the cards again.
            publish_status(broker.url, topics, running("3", "s3", 2))
            wait_until(lambda: trial_of(client, "3") == 2, 10, "the dashboard's view", interval=0.1)
    finally:
        broker.close()


def trial_of(client: TestClient, box: str) -> int | None:
    """The trial count on the box's card, None while the card is not there."""
    for card in client.get("/api/rigs").json()["boxes"]:
        if card["box"] == box:
            return int(card["trial"])
    return None
