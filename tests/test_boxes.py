"""The lab's box registry (issue 17): a mistyped box id is refused, and ``labctl box``
lists, adds, retires and renames boxes, keeping their history."""

from __future__ import annotations

import json
import re
import time

import pytest

from controller.collector.decode import Decoded
from controller.collector.presence import Presence
from controller.db import Box, Database, TrainingSession, open_database
from controller.store import session_text
from controller.views import StoredBox, box_views
from shared.broker_url import BrokerSettings
from shared.protocol import Status, Topics, encode
from tests.fakes import FakeRig

from .labctl import Labctl, labctl, unused_port
from .waiting import wait_until

__all__ = ["labctl"]  # a fixture, used by name

TYPO = "labctl: error: no box 9: it has never reported and was not added (labctl box list; labctl box add 9 for a new rig)"  # noqa: E501


def away() -> dict[str, str]:
    """No broker: what these commands judge they must do without one."""
    return {"LABCTL_BROKER": f"mqtt://127.0.0.1:{unused_port()}"}


def refused_without_broker(labctl: Labctl, *args: str) -> str:
    """The error line of a command that judged by the recorded states (and warned so)."""
    result = labctl(*args, env=away())
    assert result.exit_code == 2, result.output
    warning, error = result.stderr.strip().splitlines()
    assert "judged by the boxes' last recorded states" in warning
    assert error.startswith("labctl: error: ")
    return error


def _db(labctl: Labctl) -> Database:
    return open_database(labctl.env["LABCTL_DB"])


def _boxes(labctl: Labctl, *args: str) -> dict[str, dict[str, object]]:
    return {b["box"]: b for b in json.loads(labctl.ok("box", "list", "--json", *args))}


def _report(db: Database, box: str, state: str = "idle", mouse: str | None = None) -> None:
    """What the collector does with a box's live status (its first message makes its row)."""
    now = time.time()
    status = Status(box=box, state=state, mouse=mouse)
    batch = Decoded(statuses={box: (status, encode(status).decode())}, seen={box: now})
    with db.engine.begin() as conn:
        Presence(heartbeat_timeout=30.0).store(conn, batch, now)


def _store_session(db: Database, mouse: str, box: str) -> None:
    data = {"box": box, "session_id": f"s-{box}", "trials": [], "start_time": 1.0e9}
    with db.session() as tx:
        tx.add(
            TrainingSession(
                session_id=f"s-{box}", mouse_id=mouse, box=box, origin="recorded",
                status="complete", complete=True, position=1.0e9, start_time=1.0e9,
                data=session_text(data), created_at=time.time(),
            )
        )  # fmt: skip


# ---------------------------------------------------------------- a box the lab does not know


def test_assign_to_a_box_that_never_reported_nor_was_added_is_refused_and_nothing_stored(
    labctl: Labctl,
) -> None:
    result = labctl("assign", "M5", "--box", "9", env=away())
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == TYPO
    assert result.stdout == ""
    assert json.loads(labctl.ok("mouse", "list", "--json")) == []  # M5 was not made either
    assert _boxes(labctl, "--all") == {}


def test_calibrate_and_calibrations_refuse_a_box_the_lab_does_not_know(labctl: Labctl) -> None:
    calibrate = ("calibrate", "--box", "9", "--spout", "left", "--already-dispensed")
    assert labctl.error(*calibrate, "--total-mg", "600") == TYPO
    # Without --already-dispensed nothing is sent to a rig either: refused before the broker.
    assert labctl.error("calibrate", "--box", "9", "--spout", "left", env=away()) == TYPO
    assert labctl.error("calibrations", "--box", "9") == TYPO
    assert json.loads(labctl.ok("calibrations", "--json"))["calibrations"] == []
    assert _boxes(labctl, "--all") == {}


def test_a_schedule_refuses_a_box_the_lab_does_not_know(labctl: Labctl) -> None:
    labctl.ok("box", "add", "1")
    labctl.ok("cohort", "create", "C1", "M1", "M2", "--create")
    line = labctl.error("schedule", "C1", "--shifts", "1", "--box", "1", "--box", "9")
    assert line == TYPO
    assert set(_boxes(labctl, "--all")) == {"1"}


def test_a_box_that_reports_is_known_and_one_added_by_hand_too(labctl: Labctl) -> None:
    db = _db(labctl)
    _report(db, "4")
    db.close()
    assert "assigned M1 to box 4" in labctl.ok("assign", "M1", "--box", "4")
    assert labctl.ok("box", "add", "5", "--by", "ana") == "added box 5\n"
    assert labctl.ok("box", "add", "5") == "box 5 is already in the lab\n"
    assert "assigned M2 to box 5" in labctl.ok("assign", "M2", "--box", "5")
    rows = _boxes(labctl)
    assert rows["4"]["added_by"] is None and rows["4"]["last_seen"] is not None
    assert rows["4"]["state"] == "idle" and rows["4"]["mouse"] == "M1"
    assert rows["5"]["added_by"] == "ana" and rows["5"]["last_seen"] is None
    table = labctl.ok("box", "list")
    assert "by ana" in table and "never" in table and "(first report)" in table


