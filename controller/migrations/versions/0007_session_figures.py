"""Migration 0007: each stored session's reward figures (``sessions.left_rewards`` ...).

Computed once from the session's ``data`` (controller.husbandry.figures), so the water
accounting of ``labctl report`` and ``labctl today`` reads a row per session, not its
trials. Existing sessions are filled here, reading each stored text once.

Revision ID: 0007_session_figures
Revises: 0006_mouse_subject
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controller.husbandry.figures import reward_figures

revision: str = "0007_session_figures"
down_revision: str | None = "0006_mouse_subject"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("left_rewards", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("right_rewards", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("first_reward_at", sa.Float(), nullable=True),
        sa.Column("last_reward_at", sa.Float(), nullable=True),
        sa.Column("reward_ul", sa.Float(), nullable=True),
        sa.Column("left_reward_ms", sa.Float(), nullable=True),
        sa.Column("right_reward_ms", sa.Float(), nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for column in _columns():
            batch.add_column(column)
    conn = op.get_bind()
    sessions = sa.table("sessions", sa.column("id"), sa.column("data"))
    figures = sa.table("sessions", sa.column("id"), *(sa.column(c.name) for c in _columns()))
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
        for pk, text in rows:
            conn.execute(
                figures.update()
                .where(figures.c.id == pk)
                .values(**reward_figures(json.loads(text)))
            )
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
