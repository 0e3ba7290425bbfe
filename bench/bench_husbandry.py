"""Benchmark of ``labctl today`` and ``labctl report``: a lab of 40 mice over 30 days.

Each mouse has a baseline, a weighing and water by hand every day, and two sessions a
day of 300 trials on one of 10 boxes, whose calibrations change every week; stored
through ``labctl import``'s code path on a SQLite file (or ``--db URL``, e.g. a fresh
PostgreSQL database). The days are the ones before today, so every record is in the past
whenever the bench runs. Timed: the day's rows of ``today`` (with the training figures)
and the welfare report over every day (one row per mouse per day), and its CSV; and, as
the baseline in the same run, the old path (every row asked of the database, every
session's trials read: ``report_rows_reference`` and ``day_row``) over the last
``--old-days`` days, against the new path over the same days.

Run: ``python bench/bench_husbandry.py [--mice 40] [--days 30] [--trials 300] [--db URL]
[--old-days 30]``; issue 20's size: ``--mice 100 --days 365 --trials 50``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from controller.db import Database, TrainingSession, open_database  # noqa: E402
from controller.files import import_sessions  # noqa: E402
from controller.husbandry.calibration import record_calibration  # noqa: E402
from controller.husbandry.figures import reward_figures  # noqa: E402
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
    digest,
    rewards_of,
    session_text,
    session_time,
    trial_count_of,
)

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
            if rows_only:
                _store_rows(conn, f"M{m}", sessions)
            else:
                import_sessions(conn, f"M{m}", sessions)
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


def _store_rows(conn: Any, mouse: str, sessions: list[dict[str, Any]]) -> None:
    """The session rows ``labctl import`` stores (text, digest, counts, reward figures),
    in one statement and without the ``trials`` rows, which neither report reads: a
    year of 100 mice fills in minutes instead of hours."""
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
            **reward_figures(session),
        })  # fmt: skip
    conn.execute(insert(TrainingSession), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mice", type=int, default=40)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--db", metavar="URL", help="an empty database (default: a temp SQLite)")
    parser.add_argument("--old-days", type=int, default=30, help="days the old path is timed on")
    parser.add_argument(
        "--rows-only", action="store_true",
        help="store the session rows in bulk, without trial rows (fast fill for a year)",
    )  # fmt: skip
    args = parser.parse_args()
    global FIRST
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    FIRST = midnight - timedelta(days=args.days) + timedelta(hours=8)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(args.db or f"sqlite:///{tmp}/bench.db")
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
            started = time.perf_counter()
            rows = today_rows(s, middle, settings)
            today_s = time.perf_counter() - started
            started = time.perf_counter()
            report = report_rows(s, FIRST.strftime("%Y-%m-%d"), last)
            report_s = time.perf_counter() - started
            # The old path, on the same data in the same run.
            started = time.perf_counter()
            old_today = [day_row(s, r.mouse, middle, settings, box=r.box) for r in rows]
            old_today_s = time.perf_counter() - started
            started = time.perf_counter()
            part = report_rows(s, since, last)
            part_s = time.perf_counter() - started
            started = time.perf_counter()
            old_part = report_rows_reference(s, since, last)
            old_part_s = time.perf_counter() - started
        started = time.perf_counter()
        format_report(report, "csv")
        csv_s = time.perf_counter() - started
        db.close()
    same = [r.as_dict() for r in part] == [r.as_dict() for r in old_part]
    same_today = [r.as_dict() for r in rows] == [r.as_dict() for r in old_today]
    print(f"today: {len(rows)} rows in {today_s:.3f} s; old path {old_today_s:.3f} s "
          f"(new/old {today_s / old_today_s:.3f}x; rows equal: {same_today})")  # fmt: skip
    print(f"report: {len(report)} rows in {report_s:.2f} s ({1000 * report_s / len(report):.3f} "
          f"ms a row); csv {1000 * csv_s:.0f} ms")  # fmt: skip
    print(f"report of the last {len(part)} rows ({since} to {last}): {part_s:.2f} s; "
          f"old path {old_part_s:.2f} s (new/old {part_s / old_part_s:.3f}x; "
          f"rows equal: {same})")  # fmt: skip


if __name__ == "__main__":
    main()
