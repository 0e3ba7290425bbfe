"""The lab's husbandry rules on the real databases (SQLite, then PostgreSQL): weights
against baselines, overrides, water earned at the calibration in force, what is owed,
stale and drifting calibrations, two-shift schedules, and the day's rows.

Sessions are stored the way ``labctl import`` stores a per-mouse file, with trials
at known times, so every expected volume below is worked out by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from controller.db import Database
from controller.files import import_sessions
from controller.husbandry.boxes import add_box
from controller.husbandry.calibration import (
    calibration_metadata,
    calibration_warnings,
    new_calibration_warnings,
    record_calibration,
)
from controller.husbandry.models import WeightOverride
from controller.husbandry.report import box_warnings, format_report, report_rows, today_rows
from controller.husbandry.schedule import (
    Slot,
    next_mice,
    place_shift,
    plan_shifts,
    schedule_history,
    set_schedule,
    shift_slots,
)
from controller.husbandry.settings import LabSettings, lab_settings, set_lab_setting
from controller.husbandry.water import give_water, water_day
from controller.husbandry.weights import (
    record_override,
    record_weighing,
    set_baseline,
    weight_check,
)
from controller.lab import LabError, add_mouse, assignment_history, create_cohort
from shared.errors import ConfigError

DAY = "2026-03-10"


def at(clock: str, day: str = DAY) -> float:
    """Unix time of a local clock time on ``day``."""
    return datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M").timestamp()


def reward_trial(
    spout: int, t: float, *, outcome: int = 1, shaping: bool = False
) -> dict[str, Any]:
    return {
        "start": t - 2.0, "end": t, "spout": spout, "cue_duration": 10000.0,
        "outcome": outcome, "spout_position": [1, 1], "shaping": shaping,
    }  # fmt: skip


def session(
    sid: str, box: str | None, trials: list[dict[str, Any]], durations: tuple[int, int] = (70, 70)
) -> dict[str, Any]:
    start = min(t["start"] for t in trials) - 10
    end = max(t["end"] for t in trials) + 10
    date = datetime.fromtimestamp(start).strftime("%Y-%m-%d")
    return {
        "trainer": "test", "duration": 1800, "reward_duration_ms": list(durations),
        "reward_volume_ul": 6, "trials": trials, "resets": [], "spontaneous_reaches": [],
        "start_time": start, "end_time": end, "date": date,
        "session_id": sid, "box": box, "status": "complete",
    }  # fmt: skip


def store(db: Database, mouse: str, *sessions: dict[str, Any]) -> None:
    with db.engine.begin() as conn:
        result = import_sessions(conn, mouse, list(sessions))
    assert result.imported == len(sessions)


def cohort(s: Any, name: str, mice: list[str]) -> None:
    for mouse in mice:
        add_mouse(s, mouse)
    create_cohort(s, name, mice)


def add_boxes(db: Database, *boxes: str) -> None:
    """Boxes known to the lab, as their rigs' first statuses would make them."""
    with db.session() as s:
        for box in boxes:
            add_box(s, box, by="anna")


def restricted_mouse(db: Database, mouse: str = "M1", baseline: float = 25.0) -> None:
    with db.session() as s:
        add_mouse(s, mouse)
        set_baseline(s, mouse, baseline, by="anna", at=at("08:00", "2026-03-01"))


# ---------------------------------------------------------------- weights


def test_a_weight_below_80_percent_of_the_baseline_warns_and_blocks_a_start(db: Database) -> None:
    restricted_mouse(db)
    with db.session() as s:
        record_weighing(s, "M1", 20.5, by="anna", at=at("08:30"))  # 82 %: fine
        check = weight_check(s, "M1", lab_settings(s), DAY)
        assert check.warnings == [] and not check.blocks_start
        assert check.percent == pytest.approx(82.0)
        record_weighing(s, "M1", 19.5, by="anna", at=at("09:00"))  # 78 %, the latest counts
        check = weight_check(s, "M1", lab_settings(s), DAY)
    assert check.blocks_start and check.weight_grams == 19.5
    (warning,) = check.warnings
    assert "19.5 g, 78.0 % of its baseline 25 g (below 80 %)" in warning


