"""Parallel ``labctl import``: real processes on one database store each session once.

Issue 17 item 5: three imports at once of the same 30 legacy files (sessions without a
``session_id``, as the original library wrote them) stored 1,605 rows for 600 sessions
on PostgreSQL. Each file's import now holds its mouse's lock while it looks for and
stores the sessions, so a second import waits and then finds them present.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from controller.db import TrainingSession, open_database
from controller.lab import add_mouse

from .processes import Processes

MICE, SESSIONS_PER_FILE, IMPORTS = 30, 20, 3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # real labctl processes


def legacy_session(mouse: int, n: int) -> dict[str, object]:
    start = 1_560_000_000.0 + 86_400 * n + 60 * mouse
    trials = [
        {"start": start + 10 * k, "end": start + 10 * k + 2, "spout": k % 2,
         "cue_duration": 10000.0, "outcome": (k + n) % 3, "spout_position": [1, 1],
         "shaping": False}
        for k in range(30)
    ]  # fmt: skip
    return {
        "trials": trials, "resets": [], "spontaneous_reaches": [], "start_time": start,
        "end_time": start + 400, "date": "2019-06-08", "notes": f"M{mouse} day {n}",
    }  # fmt: skip


def write_folder(folder: Path) -> None:
    folder.mkdir()
    for m in range(MICE):
        sessions = [legacy_session(m, n) for n in range(SESSIONS_PER_FILE)]
        (folder / f"M{m}.json").write_text(json.dumps(sessions), encoding="utf-8")


def labctl_command() -> list[str]:
    return [sys.executable, "-c", "from controller.cli import main; main()"]


def test_parallel_imports_store_each_legacy_session_once(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    write_folder(folder)
    # The schema and the mice first (a lab's usual case): a new mouse's insert would
    # make the imports wait on each other by chance, and hide the race.
    db = open_database(db_url)
    with db.session() as tx:
        for m in range(MICE):
            add_mouse(tx, f"M{m}")
    db.close()
    env = {**os.environ, "LABCTL_DB": db_url, "LABCTL_BROKER": "mqtt://127.0.0.1:1"}
    command = [*labctl_command(), "import", str(folder)]
    processes = Processes(tmp_path / "logs")
    try:
        children = [processes.start(f"import{n}", command, env) for n in range(IMPORTS)]
        codes = [child.wait(timeout=240) for child in children]
        outputs = [processes.log(f"import{n}") for n in range(IMPORTS)]
    finally:
        processes.stop_all()
    assert codes == [0] * IMPORTS, processes.all_logs()
    expected = MICE * SESSIONS_PER_FILE
    db = open_database(db_url)
    try:
        with db.reader() as tx:
            rows = tx.scalar(select(func.count()).select_from(TrainingSession))
            distinct = tx.scalar(select(func.count(func.distinct(TrainingSession.digest))))
    finally:
        db.close()
    assert (rows, distinct) == (expected, expected)
    # Every session was stored by exactly one of the imports; the others found it present.
    imported = sum(int(out.split(" session(s) imported")[0].split()[-1]) for out in outputs)
    assert imported == expected, outputs
