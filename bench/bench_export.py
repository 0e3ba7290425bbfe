"""Benchmark of ``labctl export``: one mouse with 200 sessions x 300 trials, database to file.

The export (read the mouse's sessions from the database, write ``<mouse>.json``
atomically: temp file, fsync, rename) is timed against ``json.dumps`` of the
same sessions in memory, which is what the original library paid to save a
file. Targets: under 3x ``json.dumps`` and under 1 s. The exported file must be
exactly ``dumps_sessions`` of the sessions.

The sessions are stored through ``labctl import``'s code path, on a SQLite
file (or ``--db URL``, e.g. PostgreSQL).

Run: ``python bench/bench_export.py [--sessions 200] [--trials 300] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controller.db import open_database  # noqa: E402
from controller.files import export_mice, import_sessions  # noqa: E402
from shared.config import TaskConfig  # noqa: E402
from shared.sessionfile import dumps_sessions  # noqa: E402

MOUSE = "BenchMouse1"


def make_sessions(count: int, trials: int, seed: int = 1) -> list[dict[str, Any]]:
    """Session dicts shaped like the agent's (metadata, settings, trials, ...)."""
    rng = random.Random(seed)
    sessions = []
    t = 1_700_000_000.0
    for number in range(count):
        t += 86400
        session: dict[str, Any] = {"trainer": "bench", "weight": round(rng.uniform(20, 26), 1)}
        session.update(TaskConfig().settings())
        start, rows = t, []
        position = [1 + number % 7, 1 + (number // 7) % 7]
        for _ in range(trials):
            start += rng.uniform(4, 12)
            trial: dict[str, Any] = {"start": start}
            if rng.random() < 0.7:
                trial["lift_time"] = start + rng.uniform(0.1, 1)
                trial["lift_paw"] = rng.choice((0, 1))
            trial["end"] = start + rng.uniform(0.3, 10)
            trial["spout"] = rng.choice((0, 1))
            trial["shaping"] = False
            trial["cue_duration"] = 10000.0 * rng.uniform(0.3, 1)
            trial["outcome"] = rng.choice((0, 1, 1, 2))
            trial["spout_position"] = list(position)
            rows.append(trial)
        session["trials"] = rows
        session["resets"] = [[t + rng.uniform(0, 1800), rng.choice((0, 1))] for _ in range(20)]
        session["spontaneous_reaches"] = [[t + rng.uniform(0, 1800), 1] for _ in range(5)]
        session["start_time"] = t
        session["end_time"] = start + 5
        session["duration"] = start + 5 - t
        session["date"] = time.strftime("%Y-%m-%d", time.localtime(t))
        session["notes"] = ""
        session["session_id"] = f"bench-{number:04d}"
        session["box"] = "1"
        session["status"] = "complete"
        session["software_version"] = "reachlab bench"
        sessions.append(session)
    return sessions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (median kept)")
    parser.add_argument("--db", help="database URL (default: a temp SQLite file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        folder = Path(tmp)
        url = args.db or f"sqlite:///{folder / 'lab.db'}"
        db = open_database(url)
        sessions = make_sessions(args.sessions, args.trials)
        started = time.perf_counter()
        with db.engine.begin() as conn:
            result = import_sessions(conn, MOUSE, sessions)
        print(
            f"stored {result.imported} sessions x {args.trials} trials of {MOUSE} in "
            f"{time.perf_counter() - started:.2f} s ({db.url})"
        )

        dumps_times, export_times = [], []
        expected = dumps_sessions(sessions)
        for _ in range(args.repeat):
            started = time.perf_counter()
            json.dumps(sessions)
            dumps_times.append(time.perf_counter() - started)
            out = folder / "export"
            (out / f"{MOUSE}.json").unlink(missing_ok=True)
            started = time.perf_counter()
            (written,) = export_mice(db, [MOUSE], out)
            export_times.append(time.perf_counter() - started)
            assert written.written and written.sessions == args.sessions
        exported = (folder / "export" / f"{MOUSE}.json").read_text(encoding="utf-8")
        same = exported == expected

        # The everyday case: the file from yesterday's export is there, and the database
        # has one more session; the exporter must check it drops nothing, then replace it.
        extra = make_sessions(args.sessions + 1, args.trials)[-1]
        with db.engine.begin() as conn:
            import_sessions(conn, MOUSE, [extra])
        yesterday = exported
        reexport_times = []
        for _ in range(args.repeat):
            (folder / "export" / f"{MOUSE}.json").write_text(yesterday, encoding="utf-8")
            started = time.perf_counter()
            (written,) = export_mice(db, [MOUSE], out)
            reexport_times.append(time.perf_counter() - started)
            assert written.written and written.sessions == args.sessions + 1, written
        db.close()

    dumps_s = statistics.median(dumps_times)
    export_s = statistics.median(export_times)
    ratio = export_s / dumps_s
    print(f"json.dumps of the sessions : {dumps_s * 1000:7.1f} ms ({len(expected) / 1e6:.1f} MB)")
    print(f"export from the database   : {export_s * 1000:7.1f} ms (read, atomic write, fsync)")
    reexport_s = statistics.median(reexport_times)
    reexport_ratio = reexport_s / dumps_s
    print(f"re-export over the last file: {reexport_s * 1000:6.1f} ms (one session added)")
    print(
        f"ratio {ratio:.2f}x (target < 3x: {'ok' if ratio < 3 else 'MISSED'}); "
        f"{export_s:.2f} s (target < 1 s: {'ok' if export_s < 1 else 'MISSED'}); "
        f"re-export {reexport_ratio:.2f}x; "
        f"file identical to dumps_sessions: {'yes' if same else 'NO'}"
    )
    met = ratio < 3 and export_s < 1 and reexport_ratio < 3
    return 0 if same and met else 1


if __name__ == "__main__":
    sys.exit(main())