def test_a_restricted_mouse_not_weighed_that_day_warns_and_one_never_restricted_does_not(
    db: Database,
) -> None:
    restricted_mouse(db)
    with db.session() as s:
        add_mouse(s, "FREE")
        record_weighing(s, "M1", 24.0, by="anna", at=at("18:00", "2026-03-09"))  # yesterday
        settings = lab_settings(s)
        missing = weight_check(s, "M1", settings, DAY)
        free = weight_check(s, "FREE", settings, DAY)
    assert missing.blocks_start and missing.warnings == ["M1 has not been weighed on 2026-03-10"]
    assert not free.restricted and not free.blocks_start and free.warnings == []


def test_the_threshold_is_the_lab_s_own_setting_and_its_history_is_kept(db: Database) -> None:
    restricted_mouse(db)
    with db.session() as s:
        record_weighing(s, "M1", 21.0, by="anna", at=at("08:30"))  # 84 %
        assert not weight_check(s, "M1", lab_settings(s), DAY).warnings
        set_lab_setting(s, "weight_threshold_pct", "85", by="vet")
        check = weight_check(s, "M1", lab_settings(s), DAY)
        with pytest.raises(ConfigError, match="weight_threshold_pct 'lots'"):
            set_lab_setting(s, "weight_threshold_pct", "lots", by="vet")
        with pytest.raises(ConfigError, match="unknown lab setting 'colour'"):
            set_lab_setting(s, "colour", "blue", by="vet")
    assert check.blocks_start and "(below 85 %)" in check.warnings[0]


def test_an_override_is_recorded_with_who_why_and_what_it_overrode(db: Database) -> None:
    restricted_mouse(db)
    with db.session() as s:
        record_weighing(s, "M1", 19.0, by="anna", at=at("08:30"))
        check = weight_check(s, "M1", lab_settings(s), DAY)
        with pytest.raises(LabError, match="needs a reason"):
            record_override(s, check, by="anna", reason="  ", session_id=None)
        record_override(s, check, by="anna", reason="vet checked: healthy", session_id="S1")
    with db.reader() as s:
        (row,) = s.scalars(select(WeightOverride))
    assert (row.mouse_id, row.by, row.reason, row.session_id) == (
        "M1", "anna", "vet checked: healthy", "S1",
    )  # fmt: skip
    assert (row.weight_grams, row.baseline_grams) == (19.0, 25.0)
    assert "76.0 % of its baseline" in row.warning


def test_the_baseline_can_be_the_mean_of_the_first_weighings(db: Database) -> None:
    with db.session() as s:
        add_mouse(s, "M1")
        record_weighing(s, "M1", 24.0, by="a", at=at("09:00", "2026-03-01"))
        with pytest.raises(LabError, match="has 1 weighing"):
            set_baseline(s, "M1", None, by="a", mean_of=3)
        record_weighing(s, "M1", 25.0, by="a", at=at("09:00", "2026-03-02"))
        record_weighing(s, "M1", 26.5, by="a", at=at("09:00", "2026-03-03"))
        record_weighing(s, "M1", 20.0, by="a", at=at("09:00", "2026-03-04"))  # not among them
        baseline = set_baseline(s, "M1", None, by="a", mean_of=3)
        with pytest.raises(LabError, match=r"invalid weight 0\.2 g"):
            record_weighing(s, "M1", 0.2, by="a")
    assert baseline.grams == pytest.approx(25.167, abs=1e-3)
    assert baseline.method == "mean of 3 weighings (2026-03-01 to 2026-03-03)"


# ---------------------------------------------------------------- calibration and water


