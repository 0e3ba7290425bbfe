"""Migration 0008: the lab database's identity (``lab``, one row made here, once).

labctl compares it with the identity the online collectors announce, so a command
never reaches a rig from a database the rigs' sessions are not stored in (DESIGN §15).

Revision ID: 0008_lab_identity
Revises: 0007_session_figures
Create Date: 2026-12-07
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_lab_identity"
down_revision: str | None = "0007_session_figures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "lab",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    # Made once, when the database is made (or upgraded): a copy of the file keeps it.
    op.bulk_insert(table, [{"id": uuid.uuid4().hex, "created_at": time.time()}])


def downgrade() -> None:
    op.drop_table("lab")
