"""What the dashboard's mouse and cohort pages show, read from the controller's database.

A mouse's curves are one point per stored session, in training order:
correct % (of the trials with an outcome), d-prime and trials from
:func:`shared.analysis.mouse_results` (the numbers ``labctl results``
prints), and the spout positions and cue duration the session ended with.
The cohort table has ``labctl results``' columns (and cells, from
:func:`shared.analysis.table.table_cells`) for each mouse's latest session.

Sessions are read whole (their stored JSON), so each stored session's point is
cached, under the session's row id, the sha256 of its stored JSON and its
completion time (:data:`SessionKey`): a session stored again is a new key, so a
point is never stale. The cache holds at most :data:`CACHE_LIMIT` sessions, the
least recently shown dropped first. Each mouse's curve assembled from them is
kept too, under the mouse's :data:`Version` (count, newest completion, newest
row of its stored sessions), read for a whole cohort in one query: a request
reads the sessions of only the mice whose version changed, and computes only
the sessions it has no point for. A cohort page's JSON is kept as well, and
sent again as it is while its cohorts, mice, boxes and versions are the same.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select

from controller.db import CohortMember, Database, Mouse
from controller.lab import (
    all_mice,
    assignments_by_box,
    cohort_members,
    get_mouse,
    list_cohorts,
    mouse_summaries,
)
from controller.store import SESSIONS
from shared.analysis import SessionResults, mouse_results
from shared.analysis.table import TABLE_COLUMNS, table_cells

#: Session points the cache keeps: a cohort of 600 mice with 100 sessions each (each
#: point is about 3 KB).
CACHE_LIMIT = 60_000
#: Mice whose assembled curves are kept (rebuilt from the cached points when dropped).
CURVES_LIMIT = 5_000
#: Cohort pages whose JSON is kept (about 2 MB for 600 mice with 20 sessions each).
BODIES_LIMIT = 8
#: Sessions (or mice) read from the database in one query.
READ_BATCH = 500
#: A stored session: complete, with its JSON.
STORED = (SESSIONS.c.complete.is_(True), SESSIONS.c.data.is_not(None))


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


def session_point(mouse: str, session: Mapping[str, Any]) -> dict[str, Any]:
    """A session's point of the curves, but its place (``index``): the session's own
    numbers, as :func:`shared.analysis.mouse_results` gives them session by session."""
    (result,) = mouse_results(mouse, [session])
    left, right, cue = ending_settings(session)
    d = result.d_prime
    return {
        "date": result.date,
        "trials": result.trials,
        "correct_pct": _correct_pct(result),
        "d_prime": round(d, 3) if d is not None else None,
        "spout_left": left,
        "spout_right": right,
        "cue_duration": cue,
        "results": result.as_dict(),
    }


def curve_points(mouse: str, sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per session: what the mouse page plots and the cohort page overlays."""
    return [
        {"index": index, **session_point(mouse, session)}
        for index, session in enumerate(sessions, 1)
    ]


#: A stored session as the cache knows it: its row's id, and the sha256 of its stored
#: JSON and when it was completed, which change whenever the session is stored again.
SessionKey = tuple[int, str | None, float | None]
#: A mouse's stored sessions at a glance: how many, the newest completion, the newest
#: row. Storing a session (new, or again) changes it; so does one taken back.
Version = tuple[int, float | None, int | None]


@dataclass(frozen=True)
class Curve:
    """A mouse's curve as the pages send it, assembled from its sessions' cached points."""

    version: Version
    points: list[dict[str, Any]]  # with each session's results: the mouse page
    plain: list[dict[str, Any]]  # without them: the cohort page's overlay
    latest: dict[str, Any] | None  # the latest session's results, with the mouse
    cells: list[str] | None  # ... as `labctl results` prints them