def test_water_earned_counts_each_reward_at_the_calibration_in_force_when_it_was_given(
    db: Database,
) -> None:
    add_boxes(db, "1", "2")
    restricted_mouse(db, baseline=25.0)
    with db.session() as s:
        for spout, ul in ((0, 5.0), (1, 6.0)):
            record_calibration(
                s, "1", spout, openings=100, duration_ms=70, total=ul * 100, unit="mg",
                by="anna", at=at("07:00"),
            )  # fmt: skip
        # The left valve is recalibrated at noon, in the middle of the day and of a session.
        record_calibration(
            s, "1", 0, openings=50, duration_ms=70, total=200.0, unit="ul", by="ben",
            at=at("12:00"),
        )  # fmt: skip
    morning = [reward_trial(0, at("09:00") + n) for n in range(10)]
    morning += [reward_trial(1, at("09:30") + n) for n in range(5)]
    morning.append(reward_trial(0, at("09:40"), outcome=2))  # incorrect: no water
    across_noon = [reward_trial(0, at("11:55")), reward_trial(0, at("12:05"))]
    # Afternoon: a 140 ms reward on the left is twice the calibrated 70 ms opening, and a
    # shaping trial was rewarded at its cue onset as well as at the correct touch.
    afternoon = [reward_trial(0, at("14:00") + n) for n in range(8)]
    afternoon.append(reward_trial(1, at("14:30"), shaping=True))
    store(
        db, "M1",
        session("S-am", "1", morning),
        session("S-noon", "1", across_noon),
        session("S-pm", "1", afternoon, durations=(140, 70)),
    )  # fmt: skip
    with db.session() as s:
        give_water(s, "M1", 300.0, by="ben", at=at("17:00"))
        give_water(s, "M1", 100.0, kind="supplement", by="ben", at=at("17:05"))
        give_water(s, "M1", 999.0, by="ben", at=at("09:00", "2026-03-11"))  # the next day
        day = water_day(s, "M1", DAY, lab_settings(s))
    expected = (10 * 5.0 + 5 * 6.0) + (5.0 + 4.0) + (8 * 4.0 * 2 + 2 * 6.0)
    assert day.earned.rewards == 10 + 5 + 2 + 8 + 2
    assert day.earned.ul == pytest.approx(expected)  # 194 µL
    assert day.earned.uncalibrated == 0 and day.warnings == []
    assert day.given_ul == 400.0 and day.given_by_kind == {"water": 300.0, "supplement": 100.0}
    assert day.total_ul == pytest.approx(expected + 400.0)
    assert day.requirement_ul == pytest.approx(40 * 25.0)  # the default: 40 µL per g
    assert day.owed_ul == pytest.approx(1000.0 - expected - 400.0)


def test_a_session_still_being_collected_counts_its_rewards_so_far_at_its_start_calibration(
    db: Database,
) -> None:
    add_boxes(db, "1", "2")
    from controller.models import TrainingSession

    restricted_mouse(db)
    with db.session() as s:
        for spout, total in ((0, 400.0), (1, 600.0)):
            record_calibration(
                s, "1", spout, openings=100, duration_ms=70, total=total, unit="mg", by="a",
                at=at("07:00"),
            )  # fmt: skip
        # As the collector keeps a session whose end has not arrived: no data yet.
        s.add(
            TrainingSession(
                session_id="S-running",
                mouse_id="M1",
                box="1",
                origin="recorded",
                complete=False,
                position=at("10:00"),
                start_time=at("10:00"),
                trial_count=14,
                reward_count=10,
                created_at=at("10:00"),
            )
        )
        s.flush()
        # A later calibration does not change what the running session was started under.
        record_calibration(
            s, "1", 0, openings=100, duration_ms=70, total=800.0, unit="mg", by="a",
            at=at("11:00"),
        )  # fmt: skip
        day = water_day(s, "M1", DAY, lab_settings(s))
    assert day.earned.provisional == 1 and day.earned.rewards == 10
    assert day.earned.ul == pytest.approx(10 * (4.0 + 6.0) / 2)  # the spouts' mean at 10:00


def test_a_fixed_requirement_and_an_uncalibrated_box_use_the_nominal_volume_and_say_so(
    db: Database,
) -> None:
    restricted_mouse(db)
    store(db, "M1", session("S1", "7", [reward_trial(1, at("10:00") + n) for n in range(4)]))
    with db.session() as s:
        set_lab_setting(s, "water_requirement", "1000 ul", by="vet")
        give_water(s, "M1", 2000.0, by="ben", at=at("17:00"))
        day = water_day(s, "M1", DAY, lab_settings(s))
        with pytest.raises(ConfigError, match="water_requirement '40 ml'"):
            set_lab_setting(s, "water_requirement", "40 ml", by="vet")
        with pytest.raises(LabError, match="invalid volume 0 ul"):
            give_water(s, "M1", 0, by="ben")
    assert day.earned.ul == 4 * 6.0 and day.earned.uncalibrated == 4
    assert "4 reward(s) counted at the nominal volume" in day.warnings[0]
    assert day.requirement_ul == 1000.0 and day.owed_ul == 0.0  # never below zero


