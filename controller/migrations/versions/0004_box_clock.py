"""Migration 0004: each box's clock offset (``boxes.clock_offset``).

How far the rig's clock was from the collector's when its last live status arrived,
seconds, positive when the rig is ahead.

Revision ID: 0004_box_clock
Revises: 0003_collector_core
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_box_clock"
down_revision: str | None = "0003_collector_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: unknown until the box's next live status.
    with op.batch_alter_table("boxes") as batch:
        batch.add_column(sa.Column("clock_offset", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("boxes") as batch:
        batch.drop_column("clock_offset")
