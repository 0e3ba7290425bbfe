"""What husbandry adds to a start: the weight gate and everything a start records of it.

The weight gate, overrides, the weight given with the start, the calibration in the
start metadata, and starting a schedule's shift.

:func:`controller.control.start` calls these. :func:`prepare_start` runs before anything
is sent: it records the weight given as a weighing, checks every mouse's weight
(:func:`~.weights.weight_check`) and decides who may start; a mouse the check warns
about starts only when forced, with a reason.
:meth:`StartPlan.metadata_for` gives each start command the original's ``weight``
field and ``reward_calibration``, the box's calibration in force (the session's start
document and per-mouse JSON carry it as metadata). :func:`finish_start` keeps the
overrides, linked to the sessions that did start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.db import Database
from controller.husbandry.calibration import calibration_metadata, calibration_warnings
from controller.husbandry.models import Weighing
from controller.husbandry.schedule import Slot, place_shift, shift_slots
from controller.husbandry.settings import lab_settings
from controller.husbandry.weights import WeightCheck, record_override, record_weighing, weight_check
from controller.lab import running_box
from shared.protocol import Status


@dataclass
class StartPlan:
    """Who may start, who may not and why, and what each start command carries."""

    db: Database
    allowed: list[str]
    #: Mouse -> what the weight check found (no override was given).
    refused: dict[str, str] = field(default_factory=dict)
    forced: dict[str, WeightCheck] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Stale or drifting calibrations of the boxes started on (found while planning).
    box_warnings: list[str] = field(default_factory=list)
    weight: float | None = None
    weighing_id: int | None = None
    #: Mouse -> grams of its latest weighing of the day: the session's ``weight`` when the
    #: start gives none (the original stored the day's weight with each session).
    day_weights: dict[str, float] = field(default_factory=dict)
    by: str = ""
    reason: str = ""

    def metadata_for(self, mouse: str, box: str) -> dict[str, Any]:
        """The start's own metadata; notes the box's calibration warnings on the way."""
        extra: dict[str, Any] = {}
        if self.weight is not None:
            extra["weight"] = self.weight
        elif mouse in self.day_weights:
            extra["weight"] = self.day_weights[mouse]
        now = time.time()
        with self.db.reader() as tx:
            calibration = calibration_metadata(tx, box, now)
            if calibration is not None:  # a box never calibrated: see `labctl calibrations`
                for line in calibration_warnings(tx, box, lab_settings(tx), now):
                    if line not in self.box_warnings:
                        self.box_warnings.append(line)
        if calibration is not None:
            extra["reward_calibration"] = calibration
        return extra


def prepare_start(
    db: Database,
    mice: Sequence[str],
    *,
    weight: float | None,
    force: bool,
    reason: str | None,
    by: str,
    weight_in_metadata: bool = False,
) -> StartPlan:
    """Record ``weight`` (of the one mouse) and check every mouse's weight.

    Without a weight (given here or as ``--meta weight=G``: ``weight_in_metadata``), each
    session stores its mouse's latest weighing of the day as its ``weight``.

    The rules between these (a weight is one mouse's, forcing needs a reason) are the
    request's: :class:`controller.control.StartRequest` checks them before this runs."""
    plan = StartPlan(db=db, allowed=[], weight=weight, by=by, reason=(reason or "").strip())
    with db.session() as tx:
        if weight is not None:
            plan.weighing_id = record_weighing(tx, mice[0], weight, by=by).id
        settings = lab_settings(tx)
        checks = [weight_check(tx, mouse, settings) for mouse in mice]
    for check in checks:
        if weight is None and not weight_in_metadata and check.weight_grams is not None:
            plan.day_weights[check.mouse] = check.weight_grams
        plan.warnings.extend(check.warnings)
        if not check.blocks_start:
            plan.allowed.append(check.mouse)
        elif force:
            plan.forced[check.mouse] = check
            plan.allowed.append(check.mouse)
        else:
            plan.refused[check.mouse] = "; ".join(check.warnings)
    return plan


def finish_start(plan: StartPlan, started: Mapping[str, str | None]) -> None:
    """Keep the overrides of the sessions that started (``started``: mouse -> session id);
    link the weighing to its session."""
    with plan.db.session() as tx:
        for mouse, check in plan.forced.items():
            if mouse in started:
                record_override(
                    tx, check, by=plan.by, reason=plan.reason, session_id=started[mouse]
                )
        if plan.weighing_id is not None:
            row = tx.get(Weighing, plan.weighing_id)
            if row is not None and row.mouse_id in started:
                row.session_id = started[row.mouse_id]


@dataclass
class ShiftPlacement:
    """A shift put on its boxes: who can start, what moved, who waits and why."""

    mice: list[str]
    notes: list[str]
    waiting: dict[str, str]


def place_shift_mice(
    db: Database, cohort: str, shift: int, statuses: Mapping[str, Status]
) -> ShiftPlacement:
    """Put the shift's mice on their boxes (the previous shift's mice come off them).

    A box still running a session keeps its mouse, and a mouse whose session runs
    elsewhere is not moved: those mice wait, with the reason, and are not started.
    """
    with db.session() as tx:
        slots = shift_slots(tx, cohort, shift)
        free: list[Slot] = []
        placed = ShiftPlacement([], [], {})
        for slot in slots:
            status = statuses.get(slot.box)
            elsewhere = running_box(statuses, slot.mouse)
            if status is not None and status.state in ("running", "stopping"):
                who = f" of {status.mouse}" if status.mouse else ""
                placed.waiting[slot.mouse] = (
                    f"box {slot.box} still runs a session{who}: start shift {shift} again "
                    "once it has ended and the mouse is in the box"
                )
            elif elsewhere is not None and elsewhere != slot.box:
                placed.waiting[slot.mouse] = f"its session still runs on box {elsewhere}"
            else:
                free.append(slot)
        for result in place_shift(tx, free, statuses):
            if result.replaced:
                placed.notes.append(
                    f"took {result.replaced} off box {result.box} for {result.mouse}"
                )
            if result.moved_from:
                placed.notes.append(f"moved {result.mouse} from box {result.moved_from}")
            if not result.already:
                placed.notes.append(f"{result.mouse} goes in box {result.box} (shift {shift})")
        placed.mice = [s.mouse for s in free]
    return placed
