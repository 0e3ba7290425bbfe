"""The day in one view (``labctl today``) and the welfare report (``labctl report``).

Both are built from the husbandry records and the stored sessions only, so a day can
be shown again at any later time exactly as the records have it. A mouse appears on a
day when it is on water restriction by then (it has a baseline), is on a box or in a
schedule (today's view), or has any record that day: a session, a weighing, water by
hand or an override. A restricted mouse with nothing recorded still gets its row:
"not weighed" is what a welfare office needs to see.
"""

from __future__ import annotations

import csv
import io
import json
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from controller.db import Transaction
from controller.husbandry.book import RecordBook, SessionFigures, Slot, no_collection
from controller.husbandry.calibration import Timeline, calibration_warnings
from controller.husbandry.days import day_bounds, days_between
from controller.husbandry.figures import touches_of
from controller.husbandry.models import Baseline, WaterGiven, Weighing, WeightOverride
from controller.husbandry.schedule import current_entries, slot_of
from controller.husbandry.settings import LabSettings, lab_settings
from controller.husbandry.water import WaterDay, reckon_water_day, sessions_of_day, water_day
from controller.husbandry.weights import (
    RESTRICTION_ENDED,
    WeightCheck,
    judge_weight,
    overrides,
    weight_check,
)
from controller.lab import assignments_by_box, box_sort_key
from shared.analysis import joined_counts, mouse_results
from shared.analysis.original import day_numbers_of


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class DayRow:
    """One mouse on one day: the columns of ``labctl today`` and ``labctl report``."""

    date: str
    mouse: str
    box: str | None = None
    cohort: str | None = None
    shift: int | None = None
    baseline_g: float | None = None
    weight_g: float | None = None
    #: When the day's last weighing was taken (None: not weighed).
    weighed_at: float | None = None
    weight_pct: float | None = None
    #: The threshold the weight is held against: the grace one in a restriction's first days.
    threshold_pct: float | None = None
    below_threshold: bool = False
    sessions: int = 0
    trials: int = 0
    correct_pct: float | None = None
    d_prime: float | None = None
    rewards: int = 0
    earned_ul: float = 0.0
    given_ul: float = 0.0
    total_ul: float = 0.0
    required_ul: float | None = None
    owed_ul: float | None = None
    overrides: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _mice_with_records(tx: Transaction, start: float, end: float) -> set[str]:
    """Mice with a weighing, water by hand (voided ones left out) or an override then."""
    weighed = Weighing.weighed_at
    given = WaterGiven.given_at
    at = WeightOverride.at
    statements = (
        select(Weighing.mouse_id).where(
            weighed >= start, weighed < end, Weighing.voided_at.is_(None)
        ),
        select(WaterGiven.mouse_id).where(
            given >= start, given < end, WaterGiven.voided_at.is_(None)
        ),
        select(WeightOverride.mouse_id).where(at >= start, at < end),
    )
    found: set[str] = set()
    for stmt in statements:
        found.update(tx.scalars(stmt))
    return found


def _restricted_mice(tx: Transaction, end: float) -> set[str]:
    """Mice on water restriction at ``end``: a baseline by then, not ended since."""
    newest: dict[str, str] = {}
    rows = tx.execute(
        select(Baseline.mouse_id, Baseline.method)
        .where(Baseline.set_at < end)
        .order_by(Baseline.set_at, Baseline.id)
    )
    for mouse, method in rows:
        newest[mouse] = method
    return {mouse for mouse, method in newest.items() if method != RESTRICTION_ENDED}


def day_row(
    tx: Transaction,
    mouse_id: str,
    day: str,
    settings: LabSettings,
    *,
    box: str | None = None,
    figures: bool = True,
    timelines: dict[str, Timeline] | None = None,
) -> DayRow:
    """The mouse's row for ``day``; ``figures`` adds the day's training figures (trials, correct %,
    d-prime), which the welfare report does not carry; ``timelines`` caches calibrations."""
    entry = slot_of(tx, mouse_id)
    slot = None if entry is None else Slot(entry.cohort_name, entry.shift, entry.box_id)
    check = weight_check(tx, mouse_id, settings, day)
    sessions = sessions_of_day(tx, mouse_id, day)
    parsed = {s.id: json.loads(s.data) for s in sessions if s.data is not None}
    water = water_day(
        tx, mouse_id, day, settings, rows=sessions, parsed=parsed, timelines=timelines
    )
    start, end = day_bounds(day)
    row = _row(
        day, mouse_id, box, slot, check, len(sessions), sum(s.trial_count for s in sessions),
        water, end, overrides(tx, mouse_id, since=start, until=end),
    )  # fmt: skip
    if figures and parsed:
        _training_figures(row, list(parsed.values()))
    return row


