"""The controller's tables as typed SQLAlchemy models (the schema Alembic migrates).

Times are Unix seconds (floats), as everywhere else in reachlab. A session's
dict is stored as the exact JSON text that is exported (``sessions.data``),
so key order, number types and unknown keys of imported files survive, and
an export is a concatenation of stored texts. Raw session documents are kept
as received (``documents.body``), unique per ``(session_id, seq)``.

Three things are called a session here, each by its own name: the *task
session* a rig runs (its id, ``session_id``); :class:`TrainingSession`, the
*stored session row* (``sessions``); and SQLAlchemy's ORM unit of work
(:class:`sqlalchemy.orm.Session`), which this module never names. A
:class:`Stream` is the collector's account of one task session's documents
while they are gathered.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names, so migrations (and SQLite's batch mode) can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: An auto-incrementing 64-bit key; SQLite only auto-increments an INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Mouse(Base):
    """A mouse in training; its id is also its per-mouse file name."""

    __tablename__ = "mice"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    notes: Mapped[str] = mapped_column(Text, default="")
    # The mouse as a subject of published data (``labctl mouse set``; docs/nwb.md).
    #: Latin binomial (``Mus musculus``) or an NCBI taxonomy link.
    species: Mapped[str | None] = mapped_column(String(100))
    #: ``M``, ``F``, ``U`` (unknown) or ``O`` (other), as NWB and DANDI spell them.
    sex: Mapped[str | None] = mapped_column(String(1))
    #: ``YYYY-MM-DD``.
    date_of_birth: Mapped[str | None] = mapped_column(String(10))
    #: An ISO 8601 duration (``P8W``) as given on ``age_on`` (``YYYY-MM-DD``).
    age: Mapped[str | None] = mapped_column(String(32))
    age_on: Mapped[str | None] = mapped_column(String(10))
    strain: Mapped[str | None] = mapped_column(String(200))
    genotype: Mapped[str | None] = mapped_column(String(500))


class Box(Base):
    """A training box (one rig): its place in the lab's registry and its last status as the
    collector saw it.

    A row exists for every box the lab knows: one that reported to a collector (made by
    its first message) or was added by a person (``labctl box add``). A retired box keeps
    its row and its history (sessions, assignments, calibrations) but leaves the views and
    takes no mouse; a rename retires the old id and adds the new one
    (:mod:`controller.husbandry.boxes`).
    """

    __tablename__ = "boxes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: When the box joined the lab: its first message, or ``labctl box add``.
    created_at: Mapped[float] = mapped_column(Float)
    #: Who added it (``labctl box add``, a rename); None when it came by reporting.
    added_by: Mapped[str | None] = mapped_column(String(64))
    #: When it was retired (``labctl box retire`` or renamed away); None while in use.
    retired_at: Mapped[float | None] = mapped_column(Float)
    retired_by: Mapped[str | None] = mapped_column(String(64))
    #: The id this box had before ``labctl box rename`` (set on the new id's row).
    renamed_from: Mapped[str | None] = mapped_column(String(32))
    #: The id this box was renamed to (set on the old id's row, with ``retired_at``).
    renamed_to: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="offline")
    #: The last status message, as received (JSON text).
    status: Mapped[str | None] = mapped_column(Text)
    #: Wall time of the last live message from the box (status, document or reply).
    last_seen: Mapped[float | None] = mapped_column(Float)
    #: Wall time of the last session document from the box.
    last_event_at: Mapped[float | None] = mapped_column(Float)
    #: Why the box is offline: its Last Will, or no message within the heartbeat timeout.
    offline_reason: Mapped[str | None] = mapped_column(String(200))
    #: The rig's clock minus the collector's when its last live status arrived, seconds
    #: (positive: the rig is ahead); its data keeps the rig's own times.
    clock_offset: Mapped[float | None] = mapped_column(Float)


class Assignment(Base):
    """Mouse on box from ``started_at`` until ``ended_at`` (open while None).

    At most one open assignment per mouse and per box (partial unique indexes).
    """

    __tablename__ = "assignments"
    __table_args__ = (
        Index(
            "uq_assignments_open_mouse",
            "mouse_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index(
            "uq_assignments_open_box",
            "box_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"), index=True)
    box_id: Mapped[str] = mapped_column(ForeignKey("boxes.id"), index=True)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)


class Cohort(Base):
    """A named group of mice that are started together."""

    __tablename__ = "cohorts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)


class CohortMember(Base):
    __tablename__ = "cohort_members"

    cohort_name: Mapped[str] = mapped_column(
        ForeignKey("cohorts.name", ondelete="CASCADE"), primary_key=True
    )
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"), primary_key=True, index=True)
    #: Order the mice were given in; listings keep it.
    position: Mapped[int] = mapped_column(Integer)


#: The columns of ``ix_sessions_start_figures``: a session's start time, then what
#: controller.husbandry.book reads of it for ``labctl report``.
SESSION_FIGURES_INDEX = (
    "start_time", "mouse_id", "position", "id", "box", "date", "trial_count", "reward_count",
    "left_rewards", "right_rewards", "first_reward_at", "last_reward_at", "reward_ul",
    "left_reward_ms", "right_reward_ms",
)  # fmt: skip


class TrainingSession(Base):
    """One session of one mouse: recorded by a box, or imported from a per-mouse file.

    ``data`` is the session dict as exported, set once the session is complete
    (recorded: every document ``0..last_seq`` stored; imported: always).
    Sessions are exported in ``(position, id)`` order: the session's start time
    in Unix seconds, or the order of the file it was imported from.
    """

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_mouse_order", "mouse_id", "position", "id"),
        # The dashboard's Version of each mouse, from the index alone (migration 0010).
        Index("ix_sessions_mouse_version", "mouse_id", "complete", "completed_at"),
        # A span's sessions (by start time) with every column the report reads of them, so
        # they are read from the index alone, never past the rows' texts (migration 0012).
        Index("ix_sessions_start_figures", *SESSION_FIGURES_INDEX),
        # The sessions still being collected (no text yet): a handful, found without a scan.
        Index(
            "ix_sessions_collecting",
            "id",
            sqlite_where=text("data IS NULL"),
            postgresql_where=text("data IS NULL"),
        ),
        Index("ix_sessions_date", "date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: None only for imported sessions of files written before session ids existed.
    session_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"))
    box: Mapped[str | None] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(16))  # "recorded" or "imported"
    status: Mapped[str | None] = mapped_column(String(16))
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[float] = mapped_column(Float)
    start_time: Mapped[float | None] = mapped_column(Float)
    end_time: Mapped[float | None] = mapped_column(Float)
    date: Mapped[str | None] = mapped_column(String(32))
    last_seq: Mapped[int | None] = mapped_column(Integer)
    trial_count: Mapped[int] = mapped_column(Integer, default=0)
    reward_count: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[str | None] = mapped_column(Text)
    #: sha256 of ``data``: finds an already imported session without reading every text.
    digest: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    completed_at: Mapped[float | None] = mapped_column(Float)
    #: When the box confirmed ``committed`` (it may then prune its journal).
    committed_at: Mapped[float | None] = mapped_column(Float)
    #: Why a recorded session cannot be completed, if it cannot.
    problem: Mapped[str | None] = mapped_column(Text)
    # Reward figures of ``data``, set with it (controller.husbandry.figures): the water
    # accounting reads these, never the trials again. Rewards from each spout, the first
    # and last reward's time, the session's reward_volume_ul and each spout's duration.
    left_rewards: Mapped[int] = mapped_column(Integer, default=0)
    right_rewards: Mapped[int] = mapped_column(Integer, default=0)
    first_reward_at: Mapped[float | None] = mapped_column(Float)
    last_reward_at: Mapped[float | None] = mapped_column(Float)
    reward_ul: Mapped[float | None] = mapped_column(Float)
    left_reward_ms: Mapped[float | None] = mapped_column(Float)
    right_reward_ms: Mapped[float | None] = mapped_column(Float)
    # Training figures of ``data`` (controller.husbandry.figures.training_figures): the
    # entries of its trials list, the correct ones, and its part of the day's d' (the
    # counts as if no incorrect trial came before it, its first and last touched trial).
    listed_trials: Mapped[int] = mapped_column(Integer, default=0)
    correct_trials: Mapped[int] = mapped_column(Integer, default=0)
    signal_trials: Mapped[int] = mapped_column(Integer, default=0)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    noise_trials: Mapped[int] = mapped_column(Integer, default=0)
    false_alarms: Mapped[int] = mapped_column(Integer, default=0)
    correction_trials: Mapped[int] = mapped_column(Integer, default=0)
    first_touch_left: Mapped[bool | None] = mapped_column(Boolean)
    first_touch_incorrect: Mapped[bool | None] = mapped_column(Boolean)
    last_touch_incorrect: Mapped[bool] = mapped_column(Boolean, default=False)


class StoredDocument(Base):
    """A session document exactly as it arrived (``body``), unique per session and seq."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    box: Mapped[str] = mapped_column(String(32))
    t: Mapped[float] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float)
    body: Mapped[str] = mapped_column(Text)


