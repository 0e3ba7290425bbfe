"""What the dashboard's mouse and cohort pages show, read from the controller's database.

A mouse's curves are one point per stored session, in training order:
correct % (of the trials with an outcome), d-prime and trials from
:func:`shared.analysis.mouse_results` (the numbers ``labctl results``
prints), and the spout positions and cue duration the session ended with.
The cohort table has ``labctl results``' columns (and cells, from
:func:`shared.analysis.table.table_cells`) for each mouse's latest session.

Sessions are read whole (their stored JSON), so a mouse's curve is cached
until its count of stored sessions or its latest completion changes; the
cache holds at most :data:`CACHE_LIMIT` mice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from controller.db import Database, TrainingSession
from controller.lab import all_mice, cohort_members, get_mouse, list_cohorts, mouse_summaries
from controller.store import mouse_sessions
from shared.analysis import SessionResults, mouse_results
from shared.analysis.table import TABLE_COLUMNS, table_cells

CACHE_LIMIT = 500


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _last_trial(session: Mapping[str, Any]) -> Mapping[str, Any] | None:
    trials = session.get("trials")
    if not isinstance(trials, list):
        return None
    for trial in reversed(trials):
        if isinstance(trial, Mapping):
            return trial
    return None


def ending_settings(session: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    """Left and right spout positions and the cue duration (ms) at the session's last trial.

    Old files wrote ``spout_position`` as one number (both spouts); such values are read as
    both sides. None where the session does not say.
    """
    trial = _last_trial(session)
    if trial is None:
        return None, None, None
    position = trial.get("spout_position")
    left = right = None
    if isinstance(position, list | tuple) and len(position) == 2:
        left, right = _number(position[0]), _number(position[1])
    elif _number(position) is not None:
        left = right = _number(position)
    return left, right, _number(trial.get("cue_duration"))


def _correct_pct(result: SessionResults) -> float | None:
    judged = result.total_correct + result.total_incorrect + result.total_missed
    return round(100 * result.total_correct / judged, 1) if judged else None


def curve_points(mouse: str, sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per session: what the mouse page plots and the cohort page overlays."""
    points = []
    for index, (session, result) in enumerate(
        zip(sessions, mouse_results(mouse, sessions), strict=True), 1
    ):
        left, right, cue = ending_settings(session)
        d = result.d_prime
        points.append(
            {
                "index": index,
                "date": result.date,
                "trials": result.trials,
                "correct_pct": _correct_pct(result),
                "d_prime": round(d, 3) if d is not None else None,
                "spout_left": left,
                "spout_right": right,
                "cue_duration": cue,
                "results": result.as_dict(),
            }
        )
    return points


class Pages:
    """The database's side of the pages; thread-safe (the app calls it from worker threads)."""

    def __init__(self, db: Database, cache_limit: int = CACHE_LIMIT) -> None:
        self.db = db
        self.cache_limit = cache_limit
        self._cache: OrderedDict[str, tuple[tuple[Any, ...], list[dict[str, Any]]]] = OrderedDict()
        self._lock = threading.Lock()

    def _version(self, mouse: str) -> tuple[Any, ...]:
        query = select(func.count(), func.max(TrainingSession.completed_at)).where(
            TrainingSession.mouse_id == mouse, TrainingSession.complete.is_(True)
        )
        with self.db.reader() as tx:
            count, last = tx.execute(query).one()
        return (count, last)

    def curve(self, mouse: str) -> list[dict[str, Any]]:
        version = self._version(mouse)
        with self._lock:
            cached = self._cache.get(mouse)
            if cached is not None and cached[0] == version:
                self._cache.move_to_end(mouse)
                return cached[1]
        with self.db.reader_engine.connect() as conn:
            points = curve_points(mouse, mouse_sessions(conn, mouse))
        with self._lock:
            self._cache[mouse] = (version, points)
            self._cache.move_to_end(mouse)
            while len(self._cache) > self.cache_limit:
                self._cache.popitem(last=False)
        return points

    def mouse(self, mouse: str) -> dict[str, Any]:
        """A mouse's page: who and where, and its curve. LabError for an unknown mouse."""
        with self.db.reader() as tx:
            get_mouse(tx, mouse)
            (summary,) = mouse_summaries(tx, [mouse])
        return {
            "mouse": mouse,
            "box": summary.box,
            "cohorts": summary.cohorts,
            "notes": summary.notes,
            "sessions": self.curve(mouse),
        }

    def cohort(self, name: str | None) -> dict[str, Any]:
        """Every mouse of the cohort (or of the lab): latest results and curves."""
        with self.db.reader() as tx:
            cohorts = [cohort for cohort, _ in list_cohorts(tx)]
            mice = cohort_members(tx, name) if name else all_mice(tx)
            summaries = {s.mouse: s for s in mouse_summaries(tx, mice)}
        rows = []
        curves = {}
        for mouse in mice:
            points = self.curve(mouse)
            curves[mouse] = [{k: v for k, v in p.items() if k != "results"} for p in points]
            latest = points[-1] if points else None
            results = {**latest["results"], "mouse": mouse} if latest else None
            rows.append(
                {
                    "mouse": mouse,
                    "box": summaries[mouse].box,
                    "sessions": len(points),
                    "latest": results,
                    # The latest session's row exactly as `labctl results` prints it.
                    "cells": table_cells(results) if results else None,
                    "correct_pct": latest["correct_pct"] if latest else None,
                }
            )
        return {
            "cohort": name,
            "cohorts": cohorts,
            "columns": list(TABLE_COLUMNS),
            "rows": rows,
            "curves": curves,
        }
