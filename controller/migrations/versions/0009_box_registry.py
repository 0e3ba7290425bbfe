"""Migration 0009: the boxes as a registry (who added a box, when it was retired or renamed).

``labctl box add | retire | rename`` keep these; assign, calibrate and schedules refuse
a box the lab does not know (docs/controller.md, "Boxes"). Boxes already stored stay
known and in use: the ones made by a mistyped ``labctl assign`` before this revision are
retired by hand (``labctl box retire``), as docs/troubleshooting.md says.

Revision ID: 0009_box_registry
Revises: 0008_lab_identity
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_box_registry"
down_revision: str | None = "0008_lab_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("added_by", sa.String(64)),
    ("retired_at", sa.Float()),
    ("retired_by", sa.String(64)),
    ("renamed_from", sa.String(32)),
    ("renamed_to", sa.String(32)),
)


def upgrade() -> None:
    # Nullable, no default: a stored box was not added by anyone known and is in use.
    with op.batch_alter_table("boxes") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("boxes") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
