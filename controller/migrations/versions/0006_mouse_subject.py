"""What a public archive asks of a mouse as a subject: species, sex, date of birth or age,
strain and genotype (``labctl mouse set``; NWB export, docs/nwb.md).

``age`` is an ISO 8601 duration as given (``P8W``), ``age_on`` the day it was given
(``YYYY-MM-DD``), so a session's age is that age plus the days since; ``date_of_birth``
is ``YYYY-MM-DD``. All nullable: a mouse's description is filled in when the lab has it.

Revision ID: 0006_mouse_subject
Revises: 0005_alerts
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_mouse_subject"
down_revision: str | None = "0005_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("species", 100),
    ("sex", 1),
    ("date_of_birth", 10),
    ("age", 32),
    ("age_on", 10),
    ("strain", 200),
    ("genotype", 500),
)


def upgrade() -> None:
    with op.batch_alter_table("mice") as batch:
        for name, length in COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mice") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
