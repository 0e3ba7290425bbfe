"""What ``labctl status``, ``monitor`` and ``dead-letters`` show: boxes, events, bad messages.

A box's row merges two sources. The broker's retained status is the live
truth (state, mouse, trial, rewards) when the broker can be reached; the
database adds what only the collector knows: when the box was last heard
from, when its last document came, and whether it went quiet (a box whose
heartbeat stopped is offline even though its retained status still says
otherwise, since no Last Will was ever published).

A box whose session has ended keeps that session in its row (mouse, trials,
rewards, marked ended) until the next one starts: from the database's last
recorded session of the box and, in the monitor, from what it saw live
(:mod:`controller.last_session`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from sqlalchemy import LargeBinary, func, select

from controller.db import Box, Database, DeadLetter
from controller.lab import assignments_by_box, box_sort_key
from controller.last_session import LastSession
from shared.documents import (
    CueChanged,
    Document,
    DocumentRouter,
    Lift,
    Reset,
    Reward,
    SessionEnd,
    SessionStart,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
    TrialStart,
)
from shared.outcomes import outcome_name
from shared.protocol import Status, box_online, status_or_none

SIDES = ("left", "right")
#: A rig clock this far off the collector's (either way) is shown in the table: more than
#: network delay and NTP's usual error, less than anything that would mislead a reader.
CLOCK_TOLERANCE_S = 2.0
#: A box whose clock is further off than this (seconds) is named when a session starts on it.
CLOCK_WARNING_S = 60.0


@dataclass
class BoxView:
    """One box as ``labctl status --json`` reports it."""

    box: str
    online: bool
    state: str
    assigned: str | None = None
    mouse: str | None = None
    session_id: str | None = None
    trial: int = 0
    rewards: int = 0
    progress: float | None = None
    elapsed: float | None = None
    duration: float | None = None
    last_seen_age: float | None = None
    last_event_age: float | None = None
    note: str = ""
    software_version: str = ""
    #: The box's last session, when none runs now: it keeps its trials, marked ended.
    last_session: LastSession | None = None
    #: The rig's clock minus the collector's, s (positive: ahead), as the collector measured
    #: at its last live status; None when unknown or the box is offline. The table shows it
    #: past CLOCK_TOLERANCE_S; the rig's data keeps the rig's own times either way.
    clock_offset: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StoredBox:
    """A box row of the database, detached from its session."""

    box: str
    state: str
    status: str | None
    last_seen: float | None
    last_event_at: float | None
    offline_reason: str | None
    clock_offset: float | None = None
    #: Retired (``labctl box retire``): left out of every view, whatever the broker says.
    retired: bool = False


def stored_boxes(db: Database) -> tuple[dict[str, StoredBox], dict[str, str]]:
    """Boxes as the collector last recorded them, and box -> assigned mouse."""
    with db.reader() as tx:
        rows = {
            box.id: StoredBox(
                box.id,
                box.state,
                box.status,
                box.last_seen,
                box.last_event_at,
                box.offline_reason,
                box.clock_offset,
                box.retired_at is not None,
            )
            for box in tx.scalars(select(Box))
        }
        assigned = assignments_by_box(tx)
    return rows, assigned


def is_retired(stored: Mapping[str, StoredBox], box: str) -> bool:
    row = stored.get(box)
    return row is not None and row.retired


def box_views(
    stored: Mapping[str, StoredBox],
    assigned: Mapping[str, str],
    live: Mapping[str, Status] | None,
    live_texts: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
    last: Mapping[str, LastSession] | None = None,
) -> list[BoxView]:
    """Every box known to the database or the broker; ``live`` is None when the broker is away.

    ``last``: each box's last session, kept in the row of a box that no longer runs it.
    A retired box is left out, though its retained status stays on the broker."""
    now = time.time() if now is None else now
    names = {n for n in set(stored) | set(assigned) | set(live or {}) if not is_retired(stored, n)}
    views = []
    for name in sorted(names, key=box_sort_key):
        row = stored.get(name)
        status = live.get(name) if live is not None else None
        note = ""
        if status is not None:
            online = box_online(status)
            # Same status as the collector last saw, and it has since timed the box out:
            # the retained message is stale.
            if (
                online
                and row is not None
                and row.state == "offline"
                and row.offline_reason
                and live_texts is not None
                and live_texts.get(name) == row.status
            ):
                online = False
                note = row.offline_reason
        else:
            status = status_or_none(row.status) if row is not None else None
            if live is not None:
                online = False
                note = "no status on the broker" if row is not None else ""
            else:
                online = row is not None and row.state != "offline"
                note = "from the database (broker unreachable)"
        if row is not None and not online and not note and row.offline_reason:
            note = row.offline_reason
        view = BoxView(box=name, online=online, state="offline", assigned=assigned.get(name))
        if status is not None:
            view.state = status.state if online else "offline"
            view.software_version = status.software_version
            if online and status.state in ("running", "stopping"):
                view.mouse = status.mouse
                view.session_id = status.session_id
                view.trial = status.trial
                view.rewards = status.rewards
                if status.session_started is not None and status.session_duration:
                    # The agent's own task clock, so this is right at any --time-scale.
                    view.elapsed = max(0.0, status.clock - status.session_started)
                    view.duration = status.session_duration
                    view.progress = min(1.0, view.elapsed / status.session_duration)
        if view.mouse is None and last is not None:
            view.last_session = last.get(name)
        if row is not None:
            if row.last_seen is not None:
                view.last_seen_age = round(now - row.last_seen, 1)
            if row.last_event_at is not None:
                view.last_event_age = round(now - row.last_event_at, 1)
            if online and row.clock_offset is not None:
                view.clock_offset = round(row.clock_offset, 1) + 0.0  # never -0.0
        view.note = note
        views.append(view)
    return views


# ---------------------------------------------------------------- rendering


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def clock_note(offset: float | None) -> str:
    """``clock +3d 0h ahead`` for a rig clock off by more than the tolerance, else ``""``."""
    if offset is None or abs(offset) <= CLOCK_TOLERANCE_S:
        return ""
    seconds = round(abs(offset))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        size = f"{days}d {hours}h"
    elif hours:
        size = f"{hours}h {minutes}min"
    elif minutes:
        size = f"{minutes}min {secs}s"
    else:
        size = f"{abs(offset):.1f} s"
    return f"clock +{size} ahead" if offset > 0 else f"clock -{size} behind"


def status_table(views: Iterable[BoxView], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("box", "online", "state", "mouse", "progress", "trials", "rewards"):
        table.add_column(column, justify="right" if column in ("trials", "rewards") else "left")
    table.add_column("last seen", justify="right")
    table.add_column("last event", justify="right")
    table.add_column("note")
    for view in views:
        if view.progress is not None:
            progress = f"{view.progress:4.0%} {_clock(view.elapsed)}/{_clock(view.duration)}"
        else:
            progress = "-"
        mouse = view.mouse or (f"({view.assigned})" if view.assigned else "-")
        trials = str(view.trial) if view.mouse else "-"
        rewards = str(view.rewards) if view.mouse else "-"
        note = view.note
        ended = view.last_session
        if view.mouse is None and ended is not None:
            # The session that ended keeps its figures, marked ended, until the next starts
            # (an idle box has ended it; an offline one may have been cut off mid-session).
            over = ended.status is not None or (view.online and view.state == "idle")
            mouse = f"{ended.mouse or '?'} ({'ended' if over else 'last'})"
            trials, rewards = str(ended.trials), str(ended.rewards)
            when = (
                datetime.fromtimestamp(ended.ended_at).strftime("%H:%M") if ended.ended_at else ""
            )
            how = " ".join(part for part in (ended.status or "ended", when) if part)
            note = f"{note}; last session {how}" if note else f"last session {how}"
        clock = clock_note(view.clock_offset)
        if clock:
            note = f"{clock}; {note}" if note else clock
        online = Text("yes", style="green") if view.online else Text("no", style="red")
        table.add_row(
            view.box,
            online,
            view.state,
            mouse,
            progress,
            trials,
            rewards,
            age(view.last_seen_age),
            age(view.last_event_age),
            note,
        )
    return table


class EventLine(DocumentRouter[str]):
    """One line for the monitor's event list, for each kind of document."""

    def session_start(self, doc: SessionStart) -> str:
        return f"session started: {doc.mouse}"

    def trial_start(self, doc: TrialStart) -> str:
        return (
            f"trial {doc.trial + 1}: cue {SIDES[doc.spout]} (positions {list(doc.spout_position)})"
        )

    def lift(self, doc: Lift) -> str:
        return f"trial {doc.trial + 1}: {SIDES[doc.paw]} paw lifted"

    def trial_end(self, doc: TrialEnd) -> str:
        return f"trial {doc.trial + 1}: {outcome_name(doc.outcome)}"

    def reward(self, doc: Reward) -> str:
        return f"reward, {SIDES[doc.spout]} spout ({doc.duration_ms} ms)"

    def reset(self, doc: Reset) -> str:
        return f"ITI reset: {SIDES[doc.paw]} paw"

    def spontaneous_reach(self, doc: SpontaneousReach) -> str:
        return f"spontaneous reach: {SIDES[doc.spout]} spout"

    def spouts_moved(self, doc: SpoutsMoved) -> str:
        return f"spouts moved to {list(doc.spout_position)}"

    def cue_changed(self, doc: CueChanged) -> str:
        return f"cue shortened to {doc.cue_duration:.0f} ms"

    def session_end(self, doc: SessionEnd) -> str:
        trials = doc.counts.get("trials")
        return f"session ended: {doc.status}" + (f", {trials} trials" if trials is not None else "")


