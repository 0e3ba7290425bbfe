"""Solenoid calibrations: µL per opening per box and spout, with dates, and their warnings.

``labctl calibrate`` opens a spout's solenoid N times for D ms through the box's agent
(:mod:`.dispense`), a person weighs what came out, and :func:`record_calibration`
keeps ``total / N`` µL per opening (1 mg of water is 1 µL). The newest calibration of
a box and spout measured at or before a moment is the one in force then; every reward
of a session is counted at the volume in force when it was given (:mod:`.water`).

Warnings: a spout never calibrated, a calibration older than the lab's maximum age
(default 14 days), and one that differs from the one before it by more than the lab's
limit (default 15 %), which usually means a clogged or leaking valve or a weighing slip.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from controller.db import Transaction
from controller.husbandry.models import Calibration
from controller.husbandry.settings import LabSettings
from controller.lab import LabError, get_box

SPOUTS = ("left", "right")
DAY_S = 86400.0
#: More per opening than any reward valve gives: a total typed in the wrong unit.
MAX_UL_PER_OPENING = 1000.0


def spout_number(name: str) -> int:
    """``left``/``right`` (or 0/1) as the spout index."""
    value = name.strip().lower()
    if value in ("0", "1"):
        return int(value)
    if value not in SPOUTS:
        raise LabError(f"invalid spout {name!r}: expected left or right")
    return SPOUTS.index(value)


def change_pct(new: float, old: float) -> float:
    return 100.0 * (new - old) / old


def record_calibration(
    tx: Transaction,
    box_id: str,
    spout: int,
    *,
    openings: int,
    duration_ms: int,
    total: float,
    unit: str,
    by: str,
    at: float | None = None,
    note: str = "",
) -> Calibration:
    """Store a calibration from a weighed ``total`` (``unit`` "mg" or "ul") of ``openings``."""
    get_box(tx, box_id)
    if spout not in (0, 1):
        raise LabError(f"invalid spout {spout!r}: expected 0 (left) or 1 (right)")
    if openings < 1 or duration_ms < 1:
        raise LabError("a calibration needs at least one opening of at least 1 ms")
    if unit not in ("mg", "ul"):
        raise LabError(f"invalid unit {unit!r}: the total is weighed in mg or measured in ul")
    if not (math.isfinite(total) and total > 0):
        raise LabError(
            f"invalid total {total:g} {unit}: nothing was weighed (is the spout connected?)"
        )
    if total / openings > MAX_UL_PER_OPENING:
        raise LabError(
            f"invalid total {total:g} {unit}: {total / openings:g} ul per opening is more "
            f"than a reward valve gives ({MAX_UL_PER_OPENING:g}); is the total in {unit}?"
        )
    row = Calibration(
        box_id=box_id, spout=spout, openings=openings, duration_ms=duration_ms,
        total_ul=float(total),  # water: 1 mg is 1 µL to well within a weighing's error
        ul_per_opening=float(total) / openings, weighed_in=unit,
        measured_at=time.time() if at is None else at, measured_by=by, note=note,
    )  # fmt: skip
    tx.add(row)
    tx.flush()
    return row


def calibrations(tx: Transaction, box_id: str | None = None) -> list[Calibration]:
    """Calibrations, oldest first (of one box, or of every box)."""
    stmt = select(Calibration)
    if box_id is not None:
        stmt = stmt.where(Calibration.box_id == box_id)
    return list(tx.scalars(stmt.order_by(Calibration.measured_at, Calibration.id)))


class Timeline:
    """A box's calibrations per spout, to look up the one in force at any moment."""

    def __init__(self, rows: Iterable[Calibration]) -> None:
        self.by_spout: dict[int, list[Calibration]] = {0: [], 1: []}
        for row in sorted(rows, key=lambda r: (r.measured_at, r.id)):
            self.by_spout.setdefault(row.spout, []).append(row)
        # The times apart, as plain floats: a year's report looks up ~300,000 rewards.
        self._times = {
            spout: [r.measured_at for r in rows] for spout, rows in self.by_spout.items()
        }
        self._volumes = {
            spout: [(r.ul_per_opening, r.duration_ms) for r in rows]
            for spout, rows in self.by_spout.items()
        }

    @classmethod
    def of_box(cls, tx: Transaction, box_id: str) -> Timeline:
        return cls(calibrations(tx, box_id))

    def at(self, spout: int, t: float) -> Calibration | None:
        """The calibration of ``spout`` in force at ``t``: the newest measured by then."""
        times = self._times.get(spout)
        if not times:
            return None
        index = bisect.bisect_right(times, t) - 1
        return self.by_spout[spout][index] if index >= 0 else None

    def through(self, spout: int, first: float, last: float) -> tuple[bool, Calibration | None]:
        """(True, the calibration of ``spout`` in force from ``first`` to ``last``), or
        (False, None) when another was measured in between."""
        whole, index = self._in_force(spout, first, last)
        return whole, (None if index is None else self.by_spout[spout][index])

    def volume_through(
        self, spout: int, first: float, last: float
    ) -> tuple[bool, tuple[float, float] | None]:
        """:meth:`through` as the calibration's (µL per opening, duration in ms) alone:
        plain numbers, for the tens of thousands of sessions of a year's report."""
        whole, index = self._in_force(spout, first, last)
        return whole, (None if index is None else self._volumes[spout][index])

    def _in_force(self, spout: int, first: float, last: float) -> tuple[bool, int | None]:
        """:meth:`through` by the calibration's index in ``spout``'s list."""
        times = self._times.get(spout)
        if not times:
            return True, None
        index = bisect.bisect_right(times, first)
        if index < len(times) and times[index] <= last:
            return False, None
        return True, (index - 1 if index else None)

    def before(self, row: Calibration) -> Calibration | None:
        """The calibration of the same spout just before ``row``."""
        rows = self.by_spout.get(row.spout, [])
        index = next(i for i, r in enumerate(rows) if r.id == row.id)
        return rows[index - 1] if index > 0 else None


