"""Tables of the alerts: where they go (targets), what was raised (alerts), what was sent.

Migration ``0005_alerts`` creates them. Times are Unix seconds. A target's URL may hold
a token or a password (Apprise URLs do), so it is shown only in Apprise's privacy form.
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controller.models import Base


class AlertTarget(Base):
    """One Apprise URL the lab's alerts go to (a phone, an e-mail, a chat, a webhook)."""

    __tablename__ = "alert_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    #: Comma-separated alert kinds this target gets; empty: every kind.
    only: Mapped[str] = mapped_column(Text, default="")
    #: ``HH:MM-HH:MM`` (local time) during which its messages wait; empty: none.
    quiet: Mapped[str] = mapped_column(String(16), default="")
    added_at: Mapped[float] = mapped_column(Float)
    added_by: Mapped[str] = mapped_column(String(64))
    #: Removed targets are kept (their deliveries refer to them) and get nothing more.
    removed_at: Mapped[float | None] = mapped_column(Float)


class Alert(Base):
    """One occurrence of an alert: raised when its rule first held, cleared when it stopped."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_key_open", "key", "cleared_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: What it is about, stable while it holds: ``rig-offline:3``, ``weight-low:M1``.
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[float] = mapped_column(Float)
    #: When its rule stopped holding (None while it holds); an event is closed at once.
    cleared_at: Mapped[float | None] = mapped_column(Float)
    #: When it was last queued for sending (raise or repeat).
    sent_at: Mapped[float] = mapped_column(Float)


class AlertDelivery(Base):
    """One message to one target: its text, and whether and when it went (or why not)."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_state_due", "state", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("alert_targets.id"))
    #: raised, cleared, repeat, summary or test.
    what: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    #: Not before: the end of the target's quiet hours, or the next retry.
    due_at: Mapped[float] = mapped_column(Float)
    #: pending, sent or failed (failed: retries used up).
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)