# ---------------------------------------------------------------- retire


def test_retire_is_refused_while_a_mouse_is_on_the_box_and_names_what_to_do(
    labctl: Labctl,
) -> None:
    labctl.ok("box", "add", "9")
    labctl.ok("assign", "M1", "--box", "9")
    line = labctl.error("box", "retire", "9")
    assert "mouse M1 is on box 9" in line and "labctl unassign M1" in line, line
    labctl.ok("unassign", "M1")
    assert "retired box 9" in labctl.ok("box", "retire", "9", "--by", "ana")
    assert labctl.error("box", "retire", "9") == (
        "labctl: error: box 9 is already retired (labctl box list --all)"
    )


def test_retire_is_refused_while_a_session_runs_on_the_box(labctl: Labctl) -> None:
    db = _db(labctl)
    _report(db, "2", state="running", mouse="M1")
    db.close()
    line = refused_without_broker(labctl, "box", "retire", "2")  # judged by its recorded state
    assert "box 2 is running M1's session: stop it first (`labctl stop --box 2`)" in line


def test_retire_is_refused_while_a_schedule_in_force_places_mice_on_the_box(
    labctl: Labctl,
) -> None:
    labctl.ok("box", "add", "1")
    labctl.ok("box", "add", "2")
    labctl.ok("cohort", "create", "C1", "M1", "M2", "--create")
    labctl.ok("schedule", "C1", "--shifts", "1", "--box", "1", "--box", "2")
    line = labctl.error("box", "retire", "2")
    assert "cohort C1's schedule places mice on box 2" in line, line


def test_a_retired_box_leaves_the_views_and_takes_no_mouse_but_keeps_its_sessions(
    labctl: Labctl,
) -> None:
    labctl.ok("box", "add", "9")  # the phantom: it never reports, so it is offline forever
    labctl.ok("assign", "M1", "--box", "9")
    db = _db(labctl)
    _store_session(db, "M1", "9")
    db.close()
    labctl.ok("unassign", "M1")
    row = re.compile(r"^│ 9 +│", re.MULTILINE)  # box 9's row in the monitor's table
    status = {v["box"] for v in json.loads(labctl.ok("status", "--json"))["boxes"]}
    assert "9" in status and row.search(labctl.ok("monitor", "--once"))
    labctl.ok("box", "retire", "9")
    status = {v["box"] for v in json.loads(labctl.ok("status", "--json"))["boxes"]}
    assert "9" not in status
    assert not row.search(labctl.ok("monitor", "--once"))
    assert "9" not in _boxes(labctl)
    assert _boxes(labctl, "--all")["9"]["state"] == "retired"
    line = labctl.error("assign", "M1", "--box", "9")
    assert "box 9 is retired" in line and "labctl box add 9" in line, line
    # Its history stays: the session, the assignment, the export.
    shown = json.loads(labctl.ok("mouse", "show", "M1", "--json"))
    assert [s["box"] for s in shown["sessions"]] == ["9"]
    assert [a["box"] for a in shown["assignments"]] == ["9"]
    assert "9" in labctl.ok("calibrations", "--box", "9", "--history", "--json")
    # Brought back, it is a box again.
    assert "box 9 is back in use" in labctl.ok("box", "add", "9")
    assert "assigned M1 to box 9" in labctl.ok("assign", "M1", "--box", "9")


def test_a_retired_box_s_retained_status_does_not_bring_it_back_to_the_views() -> None:
    stored = {
        "1": StoredBox("1", "idle", None, None, None, None),
        "9": StoredBox("9", "offline", None, None, None, None, retired=True),
    }
    live = {b: Status(box=b, state="idle") for b in ("1", "9")}
    assert [v.box for v in box_views(stored, {}, live)] == ["1"]
    assert [v.box for v in box_views(stored, {}, None)] == ["1"]