def calibration_warnings(
    tx: Transaction, box_id: str, settings: LabSettings, now: float | None = None
) -> list[str]:
    """What is wrong with the box's calibrations in force now, one line each."""
    now = time.time() if now is None else now
    timeline = Timeline.of_box(tx, box_id)
    out = []
    for spout, name in enumerate(SPOUTS):
        row = timeline.at(spout, now)
        if row is None:
            out.append(f"box {box_id} {name} spout has never been calibrated")
            continue
        out.extend(_row_warnings(timeline, row, settings, now))
    return out


def _row_warnings(
    timeline: Timeline, row: Calibration, settings: LabSettings, now: float
) -> list[str]:
    name = SPOUTS[row.spout]
    out = []
    age_days = (now - row.measured_at) / DAY_S
    if age_days > settings.calibration_max_age_days:
        out.append(
            f"box {row.box_id} {name} spout was calibrated {age_days:.0f} days ago "
            f"(older than {settings.calibration_max_age_days:g} days): calibrate it again"
        )
    previous = timeline.before(row)
    if previous is not None:
        change = change_pct(row.ul_per_opening, previous.ul_per_opening)
        if abs(change) > settings.calibration_change_pct:
            out.append(
                f"box {row.box_id} {name} spout gives {row.ul_per_opening:.2f} ul per opening, "
                f"{change:+.0f} % from {previous.ul_per_opening:.2f} ul the time before "
                f"(more than {settings.calibration_change_pct:g} %): check the valve and "
                "calibrate again"
            )
    return out


def new_calibration_warnings(tx: Transaction, row: Calibration, settings: LabSettings) -> list[str]:
    """Warnings about a calibration just stored (a large change from the one before)."""
    return _row_warnings(Timeline.of_box(tx, row.box_id), row, settings, row.measured_at)


def describe(row: Calibration) -> dict[str, Any]:
    """A calibration as JSON-ready values (for listings and session metadata)."""
    return {
        "box": row.box_id,
        "spout": SPOUTS[row.spout],
        "ul_per_opening": round(row.ul_per_opening, 4),
        "duration_ms": row.duration_ms,
        "openings": row.openings,
        "total_ul": row.total_ul,
        "measured_at": row.measured_at,
        "measured_by": row.measured_by,
    }


def calibration_metadata(tx: Transaction, box_id: str, t: float) -> dict[str, Any] | None:
    """The calibration in force on the box at ``t``, as a session's start metadata carries it
    (``{"left": {...}, "right": {...}}``, a spout never calibrated as None); None when the
    box has no calibration at all."""
    timeline = Timeline.of_box(tx, box_id)
    spouts = {name: timeline.at(spout, t) for spout, name in enumerate(SPOUTS)}
    if all(row is None for row in spouts.values()):
        return None
    return {
        name: None if row is None else {k: v for k, v in describe(row).items() if k != "box"}
        for name, row in spouts.items()
    }
