"""The alert rules and their ledger, in-process: what is raised from the lab's records and
a rig's status, sent once, repeated after the set time, held in quiet hours, retried after
a failure, and the ``labctl alerts`` commands' refusals. Real deliveries from real
processes are in tests/test_alerts_delivery.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from sqlalchemy import func, select

from controller.alerts.ledger import add_target, parse_quiet, quiet_until, reconcile
from controller.alerts.models import AlertDelivery, AlertTarget
from controller.alerts.rules import LiveFacts, implausible, lab_alerts
from controller.alerts.watch import dispatch
from controller.cli import app
from controller.db import Database, open_database
from controller.husbandry.settings import LabSettings, lab_settings, set_lab_setting
from controller.husbandry.weights import record_weighing, set_baseline, weight_check
from controller.lab import add_mouse
from controller.mqtt import BrokerError, BrokerLink
from controller.views import BoxView
from shared.protocol import Status

from .cli_runner import CliRunner

QUIET_LAB = LiveFacts(views=[], statuses={}, collectors_online=["c1"])

#: The kind the weighing tests send: the rules run at the wall clock's ``now``, and past the
#: lab's hours (water owed at 17:00) a restricted mouse also owes water; that rule's own
#: test is elsewhere, so these targets hear of weights only.
WEIGHTS_ONLY = ["weight-low"]


@pytest.fixture
def lab(tmp_path: object) -> Iterator[Database]:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        yield db
    finally:
        db.close()


class Outbox:
    """Apprise's place in these tests: keeps each message; fails while ``down``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.down = False

    def __call__(self, url: str, title: str, body: str, what: str) -> str | None:
        if self.down:
            return "connection refused"
        self.sent.append((title, body))
        return None


def _round(db: Database, now: float, live: LiveFacts = QUIET_LAB) -> list[str]:
    with db.session() as tx:
        settings = lab_settings(tx)
        return [a.key for a in reconcile(tx, lab_alerts(tx, live, settings, now), settings, now)]


def _restricted(db: Database, mouse: str = "M1", baseline: float = 25.0) -> None:
    with db.session() as tx:
        add_mouse(tx, mouse)
        set_baseline(tx, mouse, baseline, by="t", at=time.time() - 10 * 86400)


def _weigh(db: Database, grams: float, mouse: str = "M1") -> None:
    with db.session() as tx:
        record_weighing(tx, mouse, grams, by="t")


def test_a_weighing_under_threshold_is_sent_once_and_its_clearing_once(lab: Database) -> None:
    outbox = Outbox()
    with lab.session() as tx:
        add_target(tx, "json://127.0.0.1:9/x", WEIGHTS_ONLY, "", "t")
    _restricted(lab)
    _weigh(lab, 18.0)
    now = time.time()
    assert "weight-low:M1" in _round(lab, now)
    assert "weight-low:M1" in _round(lab, now + 5)  # still holds: nothing new
    dispatch(lab, now + 5, send=outbox)
    assert [t for t, _ in outbox.sent] == ["reachlab weight-low"]
    _weigh(lab, 24.0)
    assert "weight-low:M1" not in _round(lab, now + 10)
    dispatch(lab, now + 10, send=outbox)
    assert [t for t, _ in outbox.sent] == ["reachlab weight-low", "reachlab cleared: weight-low"]


def test_an_alert_that_still_holds_is_repeated_only_after_the_set_hours(lab: Database) -> None:
    outbox = Outbox()
    with lab.session() as tx:
        add_target(tx, "json://127.0.0.1:9/x", ["weight-low"], "", "t")
        set_lab_setting(tx, "alert_repeat_hours", "2", by="t")
    _restricted(lab)
    _weigh(lab, 18.0)
    now = time.time()
    for later in (0, 3600, 7100):
        _round(lab, now + later)
    dispatch(lab, now + 7100, send=outbox)
    assert [t for t, _ in outbox.sent] == ["reachlab weight-low"]
    _round(lab, now + 7200)
    dispatch(lab, now + 7200, send=outbox)
    assert [t for t, _ in outbox.sent] == ["reachlab weight-low", "reachlab still: weight-low"]


