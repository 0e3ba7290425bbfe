"""``labctl report`` and ``labctl today`` from stored per-session figures (issue 20 item 5).

The rows read from the record book (a few queries, the sessions' stored reward and
training figures) equal the rows asked of the database row by row with every session's
trials read (``report_rows_reference``, ``day_row``), on a lab with every case the water
accounting and the day's d' know: a calibration changed mid-session, a box never
calibrated, a session still being collected, a session with no start time, a restriction
ended, voided records, lab settings given, a restriction's grace days, a day whose second
session starts with a correction trial, a day with a session without trials. Neither view
reads a session's text but the one whose figures cannot tell its water. Migrations 0007
and 0011 fill the figures of sessions stored before them.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, insert, inspect, select, text, update

from controller.db import (
    Database,
    TrainingSession,
    alembic_config,
    create_database_engine,
    open_database,
)
from controller.husbandry.book import sessions_statement
from controller.husbandry.boxes import add_box
from controller.husbandry.calibration import record_calibration
from controller.husbandry.figures import (
    FIGURE_COLUMNS,
    TRAINING_COLUMNS,
    reward_figures,
    training_figures,
)
from controller.husbandry.report import day_row, report_rows, report_rows_reference, today_rows
from controller.husbandry.settings import LabSettings, lab_settings, set_lab_setting
from controller.husbandry.water import give_water
from controller.husbandry.weights import (
    end_restriction,
    record_override,
    record_weighing,
    set_baseline,
    weight_check,
)
from controller.lab import add_mouse, assign
from controller.models import SESSION_FIGURES_INDEX, Trial

from .test_husbandry import at, reward_trial, session, store

DAYS = ("2026-03-09", "2026-03-10", "2026-03-11")


def fill(db: Database) -> None:
    with db.session() as s:
        for mouse in ("M1", "M2", "M3", "M4"):
            add_mouse(s, mouse)
        for box in ("1", "9"):
            add_box(s, box, by="anna")
        assign(s, "M1", "1")
        assign(s, "M2", "9")  # box 9 is never calibrated: nominal volumes
        set_baseline(s, "M1", 25.0, by="anna", at=at("08:00", "2026-03-01"))
        set_baseline(s, "M2", 24.0, by="anna", at=at("12:00", "2026-03-10"))
        set_baseline(s, "M3", 22.0, by="anna", at=at("08:00", "2026-03-01"))
        end_restriction(s, "M3", by="anna", at=at("18:00", "2026-03-10"))
        for spout in (0, 1):
            record_calibration(s, "1", spout, openings=100, duration_ms=70, total=500.0,
                               unit="mg", by="anna", at=at("07:00", "2026-03-01"))  # fmt: skip
        # A new calibration of the left spout in the middle of M1's session of the 10th.
        record_calibration(s, "1", 0, openings=100, duration_ms=70, total=620.0, unit="mg",
                           by="anna", at=at("10:30"))  # fmt: skip
        for day in DAYS:
            record_weighing(s, "M1", 19.0 if day == "2026-03-10" else 23.0, by="anna",
                            at=at("08:30", day))  # fmt: skip
            give_water(s, "M1", 300, by="anna", at=at("17:00", day))
        voided = give_water(s, "M2", 999, by="anna", at=at("17:00"))
        voided.voided_at, voided.voided_by = at("17:05"), "anna"
        record_weighing(s, "M2", 23.5, by="anna", at=at("13:00"))
        check = weight_check(s, "M1", lab_settings(s), "2026-03-10")
        record_override(s, check, by="anna", reason="vet ok", session_id=None, at=at("09:00"))
        set_lab_setting(s, "water_requirement", "1000 ul", by="anna")
        set_lab_setting(s, "grace_days", "3", by="anna")  # M2's restriction starts on the 10th
    first = [reward_trial(0, at("10:00")), reward_trial(1, at("10:10")),
             reward_trial(0, at("11:00"), shaping=True)]  # fmt: skip
    later = [reward_trial(1, at("09:00", "2026-03-11"), outcome=2),
             reward_trial(0, at("09:05", "2026-03-11"))]  # fmt: skip
    store(db, "M1", session("s1", "1", first), session("s2", "1", later, durations=(35, 70)))
    store(
        db, "M2", session("s3", "9", [reward_trial(0, at("14:00")), reward_trial(1, at("14:01"))])
    )
    legacy = {"trials": [reward_trial(0, at("09:00", "2026-03-09"))], "date": "2026-03-09"}
    store(db, "M4", legacy)  # no start time, no box: dated by its date
    # M2's day: s5 ends on an incorrect trial, so the first touch of s3 (14:00) is a
    # correction trial; s6 has a missed trial first and a correction trial of its own.
    ends_incorrect = [reward_trial(0, at("12:50")), reward_trial(1, at("12:55"), outcome=2)]
    store(db, "M2", session("s5", "9", ends_incorrect))
    store(db, "M2", session("s6", "9", [reward_trial(1, at("15:00"), outcome=0),
                                        reward_trial(0, at("15:05"), outcome=2),
                                        reward_trial(1, at("15:10"))]))  # fmt: skip
    # M1's 11th: a session without trials, so the day is two of the analysis's days.
    empty = {"trials": [], "start_time": at("12:00", "2026-03-11"), "date": "2026-03-11",
             "session_id": "empty", "box": "1", "status": "aborted"}  # fmt: skip
    store(db, "M1", empty)
    with db.engine.begin() as conn:  # a session still being collected on box 1
        conn.execute(insert(TrainingSession).values(
            session_id="live", mouse_id="M1", box="1", origin="recorded", complete=False,
            position=at("15:00"), start_time=at("15:00"), reward_count=4, created_at=at("15:00"),
        ))  # fmt: skip


def rows_of(rows: list[Any]) -> list[dict[str, Any]]:
    return [r.as_dict() for r in rows]


def test_the_report_from_stored_figures_equals_the_report_read_session_by_session(
    db: Database,
) -> None:
    fill(db)
    with db.reader() as s:
        new = rows_of(report_rows(s, DAYS[0], DAYS[-1]))
        old = rows_of(report_rows_reference(s, DAYS[0], DAYS[-1]))
        fixed = rows_of(report_rows(s, DAYS[0], DAYS[-1], LabSettings()))
        fixed_old = rows_of(report_rows_reference(s, DAYS[0], DAYS[-1], LabSettings()))
    assert new == old
    assert fixed == fixed_old
    by_key = {(r["date"], r["mouse"]): r for r in new}
    # s1's four rewards (the shaping trial is rewarded twice) and the live session's four.
    assert by_key[("2026-03-10", "M1")]["rewards"] == 4 + 4
    assert by_key[("2026-03-10", "M2")]["warnings"]  # nominal volumes on box 9
    assert ("2026-03-09", "M4") in by_key


def test_today_from_stored_figures_equals_each_row_asked_of_the_database(db: Database) -> None:
    fill(db)
    with db.reader() as s:
        settings = lab_settings(s)
        for day in DAYS:
            rows = today_rows(s, day, settings)
            old = [day_row(s, r.mouse, day, settings, box=r.box).as_dict() for r in rows]
            assert rows_of(rows) == old
            assert {r.mouse for r in rows} >= {"M1", "M2"}
        by_key = {(day, r.mouse): r for day in DAYS for r in today_rows(s, day, settings)}
    # M2's day joins its sessions' counts: s3's first touch is a correction trial (alone,
    # s3 would count it as a hit and the day's d' would not be 0).
    assert (by_key[(DAYS[1], "M2")].correct_pct, by_key[(DAYS[1], "M2")].d_prime) == (57.1, 0.0)
    assert by_key[(DAYS[2], "M1")].d_prime is None  # a session without trials: two days
    assert by_key[(DAYS[2], "M1")].correct_pct == 50.0


def test_neither_view_reads_a_sessions_text_or_trials(db: Database) -> None:
    """Every session's text but s1's (a calibration changed during it, so its figures
    cannot tell its water) is emptied and every trial row deleted: the rows stay the same."""
    fill(db)
    with db.reader() as s:
        settings = lab_settings(s)
        today = {day: rows_of(today_rows(s, day, settings)) for day in DAYS}
        report = rows_of(report_rows(s, DAYS[0], DAYS[-1]))
    with db.engine.begin() as conn:
        conn.execute(
            update(TrainingSession)
            .where(TrainingSession.data.is_not(None), TrainingSession.session_id != "s1")
            .values(data="{}")
        )
        conn.execute(delete(Trial))
    with db.reader() as s:
        assert {day: rows_of(today_rows(s, day, settings)) for day in DAYS} == today
        assert rows_of(report_rows(s, DAYS[0], DAYS[-1])) == report
        # The reference path reads the texts: it now differs, so the test can tell.
        assert day_row(s, "M2", DAYS[1], settings).as_dict() != next(
            r for r in today[DAYS[1]] if r["mouse"] == "M2"
        )


def test_the_report_reads_the_sessions_from_indexes_alone(db: Database) -> None:
    """A session's text sits before its figures in its row (in SQLite, run over into
    overflow pages): the span's sessions are read from ``ix_sessions_start_figures`` alone,
    and those still being collected from ``ix_sessions_collecting`` (migration 0012)."""
    fill(db)
    with db.engine.connect() as conn:
        indexes = {i["name"]: i for i in inspect(conn).get_indexes("sessions")}
        if conn.dialect.name != "sqlite":  # PostgreSQL's plan depends on the table's size
            assert tuple(indexes["ix_sessions_start_figures"]["column_names"]) == (
                SESSION_FIGURES_INDEX
            )
            assert "ix_sessions_collecting" in indexes
            return
        for stmt, index in (
            (sessions_statement(0.0, 1e10, DAYS[0], DAYS[-1]), "ix_sessions_start_figures"),
            (
                select(TrainingSession.id).where(TrainingSession.data.is_(None)),
                "ix_sessions_collecting",
            ),
        ):
            compiled = stmt.compile(dialect=conn.dialect)
            params = tuple(compiled.params[name] for name in compiled.positiontup or ())
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
            reads = [step[-1] for step in plan if step[-1].startswith(("SEARCH", "SCAN"))]
            assert reads and all(index in step for step in reads), plan
            if index == "ix_sessions_start_figures":
                assert all("COVERING INDEX" in step for step in reads), plan


def test_migrations_0007_and_0011_fill_the_figures_of_sessions_stored_before_them(
    db_url: str,
) -> None:
    from alembic import command

    engine = create_database_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0005_alerts")
    trials = [reward_trial(1, at("09:55"), outcome=2), reward_trial(1, at("10:00")),
              reward_trial(0, at("10:05"))]  # fmt: skip
    data = session("old", "1", trials)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO mice (id, created_at, notes) VALUES ('M1', 0, '')"))
        conn.execute(
            text(
                "INSERT INTO sessions (session_id, mouse_id, origin, complete, position, "
                "trial_count, reward_count, data, created_at) VALUES ('old', 'M1', 'imported', "
                ":t, 0, 3, 2, :data, 0)"
            ),
            {"data": json.dumps(data), "t": True},
        )
    engine.dispose()
    db = open_database(db_url)
    try:
        with db.engine.connect() as conn:
            names = FIGURE_COLUMNS + TRAINING_COLUMNS
            columns = [TrainingSession.__table__.c[name] for name in names]
            row = conn.execute(select(*columns)).one()
    finally:
        db.close()
    found = dict(zip(names, row, strict=True))
    assert found == {**reward_figures(data), **training_figures(data)}
    assert row[:2] == (1, 1)
    # Three trials, two correct; the right one after the incorrect is a correction trial.
    assert training_figures(data) == {
        "listed_trials": 3, "correct_trials": 2, "signal_trials": 1, "hits": 1,
        "noise_trials": 1, "false_alarms": 1, "correction_trials": 1, "first_touch_left": False,
        "first_touch_incorrect": True, "last_touch_incorrect": False,
    }  # fmt: skip
