"""The lab's records: mice, boxes, which mouse is on which box, and cohorts.

Every function takes the database transaction ``tx`` (:data:`controller.db.Transaction`) of the
caller and raises :class:`LabError` (one line, naming the
mouse, box or cohort) for a person's mistake. Nothing here talks to a broker:
where a rule depends on what runs on the rigs (a mouse whose session runs
stays on its box), the caller passes the boxes' statuses in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select

from controller.db import (
    Assignment,
    Box,
    Cohort,
    CohortMember,
    Database,
    Mouse,
    TrainingSession,
    Transaction,
)
from shared.errors import InvalidIdError, ReachlabError
from shared.ids import check_box_id, check_mouse_id
from shared.protocol import OFFLINE, Status, status_or_none

COHORT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: A box in one of these states has a session that has not ended yet.
SESSION_STATES = ("running", "stopping")


class LabError(ReachlabError, LookupError):
    """An unknown mouse, box or cohort, or a change the lab's rules do not allow."""


def check_cohort_name(name: str) -> str:
    if not COHORT_NAME_PATTERN.fullmatch(name):
        raise InvalidIdError(
            f"invalid cohort name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


# ---------------------------------------------------------------- mice and boxes


def get_mouse(tx: Transaction, mouse_id: str) -> Mouse:
    mouse = tx.get(Mouse, check_mouse_id(mouse_id))
    if mouse is None:
        raise LabError(
            f"unknown mouse {mouse_id!r}: add it with `labctl mouse add {mouse_id}` "
            f"or `labctl assign {mouse_id} --box BOX`"
        )
    return mouse


def add_mouse(tx: Transaction, mouse_id: str, notes: str = "") -> tuple[Mouse, bool]:
    """The mouse, and whether it was created now."""
    mouse = tx.get(Mouse, check_mouse_id(mouse_id))
    if mouse is not None:
        return mouse, False
    mouse = Mouse(id=mouse_id, created_at=time.time(), notes=notes)
    tx.add(mouse)
    tx.flush()
    return mouse, True


def get_box(tx: Transaction, box_id: str, *, retired: bool = False) -> Box:
    """The box, if the lab knows it: it has reported to a collector or was added with
    ``labctl box add``; a retired box only if ``retired`` (reading its history).

    The one rule of which boxes exist: assign, calibrate, calibrations and schedules ask
    it, and none of them makes a box (a mistyped id made a box that stayed offline
    forever). LabError, naming the fix, otherwise."""
    box = tx.get(Box, check_box_id(box_id))
    if box is None:
        raise LabError(
            f"no box {box_id}: it has never reported and was not added "
            f"(labctl box list; labctl box add {box_id} for a new rig)"
        )
    if box.retired_at is not None and not retired:
        renamed = f" (renamed to {box.renamed_to})" if box.renamed_to else ""
        raise LabError(
            f"box {box_id} is retired{renamed}: use another box (labctl box list), "
            f"or bring it back with `labctl box add {box_id}`"
        )
    return box


# ---------------------------------------------------------------- assignments


def open_assignment(
    tx: Transaction, *, mouse_id: str | None = None, box_id: str | None = None
) -> Assignment | None:
    stmt = select(Assignment).where(Assignment.ended_at.is_(None))
    if mouse_id is not None:
        stmt = stmt.where(Assignment.mouse_id == mouse_id)
    if box_id is not None:
        stmt = stmt.where(Assignment.box_id == box_id)
    return tx.scalars(stmt).first()


def box_of(tx: Transaction, mouse_id: str) -> str | None:
    assignment = open_assignment(tx, mouse_id=mouse_id)
    return assignment.box_id if assignment else None


def assignments_by_box(tx: Transaction) -> dict[str, str]:
    """Box id -> the mouse on it now."""
    rows = tx.execute(
        select(Assignment.box_id, Assignment.mouse_id).where(Assignment.ended_at.is_(None))
    )
    return {box: mouse for box, mouse in rows}


@dataclass
class AssignResult:
    mouse: str
    box: str
    created_mouse: bool = False
    already: bool = False
    moved_from: str | None = None
    replaced: str | None = None
    notes: list[str] = field(default_factory=list)


def assign_takes_off(
    tx: Transaction, mouse_id: str, box_id: str, *, move: bool, replace: bool
) -> list[str]:
    """The mice this assignment would take off a box (the mouse moved, the mouse replaced):
    the caller then fetches the boxes' statuses for :func:`assign`."""
    current = box_of(tx, check_mouse_id(mouse_id))
    occupant = open_assignment(tx, box_id=get_box(tx, box_id).id)
    out = []
    if move and current is not None and current != box_id:
        out.append(mouse_id)
    if replace and occupant is not None and occupant.mouse_id != mouse_id:
        out.append(occupant.mouse_id)
    return out


def assign(
    tx: Transaction,
    mouse_id: str,
    box_id: str,
    *,
    move: bool = False,
    replace: bool = False,
    statuses: Mapping[str, Status] | None = None,
) -> AssignResult:
    """Put the mouse on the box. Moving it off another box needs ``move``; taking a box
    another mouse is on needs ``replace``. The history is kept: old assignments are ended.

    ``statuses`` (the boxes' statuses; needed when :func:`assign_takes_off` names a
    mouse): a mouse whose session runs is neither moved nor replaced, as for
    :func:`unassign`, since its session would go on where it no longer belongs."""
    check_mouse_id(mouse_id)
    get_box(tx, box_id)  # a box the lab does not know is refused before anything changes
    for taken in assign_takes_off(tx, mouse_id, box_id, move=move, replace=replace):
        running = running_box(statuses or {}, taken)
        if running is not None:
            raise LabError(
                f"mouse {taken} has a session running on box {running}: stop it first "
                f"(`labctl stop {taken}`), then assign"
            )
    now = time.time()
    result = AssignResult(mouse=mouse_id, box=box_id)
    _, result.created_mouse = add_mouse(tx, mouse_id)
    current = open_assignment(tx, mouse_id=mouse_id)
    if current is not None and current.box_id == box_id:
        result.already = True
        return result
    occupant = open_assignment(tx, box_id=box_id)
    if current is not None and not move:
        raise LabError(
            f"mouse {mouse_id} is on box {current.box_id}; pass --move to move it to box {box_id}"
        )
    if occupant is not None and not replace:
        raise LabError(
            f"box {box_id} already has mouse {occupant.mouse_id}; pass --replace to take "
            f"{occupant.mouse_id} off it, or `labctl unassign {occupant.mouse_id}` first"
        )
    if current is not None:
        current.ended_at = now
        result.moved_from = current.box_id
    if occupant is not None:
        occupant.ended_at = now
        result.replaced = occupant.mouse_id
    tx.flush()  # the partial unique indexes need the old rows closed first
    tx.add(Assignment(mouse_id=mouse_id, box_id=box_id, started_at=now))
    tx.flush()
    return result


def unassign(tx: Transaction, mouse_id: str, *, statuses: Mapping[str, Status]) -> str:
    """Take the mouse off its box; returns the box.

    ``statuses`` are the boxes' statuses (live, or the last recorded): a mouse
    whose session still runs on a box is refused, since its session would go
    on with nobody assigned to it."""
    get_mouse(tx, mouse_id)
    running = running_box(statuses, mouse_id)
    if running is not None:
        raise LabError(
            f"mouse {mouse_id} has a session running on box {running}: stop it first "
            f"(`labctl stop {mouse_id}`) or pass --stop"
        )
    current = open_assignment(tx, mouse_id=mouse_id)
    if current is None:
        raise LabError(f"mouse {mouse_id} is not on any box")
    current.ended_at = time.time()
    return current.box_id


def running_box(statuses: Mapping[str, Status], mouse_id: str) -> str | None:
    """The box whose status names this mouse's session as running (or stopping), if any.

    The session's own mouse, not the assignment, decides: a mouse moved or taken
    off its box while its session ran is still found where the session runs."""
    for box, status in sorted(statuses.items(), key=lambda kv: box_sort_key(kv[0])):
        if status.state in SESSION_STATES and status.mouse == mouse_id:
            return box
    return None


def recorded_statuses(tx: Transaction) -> dict[str, Status]:
    """Each box's last status as the collector recorded it, for when the broker is away."""
    out: dict[str, Status] = {}
    for box in tx.scalars(select(Box).where(Box.state != OFFLINE)):
        status = status_or_none(box.status)
        if status is not None:
            out[box.id] = status
    return out


def assignment_history(tx: Transaction, mouse_id: str) -> list[Assignment]:
    return list(
        tx.scalars(
            select(Assignment)
            .where(Assignment.mouse_id == mouse_id)
            .order_by(Assignment.started_at, Assignment.id)
        )
    )


# ---------------------------------------------------------------- cohorts


def get_cohort(tx: Transaction, name: str) -> Cohort:
    cohort = tx.get(Cohort, check_cohort_name(name))
    if cohort is None:
        raise LabError(f"unknown cohort {name!r}: `labctl cohort list` shows the cohorts")
    return cohort


def cohort_members(tx: Transaction, name: str) -> list[str]:
    get_cohort(tx, name)
    return list(
        tx.scalars(
            select(CohortMember.mouse_id)
            .where(CohortMember.cohort_name == name)
            .order_by(CohortMember.position, CohortMember.mouse_id)
        )
    )


def unknown_mice(tx: Transaction, mice: list[str]) -> list[str]:
    """The mice (in the order given, once each) the lab does not know yet."""
    ids = [check_mouse_id(m) for m in dict.fromkeys(mice)]
    known = set(tx.scalars(select(Mouse.id).where(Mouse.id.in_(ids))))
    return [m for m in ids if m not in known]


def _refuse_unknown(tx: Transaction, mice: list[str], create_mice: bool) -> None:
    # A cohort is usually made of mice already assigned; a new name is more often a typo
    # than a new mouse, so creating one must be asked for.
    unknown = unknown_mice(tx, mice)
    if unknown and not create_mice:
        raise LabError(
            f"unknown {'mice' if len(unknown) > 1 else 'mouse'} {', '.join(unknown)}: "
            "pass --create to add them to the lab, or check the names (`labctl mouse list`)"
        )


def create_cohort(
    tx: Transaction, name: str, mice: list[str], *, create_mice: bool = False
) -> list[str]:
    """Create the cohort; returns the mice that were new to the lab.

    Mice the lab does not know are refused (nothing is created) unless ``create_mice``."""
    check_cohort_name(name)
    _refuse_unknown(tx, mice, create_mice)
    if tx.get(Cohort, name) is not None:
        raise LabError(
            f"cohort {name} already exists; add mice with `labctl cohort add {name} MOUSE...`"
        )
    tx.add(Cohort(name=name, created_at=time.time()))
    tx.flush()
    return add_to_cohort(tx, name, mice, create_mice=create_mice)


def add_to_cohort(
    tx: Transaction, name: str, mice: list[str], *, create_mice: bool = False
) -> list[str]:
    """Add mice; returns the mice that were new to the lab (unknown ones need ``create_mice``)."""
    get_cohort(tx, name)
    _refuse_unknown(tx, mice, create_mice)
    created = []
    position = (
        tx.scalar(select(func.max(CohortMember.position)).where(CohortMember.cohort_name == name))
        or 0
    )
    present = set(cohort_members(tx, name))
    for mouse_id in dict.fromkeys(mice):  # keep the order, drop repeats
        if add_mouse(tx, mouse_id)[1]:
            created.append(mouse_id)
        if mouse_id in present:
            continue
        position += 1
        tx.add(CohortMember(cohort_name=name, mouse_id=mouse_id, position=position))
    tx.flush()
    return created


def remove_from_cohort(tx: Transaction, name: str, mice: list[str]) -> None:
    members = set(cohort_members(tx, name))
    for mouse_id in mice:
        if mouse_id not in members:
            raise LabError(f"mouse {mouse_id} is not in cohort {name}")
        member = tx.get(CohortMember, (name, mouse_id))
        if member is not None:
            tx.delete(member)


def list_cohorts(tx: Transaction) -> list[tuple[str, list[str]]]:
    names = tx.scalars(select(Cohort.name).order_by(Cohort.name))
    return [(name, cohort_members(tx, name)) for name in names]


def cohorts_of(tx: Transaction, mouse_id: str) -> list[str]:
    return list(
        tx.scalars(
            select(CohortMember.cohort_name)
            .where(CohortMember.mouse_id == mouse_id)
            .order_by(CohortMember.cohort_name)
        )
    )


# ---------------------------------------------------------------- listings


@dataclass
class MouseSummary:
    mouse: str
    box: str | None
    cohorts: list[str]
    sessions: int
    last_date: str | None
    notes: str


def mouse_summaries(tx: Transaction, mice: list[str] | None = None) -> list[MouseSummary]:
    ids = mice if mice is not None else list(tx.scalars(select(Mouse.id).order_by(Mouse.id)))
    boxes = {mouse: box for box, mouse in assignments_by_box(tx).items()}
    counts = dict(
        tx.execute(
            select(TrainingSession.mouse_id, func.count())
            .where(TrainingSession.complete.is_(True))
            .group_by(TrainingSession.mouse_id)
        ).all()
    )
    out = []
    for mouse_id in ids:
        mouse = get_mouse(tx, mouse_id)
        last_date = tx.scalar(
            select(TrainingSession.date)
            .where(TrainingSession.mouse_id == mouse_id, TrainingSession.complete.is_(True))
            .order_by(TrainingSession.position.desc(), TrainingSession.id.desc())
            .limit(1)
        )
        out.append(
            MouseSummary(
                mouse=mouse_id,
                box=boxes.get(mouse_id),
                cohorts=cohorts_of(tx, mouse_id),
                sessions=int(counts.get(mouse_id, 0)),
                last_date=last_date,
                notes=mouse.notes,
            )
        )
    return out


def session_rows(tx: Transaction, mouse_id: str) -> list[TrainingSession]:
    """Every session of the mouse (also those still being collected), in training order."""
    return list(
        tx.scalars(
            select(TrainingSession)
            .where(TrainingSession.mouse_id == mouse_id)
            .order_by(TrainingSession.position, TrainingSession.id)
        )
    )


def all_mice(tx: Transaction) -> list[str]:
    return list(tx.scalars(select(Mouse.id).order_by(Mouse.id)))


def assigned_mice(tx: Transaction) -> list[str]:
    """Every mouse that is on a box now, in box order."""
    pairs = sorted(assignments_by_box(tx).items(), key=lambda kv: box_sort_key(kv[0]))
    return [mouse for _, mouse in pairs]


def box_sort_key(box: str) -> tuple[int, int, str]:
    """Boxes "1", "2", "10" sort as numbers; named boxes come after them."""
    return (0, int(box), "") if box.isdigit() else (1, 0, box)


def database_identity(db: Database) -> str:
    """The lab database's identity (migration 0008): the same for every copy of one lab."""
    from sqlalchemy import select

    from controller.models import LabIdentity

    with db.reader() as tx:
        return tx.scalar(select(LabIdentity.id)) or ""