def test_a_failed_delivery_is_recorded_and_retried_until_it_goes(lab: Database) -> None:
    outbox = Outbox()
    outbox.down = True
    with lab.session() as tx:
        add_target(tx, "json://127.0.0.1:9/x", WEIGHTS_ONLY, "", "t")
    _restricted(lab)
    _weigh(lab, 18.0)
    now = time.time()
    _round(lab, now)
    assert dispatch(lab, now, send=outbox) == 0
    with lab.reader() as tx:
        row = tx.scalars(select(AlertDelivery)).one()
        assert (row.state, row.attempts, row.last_error) == ("pending", 1, "connection refused")
        assert row.due_at >= now + 30  # not hammered: the next try waits
    outbox.down = False
    assert dispatch(lab, now + 1, send=outbox) == 0  # not due yet
    assert dispatch(lab, now + 31, send=outbox) == 1
    with lab.reader() as tx:
        row = tx.scalars(select(AlertDelivery)).one()
        assert (row.state, row.attempts) == ("sent", 2)


def test_quiet_hours_hold_a_message_until_they_end_and_drop_one_that_cleared(
    lab: Database,
) -> None:
    assert parse_quiet("22:00-7:00") == "22:00-07:00"
    night = datetime(2026, 12, 7, 23, 30).timestamp()
    assert quiet_until("22:00-07:00", night) == datetime(2026, 12, 8, 7, 0).timestamp()
    assert quiet_until("22:00-07:00", datetime(2026, 12, 8, 6, 0).timestamp()) == (
        datetime(2026, 12, 8, 7, 0).timestamp()
    )
    assert quiet_until("22:00-07:00", datetime(2026, 12, 8, 12, 0).timestamp()) is None
    with lab.session() as tx:
        add_target(tx, "json://127.0.0.1:9/day", WEIGHTS_ONLY, "", "t")
        quiet = add_target(tx, "json://127.0.0.1:9/night", WEIGHTS_ONLY, "00:00-23:59", "t")
        quiet_id = quiet.id
    _restricted(lab)
    _weigh(lab, 18.0)
    now = time.time()
    _round(lab, now)
    with lab.reader() as tx:
        held = tx.scalars(select(AlertDelivery).where(AlertDelivery.target_id == quiet_id)).one()
        assert held.due_at > now
    _weigh(lab, 24.0)
    _round(lab, now + 1)
    with lab.reader() as tx:
        rows = list(tx.scalars(select(AlertDelivery).order_by(AlertDelivery.id)))
    states = [(r.target_id, r.what, r.state) for r in rows]
    # The other target heard of it, so it hears it cleared; the quiet one hears neither.
    assert (quiet_id, "raised", "dropped") in states
    assert [s for s in states if s[0] == quiet_id and s[2] != "dropped"] == []
    assert [s[1] for s in states if s[0] != quiet_id] == ["raised", "cleared"]


def test_implausible_weighings_against_the_last_one_and_the_labs_limits() -> None:
    settings = LabSettings()
    assert implausible(22.0, 23.0, settings) == ""
    assert implausible(11.0, 23.0, settings) == "under half of the 23 g before"
    assert implausible(48.0, 23.0, settings) == "over twice the 23 g before"
    assert implausible(95.0, None, settings) == "outside the lab's 10-60 g"


def test_an_implausible_weighing_is_raised_and_clears_with_the_next_one(lab: Database) -> None:
    _restricted(lab)
    _weigh(lab, 23.0)
    _weigh(lab, 2.3)  # a decimal point slipped
    now = time.time()
    keys = _round(lab, now)
    assert any(k.startswith("weight-implausible:M1:") for k in keys), keys
    _weigh(lab, 23.1)
    assert not any(k.startswith("weight-implausible") for k in _round(lab, now + 1))


def test_the_grace_threshold_applies_in_the_first_days_of_restriction(lab: Database) -> None:
    with lab.session() as tx:
        add_mouse(tx, "New")
        set_baseline(tx, "New", 25.0, by="t")
        set_lab_setting(tx, "grace_days", "7", by="t")
        set_lab_setting(tx, "grace_threshold_pct", "70", by="t")
        record_weighing(tx, "New", 18.5, by="t")  # 74 %: under 80, over the grace 70
        check = weight_check(tx, "New", lab_settings(tx))
    assert (check.grace, check.threshold_pct, check.warnings) == (True, 70.0, [])
    assert not any(k.startswith("weight-low") for k in _round(lab, time.time()))


def test_not_weighed_and_water_owed_are_raised_only_after_their_hours(lab: Database) -> None:
    _restricted(lab)
    morning = datetime.now().replace(hour=9, minute=0, second=0).timestamp()
    with lab.session() as tx:
        set_lab_setting(tx, "alert_weigh_by", "09:45", by="t")
        set_lab_setting(tx, "alert_water_by", "09:30", by="t")
    assert _round(lab, morning) == []
    day = time.strftime("%Y-%m-%d", time.localtime(morning))
    assert _round(lab, morning + 3600) == [f"not-weighed:M1:{day}", f"water-owed:M1:{day}"]


