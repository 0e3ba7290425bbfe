"""Box presence: each box's state, last status and last-seen time, kept in the ``boxes`` table.

A status message sets the box's state (and, when it arrived live, the box's
clock offset: the rig's calendar clock in it minus the time it arrived); any
live message refreshes its last-seen time; a box that sends nothing for
``heartbeat_timeout`` is marked offline even if its Last Will never came.
Everything is read from and written to the database, so any collector of a
group may take any box's messages.

A box's first message makes its row: a rig that reports is known to the lab
(controller.lab.get_box). A retired box that reports again stays retired (out of
the views; ``labctl box add`` brings it back): its state and sessions are stored as
any box's, and the collector logs a warning, once per box while it runs.

The timeout is not a verdict on the box while the collector itself could not
keep up: after the database was unavailable, after a backlog (the collector
behind its queue), and when it just started, every box gets a full timeout
from the moment it is storing what comes as it comes (:meth:`Presence.resume`),
so a database locked for a while, or a collector that fell behind, does not
mark the whole lab offline. A Last Will marks its box offline at once, whatever
the collector's backlog: the broker judged that one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Boolean, Connection, Table, bindparam, case, select, update

from controller.collector.decode import Decoded
from controller.models import Box
from controller.store import insert_ignore
from shared.protocol import OFFLINE, Status, box_online, status_or_none

log = logging.getLogger("labctl.collector")

BOXES: Table = Box.__table__  # type: ignore[assignment]
LAST_WILL = "the agent disconnected (its Last Will)"
#: Last-seen times are written when they moved at least this much.
SEEN_RESOLUTION_S = 1.0


def timeout_reason(seconds: float) -> str:
    return f"no message for {seconds:g} s"


def _newer(column: Any, param: str) -> Any:
    """``column`` moved forward to the parameter, never back: collectors race to write it."""
    value: Any = bindparam(param)
    return case(
        (value.is_(None), column),
        (column.is_(None), value),
        (column < value, value),
        else_=column,
    )


#: The columns a status (or a box back from a timeout) changes.
_CHANGED = ("state", "status", "offline_reason", "clock_offset")


def _moved(new: float | None, written: float | None) -> float | None:
    """``new``, if it is worth writing over what this collector wrote last."""
    if new is None or (written is not None and new - written < SEEN_RESOLUTION_S):
        return None
    return new


# What a batch says about its boxes is one executemany of this, one row per box in box
# order. One UPDATE per status was half the collector's busy time at 1000 rigs (py-spy,
# docs/operations.md); and two passes over the boxes (statuses, then times), each in box
# order, still deadlocked two collectors of a group (one locked box 5 then 3, the other 3
# then 5: 31 in four minutes, each a batch retried 2 s later). Each column is set only
# where its row says so (``set_<column>``): nothing is written that the batch did not say.
_UPDATE_BOX = (
    update(BOXES)
    .where(BOXES.c.id == bindparam("box_id"))
    .values(
        {
            column: case(
                (
                    bindparam(f"set_{column}", type_=Boolean()),
                    bindparam(f"new_{column}", type_=BOXES.c[column].type),
                ),
                else_=BOXES.c[column],
            )
            for column in _CHANGED
        }
        | {
            "last_seen": _newer(BOXES.c.last_seen, "seen"),
            "last_event_at": _newer(BOXES.c.last_event_at, "event"),
        }
    )
)


class Presence:
    """Writes what a batch says about boxes; :meth:`time_out` runs from the tick."""

    def __init__(self, heartbeat_timeout: float, now: float | None = None) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        #: Since when this collector has stored what came as it came (None: it is not, now);
        #: silence is counted from here at the earliest (``now``: the collector's start).
        self.judging_since: float | None = time.time() if now is None else now
        self._suspended_at: float | None = None
        #: Times this collector last wrote, per box: only spares writes that would change
        #: nothing much; the database holds the truth (the newest of every collector's).
        self._written: dict[str, tuple[float | None, float | None]] = {}
        #: Retired boxes this collector has warned about (once each, not per message).
        self._warned_retired: set[str] = set()
        #: Each box's status text as :meth:`online` last read it, and what it parsed to.
        self._parsed: dict[str, tuple[str | None, Status | None]] = {}

    def store(self, conn: Connection, batch: Decoded, now: float) -> set[str]:
        """Write the batch's statuses and times; returns the boxes that came online."""
        names = set(batch.seen) | set(batch.statuses) | set(batch.event_at)
        if not names:
            return set()
        rows = {
            row["id"]: row
            for row in conn.execute(
                select(
                    BOXES.c.id,
                    BOXES.c.state,
                    BOXES.c.status,
                    BOXES.c.offline_reason,
                    BOXES.c.retired_at,
                ).where(BOXES.c.id.in_(sorted(names)))
            ).mappings()
        }
        for name, found in rows.items():
            if found["retired_at"] is not None and name not in self._warned_retired:
                self._warned_retired.add(name)
                log.warning(
                    "box %s is retired but reports again: its messages are stored, it stays "
                    "out of the views; `labctl box add %s` if it is back in use, else set "
                    "the rig's box id",
                    name,
                    name,
                )
        new = sorted(names - rows.keys())
        if new:
            insert_ignore(
                conn,
                BOXES,
                [{"id": name, "created_at": now, "state": OFFLINE} for name in new],
                index_elements=["id"],
            )
        came_online: set[str] = set()
        changed: list[dict[str, Any]] = []
        timed_out = timeout_reason(self.heartbeat_timeout)
        for name in sorted(names):
            row = rows.get(name)
            was = row["state"] if row is not None else OFFLINE
            values: dict[str, Any] = {}
            if name in batch.statuses:
                status, text = batch.statuses[name]
                values["status"] = text
                values["state"] = status.state
                values["offline_reason"] = LAST_WILL if not box_online(status) else None
                if name in batch.status_at and box_online(status):
                    # Its clock when sent minus ours when it came, so network delay makes a rig
                    # look a little behind, never ahead. Not from a retained status (old), nor
                    # an offline one (the Last Will is made when the agent connects).
                    values["clock_offset"] = round(status.calendar_time - batch.status_at[name], 3)
                replayed = name not in batch.seen and box_online(status)
                if replayed and row is not None and row["offline_reason"] == timed_out:
                    # Retained and replayed: the box is as it said, but not proven alive.
                    values["state"], values["offline_reason"] = OFFLINE, timed_out
            elif name in batch.seen and row is not None and row["offline_reason"] == timed_out:
                # Timed out earlier, alive after all: back to what its last status said.
                last = status_or_none(row["status"])
                values["state"] = last.state if last is not None else "idle"
                values["offline_reason"] = None
            seen, event = self._times(name, batch.seen.get(name), batch.event_at.get(name))
            if values or seen is not None or event is not None:
                change: dict[str, Any] = {"box_id": name, "seen": seen, "event": event}
                for column in _CHANGED:
                    change[f"set_{column}"] = column in values
                    change[f"new_{column}"] = values.get(column)
                changed.append(change)
            state = values.get("state", was)
            if state != OFFLINE and was == OFFLINE:
                came_online.add(name)
                log.info("box %s is online (%s)", name, state)
            elif was != OFFLINE and state == OFFLINE:
                log.info("box %s went offline", name)
        if changed:
            conn.execute(_UPDATE_BOX, changed)
        return came_online

    def _times(
        self, name: str, seen: float | None, event: float | None
    ) -> tuple[float | None, float | None]:
        """The box's last-seen and last-event times to write (None: leave it).

        Every message refreshes its box's last-seen time; writing it when it moved a second
        keeps that from costing a write per box per batch."""
        written_seen, written_event = self._written.get(name, (None, None))
        seen, event = _moved(seen, written_seen), _moved(event, written_event)
        if seen is not None or event is not None:
            self._written[name] = (seen or written_seen, event or written_event)
        return seen, event

    def suspend(self, now: float) -> None:
        """The collector cannot store what comes as it comes: the database refused a batch,
        or the batch taken was full (more were waiting, here or at the broker).

        A box's last-seen time is when its newest *stored* message reached the collector.
        Behind a backlog that is late by the backlog: once its in-flight window is full,
        mosquitto hands the collector a message only as an earlier one is acknowledged, so
        even the time of arrival stretches with the queue, and a live box's messages come
        further apart than it sent them. Judging silence against the clock then marks live
        boxes offline and back, a write each, which puts the collector further behind (a
        thousand rigs on one collector: 66,126 of them, docs/operations.md). Judging
        against the newest message processed fails the same way, since its arrival is as
        late; against the rigs' own send times it would trust every rig's clock. So no box
        is timed out while the collector is behind: silence is counted again once it has
        caught up."""
        if self.judging_since is not None:
            self.judging_since = None
            self._suspended_at = now

    def resume(self, now: float) -> None:
        """The collector stores what comes as it comes again: silence counts from ``now``."""
        if self.judging_since is not None:
            return
        self.judging_since = now
        if self._suspended_at is not None and now - self._suspended_at >= self.heartbeat_timeout:
            log.info(
                "caught up after %.0f s behind: no box was timed out meanwhile; silence "
                "counts from now",
                now - self._suspended_at,
            )
        self._suspended_at = None

    def time_out(self, conn: Connection, now: float) -> list[str]:
        """Mark offline every box silent for ``heartbeat_timeout``; returns their ids.

        Silence is counted from :attr:`judging_since` at the earliest, and not at all while
        the collector is behind (:meth:`suspend`): what has not been stored yet may well
        hold the box's latest message.
        """
        since = self.judging_since
        if since is None or now - since <= self.heartbeat_timeout:
            return []
        cutoff = now - self.heartbeat_timeout
        silent = (
            conn.execute(
                select(BOXES.c.id).where(
                    BOXES.c.state != OFFLINE,
                    (BOXES.c.last_seen.is_(None)) | (BOXES.c.last_seen < cutoff),
                )
            )
            .scalars()
            .all()
        )
        if silent:
            conn.execute(
                update(BOXES)
                .where(BOXES.c.id.in_(silent), BOXES.c.state != OFFLINE)
                .values(state=OFFLINE, offline_reason=timeout_reason(self.heartbeat_timeout))
            )
            for name in silent:
                log.warning(
                    "box %s sent nothing for %g s: marking it offline", name, self.heartbeat_timeout
                )
        return list(silent)

    def online(self, conn: Connection) -> dict[str, Status | None]:
        """Every box not offline, with its last status."""
        out: dict[str, Status | None] = {}
        for name, text in conn.execute(
            select(BOXES.c.id, BOXES.c.status).where(BOXES.c.state != OFFLINE)
        ):
            # Every tick reads every box's status, but a box's changes only as it sends
            # one (every 10 s): parsing each anew was a fifth of a 1000-rig collector's time.
            parsed = self._parsed.get(name)
            if parsed is None or parsed[0] != text:
                parsed = self._parsed[name] = (text, status_or_none(text))
            out[name] = parsed[1]
        return out
