"""Migration 0002: the husbandry tables (only new tables: nothing stored is touched).

Lab settings, weighings, baselines, weight overrides, water given by hand, solenoid
calibrations, cohort schedules.

Revision ID: 0002_husbandry
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_husbandry"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _mouse_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["mouse_id"], ["mice.id"], name=f"fk_{table}_mouse_id_mice")


def upgrade() -> None:
    op.create_table(
        "lab_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("set_at", sa.Float(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lab_settings"),
    )
    op.create_index("ix_lab_settings_key_set_at", "lab_settings", ["key", "set_at"])
    op.create_table(
        "weighings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mouse_id", sa.String(64), nullable=False),
        sa.Column("grams", sa.Float(), nullable=False),
        sa.Column("weighed_at", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("voided_at", sa.Float(), nullable=True),
        sa.Column("voided_by", sa.String(64), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        _mouse_fk("weighings"),
        sa.PrimaryKeyConstraint("id", name="pk_weighings"),
    )
    op.create_index("ix_weighings_mouse_id_weighed_at", "weighings", ["mouse_id", "weighed_at"])
    op.create_table(
        "baselines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mouse_id", sa.String(64), nullable=False),
        sa.Column("grams", sa.Float(), nullable=False),
        sa.Column("set_at", sa.Float(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _mouse_fk("baselines"),
        sa.PrimaryKeyConstraint("id", name="pk_baselines"),
    )
    op.create_index("ix_baselines_mouse_id_set_at", "baselines", ["mouse_id", "set_at"])
    op.create_table(
        "weight_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mouse_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("warning", sa.Text(), nullable=False),
        sa.Column("weight_grams", sa.Float(), nullable=True),
        sa.Column("baseline_grams", sa.Float(), nullable=True),
        sa.Column("session_id", sa.String(64), nullable=True),
        _mouse_fk("weight_overrides"),
        sa.PrimaryKeyConstraint("id", name="pk_weight_overrides"),
    )
    op.create_index("ix_weight_overrides_mouse_id_at", "weight_overrides", ["mouse_id", "at"])
    op.create_table(
        "water_given",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mouse_id", sa.String(64), nullable=False),
        sa.Column("microliters", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("given_at", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.Column("given_by", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("voided_at", sa.Float(), nullable=True),
        sa.Column("voided_by", sa.String(64), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        _mouse_fk("water_given"),
        sa.PrimaryKeyConstraint("id", name="pk_water_given"),
    )
    op.create_index("ix_water_given_mouse_id_given_at", "water_given", ["mouse_id", "given_at"])
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("box_id", sa.String(32), nullable=False),
        sa.Column("spout", sa.Integer(), nullable=False),
        sa.Column("openings", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("total_ul", sa.Float(), nullable=False),
        sa.Column("ul_per_opening", sa.Float(), nullable=False),
        sa.Column("weighed_in", sa.String(8), nullable=False),
        sa.Column("measured_at", sa.Float(), nullable=False),
        sa.Column("measured_by", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["box_id"], ["boxes.id"], name="fk_calibrations_box_id_boxes"),
        sa.PrimaryKeyConstraint("id", name="pk_calibrations"),
    )
    op.create_index(
        "ix_calibrations_box_id_spout_measured_at",
        "calibrations",
        ["box_id", "spout", "measured_at"],
    )
    op.create_table(
        "schedule_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cohort_name", sa.String(64), nullable=False),
        sa.Column("mouse_id", sa.String(64), nullable=False),
        sa.Column("box_id", sa.String(32), nullable=False),
        sa.Column("shift", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Float(), nullable=False),
        sa.Column("valid_until", sa.Float(), nullable=True),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_name"], ["cohorts.name"], name="fk_schedule_entries_cohort_name_cohorts"
        ),
        _mouse_fk("schedule_entries"),
        sa.ForeignKeyConstraint(["box_id"], ["boxes.id"], name="fk_schedule_entries_box_id_boxes"),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_entries"),
    )
    # One place per mouse in a cohort's schedule, and one mouse per box and shift.
    for name, columns in (
        ("uq_schedule_entries_open_mouse", ["cohort_name", "mouse_id"]),
        ("uq_schedule_entries_open_slot", ["cohort_name", "box_id", "shift"]),
    ):
        op.create_index(
            name,
            "schedule_entries",
            columns,
            unique=True,
            sqlite_where=sa.text("valid_until IS NULL"),
            postgresql_where=sa.text("valid_until IS NULL"),
        )


def downgrade() -> None:
    for table in (
        "schedule_entries",
        "calibrations",
        "water_given",
        "weight_overrides",
        "baselines",
        "weighings",
        "lab_settings",
    ):
        op.drop_table(table)