def _training_figures(row: DayRow, sessions: list[Any]) -> None:
    """Correct % and d-prime of the day: the shared analysis's per-day row, the same
    figures as `labctl results --days`."""
    days = mouse_results(row.mouse, sessions, collapse_days=True)
    counted = sum(d.trials for d in days)
    if counted:
        row.correct_pct = _r(100.0 * sum(d.total_correct for d in days) / counted)
    if len(days) == 1:
        row.d_prime = _r(days[0].d_prime, 2)


def _stored_training_figures(row: DayRow, sessions: list[SessionFigures]) -> None:
    """:func:`_training_figures` from the sessions' stored figures (:mod:`.figures`): the
    same days (``day_numbers_of``) and the same d' (``joined_counts``), no trial read."""
    days = day_numbers_of(((s.listed_trials > 0, s.date) for s in sessions), collapse_days=True)
    counted = sum(s.listed_trials for s in sessions)
    if counted:
        row.correct_pct = _r(100.0 * sum(s.correct_trials for s in sessions) / counted)
        if len(set(days)) == 1:
            row.d_prime = _r(joined_counts(touches_of(s) for s in sessions).d_prime, 2)


def _row(
    day: str,
    mouse: str,
    box: str | None,
    slot: Slot | None,
    check: WeightCheck,
    sessions: int,
    trials: int,
    water: WaterDay,
    end: float,
    day_overrides: Iterable[WeightOverride],
) -> DayRow:
    """The row of the day's weight check and water (``end``: when the day ends), made at
    once: a year's report makes ~36,500 of them."""
    cohort = shift = None
    if slot is not None:
        cohort, shift = slot.cohort_name, slot.shift
        box = box or slot.box_id
    percent, earned = check.percent, water.earned
    owed = _r(water.owed_ul)
    warnings = [*check.warnings, *water.warnings]
    if owed and end <= time.time():  # the day is over and the mouse is short
        warnings.append(f"{owed:g} ul of the day's water was never given")
    # By position, in DayRow's order (keywords cost a third more, ~36,500 times a year).
    return DayRow(
        day, mouse, box, cohort, shift,
        check.baseline_grams, check.weight_grams, check.weighed_at,
        None if percent is None else round(percent, 1),  # weight_pct
        check.threshold_pct if check.restricted else None, check.below_threshold,
        sessions, trials, None, None,  # correct_pct and d_prime: today's, set after
        earned.rewards, round(earned.ul, 1) or 0.0, round(water.given_ul, 1) or 0.0,
        round(water.total_ul, 1) or 0.0, _r(water.requirement_ul), owed,
        [f"{o.by}: {o.reason} (overrode: {o.warning})" for o in day_overrides], warnings,
    )  # fmt: skip


def book_row(
    book: RecordBook, mouse_id: str, day: str, settings: LabSettings, box: str | None = None
) -> DayRow:
    """:func:`day_row` without the training figures, from the records ``book`` holds."""
    end = day_bounds(day)[1]
    key = (mouse_id, day)
    baseline = book.baseline_grams(mouse_id, end)
    weighing = book.weighings.get(key)
    grace = baseline is not None and book.in_grace(mouse_id, settings, day)
    check = judge_weight(mouse_id, day, baseline, weighing, settings, grace=grace)
    sessions = book.sessions.get(key, [])
    water = reckon_water_day(
        mouse_id, day, book.earned(sessions), dict(book.given.get(key, {})), baseline, settings
    )
    return _row(
        day, mouse_id, box, book.slots.get(mouse_id), check, len(sessions),
        sum(s.trial_count for s in sessions), water, end, book.overrides.get(key, ()),
    )  # fmt: skip


def today_rows(tx: Transaction, day: str, settings: LabSettings) -> list[DayRow]:
    """``labctl today``: every mouse on a box, in a schedule, restricted, or with records."""
    book = RecordBook(tx, day, day, training=True)
    _, end = day_bounds(day)
    on_box = {mouse: box for box, mouse in assignments_by_box(tx).items()}
    mice = set(on_box) | {e.mouse_id for e in current_entries(tx)}
    mice |= book.restricted(end) | book.with_records(day) | book.started.get(day, set())
    rows = [book_row(book, m, day, settings, box=on_box.get(m)) for m in sorted(mice)]
    for row in rows:  # the training figures from the sessions' stored ones, not their trials
        stored = [s for s in book.sessions.get((row.mouse, day), []) if not s.collecting]
        if stored:
            _stored_training_figures(row, stored)
    return sorted(rows, key=_box_order)


