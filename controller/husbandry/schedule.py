"""Cohort schedules: more mice than boxes, run in shifts.

A schedule gives each mouse of a cohort a box and a shift. ``--shifts K`` fills the
boxes in cohort order: the first ``B`` mice are shift 1 on boxes 1..B, the next ``B``
shift 2 on the same boxes, and so on, ``B`` being the number of boxes needed (or
given). A table gives each mouse its place by hand. A new schedule ends the entries of
the old one, which stay as history; which mouse was really in which box when is the
assignment history (``labctl start --shift`` assigns the shift's mice to their boxes).

When a box's session ends, the next mouse for it is the first one, in shift order,
that is scheduled on that box and has not had a session today. It is only shown: a
person has to place the mouse in the box and start the shift.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from controller.db import Transaction
from controller.husbandry.days import day_bounds
from controller.husbandry.models import ScheduleEntry
from controller.lab import (
    AssignResult,
    LabError,
    assign,
    box_sort_key,
    cohort_members,
    get_box,
    get_cohort,
)
from controller.models import Box, TrainingSession
from shared.days import session_day
from shared.protocol import Status


@dataclass(frozen=True)
class Slot:
    mouse: str
    box: str
    shift: int


def plan_shifts(mice: Sequence[str], shifts: int, boxes: Sequence[str]) -> list[Slot]:
    """Mice in order over ``boxes`` (as many as needed, from the start) in ``shifts`` shifts."""
    if shifts < 1:
        raise LabError(f"--shifts must be at least 1, got {shifts}")
    needed = math.ceil(len(mice) / shifts)
    if len(boxes) < needed:
        raise LabError(
            f"{len(mice)} mice in {shifts} shift(s) need {needed} boxes, but only "
            f"{len(boxes)} are given or known ({' '.join(boxes) or 'none'}): pass --box"
        )
    used = list(boxes)[:needed]
    return [Slot(m, used[i % needed], i // needed + 1) for i, m in enumerate(mice)]


def parse_table(text: str, source: str) -> list[Slot]:
    """A CSV table with the columns ``mouse,box,shift`` (header first)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or set(rows[0]) < {"mouse", "box", "shift"}:
        raise LabError(f"{source}: expected a CSV table with the header mouse,box,shift")
    out = []
    for number, row in enumerate(rows, 2):
        try:
            shift = int(row["shift"])
        except (TypeError, ValueError):
            raise LabError(
                f"{source}, line {number}: shift {row['shift']!r} is not a number"
            ) from None
        out.append(Slot((row["mouse"] or "").strip(), (row["box"] or "").strip(), shift))
    return out


def set_schedule(tx: Transaction, cohort: str, slots: Iterable[Slot], *, by: str) -> list[Slot]:
    """Make ``slots`` the cohort's schedule, ending the one in force (kept as history)."""
    get_cohort(tx, cohort)
    members = set(cohort_members(tx, cohort))
    slots = list(slots)
    seen_mice: set[str] = set()
    seen_places: set[tuple[str, int]] = set()
    for slot in slots:
        get_box(tx, slot.box)  # a schedule places mice only on boxes the lab knows
        if slot.mouse not in members:
            raise LabError(f"mouse {slot.mouse!r} is not in cohort {cohort}")
        if slot.shift < 1:
            raise LabError(f"mouse {slot.mouse}: shift {slot.shift} must be 1 or more")
        if slot.mouse in seen_mice:
            raise LabError(f"mouse {slot.mouse} is scheduled twice")
        if (slot.box, slot.shift) in seen_places:
            raise LabError(f"box {slot.box} has two mice in shift {slot.shift}")
        seen_mice.add(slot.mouse)
        seen_places.add((slot.box, slot.shift))
    missing = members - seen_mice
    if missing:
        raise LabError(f"cohort {cohort}: no place for {' '.join(sorted(missing))}")
    now = time.time()
    for entry in current_entries(tx, cohort):
        entry.valid_until = now
    tx.flush()  # the partial unique indexes need the old entries ended first
    for slot in slots:
        tx.add(
            ScheduleEntry(
                cohort_name=cohort,
                mouse_id=slot.mouse,
                box_id=slot.box,
                shift=slot.shift,
                valid_from=now,
                set_by=by,
            )
        )
    tx.flush()
    return slots


