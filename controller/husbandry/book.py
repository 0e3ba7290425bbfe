"""The lab's records of a span of days read in a few queries, for the day rows of
``labctl report`` and ``labctl today``.

A year of 100 mice is ~36,500 day rows; asking the database for each row's weighing,
baseline, water and sessions (as :func:`.report.day_row` does for one) would be a few
hundred thousand queries. Here each kind of record of the span is read once, and the
sessions only as their stored figures (:mod:`.figures`: water, correct %, d'), never
their trials; a session whose figures cannot tell its water (a calibration changed
mid-session) is read whole.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import json
import operator
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, or_, select

from controller.db import Transaction
from controller.husbandry import figures
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
from controller.husbandry.water import (
    Earned,
    add_earned_of_figures,
    earned_in_session,
    provisional,
)
from controller.husbandry.weights import RESTRICTION_ENDED, grace_day, restriction_began
from controller.models import TrainingSession

S = TrainingSession
W = WaterGiven


class SessionFigures(NamedTuple):
    """A stored session as the day rows need it: no ``data``, no trials."""

    pk: int
    mouse: str
    box: str | None
    start_time: float | None
    date: str | None
    position: float
    trial_count: int
    reward_count: int
    left_rewards: int
    right_rewards: int
    first_reward_at: float | None
    last_reward_at: float | None
    reward_ul: float | None
    left_reward_ms: float | None
    right_reward_ms: float | None
    # The training figures, read only for ``labctl today`` (the report has no such column).
    listed_trials: int = 0
    correct_trials: int = 0
    signal_trials: int = 0
    hits: int = 0
    noise_trials: int = 0
    false_alarms: int = 0
    correction_trials: int = 0
    first_touch_left: bool | None = None
    first_touch_incorrect: bool | None = None
    last_touch_incorrect: bool = False
    #: Still being collected: no text yet (set from ``ix_sessions_collecting``).
    collecting: bool = False


#: The columns of :class:`SessionFigures`, in order: the water's (all in the index
#: ``ix_sessions_start_figures``, so the report reads no session row), then the training's.
WATER_SELECT = (
    S.id, S.mouse_id, S.box, S.start_time, S.date, S.position, S.trial_count, S.reward_count,
    S.left_rewards, S.right_rewards, S.first_reward_at, S.last_reward_at, S.reward_ul,
    S.left_reward_ms, S.right_reward_ms,
)  # fmt: skip
TRAINING_SELECT = tuple(S.__table__.c[name] for name in figures.TRAINING_COLUMNS)


def sessions_statement(
    start: float, end: float, first: str, last: str, *, training: bool = False
) -> Select[Any]:
    """The sessions that started from ``start`` to ``end`` (or, without a start time, are
    dated ``first`` to ``last``), as :class:`SessionFigures` values, in no set order (the
    book puts each day's in export order: sorting a year's in SQL costs more).
    Only the columns asked for, as plain rows: a year is ~70,000 sessions, and each value
    fetched costs more than anything the day rows then do with it."""
    columns = WATER_SELECT + TRAINING_SELECT if training else WATER_SELECT
    return select(*columns).where(
        or_(
            and_(S.start_time >= start, S.start_time < end),
            and_(S.start_time.is_(None), S.date >= first, S.date <= last),
        )
    )


class Slot(NamedTuple):
    """A mouse's place in the schedule (its first cohort's entry), as plain values."""

    cohort_name: str
    shift: int
    box_id: str


class Weighed(NamedTuple):
    """A weighing as the day rows need it (a year has tens of thousands: no ORM objects)."""

    grams: float
    weighed_at: float


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """No cyclic garbage collection while a span's records are read and its rows made: the
    tens of thousands of rows hold no cycles, and the collections their allocation would
    set off cost a third of a year's report. (Left off if another caller turned it off.)"""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: The order sessions are exported and their water added up in.
_export_order = operator.attrgetter("position", "pk")


