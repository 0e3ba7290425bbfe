"""Water per mouse and day: earned in the box, given by hand, required, still owed.

Earned: every reward of the day's sessions, each at the volume of its box's
calibration in force when it was given (:class:`~.calibration.Timeline`), scaled to
the session's own reward duration when that differs from the calibration's. A correct
trial is rewarded at its ``end`` from its target spout; a shaping trial was also
rewarded at its ``start`` (DESIGN §3). A reward with no calibration in force is
counted at the session's nominal ``reward_volume_ul`` and reported as uncalibrated.
A session still being collected counts its rewards so far at the calibration in force
at its start.

Required: the lab's rule (:class:`~.settings.WaterRule`), e.g. 40 µL per gram of the
baseline in force that day, or a fixed volume, for a mouse on restriction (one with a
baseline by then; before, nothing is required). Owed: what is required minus what was
earned and given, never below zero.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import and_, or_, select

from controller.db import Transaction
from controller.husbandry.calibration import SPOUTS, Timeline
from controller.husbandry.days import day_bounds
from controller.husbandry.figures import durations, number, rewards
from controller.husbandry.models import WaterGiven
from controller.husbandry.settings import LabSettings
from controller.husbandry.weights import FUTURE_SLACK_S, baseline_of
from controller.lab import LabError, box_sort_key, get_mouse
from controller.models import TrainingSession

WATER_KINDS = ("water", "supplement", "gel")
#: Volume per reward of sessions that predate the ``reward_volume_ul`` key (as analysis).
NOMINAL_UL = 6.0
#: More than this by hand at once is surely a typing mistake (µL vs mL).
MAX_GIVEN_UL = 5000.0
#: More than this by hand at once is more than a mouse's whole day's need (about 1 mL):
#: stored only when the person confirms it (or gives ``--force``).
CONFIRM_OVER_UL = 1500.0


class NeedsConfirmation(LabError):
    """Water over :data:`CONFIRM_OVER_UL` recorded without the person's confirmation."""


def over_limit(microliters: float) -> str | None:
    """What a volume over the lab's limit for one entry makes the person confirm; None
    at or under it. labctl water asks it; the care page sends ``confirm``."""
    if microliters <= CONFIRM_OVER_UL:
        return None
    return (
        f"{microliters:g} µL is over the lab's limit of {CONFIRM_OVER_UL:g} µL at once "
        "(a mistake for µL and mL?)"
    )


def give_water(
    tx: Transaction,
    mouse_id: str,
    microliters: float,
    *,
    by: str,
    kind: str = "water",
    at: float | None = None,
    note: str = "",
) -> WaterGiven:
    get_mouse(tx, mouse_id)
    if kind not in WATER_KINDS:
        raise LabError(f"invalid kind {kind!r}: expected one of {', '.join(WATER_KINDS)}")
    if not 0 < microliters <= MAX_GIVEN_UL:
        raise LabError(
            f"invalid volume {microliters:g} ul: expected more than 0 and at most "
            f"{MAX_GIVEN_UL:g} ul"
        )
    now = time.time()
    if at is not None and at > now + FUTURE_SLACK_S:
        raise LabError(f"--at {time.ctime(at)} is in the future")
    row = WaterGiven(
        mouse_id=mouse_id, microliters=microliters, kind=kind,
        given_at=now if at is None else at, recorded_at=now, given_by=by, note=note,
    )  # fmt: skip
    tx.add(row)
    tx.flush()
    return row


def water_given(tx: Transaction, mouse_id: str, day: str) -> list[WaterGiven]:
    start, end = day_bounds(day)
    return list(
        tx.scalars(
            select(WaterGiven)
            .where(
                WaterGiven.mouse_id == mouse_id,
                WaterGiven.voided_at.is_(None),
                WaterGiven.given_at >= start,
                WaterGiven.given_at < end,
            )
            .order_by(WaterGiven.given_at, WaterGiven.id)
        )
    )


def sessions_of_day(tx: Transaction, mouse_id: str, day: str) -> list[TrainingSession]:
    """The mouse's sessions that started on ``day`` (or are dated so, without a start time)."""
    start, end = day_bounds(day)
    return list(
        tx.scalars(
            select(TrainingSession)
            .where(
                TrainingSession.mouse_id == mouse_id,
                or_(
                    and_(TrainingSession.start_time >= start, TrainingSession.start_time < end),
                    and_(TrainingSession.start_time.is_(None), TrainingSession.date == day),
                ),
            )
            .order_by(TrainingSession.position, TrainingSession.id)
        )
    )