#: ``describe_event(doc)``: the monitor's line for one document.
describe_event = EventLine()


def events_table(events: Iterable[tuple[float, str, Document]], limit: int = 12) -> Table:
    table = Table(title="recent events", title_justify="left", expand=False)
    table.add_column("time")
    table.add_column("box")
    table.add_column("event")
    for received, box, doc in list(events)[-limit:]:
        table.add_row(
            datetime.fromtimestamp(received).strftime("%H:%M:%S"), box, describe_event(doc)
        )
    return table


def monitor_view(
    views: list[BoxView], events: Iterable[tuple[float, str, Document]], header: str
) -> RenderableType:
    return Group(
        Text(header, style="bold"),
        status_table(views),
        events_table(events),
        Text("Ctrl-C to leave", style="dim"),
    )


# ---------------------------------------------------------------- dead letters

PREVIEW_BYTES = 240  # read from the database per dead letter, however big the payload
PREVIEW_CHARS = 60  # shown in the table and the JSON


@dataclass
class DeadLetterView:
    """One dead letter as ``labctl dead-letters --json`` reports it."""

    id: int
    received_at: float
    topic: str
    reason: str
    payload_bytes: int
    payload_preview: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def payload_preview(payload: bytes, limit: int = PREVIEW_CHARS) -> str:
    """The start of a payload on one line: invalid UTF-8 escaped, control characters as spaces."""
    text = payload.decode("utf-8", errors="backslashreplace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def recent_dead_letters(db: Database, limit: int) -> tuple[list[DeadLetterView], int]:
    """The ``limit`` newest dead letters, newest first, and how many are stored in all."""
    head = func.substr(DeadLetter.payload, 1, PREVIEW_BYTES, type_=LargeBinary)
    query = (
        select(
            DeadLetter.id,
            DeadLetter.received_at,
            DeadLetter.topic,
            DeadLetter.reason,
            func.length(DeadLetter.payload),
            head,
        )
        .order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())
        .limit(limit)
    )
    with db.reader() as tx:
        total = tx.scalar(select(func.count()).select_from(DeadLetter)) or 0
        rows = [
            DeadLetterView(
                id=row_id,
                received_at=received_at,
                topic=topic,
                reason=reason,
                payload_bytes=size or 0,
                payload_preview=payload_preview(bytes(start or b"")),
            )
            for row_id, received_at, topic, reason, size, start in tx.execute(query)
        ]
    return rows, total


