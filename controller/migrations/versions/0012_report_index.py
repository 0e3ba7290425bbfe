"""Migration 0012: the report reads a span's sessions from an index alone.

A stored session's row holds its text (several KB: in SQLite it runs over into
overflow pages) before its figure columns, so reading a year's figures from the rows
walks past every text: a quarter of ``labctl report``'s CPU time on SQLite.
``ix_sessions_start_figures`` holds the session's start time, then every column the
report reads of it (:data:`controller.husbandry.book.WATER_SELECT`), and replaces
``ix_sessions_start_time``, whose queries it serves by the same first column.
``ix_sessions_collecting`` holds only the sessions without a text yet (still being
collected), so which ones they are is known without reading the rows either.

Revision ID: 0012_report_index
Revises: 0011_report_speed
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_report_index"
down_revision: str | None = "0011_report_speed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: As controller.models.SESSION_FIGURES_INDEX at this revision.
COLUMNS = (
    "start_time", "mouse_id", "position", "id", "box", "date", "trial_count", "reward_count",
    "left_rewards", "right_rewards", "first_reward_at", "last_reward_at", "reward_ul",
    "left_reward_ms", "right_reward_ms",
)  # fmt: skip


def upgrade() -> None:
    op.create_index("ix_sessions_start_figures", "sessions", list(COLUMNS))
    op.drop_index("ix_sessions_start_time", table_name="sessions")
    op.create_index(
        "ix_sessions_collecting",
        "sessions",
        ["id"],
        sqlite_where=sa.text("data IS NULL"),
        postgresql_where=sa.text("data IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_sessions_collecting", table_name="sessions")
    op.create_index("ix_sessions_start_time", "sessions", ["start_time"])
    op.drop_index("ix_sessions_start_figures", table_name="sessions")