@dataclass(slots=True)  # a year's report adds up ~70,000 sessions' water
class Earned:
    """Water earned in the box: the volume, and how it was reckoned."""

    ul: float = 0.0
    rewards: int = 0
    #: Rewards counted at a nominal volume because no calibration was in force.
    uncalibrated: int = 0
    #: The (box, spout) pairs those rewards came from: the spouts to calibrate.
    uncalibrated_spouts: set[tuple[str, int]] = field(default_factory=set)
    #: Sessions still being collected (their rewards so far are counted).
    provisional: int = 0

    def add(self, part: Earned) -> None:
        """Count ``part`` (one session's) in this total."""
        self.ul += part.ul
        self.rewards += part.rewards
        self.uncalibrated += part.uncalibrated
        self.uncalibrated_spouts |= part.uncalibrated_spouts
        self.provisional += part.provisional


def earned_in_session(
    row: TrainingSession, timelines: dict[str, Timeline], data: Any = None
) -> Earned:
    """Water earned in one session (``timelines``: per box; ``data``: its dict, when the
    caller has parsed ``row.data`` already)."""
    out = Earned()
    timeline = timelines.get(row.box) if row.box else None
    if row.data is None:
        return provisional(row.reward_count, row.start_time, timeline, row.box)
    if data is None:
        data = json.loads(row.data)
    if not isinstance(data, dict):
        return out
    nominal = number(data.get("reward_volume_ul")) or NOMINAL_UL
    spout_ms = durations(data)
    for spout, t in rewards(data):
        out.rewards += 1
        ul, calibrated = reward_volume(timeline, spout, t, spout_ms[spout], nominal)
        out.ul += ul
        if not calibrated:
            out.uncalibrated += 1
            if row.box:
                out.uncalibrated_spouts.add((row.box, spout))
    return out


def reward_volume(
    timeline: Timeline | None, spout: int, t: float, duration_ms: float | None, nominal: float
) -> tuple[float, bool]:
    """(µL, whether a calibration was in force) of one reward from ``spout`` at ``t``: the
    calibration's volume scaled to the valve's own open time, else the ``nominal`` volume."""
    calibration = timeline.at(spout, t) if timeline is not None else None
    if calibration is None:
        return nominal, False
    scale = duration_ms / calibration.duration_ms if duration_ms else 1.0
    return calibration.ul_per_opening * scale, True


def provisional(
    reward_count: int, start: float | None, timeline: Timeline | None, box: str | None = None
) -> Earned:
    """A session still being collected: its rewards so far, at the calibration in force at
    its start (the spouts without one named with ``box``, for the water warning)."""
    out = Earned(provisional=1, rewards=reward_count)
    volumes = []
    if timeline is not None and start is not None:
        volumes = [
            c.ul_per_opening for c in (timeline.at(s, start) for s in (0, 1)) if c is not None
        ]
    if volumes:
        out.ul = reward_count * sum(volumes) / len(volumes)
    else:
        out.ul, out.uncalibrated = reward_count * NOMINAL_UL, reward_count
        if reward_count and box:
            out.uncalibrated_spouts |= {
                (box, s)
                for s in (0, 1)
                if timeline is None or start is None or not timeline.at(s, start)
            }
    return out


class StoredFigures(Protocol):
    """A stored session's reward figures (controller.husbandry.figures's columns)."""

    @property
    def box(self) -> str | None: ...

    @property
    def reward_count(self) -> int: ...

    @property
    def left_rewards(self) -> int: ...

    @property
    def right_rewards(self) -> int: ...

    @property
    def first_reward_at(self) -> float | None: ...

    @property
    def last_reward_at(self) -> float | None: ...

    @property
    def reward_ul(self) -> float | None: ...

    @property
    def left_reward_ms(self) -> float | None: ...

    @property
    def right_reward_ms(self) -> float | None: ...


def earned_of_figures(row: StoredFigures, timeline: Timeline | None) -> Earned | None:
    """What :func:`earned_in_session` finds for a complete session, from its stored figures
    alone; None when they cannot tell (a calibration changed between its first and last
    reward, or figures never computed): then the caller reads the session."""
    out = Earned()
    return out if add_earned_of_figures(out, row, timeline) else None


