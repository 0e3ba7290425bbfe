"""Benchmark of ``labctl today`` and ``labctl report``: a lab of 40 mice over 30 days.

Each mouse has a baseline, a weighing and water by hand every day, and two sessions a
day of 300 trials on one of 10 boxes, whose calibrations change every week; stored in
bulk as ``labctl import`` stores them (the session rows with their text and figures,
and the trial rows; ``--rows-only`` leaves the trial rows out, which neither view reads)
on a SQLite file (or ``--db URL``, e.g. a fresh PostgreSQL database). The days are the
ones before today, so every record is in the past whenever the bench runs, at any hour.
Timed (wall and CPU seconds: the machine may be shared): the day's rows of ``today``
(with the training figures) and the welfare report over every day (one row per mouse
per day), and its CSV; and, as the baseline in the same run, the old path (every row
asked of the database, every session's trials read: ``report_rows_reference`` and
``day_row``) over the last ``--old-days`` days, against the new path over the same days.

Run: ``python bench/bench_husbandry.py [--mice 40] [--days 30] [--trials 300] [--db URL]
[--old-days 30] [--rows-only]``; issue 20's size: ``--mice 100 --days 365 --trials 50``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from controller.db import Database, TrainingSession, open_database  # noqa: E402
from controller.husbandry.boxes import add_box  # noqa: E402
from controller.husbandry.calibration import record_calibration  # noqa: E402
from controller.husbandry.figures import session_figures  # noqa: E402
from controller.husbandry.models import WaterGiven, Weighing  # noqa: E402
from controller.husbandry.report import (  # noqa: E402
    day_row,
    format_report,
    report_rows,
    report_rows_reference,
    today_rows,
)
from controller.husbandry.settings import lab_settings  # noqa: E402
from controller.husbandry.weights import set_baseline  # noqa: E402
from controller.lab import add_mouse, assign  # noqa: E402
from controller.store import (  # noqa: E402
    TRIAL_COLUMNS,
    TRIALS,
    digest,
    rewards_of,
    session_text,
    session_time,
    trial_count_of,
    trial_row_tuples,
)

T = TypeVar("T")
BOXES = 10
#: 08:00 on the first day; set by main() to ``--days`` before today.
FIRST = datetime(2026, 3, 1, 8, 0)


def _session(mouse: int, day: int, k: int, trials: int, rng: random.Random) -> dict[str, Any]:
    start = (FIRST + timedelta(days=day, hours=4 * k + mouse % 4)).timestamp()
    rows, t = [], start
    for n in range(trials):
        t += 5
        rows.append({"start": t, "end": t + 1, "spout": n % 2, "cue_duration": 10000.0,
                     "outcome": rng.choice((0, 1, 1, 2)), "spout_position": [1, 1],
                     "shaping": False})  # fmt: skip
    date = datetime.fromtimestamp(start).strftime("%Y-%m-%d")
    return {"trials": rows, "resets": [], "spontaneous_reaches": [], "start_time": start,
            "end_time": t + 5, "date": date, "box": str(mouse % BOXES + 1),
            "session_id": f"S{mouse}-{day}-{k}", "status": "complete",
            "reward_volume_ul": 6, "reward_duration_ms": [70, 70]}  # fmt: skip


def fill(db: Database, mice: int, days: int, trials: int, rows_only: bool = False) -> None:
    rng = random.Random(1)
    with db.session() as s:
        for box in range(1, BOXES + 1):
            add_box(s, str(box), by="bench")  # the rigs, as `labctl box add` makes them known
        for m in range(mice):
            add_mouse(s, f"M{m}")
            if m < BOXES:
                assign(s, f"M{m}", str(m + 1))
            set_baseline(s, f"M{m}", 25.0, by="bench", at=FIRST.timestamp() - 86400)
        for box in range(1, BOXES + 1):
            for spout in (0, 1):
                for week in range(0, days, 7):
                    record_calibration(
                        s, str(box), spout, openings=100, duration_ms=70,
                        total=rng.uniform(450, 550), unit="mg", by="bench",
                        at=(FIRST + timedelta(days=week)).timestamp() - 3600,
                    )  # fmt: skip
    for m in range(mice):
        sessions = [_session(m, d, k, trials, rng) for d in range(days) for k in (0, 1)]
        with db.engine.begin() as conn:
            _store_rows(conn, f"M{m}", sessions, trials=not rows_only)
        weighed, given = [], []
        for d in range(days):
            t = (FIRST + timedelta(days=d)).timestamp()
            weighed.append({"mouse_id": f"M{m}", "grams": rng.uniform(19, 25), "weighed_at": t,
                            "recorded_at": t, "recorded_by": "bench", "note": ""})  # fmt: skip
            given.append({"mouse_id": f"M{m}", "microliters": 300.0, "kind": "water",
                          "given_at": t + 36000, "recorded_at": t + 36000, "given_by": "bench",
                          "note": ""})  # fmt: skip
        with db.engine.begin() as conn:  # the rows record_weighing and give_water add
            conn.execute(insert(Weighing), weighed)
            conn.execute(insert(WaterGiven), given)


def _store_rows(conn: Any, mouse: str, sessions: list[dict[str, Any]], trials: bool) -> None:
    """The session rows ``labctl import`` stores (text, digest, counts, figures) in one
    statement, and their ``trials`` rows (unless not ``trials``: neither view reads them)
    in another: a year of 100 mice fills in minutes instead of hours."""
    rows = []
    for session in sessions:
        text = session_text(session)
        start = session_time(session)
        rows.append({
            "session_id": session["session_id"], "mouse_id": mouse, "box": session["box"],
            "origin": "imported", "status": "complete", "complete": True, "position": start,
            "start_time": start, "end_time": session["end_time"], "date": session["date"],
            "trial_count": trial_count_of(session), "reward_count": rewards_of(session),
            "data": text, "digest": digest(text), "created_at": start, "completed_at": start,
            **session_figures(session),
        })  # fmt: skip
    if not trials:
        conn.execute(insert(TrainingSession), rows)
        return
    stmt = insert(TrainingSession).returning(TrainingSession.id, sort_by_parameter_order=True)
    pks = conn.execute(stmt, rows).scalars().all()
    trial_rows = [
        dict(zip(TRIAL_COLUMNS, row, strict=True))
        for pk, session in zip(pks, sessions, strict=True)
        for row in trial_row_tuples(pk, session)
    ]
    conn.execute(TRIALS.insert(), trial_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mice", type=int, default=40)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--db", metavar="URL", help="an empty database (default: a temp SQLite)")
    parser.add_argument("--old-days", type=int, default=30, help="days the old path is timed on")
    parser.add_argument(
        "--rows-only", action="store_true",
        help="store the session rows without their trial rows (neither view reads them)",
    )  # fmt: skip
    args = parser.parse_args()
    global FIRST
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    FIRST = midnight - timedelta(days=args.days) + timedelta(hours=8)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(args.db or f"sqlite:///{tmp}/bench.db")
        print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the start")
        started = time.perf_counter()
        fill(db, args.mice, args.days, args.trials, args.rows_only)
        print(f"filled {args.mice} mice x {args.days} days x 2 sessions x {args.trials} trials "
              f"in {time.perf_counter() - started:.1f} s ({db.dialect})")  # fmt: skip
        last = (FIRST + timedelta(days=args.days - 1)).strftime("%Y-%m-%d")
        middle = (FIRST + timedelta(days=args.days // 2)).strftime("%Y-%m-%d")
        since = (FIRST + timedelta(days=args.days - min(args.old_days, args.days))).strftime(
            "%Y-%m-%d"
        )
        with db.reader() as s:
            settings = lab_settings(s)
            # Warm both paths up (imports, compiled statements) on another day first.
            first = FIRST.strftime("%Y-%m-%d")
            for r in today_rows(s, first, settings):
                day_row(s, r.mouse, first, settings, box=r.box)
            rows, today_t = timed(lambda: today_rows(s, middle, settings))
            report, report_t = timed(lambda: report_rows(s, first, last))
            # The old path, on the same data in the same run.
            old_today, old_today_t = timed(
                lambda: [day_row(s, r.mouse, middle, settings, box=r.box) for r in rows]
            )
            part, part_t = timed(lambda: report_rows(s, since, last))
            old_part, old_part_t = timed(lambda: report_rows_reference(s, since, last))
        _, csv_t = timed(lambda: format_report(report, "csv"))
        db.close()
    same = [r.as_dict() for r in part] == [r.as_dict() for r in old_part]
    same_today = [r.as_dict() for r in rows] == [r.as_dict() for r in old_today]
    print(f"today: {len(rows)} rows in {today_t}; old path {old_today_t} "
          f"(new/old {today_t.ratio(old_today_t)}; rows equal: {same_today})")  # fmt: skip
    print(f"report: {len(report)} rows in {report_t} "
          f"({1000 * report_t.wall / len(report):.3f} ms a row); csv {csv_t}")  # fmt: skip
    print(
        f"report of the last {len(part)} rows ({since} to {last}): {part_t}; "
        f"old path {old_part_t} (new/old {part_t.ratio(old_part_t)}; rows equal: {same})"
    )
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")


class Took:
    """Wall and CPU seconds of one timed call."""

    def __init__(self, wall: float, cpu: float) -> None:
        self.wall, self.cpu = wall, cpu

    def __str__(self) -> str:
        return f"{self.wall:.3f} s (cpu {self.cpu:.3f} s)"

    def ratio(self, old: Took) -> str:
        return f"{self.wall / old.wall:.3f}x, cpu {self.cpu / old.cpu:.3f}x"


def timed(call: Callable[[], T]) -> tuple[T, Took]:
    started, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, Took(time.perf_counter() - started, time.process_time() - cpu)


if __name__ == "__main__":
    main()
