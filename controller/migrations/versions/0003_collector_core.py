"""Migration 0003: the collector core's tables, ``streams`` and ``collectors``.

``streams``: what the database holds of each task session's documents, and what was asked
and sent for it; ``collectors``: the running collectors' leases.

Streams are filled from the documents already stored, so a database upgraded
mid-collection carries on where the old collector stopped.

Revision ID: 0003_collector_core
Revises: 0002_husbandry
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_collector_core"
down_revision: str | None = "0002_husbandry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("box", sa.String(32), nullable=True),
        sa.Column("asked_box", sa.String(32), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("max_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("rewards", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_doc_at", sa.Float(), nullable=True),
        sa.Column("resend_at", sa.Float(), nullable=True),
        sa.Column("resend_request", sa.String(64), nullable=True),
        sa.Column("resends", sa.Integer(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.Column("digest", sa.String(80), nullable=True),
        sa.Column("commit_request", sa.String(64), nullable=True),
        sa.Column("commit_sent_at", sa.Float(), nullable=True),
        sa.Column("committed_at", sa.Float(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("session_id", name="pk_streams"),
    )
    op.create_index("ix_streams_open", "streams", ["completed_at", "problem"])
    op.create_index("ix_streams_resend_request", "streams", ["resend_request"])
    op.create_index("ix_streams_commit_request", "streams", ["commit_request"])
    op.create_table(
        "collectors",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("group_name", sa.String(64), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_collectors"),
    )
    # What the old collector knew only in memory, from what is stored. The counting rule (a
    # trial per trial_end, a reward per reward document: shared.documents' tally) is written
    # out here on purpose: a migration is frozen at its revision and must give the same rows
    # whatever later code says, so it imports no rule of today's code.
    op.execute(
        """
        INSERT INTO streams (session_id, box, asked_box, stored, max_seq, last_seq, status,
                             trials, rewards, created_at, last_doc_at, resends,
                             completed_at, committed_at, problem)
        SELECT d.session_id, s.box, COALESCE(s.box, MIN(d.box)), COUNT(*), MAX(d.seq),
               MAX(CASE WHEN d.kind = 'session_end' THEN d.seq END), s.status,
               SUM(CASE WHEN d.kind = 'trial_end' THEN 1 ELSE 0 END),
               SUM(CASE WHEN d.kind = 'reward' THEN 1 ELSE 0 END),
               MIN(d.received_at), MAX(d.received_at), 0,
               s.completed_at, s.committed_at, s.problem
        FROM documents d LEFT JOIN sessions s ON s.session_id = d.session_id
        GROUP BY d.session_id, s.box, s.status, s.completed_at, s.committed_at, s.problem
        """
    )


def downgrade() -> None:
    op.drop_table("collectors")
    for index in ("ix_streams_commit_request", "ix_streams_resend_request", "ix_streams_open"):
        op.drop_index(index, table_name="streams")
    op.drop_table("streams")