def test_a_calibration_older_than_the_lab_s_limit_is_stale(db: Database) -> None:
    add_boxes(db, "1", "2")
    with db.session() as s:
        for spout in (0, 1):
            record_calibration(
                s, "1", spout, openings=100, duration_ms=70, total=500, unit="mg", by="a",
                at=at("09:00", "2026-03-01"),
            )  # fmt: skip
        settings = lab_settings(s)
        fresh = calibration_warnings(s, "1", settings, now=at("09:00", "2026-03-14"))
        stale = calibration_warnings(s, "1", settings, now=at("09:00", "2026-03-16"))
        set_lab_setting(s, "calibration_max_age_days", "30", by="vet")
        relaxed = calibration_warnings(s, "1", lab_settings(s), now=at("09:00", "2026-03-16"))
        never = calibration_warnings(s, "2", settings, now=at("09:00", "2026-03-16"))
    assert fresh == [] and relaxed == []
    assert len(stale) == 2 and "left spout was calibrated 15 days ago" in stale[0]
    assert "older than 14 days" in stale[0]
    assert never == [
        "box 2 left spout has never been calibrated",
        "box 2 right spout has never been calibrated",
    ]


def test_a_calibration_that_changed_more_than_15_percent_warns(db: Database) -> None:
    add_boxes(db, "1", "2")
    with db.session() as s:
        settings = lab_settings(s)

        def calibrate(total: float, clock: str) -> list[str]:
            row = record_calibration(
                s, "1", 1, openings=100, duration_ms=70, total=total, unit="mg", by="a",
                at=at(clock),
            )  # fmt: skip
            return new_calibration_warnings(s, row, settings)

        assert calibrate(500, "08:00") == []  # the first: nothing to compare with
        assert calibrate(560, "09:00") == []  # +12 %
        (drift,) = calibrate(450, "10:00")  # -19.6 % from 5.6
        in_force = calibration_warnings(s, "1", settings, now=at("11:00"))
        metadata = calibration_metadata(s, "1", at("11:00"))
    assert "right spout gives 4.50 ul per opening, -20 % from 5.60 ul" in drift
    assert drift in in_force  # still shown until the valve is calibrated again
    assert metadata is not None and metadata["left"] is None
    assert metadata["right"]["ul_per_opening"] == 4.5
    assert metadata["right"]["measured_at"] == at("10:00")


# ---------------------------------------------------------------- schedules


def test_a_two_shift_schedule_places_each_shift_and_shows_the_next_mouse_per_box(
    db: Database,
) -> None:
    add_boxes(db, "1", "2")
    mice = ["A", "B", "C", "D"]
    with db.session() as s:
        cohort(s, "C1", mice)
        slots = plan_shifts(mice, 2, ["1", "2", "3"])  # two boxes are enough
        with pytest.raises(LabError, match=r"4 mice in 2 shift\(s\) need 2 boxes"):
            plan_shifts(mice, 2, ["1"])
        set_schedule(s, "C1", slots, by="anna")
        assert shift_slots(s, "C1", 1) == [Slot("A", "1", 1), Slot("B", "2", 1)]
        assert shift_slots(s, "C1", 2) == [Slot("C", "1", 2), Slot("D", "2", 2)]
        with pytest.raises(LabError, match="no shift 3: its shifts are 1, 2"):
            shift_slots(s, "C1", 3)
        place_shift(s, shift_slots(s, "C1", 1))
        before = {n.box: n.mouse for n in next_mice(s, now=at("08:00")).values()}
    assert before == {"1": "A", "2": "B"}
    # Shift 1 has run: the next mice for boxes 1 and 2 are the shift-2 mice.
    store(db, "A", session("SA", "1", [reward_trial(0, at("09:00"))]))
    store(db, "B", session("SB", "2", [reward_trial(0, at("09:00"))]))
    with db.session() as s:
        after = {n.box: (n.mouse, n.shift) for n in next_mice(s, now=at("10:00")).values()}
        place_shift(s, shift_slots(s, "C1", 2))
        history = [(a.box_id, a.ended_at is None) for a in assignment_history(s, "A")]
        on_box_1 = [a.box_id for a in assignment_history(s, "C")]
    assert after == {"1": ("C", 2), "2": ("D", 2)}
    assert history == [("1", False)] and on_box_1 == ["1"]  # A was taken off box 1 for C