def test_a_rigs_clock_and_journal_disk_are_raised_from_its_status(lab: Database) -> None:
    status = Status(box="3", state="idle", journal_free_mb=120.0)
    view = BoxView(box="3", online=True, state="idle", clock_offset=-95.0)
    live = LiveFacts(views=[view], statuses={"3": status}, collectors_online=[])
    keys = _round(lab, time.time(), live)
    assert keys == ["clock-offset:3", "disk-low:3", "no-collector"]


def test_an_old_agents_status_without_disk_space_still_parses() -> None:
    from shared.protocol import parse_status

    old = '{"schema_version": 1, "box": "1", "state": "idle"}'
    assert parse_status(old).journal_free_mb is None


# ---------------------------------------------------------------- the commands


def _labctl(db: Database, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"LABCTL_DB": str(db.engine.url)})
    return result.exit_code, result.stdout, result.stderr


def _targets(db: Database) -> int:
    with db.reader() as tx:
        return int(tx.scalar(select(func.count()).select_from(AlertTarget)) or 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope://x"], "Apprise does not understand the URL (scheme 'nope')"),
        (["json://127.0.0.1:9/x", "--only", "weight"], "unknown alert kind 'weight'"),
        (["json://127.0.0.1:9/x", "--quiet", "22-7"], "invalid --quiet '22-7': expected HH:MM"),
    ],
)
def test_a_bad_target_is_one_line_and_nothing_is_stored(
    lab: Database, args: list[str], message: str
) -> None:
    code, _, err = _labctl(lab, "alerts", "add", *args)
    assert code != 0 and err.count("\n") == 1 and message in err, err
    assert _targets(lab) == 0


def test_a_url_with_a_token_is_listed_masked(lab: Database) -> None:
    code, out, _ = _labctl(lab, "alerts", "add", "ntfys://care:tok3nsecret@ntfy.example/mice")
    assert code == 0 and "tok3nsecret" not in out
    code, out, _ = _labctl(lab, "alerts", "list")
    assert code == 0 and "ntfy" in out and "tok3nsecret" not in out
    code, _, err = _labctl(lab, "alerts", "remove", "7")
    assert code != 0 and "no alert target 7" in err


def test_the_daily_summary_goes_once_at_its_hour_with_what_holds(lab: Database) -> None:
    from controller.alerts.watch import Watch

    outbox = Outbox()
    with lab.session() as tx:
        add_target(tx, "json://127.0.0.1:9/x", ["summary"], "", "t")
        set_lab_setting(tx, "alert_summary_at", "08:00", by="t")
    _restricted(lab)
    _weigh(lab, 18.0)
    watch = Watch(lab, make_link=_no_broker, send=outbox)
    early = datetime.now().replace(hour=7, minute=59, second=0).timestamp()
    watch.round(early)
    assert outbox.sent == []  # before the hour; and weight-low is not this target's kind
    for later in (120, 3600):
        watch.round(early + later)
    assert len(outbox.sent) == 1
    title, body = outbox.sent[0]
    assert title.startswith("reachlab daily summary ")
    assert "M1 weighs 18 g" in body and "M1: 18 g (72 %)" in body


def test_a_collector_that_stopped_renewing_its_lease_is_raised(lab: Database) -> None:
    from controller.models import CollectorLease

    now = time.time()
    with lab.session() as tx:
        tx.add(CollectorLease(id="c9", group_name=None, host="h", pid=1, started_at=now - 99,
                              heartbeat_at=now - 60))  # fmt: skip
    assert _round(lab, now) == ["collector-gone:c9"]


def _no_broker(on_status: Callable[[str, Status], None]) -> BrokerLink:

    raise BrokerError("no broker in this test")


def test_a_removed_target_gets_nothing_more_even_what_was_waiting(lab: Database) -> None:
    outbox = Outbox()
    with lab.session() as tx:
        add_target(tx, "json://127.0.0.1:9/x", WEIGHTS_ONLY, "", "t")
    _restricted(lab)
    _weigh(lab, 18.0)
    now = time.time()
    _round(lab, now)
    code, out, _ = _labctl(lab, "alerts", "remove", "1")
    assert code == 0 and "alert target 1 removed" in out
    assert dispatch(lab, now + 1, send=outbox) == 0 and outbox.sent == []
