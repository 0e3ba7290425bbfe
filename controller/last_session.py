"""Each box's last session once it no longer runs, so a row keeps its trials when it ends.

Two sources: the database's last recorded session of each box (what ``labctl
status`` shows), and, in ``labctl monitor``, what the monitor saw live (the
box's last running status, then the session's ``session_end``), which is
newer than the database while the collector is still storing the session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from sqlalchemy import and_, func, select

from controller.db import Database, TrainingSession
from shared.documents import Document, SessionEnd
from shared.protocol import Status


@dataclass(frozen=True)
class LastSession:
    """The last session a box ran, once it is no longer running."""

    mouse: str | None  # None: seen only by its end, before the database has it
    session_id: str | None
    trials: int
    rewards: int
    #: complete, stopped or aborted; None while its end is not known yet.
    status: str | None = None
    ended_at: float | None = None


def wall_time(task_time: float | None, learned_at: float | None) -> float | None:
    """A session's time as a person may be shown it: never later than when the lab learned
    it (``learned_at``, the controller's own clock). A simulated session's task clock runs
    ahead of the wall (``--time-scale 30`` ends a 5-minute session 10 s after it started,
    yet stamps its end 5 minutes on), as does a box whose clock is fast."""
    if task_time is None or learned_at is None:
        return task_time if learned_at is None else learned_at
    return min(task_time, learned_at)


def last_sessions(db: Database) -> dict[str, LastSession]:
    """Box -> the last session the database has recorded from it (by start time)."""
    latest = (
        select(TrainingSession.box, func.max(TrainingSession.position).label("position"))
        .where(TrainingSession.origin == "recorded", TrainingSession.box.is_not(None))
        .group_by(TrainingSession.box)
        .subquery()
    )
    query = select(TrainingSession).join(
        latest,
        and_(TrainingSession.box == latest.c.box, TrainingSession.position == latest.c.position),
    )
    with db.reader() as tx:
        return {
            row.box: LastSession(
                mouse=row.mouse_id,
                session_id=row.session_id,
                trials=row.trial_count,
                rewards=row.reward_count,
                status=row.status,
                ended_at=wall_time(row.end_time, row.completed_at),
            )
            for row in tx.scalars(query)
            if row.box is not None
        }


class SessionMemory:
    """What the monitor saw of each box's latest session, so its row keeps the count when
    it ends: the last running status (trials, rewards), then its ``session_end``."""

    def __init__(self) -> None:
        self._sessions: dict[str, LastSession] = {}
        self._seen_events = 0.0  # receive time of the newest event already read

    def update(
        self, statuses: Mapping[str, Status], events: Iterable[tuple[float, str, Document]]
    ) -> None:
        for box, status in statuses.items():
            if status.state in ("running", "stopping") and status.mouse:
                known = self._sessions.get(box)
                if known is None or known.session_id != status.session_id or not known.status:
                    self._sessions[box] = LastSession(
                        status.mouse, status.session_id, status.trial, status.rewards
                    )
        newest = self._seen_events
        for received, box, doc in events:
            if received <= self._seen_events or not isinstance(doc, SessionEnd):
                continue
            newest = max(newest, received)
            known = self._sessions.get(box)
            mouse = known.mouse if known and known.session_id == doc.session_id else None
            self._sessions[box] = LastSession(
                mouse=mouse,
                session_id=doc.session_id,
                trials=doc.counts.get("trials", known.trials if known else 0),
                rewards=doc.counts.get("rewards", known.rewards if known else 0),
                status=doc.status,
                ended_at=wall_time(doc.end_time, received),
            )
        self._seen_events = newest

    def merged(self, recorded: Mapping[str, LastSession]) -> dict[str, LastSession]:
        """The database's last sessions, with what was seen live where that is newer."""
        out = dict(recorded)
        for box, seen in self._sessions.items():
            stored = out.get(box)
            if stored is not None and stored.session_id == seen.session_id:
                if seen.status is None:
                    continue  # the database has its end; this only saw it run
                if seen.mouse is None:
                    seen = replace(seen, mouse=stored.mouse)
            out[box] = seen
        return out