def test_a_new_schedule_ends_the_old_one_which_stays_as_history(db: Database) -> None:
    add_boxes(db, "1", "2")
    with db.session() as s:
        cohort(s, "C1", ["A", "B"])
        set_schedule(s, "C1", plan_shifts(["A", "B"], 2, ["1"]), by="anna")
        set_schedule(s, "C1", [Slot("A", "2", 1), Slot("B", "1", 1)], by="ben")
        with pytest.raises(LabError, match="box 1 has two mice in shift 1"):
            set_schedule(s, "C1", [Slot("A", "1", 1), Slot("B", "1", 1)], by="ben")
        with pytest.raises(LabError, match="no place for B"):
            set_schedule(s, "C1", [Slot("A", "1", 1)], by="ben")
        rows = [(e.mouse_id, e.box_id, e.shift, e.valid_until is None, e.set_by)
                for e in schedule_history(s, "C1")]  # fmt: skip
    assert rows == [
        ("A", "1", 1, False, "anna"), ("B", "1", 2, False, "anna"),
        ("A", "2", 1, True, "ben"), ("B", "1", 1, True, "ben"),
    ]  # fmt: skip


# ---------------------------------------------------------------- the day and the report


def test_the_report_has_a_row_per_mouse_and_day_with_weights_water_and_overrides(
    db: Database,
) -> None:
    add_boxes(db, "1", "2")
    restricted_mouse(db, "M1", 25.0)
    with db.session() as s:
        for spout in (0, 1):
            record_calibration(
                s, "1", spout, openings=10, duration_ms=70, total=50, unit="mg", by="a",
                at=at("07:00"),
            )  # fmt: skip
        record_weighing(s, "M1", 19.0, by="anna", at=at("08:30"))
        check = weight_check(s, "M1", lab_settings(s), DAY)
        record_override(s, check, by="anna", reason="vet: fine", session_id="S1", at=at("08:55"))
        give_water(s, "M1", 500.0, by="ben", at=at("17:00"))
    store(db, "M1", session("S1", "1", [reward_trial(0, at("09:00") + n) for n in range(20)]))
    with db.reader() as s:
        rows = report_rows(s, "2026-03-09", "2026-03-11", LabSettings())
    assert [(r.date, r.mouse) for r in rows] == [
        ("2026-03-09", "M1"), ("2026-03-10", "M1"), ("2026-03-11", "M1"),
    ]  # fmt: skip
    quiet, busy, _ = rows
    assert quiet.weight_g is None and quiet.warnings == [
        "M1 has not been weighed on 2026-03-09",
        "1000 ul of the day's water was never given",
    ]
    assert (busy.weight_g, busy.weight_pct, busy.below_threshold) == (19.0, 76.0, True)
    assert (busy.sessions, busy.rewards, busy.earned_ul, busy.given_ul) == (1, 20, 100.0, 500.0)
    assert (busy.required_ul, busy.owed_ul) == (1000.0, 400.0)
    assert "400 ul of the day's water was never given" in busy.warnings
    assert busy.overrides == [
        "anna: vet: fine (overrode: M1 weighs 19 g, 76.0 % of its baseline 25 g (below 80 %))"
    ]
    csv_text = format_report(rows, "csv")
    assert csv_text.splitlines()[0].startswith("date,mouse,baseline_g,weight_g,weight_pct")
    assert "2026-03-10,M1,25,19,76,80,yes,1,20,100,500,600,1000,400," in csv_text
    md = format_report(rows, "md", header=["# report"])
    assert md.splitlines()[0] == "# report" and "| 2026-03-10 | M1 | 25 | 19 |" in md