def box_warnings(tx: Transaction, rows: Sequence[DayRow], settings: LabSettings) -> list[str]:
    """What is wrong now with the calibrations of the rows' boxes (once per box)."""
    boxes = sorted({r.box for r in rows if r.box is not None}, key=box_sort_key)
    return [w for box in boxes for w in calibration_warnings(tx, box, settings)]


def _box_order(row: DayRow) -> tuple[tuple[int, int, str], int, str]:
    """By box (mice on no box last), then shift, then mouse."""
    return (box_sort_key(row.box) if row.box else (2, 0, "")), row.shift or 0, row.mouse


def _mice_with_sessions(tx: Transaction, start: float, end: float) -> set[str]:
    from controller.models import TrainingSession

    return set(
        tx.scalars(
            select(TrainingSession.mouse_id).where(
                TrainingSession.start_time >= start, TrainingSession.start_time < end
            )
        )
    )


def report_rows_reference(
    tx: Transaction, first: str, last: str, settings: LabSettings | None = None
) -> list[DayRow]:
    """:func:`report_rows` asked of the database row by row and session by session: the
    reference that the stored figures are tested against (tests/test_report_book.py) and
    that bench/bench_husbandry.py measures as the old path."""
    out: list[DayRow] = []
    timelines: dict[str, Timeline] = {}  # calibrations do not change while the report runs
    for day in days_between(first, last):
        start, end = day_bounds(day)
        mice = _restricted_mice(tx, end) | _mice_with_records(tx, start, end)
        mice |= _mice_with_sessions(tx, start, end)
        rules = lab_settings(tx, at=end) if settings is None else settings
        out.extend(
            day_row(tx, m, day, rules, figures=False, timelines=timelines) for m in sorted(mice)
        )
    return out


def report_rows(
    tx: Transaction, first: str, last: str, settings: LabSettings | None = None
) -> list[DayRow]:
    """``labctl report``: one row per mouse per day from ``first`` to ``last``, each day
    under the lab settings in force at its end (or under ``settings`` when given)."""
    with no_collection():
        book = RecordBook(tx, first, last)
        out: list[DayRow] = []
        for day in book.days:
            _, end = day_bounds(day)
            mice = book.restricted(end) | book.with_records(day) | book.started.get(day, set())
            rules = book.settings_at(end) if settings is None else settings
            out.extend(book_row(book, m, day, rules) for m in sorted(mice))
    return out


# ---------------------------------------------------------------- formats

#: The report's columns, in order; docs/husbandry.md explains each.
REPORT_COLUMNS = (
    "date", "mouse", "baseline_g", "weight_g", "weight_pct", "threshold_pct", "below_threshold",
    "sessions", "rewards", "earned_ul", "given_ul", "total_ul", "required_ul", "owed_ul",
    "overrides", "warnings",
)  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _float_cell(value: float) -> str:
    return f"{value:g}"


#: :func:`_cell` by the value's exact type: a year's CSV has ~580,000 cells.
_CELLS: dict[type, Callable[[Any], str]] = {
    str: str, int: str, float: _float_cell, type(None): _cell, bool: _cell, list: _cell,
}  # fmt: skip


def format_report(rows: Sequence[DayRow], fmt: str, header: Iterable[str] = ()) -> str:
    """The rows as ``csv``, ``json`` or ``md`` (a Markdown table, with ``header`` lines)."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(REPORT_COLUMNS)
        columns, cell_of = operator.attrgetter(*REPORT_COLUMNS), _CELLS.get
        writer.writerows([(cell_of(type(v)) or _cell)(v) for v in columns(row)] for row in rows)
        return buffer.getvalue().rstrip("\n")
    records = [{k: d[k] for k in REPORT_COLUMNS} for d in (r.as_dict() for r in rows)]
    if fmt == "json":
        return json.dumps(records, indent=2)
    if fmt == "md":
        lines = [*header, "" if header else None]
        out = [line for line in lines if line is not None]
        out.append("| " + " | ".join(REPORT_COLUMNS) + " |")
        out.append("|" + "---|" * len(REPORT_COLUMNS))
        for record in records:
            cells = [_cell(record[k]).replace("|", "\\|") for k in REPORT_COLUMNS]
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)
    raise ValueError(f"unknown report format {fmt!r}")