class Pages:
    """The database's side of the pages; thread-safe (the app calls it from worker threads)."""

    def __init__(self, db: Database, cache_limit: int = CACHE_LIMIT) -> None:
        self.db = db
        self.cache_limit = cache_limit
        self._cache: OrderedDict[SessionKey, dict[str, Any]] = OrderedDict()
        self._curves: OrderedDict[str, Curve] = OrderedDict()
        #: cohort name ("" for the lab) -> (what its page depended on, its JSON).
        self._bodies: OrderedDict[str, tuple[tuple[Any, ...], bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._computing = threading.Lock()
        #: Sessions read and computed (cache misses) since the start: what the cache saves.
        self.computed = 0

    def _versions(self, mice: Select[Any] | list[str]) -> dict[str, Version]:
        """Each of ``mice``'s :data:`Version` (one query); mice with no session left out."""
        query = (
            select(
                SESSIONS.c.mouse_id,
                func.count(),
                func.max(SESSIONS.c.completed_at),
                func.max(SESSIONS.c.id),
            )
            # Complete is enough to tell a change (a complete session always has its
            # JSON), and lets the index ix_sessions_mouse_version answer alone.
            .where(SESSIONS.c.mouse_id.in_(mice), SESSIONS.c.complete.is_(True))
            .group_by(SESSIONS.c.mouse_id)
        )
        with self.db.reader_engine.connect() as conn:
            return {mouse: (count, last, top) for mouse, count, last, top in conn.execute(query)}

    def _stored(self, mice: list[str]) -> dict[str, list[SessionKey]]:
        """Each of ``mice``'s complete stored sessions, in training order."""
        out: dict[str, list[SessionKey]] = {}
        for start in range(0, len(mice), READ_BATCH):
            query = (
                select(
                    SESSIONS.c.mouse_id, SESSIONS.c.id, SESSIONS.c.digest, SESSIONS.c.completed_at
                )
                .where(SESSIONS.c.mouse_id.in_(mice[start : start + READ_BATCH]), *STORED)
                .order_by(SESSIONS.c.mouse_id, SESSIONS.c.position, SESSIONS.c.id)
            )
            with self.db.reader_engine.connect() as conn:
                for mouse, pk, digest, completed in conn.execute(query):
                    out.setdefault(mouse, []).append((pk, digest, completed))
        return out

    def _points(self, stored: dict[str, list[SessionKey]]) -> dict[str, list[dict[str, Any]]]:
        """Each mouse's points from its sessions': cached ones as they are, the others
        read (in batches) and computed once."""
        found: dict[SessionKey, dict[str, Any]] = {}
        with self._lock:
            for keys in stored.values():
                for key in keys:
                    point = self._cache.get(key)
                    if point is not None:
                        self._cache.move_to_end(key)
                        found[key] = point
        owner = {key: mouse for mouse, keys in stored.items() for key in keys}
        if len(found) < len(owner):
            # One request computes at a time: others asking for the same sessions at once
            # (a cohort page opened twice, or by anyone on the network) find them done
            # instead of computing them again side by side.
            with self._computing:
                with self._lock:
                    for key in owner:
                        if key not in found and key in self._cache:
                            found[key] = self._cache[key]
                missing = [key for key in owner if key not in found]
                for start in range(0, len(missing), READ_BATCH):
                    found.update(self._compute(missing[start : start + READ_BATCH], owner))
        return {
            mouse: [
                {"index": index, **found[key]}
                for index, key in enumerate((k for k in keys if k in found), 1)
            ]
            for mouse, keys in stored.items()
        }

    def _compute(
        self, keys: list[SessionKey], owner: dict[SessionKey, str]
    ) -> dict[SessionKey, dict[str, Any]]:
        """The points of these sessions, read and computed, and kept."""
        batch = {key[0]: key for key in keys}
        with self.db.reader_engine.connect() as conn:
            rows = conn.execute(
                select(SESSIONS.c.id, SESSIONS.c.data).where(SESSIONS.c.id.in_(batch))
            ).all()
        computed = {
            batch[pk]: session_point(owner[batch[pk]], json.loads(text)) for pk, text in rows
        }
        with self._lock:
            self.computed += len(computed)
            for key, point in computed.items():
                self._cache[key] = point
            while len(self._cache) > self.cache_limit:
                self._cache.popitem(last=False)
        return computed

    def curves(
        self, mice: list[str], versions: dict[str, Version] | None = None
    ) -> dict[str, Curve]:
        """Each of ``mice``'s curve; ``versions``: theirs, when the caller has read them.

        The versions are read before the sessions, so a curve kept under a version holds
        at least what that version says: a session stored in between makes the next
        request's version differ, never a curve older than its version."""
        if versions is None:
            versions = self._versions(mice)
        out: dict[str, Curve] = {}
        with self._lock:
            for mouse, version in versions.items():
                curve = self._curves.get(mouse)
                if curve is not None and curve.version == version:
                    self._curves.move_to_end(mouse)
                    out[mouse] = curve
        stale = [mouse for mouse in versions if mouse not in out]
        for mouse, points in self._points(self._stored(stale)).items():
            latest = {**points[-1]["results"], "mouse": mouse} if points else None
            out[mouse] = Curve(
                versions[mouse],
                points,
                [{k: v for k, v in p.items() if k != "results"} for p in points],
                latest,
                # The latest session's row exactly as `labctl results` prints it.
                table_cells(latest) if latest else None,
            )
        with self._lock:
            for mouse in stale:
                if mouse in out and self.cache_limit:
                    self._curves[mouse] = out[mouse]
                    self._curves.move_to_end(mouse)
            while len(self._curves) > CURVES_LIMIT:
                self._curves.popitem(last=False)
        empty = Curve((0, None, None), [], [], None, None)
        return {mouse: out.get(mouse, empty) for mouse in mice}

    @property
    def cached(self) -> int:
        """Session points held now."""
        with self._lock:
            return len(self._cache)

    def curve(self, mouse: str) -> list[dict[str, Any]]:
        """The mouse's points, one per stored session in training order."""
        return self.curves([mouse])[mouse].points

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
        return self._cohort(name)[1]()

    def cohort_json(self, name: str | None) -> bytes:
        """:meth:`cohort` as the API sends it (JSON, UTF-8); the same bytes again, without
        building them, while nothing in it has changed: the cohorts, the mice, their
        boxes and their versions."""
        state, build = self._cohort(name)
        with self._lock:
            kept = self._bodies.get(name or "")
            if kept is not None and kept[0] == state and self.cache_limit:
                self._bodies.move_to_end(name or "")
                return kept[1]
        body = json.dumps(
            build(), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
        if self.cache_limit:
            with self._lock:
                self._bodies[name or ""] = (state, body)
                self._bodies.move_to_end(name or "")
                while len(self._bodies) > BODIES_LIMIT:
                    self._bodies.popitem(last=False)
        return body

    def _cohort(self, name: str | None) -> tuple[tuple[Any, ...], Callable[[], dict[str, Any]]]:
        """What the cohort's page depends on, read now, and what builds its data."""
        with self.db.reader() as tx:
            cohorts = [cohort for cohort, _ in list_cohorts(tx)]
            mice = cohort_members(tx, name) if name else all_mice(tx)
            assigned = {mouse: box for box, mouse in assignments_by_box(tx).items()}
        boxes = {mouse: assigned.get(mouse) for mouse in mice}
        members = (
            select(CohortMember.mouse_id).where(CohortMember.cohort_name == name)
            if name
            else select(Mouse.id)
        )
        versions = self._versions(members)

        def build() -> dict[str, Any]:
            rows = []
            curves = {}
            for mouse, curve in self.curves(mice, versions).items():
                curves[mouse] = curve.plain
                rows.append(
                    {
                        "mouse": mouse,
                        "box": boxes[mouse],
                        "sessions": len(curve.points),
                        "latest": curve.latest,
                        "cells": curve.cells,
                        "correct_pct": curve.points[-1]["correct_pct"] if curve.points else None,
                    }
                )
            return {
                "cohort": name,
                "cohorts": cohorts,
                "columns": list(TABLE_COLUMNS),
                "rows": rows,
                "curves": curves,
            }

        return (cohorts, mice, boxes, versions), build