def test_today_shows_each_mouse_on_a_box_with_its_shift_weight_water_and_warnings(
    db: Database,
) -> None:
    add_boxes(db, "1", "2")
    import time

    from controller.husbandry.days import today

    with db.session() as s:
        cohort(s, "C1", ["A", "B"])
        set_schedule(s, "C1", plan_shifts(["A", "B"], 2, ["1"]), by="anna")
        place_shift(s, shift_slots(s, "C1", 1))
        set_baseline(s, "A", 25.0, by="anna", at=time.time() - 86400)
        record_weighing(s, "A", 24.0, by="anna")
        rows = today_rows(s, today(), lab_settings(s))
        boxes = box_warnings(s, rows, lab_settings(s))
    by_mouse = {r.mouse: r for r in rows}
    a, b = by_mouse["A"], by_mouse["B"]
    assert (a.box, a.cohort, a.shift, a.weight_pct) == ("1", "C1", 1, 96.0)
    assert (b.box, b.shift, b.baseline_g) == ("1", 2, None)
    assert a.warnings == b.warnings == []  # the box's calibration is said once, for the box
    assert boxes == [
        "box 1 left spout has never been calibrated",
        "box 1 right spout has never been calibrated",
    ]


# ---------------------------------------------------------------- corrections


def test_a_mistaken_weighing_or_water_entry_is_voided_kept_and_left_out_of_every_sum(
    db: Database,
) -> None:
    from controller.husbandry.records import mouse_records, void_record

    restricted_mouse(db)
    with db.session() as s:
        record_weighing(s, "M1", 23.0, by="anna", at=at("08:00"))
        typo = record_weighing(s, "M1", 2.3, by="anna", at=at("08:01"))  # meant 23
        give_water(s, "M1", 300.0, by="ben", at=at("17:00"))
        slip = give_water(s, "M1", 3000.0, by="ben", at=at("17:01"))  # meant 300 once
        assert weight_check(s, "M1", lab_settings(s), DAY).blocks_start  # 9.2 % of baseline
        with pytest.raises(LabError, match="needs a reason"):
            void_record(s, "weighing", typo.id, by="anna", reason=" ")
        void_record(s, "weighing", typo.id, by="anna", reason="typed 2.3 for 23")
        void_record(s, "water", slip.id, by="ben", reason="one zero too many")
        with pytest.raises(LabError, match="voided already, by anna"):
            void_record(s, "weighing", typo.id, by="anna", reason="again")
        with pytest.raises(LabError, match="no water record 999"):
            void_record(s, "water", 999, by="ben", reason="x")
        check = weight_check(s, "M1", lab_settings(s), DAY)
        day = water_day(s, "M1", DAY, lab_settings(s))
        records = mouse_records(s, "M1")
    assert check.weight_grams == 23.0 and not check.blocks_start
    assert day.given_ul == 300.0
    kept = [(r.kind, r.what, r.voided is not None) for r in records]
    assert kept == [
        ("baseline", "25 g (given)", False),
        ("weighing", "23 g", False),
        ("weighing", "2.3 g", True),
        ("water", "300 ul water", False),
        ("water", "3000 ul water", True),
    ]
    assert "by anna: typed 2.3 for 23" in (records[2].voided or "")


def test_ending_the_restriction_stops_the_checks_and_the_report_rows_from_then_on(
    db: Database,
) -> None:
    from controller.husbandry.weights import baselines, end_restriction

    restricted_mouse(db)  # since 2026-03-01
    with db.session() as s:
        end_restriction(s, "M1", by="vet", at=at("12:00"), note="end of experiment")
        with pytest.raises(LabError, match="not on water restriction"):
            end_restriction(s, "M1", by="vet", at=at("13:00"))
        during = weight_check(s, "M1", lab_settings(s), "2026-03-09")
        after = weight_check(s, "M1", lab_settings(s), "2026-03-11")
        owed = water_day(s, "M1", "2026-03-11", lab_settings(s)).owed_ul
        rows = report_rows(s, "2026-03-09", "2026-03-11")
        history = [(b.grams, b.method) for b in baselines(s, "M1")]
    assert during.blocks_start and not after.restricted and owed is None
    assert [r.date for r in rows] == ["2026-03-09"]  # not restricted at the end of 10 and 11
    assert history == [(25.0, "given"), (25.0, "restriction ended")]
    # Restricted again later: --mean averages the weighings since the restriction ended.
    with db.session() as s:
        record_weighing(s, "M1", 30.0, by="a", at=at("09:00", "2026-03-08"))  # before
        for n, grams in enumerate((27.0, 28.0, 29.0)):
            record_weighing(s, "M1", grams, by="a", at=at("09:00", f"2026-03-2{n}"))
        again = set_baseline(s, "M1", None, by="a", mean_of=3)
    assert again.grams == 28.0 and again.method.endswith("(2026-03-20 to 2026-03-22)")
