"""Migration ``0002_husbandry`` upgrades a filled database of the previous schema (``0001``)
without losing or changing anything, on SQLite and on PostgreSQL.

The old database is made by Alembic itself at revision ``0001`` and filled with plain
SQL in that schema's columns (as the release before this one wrote it), so the test
keeps meaning the previous schema however the models change later.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, inspect, text

from controller.db import alembic_config, create_database_engine, open_database
from controller.husbandry.calibration import record_calibration
from controller.husbandry.settings import lab_settings
from controller.husbandry.water import water_day
from controller.husbandry.weights import record_weighing, set_baseline, weight_check

OLD_TABLES = (
    "mice", "boxes", "assignments", "cohorts", "cohort_members", "sessions", "documents",
    "trials", "dead_letters",
)  # fmt: skip
NEW_TABLES = (
    "lab_settings", "weighings", "baselines", "weight_overrides", "water_given",
    "calibrations", "schedule_entries",
)  # fmt: skip
T0 = 1_773_129_600.0  # 2026-03-10 08:00 UTC


def _session_data(start: float) -> str:
    trials = [
        {"start": start + 10 * n, "end": start + 10 * n + 2, "spout": n % 2,
         "cue_duration": 10000.0, "outcome": 1, "spout_position": [1, 1], "shaping": False}
        for n in range(6)
    ]  # fmt: skip
    return json.dumps(
        {"trainer": "old", "weight": 24.5, "reward_volume_ul": 6, "reward_duration_ms": [70, 70],
         "trials": trials, "resets": [[start + 1, 0]], "spontaneous_reaches": [],
         "start_time": start, "end_time": start + 100, "date": "2026-03-10",
         "session_id": "S-old", "box": "1", "status": "complete"}
    )  # fmt: skip


def _fill(conn: Connection) -> None:
    """Rows in every table of schema 0001, as the previous release stored them (keys made by
    the database, in order: the first session is 1)."""

    def insert(table: str, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        quoted = ", ".join(f'"{c}"' for c in columns)  # "end" is a keyword
        sql = f"INSERT INTO {table} ({quoted}) VALUES "
        sql += f"({', '.join(':' + c for c in columns)})"
        conn.execute(text(sql), rows)

    insert("mice", [{"id": m, "created_at": T0, "notes": f"note {m}"} for m in ("M1", "M2")])
    insert("boxes", [
        {"id": "1", "created_at": T0, "state": "idle", "status": '{"state": "idle"}',
         "last_seen": T0 + 5, "last_event_at": T0 + 4, "offline_reason": None},
        {"id": "2", "created_at": T0, "state": "offline", "status": None, "last_seen": None,
         "last_event_at": None, "offline_reason": "no message for 30 s"},
    ])  # fmt: skip
    insert("assignments", [
        {"mouse_id": "M1", "box_id": "2", "started_at": T0, "ended_at": T0 + 1},
        {"mouse_id": "M1", "box_id": "1", "started_at": T0 + 1, "ended_at": None},
    ])  # fmt: skip
    insert("cohorts", [{"name": "C1", "created_at": T0}])
    insert("cohort_members", [
        {"cohort_name": "C1", "mouse_id": "M1", "position": 1},
        {"cohort_name": "C1", "mouse_id": "M2", "position": 2},
    ])  # fmt: skip
    data = _session_data(T0 + 3600)
    insert("sessions", [
        {"session_id": "S-old", "mouse_id": "M1", "box": "1", "origin": "recorded",
         "status": "complete", "complete": True, "position": T0 + 3600, "start_time": T0 + 3600,
         "end_time": T0 + 3700, "date": "2026-03-10", "last_seq": 20, "trial_count": 6,
         "reward_count": 6, "data": data, "digest": "d" * 64, "created_at": T0 + 3600,
         "completed_at": T0 + 3701, "committed_at": T0 + 3702, "problem": None},
        {"session_id": "S-open", "mouse_id": "M2", "box": "2", "origin": "recorded",
         "status": None, "complete": False, "position": T0 + 7200, "start_time": T0 + 7200,
         "end_time": None, "date": None, "last_seq": None, "trial_count": 0,
         "reward_count": 0, "data": None, "digest": None, "created_at": T0 + 7200,
         "completed_at": None, "committed_at": None, "problem": "waiting for seq 3"},
    ])  # fmt: skip
    insert("documents", [
        {"session_id": "S-open", "seq": n, "kind": "trial_start", "box": "2",
         "t": T0 + 7200 + n, "received_at": T0 + 7200 + n, "body": f'{{"seq": {n}}}'}
        for n in range(3)
    ])  # fmt: skip
    insert("trials", [
        {"session_pk": 1, "number": n, "start": T0 + 3600 + 10 * n,
         "end": T0 + 3602 + 10 * n, "lift_time": None, "lift_paw": None, "spout": n % 2,
         "cue_duration": 10000.0, "outcome": 1, "shaping": False, "position_left": 1,
         "position_right": 1}
        for n in range(6)
    ])  # fmt: skip
    insert("dead_letters", [
        {"received_at": T0, "topic": "reachlab/rigs/1/events",
         "payload": b"\xff not json", "reason": "payload is not valid JSON"},
    ])  # fmt: skip


def _snapshot(conn: Connection, columns: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the old tables, in the old tables' columns."""
    out = {}
    for table, names in columns.items():
        quoted = ", ".join(f'"{c}"' for c in names)
        rows = conn.execute(text(f"SELECT {quoted} FROM {table} ORDER BY {quoted}"))
        out[table] = [tuple(row) for row in rows]
    return out


def test_upgrading_a_filled_database_of_the_previous_schema_keeps_every_row(
    db_url: str,
) -> None:
    from alembic import command

    engine = create_database_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
    with engine.begin() as conn:
        _fill(conn)
    with engine.connect() as conn:
        old_columns = {t: [c["name"] for c in inspect(conn).get_columns(t)] for t in OLD_TABLES}
        before = _snapshot(conn, old_columns)
        assert not any(inspect(conn).has_table(t) for t in NEW_TABLES)
    engine.dispose()
    assert all(before[t] for t in OLD_TABLES)  # every old table had rows

    db = open_database(db_url)  # what labctl does on first use: upgrade to the head
    try:
        with db.engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            assert revision != "0001"
            assert all(inspect(conn).has_table(t) for t in NEW_TABLES)
            assert _snapshot(conn, old_columns) == before
        # The new records work with the old ones: the old session's six rewards on box 1
        # count at box 1's calibration, and the old mouse can be weighed and checked.
        with db.session() as s:
            record_calibration(
                s, "1", 0, openings=100, duration_ms=70, total=400, unit="mg", by="t", at=T0
            )
            record_calibration(
                s, "1", 1, openings=100, duration_ms=70, total=500, unit="mg", by="t", at=T0
            )
            set_baseline(s, "M1", 25.0, by="t", at=T0)
            record_weighing(s, "M1", 24.0, by="t", at=T0 + 600)
        with db.reader() as s:
            settings = lab_settings(s)
            day = water_day(s, "M1", "2026-03-10", settings)
            check = weight_check(s, "M1", settings, "2026-03-10")
        assert day.earned.rewards == 6 and day.earned.ul == 3 * 4.0 + 3 * 5.0
        assert check.percent == 96.0 and check.warnings == []
        with db.engine.connect() as conn:
            assert _snapshot(conn, old_columns) == before
    finally:
        db.close()