def known_boxes(tx: Transaction) -> list[str]:
    """The boxes in use (retired ones left out), in box order."""
    return sorted(tx.scalars(select(Box.id).where(Box.retired_at.is_(None))), key=box_sort_key)


def current_entries(tx: Transaction, cohort: str | None = None) -> list[ScheduleEntry]:
    stmt = select(ScheduleEntry).where(ScheduleEntry.valid_until.is_(None))
    if cohort is not None:
        stmt = stmt.where(ScheduleEntry.cohort_name == cohort)
    rows = list(tx.scalars(stmt))
    return sorted(rows, key=lambda e: (e.cohort_name, e.shift, box_sort_key(e.box_id)))


def schedule_history(tx: Transaction, cohort: str) -> list[ScheduleEntry]:
    get_cohort(tx, cohort)
    return list(
        tx.scalars(
            select(ScheduleEntry)
            .where(ScheduleEntry.cohort_name == cohort)
            .order_by(ScheduleEntry.valid_from, ScheduleEntry.shift, ScheduleEntry.id)
        )
    )


def shift_slots(tx: Transaction, cohort: str, shift: int) -> list[Slot]:
    get_cohort(tx, cohort)
    entries = current_entries(tx, cohort)
    if not entries:
        raise LabError(f"cohort {cohort} has no schedule: `labctl schedule {cohort} --shifts N`")
    shifts = sorted({e.shift for e in entries})
    chosen = [Slot(e.mouse_id, e.box_id, e.shift) for e in entries if e.shift == shift]
    if not chosen:
        raise LabError(
            f"cohort {cohort} has no shift {shift}: its shifts are "
            f"{', '.join(str(s) for s in shifts)}"
        )
    return chosen


def place_shift(
    tx: Transaction, slots: Sequence[Slot], statuses: Mapping[str, Status] | None = None
) -> list[AssignResult]:
    """Assign each mouse of a shift to its box, taking the previous shift's mouse off it
    (never a mouse whose session runs, as the boxes' ``statuses`` say: LabError)."""
    return [assign(tx, s.mouse, s.box, move=True, replace=True, statuses=statuses) for s in slots]


def slot_of(tx: Transaction, mouse_id: str) -> ScheduleEntry | None:
    """The mouse's place in a schedule in force (the first cohort's, if several)."""
    stmt = select(ScheduleEntry).where(
        ScheduleEntry.mouse_id == mouse_id, ScheduleEntry.valid_until.is_(None)
    )
    return tx.scalars(stmt.order_by(ScheduleEntry.cohort_name)).first()


def mice_run_on(tx: Transaction, day: str) -> set[str]:
    """Mice with a session (running or ended) that started on ``day``."""
    start, end = day_bounds(day)
    stmt = select(TrainingSession.mouse_id).where(
        TrainingSession.start_time >= start, TrainingSession.start_time < end
    )
    return set(tx.scalars(stmt))


@dataclass(frozen=True)
class NextMouse:
    box: str
    mouse: str
    cohort: str
    shift: int


def next_mice(tx: Transaction, now: float | None = None) -> dict[str, NextMouse]:
    """Per box, the next scheduled mouse that has not run today (see the module's doc)."""
    day = session_day(time.time() if now is None else now)
    done = mice_run_on(tx, day)
    out: dict[str, NextMouse] = {}
    for entry in current_entries(tx):
        if entry.mouse_id in done or entry.box_id in out:
            continue
        out[entry.box_id] = NextMouse(entry.box_id, entry.mouse_id, entry.cohort_name, entry.shift)
    return out
