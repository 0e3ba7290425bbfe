"""The lab's box registry: list, add, retire and rename boxes (``labctl box``).

Which boxes exist is one rule, :func:`controller.lab.get_box`: a box is known once it
has reported to a collector (its first message makes its row) or a person added it
here; nothing else makes a box, so a mistyped id is refused rather than kept forever.

Retiring a box keeps its row and its history (sessions, assignments, calibrations);
it leaves ``labctl status``, ``monitor``, the dashboard and ``today``, and takes no
mouse. A box still in use for something is refused, with what to do first.

Renaming keeps the history under the id it was made with: the old id is retired
(``renamed_to``) and the new one added (``renamed_from``). What is current moves to
the new id: the mouse on the box (its assignment on the old id ends, one on the new
id begins), the schedule places in force, and the calibration in force of each spout
(copied with its own measurement time, since the valves are the same). Sessions keep
the box they were recorded on, as their files do.

Every function takes the caller's transaction ``tx`` and raises
:class:`~controller.lab.LabError` (one line) for a person's mistake; where a rule
depends on the rigs, the caller passes the boxes' statuses in.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from controller.db import Assignment, Box, Transaction
from controller.husbandry.calibration import Timeline
from controller.husbandry.models import Calibration, ScheduleEntry
from controller.lab import (
    SESSION_STATES,
    LabError,
    assignments_by_box,
    box_sort_key,
    get_box,
    open_assignment,
)
from shared.ids import check_box_id
from shared.protocol import Status, box_online


@dataclass
class BoxEntry:
    """One box as ``labctl box list --json`` reports it."""

    box: str
    #: ``retired``, else the collector's last record of it (``idle``, ``offline``, ...).
    state: str
    added_at: float
    #: Who added it; None when it joined the lab by reporting.
    added_by: str | None
    retired_at: float | None
    retired_by: str | None
    renamed_from: str | None
    renamed_to: str | None
    last_seen: float | None
    mouse: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def box_entries(tx: Transaction, *, retired: bool = False) -> list[BoxEntry]:
    """The boxes in use, in box order; with ``retired``, the retired ones too."""
    stmt = select(Box)
    if not retired:
        stmt = stmt.where(Box.retired_at.is_(None))
    on_box = assignments_by_box(tx)
    return [
        BoxEntry(
            box=b.id,
            state="retired" if b.retired_at is not None else b.state,
            added_at=b.created_at,
            added_by=b.added_by,
            retired_at=b.retired_at,
            retired_by=b.retired_by,
            renamed_from=b.renamed_from,
            renamed_to=b.renamed_to,
            last_seen=b.last_seen,
            mouse=on_box.get(b.id),
        )
        for b in sorted(tx.scalars(stmt), key=lambda b: box_sort_key(b.id))
    ]


def has_reported(box: Box) -> bool:
    """Whether the box ever sent anything (a box that never did cannot be running)."""
    return box.last_seen is not None or box.status is not None


def add_box(tx: Transaction, box_id: str, *, by: str) -> tuple[Box, str]:
    """Add a box for a rig that has not reported yet; returns it and what was done:
    ``added``, ``back`` (a retired box in use again) or ``known`` (nothing to do)."""
    box = tx.get(Box, check_box_id(box_id))
    if box is not None and box.retired_at is None:
        return box, "known"
    if box is not None:
        box.retired_at = box.retired_by = box.renamed_to = None
        tx.flush()
        return box, "back"
    box = Box(id=box_id, created_at=time.time(), added_by=by, state="offline")
    tx.add(box)
    tx.flush()
    return box, "added"


def _refuse_in_use(tx: Transaction, box: Box, statuses: Mapping[str, Status], verb: str) -> None:
    """LabError when a session runs on the box, or (``retire``) a mouse or schedule uses it."""
    status = statuses.get(box.id)
    if status is not None and status.state in SESSION_STATES:
        raise LabError(
            f"box {box.id} is running {status.mouse or 'a'}'s session: stop it first "
            f"(`labctl stop --box {box.id}`), then {verb} it"
        )
    if verb != "retire":
        return
    occupant = open_assignment(tx, box_id=box.id)
    if occupant is not None:
        raise LabError(
            f"mouse {occupant.mouse_id} is on box {box.id}: take it off first "
            f"(`labctl unassign {occupant.mouse_id}`, or `labctl assign {occupant.mouse_id} "
            "--box OTHER --move`), then retire the box"
        )
    scheduled = tx.scalars(
        select(ScheduleEntry.cohort_name)
        .where(ScheduleEntry.box_id == box.id, ScheduleEntry.valid_until.is_(None))
        .order_by(ScheduleEntry.cohort_name)
    ).first()
    if scheduled is not None:
        raise LabError(
            f"cohort {scheduled}'s schedule places mice on box {box.id}: give it a schedule "
            f"without it first (`labctl schedule {scheduled} --shifts K --box ...`)"
        )


def retire_box(tx: Transaction, box_id: str, *, by: str, statuses: Mapping[str, Status]) -> Box:
    """Retire a box: it keeps its history and leaves the views (refused while in use)."""
    box = get_box(tx, box_id, retired=True)
    if box.retired_at is not None:
        raise LabError(f"box {box_id} is already retired (labctl box list --all)")
    _refuse_in_use(tx, box, statuses, "retire")
    box.retired_at, box.retired_by = time.time(), by
    tx.flush()
    return box


def rename_box(
    tx: Transaction, old_id: str, new_id: str, *, by: str, statuses: Mapping[str, Status]
) -> Box:
    """Rename a box that is offline: the old id is retired, the new one added, and what is
    current (its mouse, schedule places, calibrations in force) moves to the new id."""
    check_box_id(new_id)
    old = get_box(tx, old_id)
    existing = tx.get(Box, new_id)
    if existing is not None:
        what = "a retired box" if existing.retired_at is not None else "a box"
        raise LabError(
            f"box {new_id} already exists ({what}; labctl box list --all): choose another id"
        )
    _refuse_in_use(tx, old, statuses, "rename")
    status = statuses.get(old.id)
    if status is not None and box_online(status):
        raise LabError(
            f"box {old_id} is online: stop its agent, set its box id to {new_id}, "
            "then rename it (its messages would otherwise go to a retired box)"
        )
    now = time.time()
    new = Box(id=new_id, created_at=now, added_by=by, state="offline", renamed_from=old.id)
    tx.add(new)
    old.retired_at, old.retired_by, old.renamed_to = now, by, new_id
    tx.flush()
    occupant = open_assignment(tx, box_id=old.id)
    if occupant is not None:
        occupant.ended_at = now
        tx.flush()  # the partial unique indexes need the old row closed first
        tx.add(Assignment(mouse_id=occupant.mouse_id, box_id=new_id, started_at=now))
    entries = tx.scalars(
        select(ScheduleEntry).where(
            ScheduleEntry.box_id == old.id, ScheduleEntry.valid_until.is_(None)
        )
    ).all()
    for entry in entries:
        entry.valid_until = now
    tx.flush()
    for entry in entries:
        tx.add(
            ScheduleEntry(
                cohort_name=entry.cohort_name, mouse_id=entry.mouse_id, box_id=new_id,
                shift=entry.shift, valid_from=now, set_by=by,
            )
        )  # fmt: skip
    timeline = Timeline.of_box(tx, old.id)
    for spout in (0, 1):
        current = timeline.at(spout, now)
        if current is not None:
            tx.add(
                Calibration(
                    box_id=new_id, spout=spout, openings=current.openings,
                    duration_ms=current.duration_ms, total_ul=current.total_ul,
                    ul_per_opening=current.ul_per_opening, weighed_in=current.weighed_in,
                    measured_at=current.measured_at, measured_by=current.measured_by,
                    note=f"box {old.id}'s, renamed to {new_id}"
                    + (f"; {current.note}" if current.note else ""),
                )
            )  # fmt: skip
    tx.flush()
    return new
