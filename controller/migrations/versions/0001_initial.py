"""The initial schema: mice, boxes, assignments, cohorts, sessions, documents, trials, dead letters.

Revision ID: 0001
Revises:
Create Date: 2025-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mice",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mice"),
    )
    op.create_table(
        "boxes",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("last_seen", sa.Float(), nullable=True),
        sa.Column("last_event_at", sa.Float(), nullable=True),
        sa.Column("offline_reason", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_boxes"),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mouse_id", sa.String(64), nullable=False),
        sa.Column("box_id", sa.String(32), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["mouse_id"], ["mice.id"], name="fk_assignments_mouse_id_mice"),
        sa.ForeignKeyConstraint(["box_id"], ["boxes.id"], name="fk_assignments_box_id_boxes"),
        sa.PrimaryKeyConstraint("id", name="pk_assignments"),
    )
    op.create_index("ix_assignments_mouse_id", "assignments", ["mouse_id"])
    op.create_index("ix_assignments_box_id", "assignments", ["box_id"])
    # A mouse is on one box at a time, and a box holds one mouse at a time.
    for column in ("mouse", "box"):
        op.create_index(
            f"uq_assignments_open_{column}",
            "assignments",
            [f"{column}_id"],
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
    op.create_table(
        "cohorts",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_cohorts"),
    )
    op.create_table(
        "cohort_members",
        sa.Column("cohort_name", sa.String(64), nullable=False),
        sa.Column("mouse_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_name"],
            ["cohorts.name"],
            name="fk_cohort_members_cohort_name_cohorts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["mouse_id"], ["mice.id"], name="fk_cohort_members_mouse_id_mice"),
        sa.PrimaryKeyConstraint("cohort_name", "mouse_id", name="pk_cohort_members"),
    )
    op.create_index("ix_cohort_members_mouse_id", "cohort_members", ["mouse_id"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("mouse_id", sa.String(64), nullable=False),
        sa.Column("box", sa.String(32), nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Float(), nullable=False),
        sa.Column("start_time", sa.Float(), nullable=True),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("date", sa.String(32), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=True),
        sa.Column("trial_count", sa.Integer(), nullable=False),
        sa.Column("reward_count", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.Column("committed_at", sa.Float(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["mouse_id"], ["mice.id"], name="fk_sessions_mouse_id_mice"),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.UniqueConstraint("session_id", name="uq_sessions_session_id"),
    )
    op.create_index("ix_sessions_mouse_order", "sessions", ["mouse_id", "position", "id"])
    op.create_index("ix_sessions_digest", "sessions", ["digest"])
    op.create_table(
        "documents",
        sa.Column("id", BigId, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("box", sa.String(32), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
        sa.UniqueConstraint("session_id", "seq", name="uq_documents_session_id_seq"),
    )
    op.create_table(
        "trials",
        sa.Column("id", BigId, nullable=False),
        sa.Column("session_pk", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("start", sa.Float(), nullable=True),
        sa.Column("end", sa.Float(), nullable=True),
        sa.Column("lift_time", sa.Float(), nullable=True),
        sa.Column("lift_paw", sa.Integer(), nullable=True),
        sa.Column("spout", sa.Integer(), nullable=True),
        sa.Column("cue_duration", sa.Float(), nullable=True),
        sa.Column("outcome", sa.Integer(), nullable=True),
        sa.Column("shaping", sa.Boolean(), nullable=True),
        sa.Column("position_left", sa.Integer(), nullable=True),
        sa.Column("position_right", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_pk"],
            ["sessions.id"],
            name="fk_trials_session_pk_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trials"),
        sa.UniqueConstraint("session_pk", "number", name="uq_trials_session_pk_number"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])


def downgrade() -> None:
    for table in (
        "dead_letters",
        "trials",
        "documents",
        "sessions",
        "cohort_members",
        "cohorts",
        "assignments",
        "boxes",
        "mice",
    ):
        op.drop_table(table)
