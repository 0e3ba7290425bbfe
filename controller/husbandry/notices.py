"""What ``labctl status`` adds about the animals and the boxes' care.

Weight warnings of the mice on the boxes, drifting or stale calibrations, and each idle
box's next scheduled mouse.

The next mouse is only named, never started: a person places it in the box and
starts its shift.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.db import Transaction
from controller.husbandry.calibration import Timeline, calibration_warnings
from controller.husbandry.schedule import NextMouse, mice_run_on, next_mice
from controller.husbandry.settings import lab_settings
from controller.husbandry.weights import weight_check
from controller.lab import assignments_by_box, box_sort_key
from shared.days import session_day


@dataclass
class Notices:
    warnings: list[str] = field(default_factory=list)
    next_mice: dict[str, NextMouse] = field(default_factory=dict)

    def next_lines(self) -> list[str]:
        return [
            f"box {n.box}: next is {n.mouse} (cohort {n.cohort} shift {n.shift}): place it, "
            f"then `labctl start --cohort {n.cohort} --shift {n.shift}`"
            for n in self.next_mice.values()
        ]


def box_notices(tx: Transaction, states: Mapping[str, str]) -> Notices:
    """Notices for the boxes whose states (``idle``, ``running``, ...) are ``states``."""
    now = time.time()
    settings = lab_settings(tx)
    out = Notices()
    on_boxes = assignments_by_box(tx)
    for box in sorted(on_boxes, key=box_sort_key):
        out.warnings.extend(weight_check(tx, on_boxes[box], settings).warnings)
    for box in sorted(states, key=box_sort_key):
        # A box never calibrated is listed by `labctl today` and `labctl calibrations`;
        # here only calibrations that went stale or drifted.
        if any(Timeline.of_box(tx, box).by_spout.values()):
            out.warnings.extend(
                w for w in calibration_warnings(tx, box, settings, now)
                if "never been calibrated" not in w
            )  # fmt: skip
    out.next_mice = next_for_idle_boxes(tx, states, now)
    return out


def next_for_idle_boxes(
    tx: Transaction, states: Mapping[str, str], now: float | None = None
) -> dict[str, NextMouse]:
    """Each idle box's next scheduled mouse, once the mouse on it (if any) has had its
    session today (``labctl status`` and ``labctl monitor``)."""
    now = time.time() if now is None else now
    on_boxes = assignments_by_box(tx)
    done = mice_run_on(tx, session_day(now))
    out = {}
    for box, upcoming in next_mice(tx, now).items():
        current = on_boxes.get(box)
        if states.get(box) == "idle" and (current is None or current in done):
            out[box] = upcoming
    return out
