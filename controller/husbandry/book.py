"""The lab's records of a span of days read in a few queries, for the day rows of
``labctl report`` and ``labctl today``.

A year of 100 mice is ~36,500 day rows; asking the database for each row's weighing,
baseline, water and sessions (as :func:`.report.day_row` does for one) would be a few
hundred thousand queries. Here each kind of record of the span is read once, and the
sessions only as their stored figures (:mod:`.figures`), never their trials; a session
whose figures cannot tell its water (a calibration changed mid-session) is read whole.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select

from controller.db import Transaction
from controller.husbandry.calibration import Timeline, calibrations
from controller.husbandry.days import day_bounds, days_between
from controller.husbandry.models import (
    Baseline,
    LabSetting,
    ScheduleEntry,
    WaterGiven,
    Weighing,
    WeightOverride,
)
from controller.husbandry.settings import KEYS, LabSettings, parse_setting
from controller.husbandry.water import Earned, earned_in_session, earned_of_figures, provisional
from controller.husbandry.weights import RESTRICTION_ENDED
from controller.models import TrainingSession

S = TrainingSession


@dataclass
class SessionFigures:
    """A stored session as the day rows need it: no ``data``, no trials."""

    pk: int
    mouse: str
    box: str | None
    start_time: float | None
    date: str | None
    collecting: bool
    trial_count: int
    reward_count: int
    left_rewards: int
    right_rewards: int
    first_reward_at: float | None
    last_reward_at: float | None
    reward_ul: float | None
    left_reward_ms: float | None
    right_reward_ms: float | None


class RecordBook:
    """Every record the day rows from ``first`` to ``last`` read, grouped per mouse and day."""

    def __init__(self, tx: Transaction, first: str, last: str) -> None:
        self.tx = tx
        self.days = days_between(first, last)
        self.starts = [day_bounds(d)[0] for d in self.days]
        start, end = self.starts[0], day_bounds(self.days[-1])[1]
        self.end = end
        self.baselines: dict[str, list[Baseline]] = defaultdict(list)
        for b in tx.scalars(select(Baseline).order_by(Baseline.set_at, Baseline.id)):
            self.baselines[b.mouse_id].append(b)
        self._baseline_times = {m: [b.set_at for b in rows] for m, rows in self.baselines.items()}
        self.weighings: dict[tuple[str, str], Weighing] = {}
        for w in tx.scalars(
            select(Weighing)
            .where(Weighing.weighed_at >= start, Weighing.weighed_at < end)
            .where(Weighing.voided_at.is_(None))
            .order_by(Weighing.weighed_at, Weighing.id)
        ):
            self.weighings[(w.mouse_id, self.day_in_span(w.weighed_at))] = w  # the day's last
        self.given: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for g in tx.scalars(
            select(WaterGiven)
            .where(WaterGiven.given_at >= start, WaterGiven.given_at < end)
            .where(WaterGiven.voided_at.is_(None))
            .order_by(WaterGiven.given_at, WaterGiven.id)
        ):
            kinds = self.given[(g.mouse_id, self.day_in_span(g.given_at))]
            kinds[g.kind] = kinds.get(g.kind, 0.0) + g.microliters
        self.overrides: dict[tuple[str, str], list[WeightOverride]] = defaultdict(list)
        for o in tx.scalars(
            select(WeightOverride)
            .where(WeightOverride.at >= start, WeightOverride.at < end)
            .order_by(WeightOverride.at, WeightOverride.id)
        ):
            self.overrides[(o.mouse_id, self.day_in_span(o.at))].append(o)
        self._recorded: dict[str, set[str]] | None = None
        self.sessions: dict[tuple[str, str], list[SessionFigures]] = defaultdict(list)
        #: Mice with a session that started on the day (as report's _mice_with_sessions).
        self.started: dict[str, set[str]] = defaultdict(set)
        self._read_sessions(start, end, first, last)
        self.settings_rows = list(
            tx.scalars(select(LabSetting).order_by(LabSetting.set_at, LabSetting.id))
        )
        slots: dict[str, ScheduleEntry] = {}
        for e in tx.scalars(
            select(ScheduleEntry)
            .where(ScheduleEntry.valid_until.is_(None))
            .order_by(ScheduleEntry.cohort_name)
        ):
            slots.setdefault(e.mouse_id, e)  # the first cohort's, as slot_of
        self.slots = slots
        self.timelines: dict[str, Timeline] = {}
        by_box: dict[str, list[Any]] = defaultdict(list)
        for c in calibrations(tx):
            by_box[c.box_id].append(c)
        self.timelines = {box: Timeline(rows) for box, rows in by_box.items()}

    def _read_sessions(self, start: float, end: float, first: str, last: str) -> None:
        columns = (
            S.id, S.mouse_id, S.box, S.start_time, S.date, S.data.is_(None), S.trial_count,
            S.reward_count, S.left_rewards, S.right_rewards, S.first_reward_at,
            S.last_reward_at, S.reward_ul, S.left_reward_ms, S.right_reward_ms,
        )  # fmt: skip
        stmt = (
            select(*columns)
            .where(
                or_(
                    and_(S.start_time >= start, S.start_time < end),
                    and_(S.start_time.is_(None), S.date >= first, S.date <= last),
                )
            )
            .order_by(S.mouse_id, S.position, S.id)
        )
        for values in self.tx.execute(stmt):
            f = SessionFigures(*tuple[Any, ...](values))
            if f.start_time is not None:
                day = self.day_in_span(f.start_time)
                self.started[day].add(f.mouse)
            elif f.date in self._day_set:
                day = f.date
            else:
                continue
            self.sessions[(f.mouse, day)].append(f)

    @property
    def _day_set(self) -> set[str]:
        found: set[str] | None = getattr(self, "_days_cache", None)
        if found is None:
            found = set(self.days)
            self._days_cache = found
        return found

    def day_in_span(self, t: float) -> str:
        """The day (of the span) that ``t`` falls on."""
        return self.days[bisect.bisect_right(self.starts, t) - 1]

    def baseline_of(self, mouse: str, at: float) -> Baseline | None:
        """As weights.baseline_of: the newest set before ``at``, unless it ended restriction."""
        times = self._baseline_times.get(mouse)
        if not times:
            return None
        index = bisect.bisect_left(times, at) - 1
        if index < 0:
            return None
        newest = self.baselines[mouse][index]
        return None if newest.method == RESTRICTION_ENDED else newest

    def restricted(self, at: float) -> set[str]:
        """Mice on water restriction at ``at`` (as report's _restricted_mice)."""
        return {m for m in self.baselines if self.baseline_of(m, at) is not None}

    def with_records(self, day: str) -> set[str]:
        """Mice with a weighing, water by hand or an override on ``day``."""
        if self._recorded is None:  # indexed by day once: the report asks for every day
            self._recorded = defaultdict(set)
            for m, d in self.weighings:
                self._recorded[d].add(m)
            for (m, d), kinds in self.given.items():
                if kinds:
                    self._recorded[d].add(m)
            for m, d in self.overrides:
                self._recorded[d].add(m)
        return set(self._recorded.get(day, ()))

    def settings_at(self, at: float) -> LabSettings:
        """As settings.lab_settings(at=...): the newest value of each key set before ``at``."""
        values: dict[str, Any] = {}
        for row in self.settings_rows:
            if row.set_at >= at:
                break
            if row.key in KEYS:
                values[row.key] = parse_setting(row.key, row.value)
        return LabSettings(**values)

    def earned(self, sessions: list[SessionFigures]) -> Earned:
        """The water earned in ``sessions``, from their figures (read whole only if need be)."""
        total = Earned()
        for f in sessions:
            timeline = self.timelines.get(f.box) if f.box else None
            if f.collecting:
                part = provisional(f.reward_count, f.start_time, timeline, f.box)
            else:
                found = earned_of_figures(f, timeline)
                if found is None:
                    row = self.tx.get(TrainingSession, f.pk)
                    assert row is not None and row.data is not None
                    timelines = {f.box: timeline} if f.box and timeline else {}
                    found = earned_in_session(row, timelines, json.loads(row.data))
                part = found
            total.ul += part.ul
            total.rewards += part.rewards
            total.uncalibrated += part.uncalibrated
            total.provisional += part.provisional
            total.uncalibrated_spouts |= part.uncalibrated_spouts
        return total