def dead_letters_table(rows: Iterable[DeadLetterView], total: int) -> Table:
    rows = list(rows)
    shown = f"the newest {len(rows)} of {total}" if len(rows) < total else f"all {total}"
    table = Table(title=f"dead letters, newest first ({shown})", title_justify="left")
    for column in ("received", "topic", "reason", "payload"):
        table.add_column(column)
    for row in rows:
        received = datetime.fromtimestamp(row.received_at).strftime("%Y-%m-%d %H:%M:%S")
        preview = row.payload_preview if row.payload_bytes else "(empty)"
        # Text, not str: a payload or reason holding [brackets] must not be read as markup.
        table.add_row(
            received, Text(row.topic), Text(row.reason), Text(f"{preview} ({row.payload_bytes} B)")
        )
    return table


def clock_warnings(db: Database, boxes: Sequence[str]) -> list[str]:
    """A line for each of ``boxes`` whose clock is over :data:`CLOCK_WARNING_S` off."""
    lines = []
    with db.reader() as tx:
        for box_id in boxes:
            box = tx.get(Box, box_id)
            offset = box.clock_offset if box is not None else None
            if offset is None or abs(offset) <= CLOCK_WARNING_S:
                continue
            lines.append(
                f"box {box_id}'s clock is {_span(abs(offset))} "
                f"{'ahead' if offset > 0 else 'behind'}: its sessions keep the mouse's training "
                "order, but their dates are wrong; set the Pi's clock (NTP, "
                "docs/troubleshooting.md#a-boxs-clock-is-wrong)"
            )
    return lines


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"