def add_earned_of_figures(total: Earned, row: StoredFigures, timeline: Timeline | None) -> bool:
    """Count in ``total`` what :func:`earned_of_figures` finds for ``row``, as
    :meth:`Earned.add` would; False, and ``total`` untouched, when the figures cannot tell.
    A year's report reckons ~70,000 sessions: each figure is read once, into a local,
    and no Earned is made per session."""
    left, right = row.left_rewards or 0, row.right_rewards or 0
    first = row.first_reward_at
    if not (left or right):
        # Rewards but no figures: stored by a path that did not compute them.
        return not (row.reward_count and first is None)
    last = row.last_reward_at
    if first is None or last is None:
        return False
    ul, uncalibrated, spouts = 0.0, 0, []
    for spout, count, duration in ((0, left, row.left_reward_ms), (1, right, row.right_reward_ms)):
        if not count:
            continue
        volume = None
        if timeline is not None:
            steady, volume = timeline.volume_through(spout, first, last)
            if not steady:
                return False
        if volume is None:
            ul += count * (row.reward_ul or NOMINAL_UL)
            uncalibrated += count
            if row.box:
                spouts.append((row.box, spout))
            continue
        ul_per_opening, calibrated_ms = volume
        scale = duration / calibrated_ms if duration else 1.0
        ul += count * ul_per_opening * scale
    total.ul += ul
    total.rewards += left + right
    if uncalibrated:
        total.uncalibrated += uncalibrated
        total.uncalibrated_spouts.update(spouts)
    return True


def earned_on_day(
    tx: Transaction,
    mouse_id: str,
    day: str,
    *,
    rows: list[TrainingSession] | None = None,
    parsed: dict[int, Any] | None = None,
    timelines: dict[str, Timeline] | None = None,
) -> Earned:
    """The day's water earned in the box. ``rows`` (the day's sessions), ``parsed`` (their
    dicts by row id) and ``timelines`` (per box) let a caller that has them already, such
    as the report over many days, avoid reading them again."""
    total = Earned()
    timelines = {} if timelines is None else timelines
    rows = sessions_of_day(tx, mouse_id, day) if rows is None else rows
    for row in rows:
        if row.box and row.box not in timelines:
            timelines[row.box] = Timeline.of_box(tx, row.box)
        total.add(earned_in_session(row, timelines, (parsed or {}).get(row.id)))
    return total


@dataclass
class WaterDay:
    """One mouse's water on one day, in µL."""

    mouse: str
    day: str
    earned: Earned
    given_ul: float
    given_by_kind: dict[str, float]
    requirement_ul: float | None
    rule: str
    warnings: list[str] = field(default_factory=list)

    @property
    def total_ul(self) -> float:
        return self.earned.ul + self.given_ul

    @property
    def owed_ul(self) -> float | None:
        if self.requirement_ul is None:
            return None
        return max(0.0, self.requirement_ul - self.total_ul)


def water_day(
    tx: Transaction,
    mouse_id: str,
    day: str,
    settings: LabSettings,
    *,
    rows: list[TrainingSession] | None = None,
    parsed: dict[int, Any] | None = None,
    timelines: dict[str, Timeline] | None = None,
) -> WaterDay:
    earned = earned_on_day(tx, mouse_id, day, rows=rows, parsed=parsed, timelines=timelines)
    given = water_given(tx, mouse_id, day)
    by_kind: dict[str, float] = {}
    for row in given:
        by_kind[row.kind] = by_kind.get(row.kind, 0.0) + row.microliters
    _, end = day_bounds(day)
    baseline = baseline_of(tx, mouse_id, at=end)
    return reckon_water_day(
        mouse_id, day, earned, by_kind, baseline.grams if baseline else None, settings
    )


def reckon_water_day(
    mouse_id: str,
    day: str,
    earned: Earned,
    by_kind: dict[str, float],
    baseline_grams: float | None,
    settings: LabSettings,
) -> WaterDay:
    """The day's water from what was earned and given and the baseline in force."""
    rule = settings.water_requirement
    # A mouse is on restriction from its first baseline on; before, nothing is owed.
    requirement = rule.requirement(baseline_grams) if baseline_grams is not None else None
    # By position: a year's report reckons ~36,500 days, and keywords cost a third more.
    out = WaterDay(
        mouse_id, day, earned, sum(by_kind.values()), by_kind, requirement, rule.text, []
    )
    if earned.uncalibrated:
        spouts = sorted(earned.uncalibrated_spouts, key=lambda bs: (box_sort_key(bs[0]), bs[1]))
        where = ", ".join(f"box {box} {SPOUTS[spout]} spout" for box, spout in spouts)
        fix = "; ".join(
            f"labctl calibrate --box {box} --spout {SPOUTS[spout]}" for box, spout in spouts
        )
        out.warnings.append(
            f"{earned.uncalibrated} reward(s) counted at the nominal volume: no calibration "
            f"of the {where or 'box'} was in force" + (f" ({fix})" if fix else "")
        )
    return out
