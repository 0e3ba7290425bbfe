"""Migration 0011: each stored session's training figures, and indexes for a day's records.

``sessions.listed_trials`` ... (controller.husbandry.figures.training_figures) hold a
session's part of the day's correct % and d', so ``labctl today`` reads a row per session,
not its trials. The indexes on the time of sessions, weighings, water and overrides let a
day's (or a span's) records be found without scanning a year of them. Existing sessions
are filled here, reading each stored text once.

Revision ID: 0011_report_speed
Revises: 0010_web
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from controller.husbandry.figures import training_figures

revision: str = "0011_report_speed"
down_revision: str | None = "0010_web"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (index, table, column): the records of a span are asked for by time alone.
INDEXES = (
    ("ix_sessions_start_time", "sessions", "start_time"),
    ("ix_sessions_date", "sessions", "date"),
    ("ix_weighings_weighed_at", "weighings", "weighed_at"),
    ("ix_water_given_given_at", "water_given", "given_at"),
    ("ix_weight_overrides_at", "weight_overrides", "at"),
)


#: The counts among the columns (controller.husbandry.figures.TRAINING_COLUMNS).
COUNTS = ("listed_trials", "correct_trials", "signal_trials", "hits", "noise_trials",
          "false_alarms", "correction_trials")  # fmt: skip


def _columns() -> list[sa.Column[Any]]:
    counts: list[sa.Column[Any]] = [
        sa.Column(name, sa.Integer(), nullable=False, server_default="0") for name in COUNTS
    ]
    return [
        *counts,
        sa.Column("first_touch_left", sa.Boolean(), nullable=True),
        sa.Column("first_touch_incorrect", sa.Boolean(), nullable=True),
        sa.Column("last_touch_incorrect", sa.Boolean(), nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for column in _columns():
            batch.add_column(column)
    for name, table, indexed in INDEXES:
        op.create_index(name, table, [indexed])
    conn = op.get_bind()
    sessions = sa.table("sessions", sa.column("id"), sa.column("data"))
    figures = sa.table("sessions", sa.column("id"), *(sa.column(c.name) for c in _columns()))
    update = figures.update().where(figures.c.id == sa.bindparam("pk"))
    last = 0
    while True:  # a batch at a time: a year of sessions need not fit in memory
        rows = conn.execute(
            sa.select(sessions.c.id, sessions.c.data)
            .where(sessions.c.id > last, sessions.c.data.is_not(None))
            .order_by(sessions.c.id)
            .limit(500)
        ).all()
        if not rows:
            break
        values = [{"pk": pk, **training_figures(json.loads(text))} for pk, text in rows]
        conn.execute(update, values)
        last = rows[-1][0]


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("sessions") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