class RecordBook:
    """Every record the day rows from ``first`` to ``last`` read, grouped per mouse and day."""

    def __init__(self, tx: Transaction, first: str, last: str, *, training: bool = False) -> None:
        self.tx = tx
        self.days = days_between(first, last)
        self.starts = [day_bounds(d)[0] for d in self.days]
        start, end = self.starts[0], day_bounds(self.days[-1])[1]
        self.end = end
        self.baselines: dict[str, list[Baseline]] = defaultdict(list)
        for b in tx.scalars(select(Baseline).order_by(Baseline.set_at, Baseline.id)):
            self.baselines[b.mouse_id].append(b)
        self._baseline_times = {m: [b.set_at for b in rows] for m, rows in self.baselines.items()}
        # Each baseline's grams as a plain number (None: the end of a restriction): every
        # row of the report asks for one, and an ORM attribute costs more than the rest.
        self._baseline_grams = {
            m: [None if b.method == RESTRICTION_ENDED else b.grams for b in rows]
            for m, rows in self.baselines.items()
        }
        conn = tx.connection()
        day_of, starts, days = bisect.bisect_right, self.starts, self.days  # day_in_span, inline
        self.weighings: dict[tuple[str, str], Weighed] = {}
        for mouse, grams, weighed_at in conn.execute(
            select(Weighing.mouse_id, Weighing.grams, Weighing.weighed_at)
            .where(Weighing.weighed_at >= start, Weighing.weighed_at < end)
            .where(Weighing.voided_at.is_(None))
            .order_by(Weighing.weighed_at, Weighing.id)
        ).all():
            day = days[day_of(starts, weighed_at) - 1]
            self.weighings[(mouse, day)] = Weighed(grams, weighed_at)  # the day's last
        self.given: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for mouse, given_at, kind, ul in conn.execute(
            select(
                WaterGiven.mouse_id, WaterGiven.given_at, WaterGiven.kind, WaterGiven.microliters
            )
            .where(WaterGiven.given_at >= start, WaterGiven.given_at < end)
            .where(WaterGiven.voided_at.is_(None))
            .order_by(WaterGiven.given_at, WaterGiven.id)
        ).all():
            kinds = self.given[(mouse, days[day_of(starts, given_at) - 1])]
            kinds[kind] = kinds.get(kind, 0.0) + ul
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
        self._read_sessions(start, end, first, last, training)
        self.settings_rows = list(
            tx.scalars(select(LabSetting).order_by(LabSetting.set_at, LabSetting.id))
        )
        slots: dict[str, Slot] = {}
        for e in tx.scalars(
            select(ScheduleEntry)
            .where(ScheduleEntry.valid_until.is_(None))
            .order_by(ScheduleEntry.cohort_name)
        ):
            slots.setdefault(e.mouse_id, Slot(e.cohort_name, e.shift, e.box_id))  # as slot_of
        self.slots = slots
        self.timelines: dict[str, Timeline] = {}
        by_box: dict[str, list[Any]] = defaultdict(list)
        for c in calibrations(tx):
            by_box[c.box_id].append(c)
        self.timelines = {box: Timeline(rows) for box, rows in by_box.items()}

    def _read_sessions(
        self, start: float, end: float, first: str, last: str, training: bool
    ) -> None:
        stmt = sessions_statement(start, end, first, last, training=training)
        # The few sessions still being collected, from their own index: asking each row
        # whether it has a text would read every row instead of the index alone.
        collecting = set(self.tx.scalars(select(S.id).where(S.data.is_(None))))
        days = set(self.days)
        starts, span_days = self.starts, self.days
        figures_of: Callable[..., SessionFigures] = SessionFigures  # a row's values in order
        for values in self.tx.connection().execute(stmt).all():
            f = figures_of(*values, collecting=values[0] in collecting)  # values[0]: the pk
            if f.start_time is not None:
                day = span_days[bisect.bisect_right(starts, f.start_time) - 1]
                self.started[day].add(f.mouse)
            elif f.date in days:
                day = f.date
            else:
                continue
            self.sessions[(f.mouse, day)].append(f)
        for group in self.sessions.values():
            if len(group) > 1:  # the day's sessions in export order (position, id)
                group.sort(key=_export_order)

    def day_in_span(self, t: float) -> str:
        """The day (of the span) that ``t`` falls on."""
        return self.days[bisect.bisect_right(self.starts, t) - 1]

    def baseline_grams(self, mouse: str, at: float) -> float | None:
        """As weights.baseline_of(...).grams: the newest baseline set before ``at``; None
        when there is none or it ended the restriction."""
        times = self._baseline_times.get(mouse)
        if not times:
            return None
        index = bisect.bisect_left(times, at) - 1
        return None if index < 0 else self._baseline_grams[mouse][index]

    def in_grace(self, mouse: str, settings: LabSettings, day: str) -> bool:
        """As weights.in_grace, from the baselines read once."""
        if settings.grace_days <= 0:
            return False
        began = restriction_began(self.baselines.get(mouse, []), day_bounds(day)[1])
        return grace_day(began, settings, day)

    def restricted(self, at: float) -> set[str]:
        """Mice on water restriction at ``at`` (as report's _restricted_mice)."""
        return {m for m in self.baselines if self.baseline_grams(m, at) is not None}

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
                total.add(provisional(f.reward_count, f.start_time, timeline, f.box))
            elif not add_earned_of_figures(total, f, timeline):
                row = self.tx.get(TrainingSession, f.pk)
                assert row is not None and row.data is not None
                timelines = {f.box: timeline} if f.box and timeline else {}
                total.add(earned_in_session(row, timelines, json.loads(row.data)))
        return total