@pytest.mark.broker
def test_a_retired_box_leaves_the_dashboard_s_rigs_though_its_rig_still_sends(
    labctl: Labctl, broker: BrokerSettings, topic_prefix: str
) -> None:
    pytest.importorskip("starlette", reason="the web extra is not installed")
    from starlette.testclient import TestClient

    from controller.web.app import create_app

    labctl.add_boxes("5", "9")
    labctl.ok("box", "retire", "9")
    db = _db(labctl)
    topics = Topics(topic_prefix)
    app = create_app(db, broker, topics, database_display="test")
    try:
        with (
            FakeRig(broker, topics, "5"),
            FakeRig(broker, topics, "9"),
            TestClient(app, base_url="http://localhost") as client,
        ):

            def cards() -> dict[str, dict[str, object]]:
                return {c["box"]: c for c in client.get("/api/rigs").json()["boxes"]}

            # Both retained statuses come with the subscription: once 5 shows, 9 came too.
            wait_until(lambda: cards().get("5", {}).get("online"), 10, "box 5 online")
            assert "9" not in cards()
    finally:
        db.close()


def test_a_retired_box_that_reports_again_stays_retired_and_is_warned_about_once(
    labctl: Labctl, caplog: pytest.LogCaptureFixture
) -> None:
    labctl.ok("box", "add", "7")
    labctl.ok("box", "retire", "7")
    db = _db(labctl)
    presence = Presence(heartbeat_timeout=30.0)
    now = time.time()
    status = Status(box="7", state="idle")
    batch = Decoded(statuses={"7": (status, encode(status).decode())}, seen={"7": now})
    with caplog.at_level("WARNING", logger="labctl.collector"):
        for _ in range(3):
            with db.engine.begin() as conn:
                presence.store(conn, batch, now)
    with db.reader() as tx:
        box = tx.get(Box, "7")
        assert box is not None and box.retired_at is not None and box.state == "idle"
    db.close()
    warned = [r.getMessage() for r in caplog.records if "retired" in r.getMessage()]
    assert len(warned) == 1 and "labctl box add 7" in warned[0], warned
    assert "7" not in {v["box"] for v in json.loads(labctl.ok("status", "--json"))["boxes"]}


# ---------------------------------------------------------------- rename


def test_rename_moves_the_mouse_schedule_and_calibrations_and_keeps_the_history(
    labctl: Labctl,
) -> None:
    labctl.ok("box", "add", "3")
    labctl.ok("assign", "M1", "--box", "3")
    labctl.ok("calibrate", "--box", "3", "--spout", "left", "--already-dispensed",
              "--total-mg", "600", "--by", "ana")  # fmt: skip
    db = _db(labctl)
    _store_session(db, "M1", "3")
    db.close()
    out = labctl.ok("box", "rename", "3", "A3", "--by", "ben")
    assert "renamed box 3 to A3" in out
    rows = _boxes(labctl, "--all")
    assert rows["3"]["state"] == "retired" and rows["3"]["renamed_to"] == "A3"
    assert rows["3"]["retired_by"] == "ben"
    assert rows["A3"]["renamed_from"] == "3" and rows["A3"]["mouse"] == "M1"
    assert "3" not in _boxes(labctl)
    shown = json.loads(labctl.ok("mouse", "show", "M1", "--json"))
    assert shown["box"] == "A3"
    assert [a["box"] for a in shown["assignments"]] == ["3", "A3"]
    assert shown["assignments"][0]["until"] == shown["assignments"][1]["from"]
    assert [s["box"] for s in shown["sessions"]] == ["3"]  # recorded on box 3, as its file says
    moved = json.loads(labctl.ok("calibrations", "--box", "A3", "--json"))["calibrations"]
    before = json.loads(labctl.ok("calibrations", "--box", "3", "--json"))["calibrations"]
    assert [(c["spout"], c["ul_per_opening"]) for c in moved] == [("left", 6.0)]
    assert moved[0]["measured_at"] == before[0]["measured_at"]  # its age is the measurement's
    line = labctl.error("assign", "M2", "--box", "3")
    assert "box 3 is retired (renamed to A3)" in line, line


def test_rename_to_an_id_that_exists_is_refused(labctl: Labctl) -> None:
    for box in ("1", "2", "old"):
        labctl.ok("box", "add", box)
    labctl.ok("box", "retire", "old")
    assert "box 2 already exists" in labctl.error("box", "rename", "1", "2")
    assert "box old already exists (a retired box" in labctl.error("box", "rename", "1", "old")
    assert "invalid box id" in labctl.error("box", "rename", "1", "a b")
    assert set(_boxes(labctl)) == {"1", "2"}


def test_rename_of_a_box_that_is_online_or_running_is_refused_with_the_reason(
    labctl: Labctl,
) -> None:
    db = _db(labctl)
    _report(db, "1")
    _report(db, "2", state="running", mouse="M1")
    db.close()
    line = refused_without_broker(labctl, "box", "rename", "1", "A1")
    assert "box 1 is online: stop its agent, set its box id to A1, then rename it" in line
    line = refused_without_broker(labctl, "box", "rename", "2", "A2")
    assert "box 2 is running M1's session: stop it first" in line, line
    assert set(_boxes(labctl, "--all")) == {"1", "2"}
