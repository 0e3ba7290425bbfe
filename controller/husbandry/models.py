"""Tables of the lab's husbandry records; migration ``0002_husbandry`` creates them.

Times are Unix seconds, as everywhere in reachlab. Who did something is a short
free-text name (``--by``, else the login), kept with every record a welfare office
may ask about. Nothing is updated in place except the end of a schedule entry's
validity and the voiding of a weighing or water entry made by mistake (who, when and
why are kept; the row stays): the newest row of a kind is the one in force.
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from controller.models import Base


class LabSetting(Base):
    """One value given to a lab setting; the newest row per ``key`` is in force."""

    __tablename__ = "lab_settings"
    __table_args__ = (Index("ix_lab_settings_key_set_at", "key", "set_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    #: The value as typed (``80``, ``40 ul/g``); :mod:`.settings` parses it.
    value: Mapped[str] = mapped_column(Text)
    set_at: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(64))


class Weighing(Base):
    """A mouse weighed at ``weighed_at``, in grams."""

    __tablename__ = "weighings"
    __table_args__ = (
        Index("ix_weighings_mouse_id_weighed_at", "mouse_id", "weighed_at"),
        Index("ix_weighings_weighed_at", "weighed_at"),  # a day's records, of every mouse
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"))
    grams: Mapped[float] = mapped_column(Float)
    weighed_at: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[float] = mapped_column(Float)
    recorded_by: Mapped[str] = mapped_column(String(64))
    #: The session this weight was given with (``labctl start --weight``), if any.
    session_id: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    #: A record entered by mistake is voided (kept, with who and why), never deleted.
    voided_at: Mapped[float | None] = mapped_column(Float)
    voided_by: Mapped[str | None] = mapped_column(String(64))
    void_reason: Mapped[str | None] = mapped_column(Text)


class Baseline(Base):
    """A mouse's reference weight; the newest is in force. Water restriction of a mouse
    is tracked (and its weight checked) from its first baseline on."""

    __tablename__ = "baselines"
    __table_args__ = (Index("ix_baselines_mouse_id_set_at", "mouse_id", "set_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"))
    grams: Mapped[float] = mapped_column(Float)
    set_at: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(64))
    #: How it was found: "given", or "mean of N weighings".
    method: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")


class WeightOverride(Base):
    """A session started although the weight check warned: who, why, and what it said."""

    __tablename__ = "weight_overrides"
    __table_args__ = (
        Index("ix_weight_overrides_mouse_id_at", "mouse_id", "at"),
        Index("ix_weight_overrides_at", "at"),  # a day's records, of every mouse
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"))
    at: Mapped[float] = mapped_column(Float)
    by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    #: The warning that was overridden, as it was shown.
    warning: Mapped[str] = mapped_column(Text)
    weight_grams: Mapped[float | None] = mapped_column(Float)
    baseline_grams: Mapped[float | None] = mapped_column(Float)
    session_id: Mapped[str | None] = mapped_column(String(64))


class WaterGiven(Base):
    """Water (or a supplement) given by hand, outside the box."""

    __tablename__ = "water_given"
    __table_args__ = (
        Index("ix_water_given_mouse_id_given_at", "mouse_id", "given_at"),
        Index("ix_water_given_given_at", "given_at"),  # a day's records, of every mouse
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"))
    microliters: Mapped[float] = mapped_column(Float)
    #: "water", "supplement" or "gel".
    kind: Mapped[str] = mapped_column(String(32))
    given_at: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[float] = mapped_column(Float)
    given_by: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    #: As for weighings: a mistaken entry is voided, not deleted.
    voided_at: Mapped[float | None] = mapped_column(Float)
    voided_by: Mapped[str | None] = mapped_column(String(64))
    void_reason: Mapped[str | None] = mapped_column(Text)


class Calibration(Base):
    """A solenoid calibration: ``openings`` of ``duration_ms`` gave ``total_ul`` in all.

    The newest of a box and spout measured at or before a time is the one in force then.
    """

    __tablename__ = "calibrations"
    __table_args__ = (
        Index("ix_calibrations_box_id_spout_measured_at", "box_id", "spout", "measured_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    box_id: Mapped[str] = mapped_column(ForeignKey("boxes.id"))
    spout: Mapped[int] = mapped_column(Integer)  # 0 = left, 1 = right
    openings: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    total_ul: Mapped[float] = mapped_column(Float)
    ul_per_opening: Mapped[float] = mapped_column(Float)
    #: The total as it was weighed: "mg" (water, 1 mg = 1 µL) or "ul".
    weighed_in: Mapped[str] = mapped_column(String(8))
    measured_at: Mapped[float] = mapped_column(Float)
    measured_by: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")


class ScheduleEntry(Base):
    """A cohort's mouse runs in ``box`` in ``shift``, from ``valid_from`` until ``valid_until``
    (in force while None). A new schedule ends the old entries; they stay as history."""

    __tablename__ = "schedule_entries"
    __table_args__ = (
        Index(
            "uq_schedule_entries_open_mouse",
            "cohort_name",
            "mouse_id",
            unique=True,
            sqlite_where=text("valid_until IS NULL"),
            postgresql_where=text("valid_until IS NULL"),
        ),
        Index(
            "uq_schedule_entries_open_slot",
            "cohort_name",
            "box_id",
            "shift",
            unique=True,
            sqlite_where=text("valid_until IS NULL"),
            postgresql_where=text("valid_until IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_name: Mapped[str] = mapped_column(ForeignKey("cohorts.name"))
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"))
    box_id: Mapped[str] = mapped_column(ForeignKey("boxes.id"))
    shift: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[float] = mapped_column(Float)
    valid_until: Mapped[float | None] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(64))