class Trial(Base):
    """One trial of a complete session, for queries; the session's ``data`` stays the truth."""

    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("session_pk", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_pk: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 0-based place in the session
    start: Mapped[float | None] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float)
    lift_time: Mapped[float | None] = mapped_column(Float)
    lift_paw: Mapped[int | None] = mapped_column(Integer)
    spout: Mapped[int | None] = mapped_column(Integer)
    cue_duration: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[int | None] = mapped_column(Integer)
    shaping: Mapped[bool | None] = mapped_column(Boolean)
    position_left: Mapped[int | None] = mapped_column(Integer)
    position_right: Mapped[int | None] = mapped_column(Integer)


class DeadLetter(Base):
    """A message the collector could not use, kept with the reason."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[float] = mapped_column(Float, index=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)


class Stream(Base):
    """One task session's document stream as the collectors gather it.

    The database's own account of what is stored (``stored`` documents, the highest
    ``max_seq``, the ``last_seq`` its end names), whose it is (``box``: the box whose
    ``session_start`` opened it; None until that arrives), and what was asked and
    sent (resend and ``committed`` requests, each claimed by one collector with a
    conditional update). No collector keeps any of this in memory.
    """

    __tablename__ = "streams"
    __table_args__ = (
        Index("ix_streams_open", "completed_at", "problem"),
        Index("ix_streams_resend_request", "resend_request"),
        Index("ix_streams_commit_request", "commit_request"),
    )

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    box: Mapped[str | None] = mapped_column(String(32))
    #: The box a resend for it goes to: its owner, else the box that listed or sent it.
    asked_box: Mapped[str] = mapped_column(String(32))
    stored: Mapped[int] = mapped_column(Integer, default=0)
    max_seq: Mapped[int] = mapped_column(Integer, default=-1)
    last_seq: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))
    trials: Mapped[int] = mapped_column(Integer, default=0)
    rewards: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    last_doc_at: Mapped[float | None] = mapped_column(Float)
    resend_at: Mapped[float | None] = mapped_column(Float)
    resend_request: Mapped[str | None] = mapped_column(String(64))
    resends: Mapped[int] = mapped_column(Integer, default=0)
    completed_at: Mapped[float | None] = mapped_column(Float)
    #: shared.digest.session_digest of the stored documents, sent with ``committed``.
    digest: Mapped[str | None] = mapped_column(String(80))
    commit_request: Mapped[str | None] = mapped_column(String(64))
    commit_sent_at: Mapped[float | None] = mapped_column(Float)
    committed_at: Mapped[float | None] = mapped_column(Float)
    problem: Mapped[str | None] = mapped_column(Text)


class CollectorLease(Base):
    """A running collector (``labctl serve``), renewed while it works."""

    __tablename__ = "collectors"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # its MQTT client id
    group_name: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)


class LabIdentity(Base):
    """The database's identity: one row, made by migration 0005 and never changed."""

    __tablename__ = "lab"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
