"""``labctl report`` and ``labctl today`` from stored per-session figures (issue 20 item 5).

The rows read from the record book (a few queries, the sessions' stored reward figures)
equal the rows asked of the database row by row with every session's trials read
(``report_rows_reference``), on a lab with every case the water accounting knows: a
calibration changed mid-session, a box never calibrated, a session still being collected,
a session with no start time, a restriction ended, voided records, lab settings given.
Migration 0006 fills the figures of sessions stored before it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, text

from controller.db import (
    Database,
    TrainingSession,
    alembic_config,
    create_database_engine,
    open_database,
)
from controller.husbandry.boxes import add_box
from controller.husbandry.calibration import record_calibration
from controller.husbandry.figures import FIGURE_COLUMNS, reward_figures
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


def test_migration_0005_fills_the_figures_of_sessions_stored_before_it(db_url: str) -> None:
    from alembic import command

    engine = create_database_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0005_alerts")
    data = session("old", "1", [reward_trial(1, at("10:00")), reward_trial(0, at("10:05"))])
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO mice (id, created_at, notes) VALUES ('M1', 0, '')"))
        conn.execute(
            text(
                "INSERT INTO sessions (session_id, mouse_id, origin, complete, position, "
                "trial_count, reward_count, data, created_at) VALUES ('old', 'M1', 'imported', "
                ":t, 0, 2, 2, :data, 0)"
            ),
            {"data": json.dumps(data), "t": True},
        )
    engine.dispose()
    db = open_database(db_url)
    try:
        with db.engine.connect() as conn:
            columns = [TrainingSession.__table__.c[name] for name in FIGURE_COLUMNS]
            row = conn.execute(select(*columns)).one()
    finally:
        db.close()
    assert dict(zip(FIGURE_COLUMNS, row, strict=True)) == reward_figures(data)
    assert row[:2] == (1, 1)
