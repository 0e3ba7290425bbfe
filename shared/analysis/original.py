"""Rows of the original library's ``get_results``, ``get_trials``, ``get_spontaneous_reaches``.

Same keys and numbers as ``reach.Session``/``reach.Mouse`` (so
``pandas.DataFrame(rows)`` gives the original's columns), but on every session
shape and without the original's crashes: a session with no trials, a stopped
or aborted session, partial or empty trials all give rows. What reachlab adds
is in keys of its own (``trials_skipped``, ``reaction_time``, ``lift_latency``,
``reaction_time_median``, ``lift_latency_median``, ``d_prime_day``); the raw
session dicts are never changed. docs/analysis.md describes every key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from statistics import median
from typing import Any

from shared.analysis.dprime import original_d_prime
from shared.analysis.trials import (
    LEFT,
    RIGHT,
    TrialCounts,
    count_trials,
    is_number,
    lift_latency,
    raw_trials,
    reaction_time,
    side_events,
    trial_dicts,
)
from shared.outcomes import OUTCOME_NAMES

Session = Mapping[str, Any]

#: Keys summed when ``collapse_days`` merges sessions of one date into one row.
_SUMMED = (
    "trials", "duration", "resets", "missed_l", "missed_r", "correct_l", "correct_r",
    "incorrect_l", "incorrect_r", "resets_l", "resets_r", "spontaneous_reaches_l",
    "spontaneous_reaches_r", "spontaneous_reaches", "trials_skipped",
)  # fmt: skip


def _median(values: list[float]) -> float | None:
    return median(values) if values else None


def session_d_prime(session: Session) -> float:
    """The original's ``Session.get_d_prime()``: 0.0 for a session without touches."""
    return original_d_prime(trial_dicts(session))


def session_results(session: Session) -> dict[str, Any]:
    """The original's ``Session.get_results()`` row, for any session.

    Every key of the session dict, with ``trials``, ``resets`` and
    ``spontaneous_reaches`` replaced by counts, plus the per-side counts and
    ``d_prime``. A session with no trials (the original returned None) gives a
    row of zeros whose ``d_prime`` is None. ``trials`` counts every trial as
    the original did, partial ones included; ``trials_skipped`` says how many
    of them could not be counted.
    """
    return _row(session)[0]


def _row(session: Session) -> tuple[dict[str, Any], TrialCounts]:
    row = dict(session)
    counts = count_trials(session)
    for wanted, name in OUTCOME_NAMES.items():
        row[f"{name}_l"], row[f"{name}_r"] = counts.outcomes[wanted]
    trials = raw_trials(session)
    row["trials"] = len(trials)
    for key in ("resets", "spontaneous_reaches"):
        events = side_events(session, key)
        row[key] = len(events)
        row[f"{key}_l"] = sum(1 for _, s in events if s == LEFT)
        row[f"{key}_r"] = sum(1 for _, s in events if s == RIGHT)
    row["d_prime"] = original_d_prime(trials) if trials else None
    row["trials_skipped"] = counts.skipped
    row["reaction_time_median"] = _median(counts.reaction_times)
    row["lift_latency_median"] = _median(counts.lift_latencies)
    return row, counts


def day_numbers(sessions: Sequence[Session], collapse_days: bool) -> list[int]:
    """The original's ``day`` of each session (1-based, in training order).

    Without ``collapse_days`` a session's day is its place in the file. With
    it, a session with trials whose ``date`` equals the date of the last
    session with trials before it shares that day (the original's rule in
    ``Mouse.get_trials``); sessions without trials or without a date never
    join another day.
    """
    keys = ((True, s.get("date")) if raw_trials(s) else (False, None) for s in sessions)
    return day_numbers_of(keys, collapse_days)


def day_numbers_of(sessions: Iterable[tuple[bool, Any]], collapse_days: bool) -> list[int]:
    """:func:`day_numbers` from each session's (has trials, ``date``) alone."""
    days: list[int] = []
    decrement = 0
    last_date: Any = None
    for index, (has_trials, date) in enumerate(sessions, start=1):
        if collapse_days and has_trials:
            if date is not None and date == last_date:
                decrement += 1
            last_date = date
        days.append(index - decrement)
    return days


def _merge(day_row: dict[str, Any], row: dict[str, Any]) -> None:
    for key in _SUMMED:
        first, other = day_row.get(key), row.get(key)
        if is_number(first) and is_number(other):
            day_row[key] = first + other
        elif is_number(other):
            day_row[key] = other
    day_row["end_time"] = row.get("end_time")
    day_row["notes"] = f"{day_row.get('notes')} ... {row.get('notes')}"
    # As the original: the merged d' is not one session's any more (see d_prime_day).
    day_row["d_prime"] = None


def mouse_results(
    mouse_id: str | None, sessions: Sequence[Session], collapse_days: bool = True
) -> list[dict[str, Any]]:
    """The original's ``Mouse.get_results(collapse_days)`` rows.

    Each row gets ``mouse_id``, ``day`` and ``notes`` (None when absent). With
    ``collapse_days`` the sessions of one day are merged into the first one's
    row, as the original: counts and ``duration`` summed, ``end_time`` the
    last's, notes joined with ``" ... "`` and ``d_prime`` None; reachlab adds
    ``d_prime_day``, the original's d' of the day's trials in order (what the
    original's training-summary script recomputes), and the medians of the
    whole day.
    """
    rows: list[dict[str, Any]] = []
    day_trials: list[list[Any]] = []
    day_counts: list[list[TrialCounts]] = []
    previous_day = None
    for day, session in zip(day_numbers(sessions, collapse_days), sessions, strict=True):
        row, counts = _row(session)
        row.setdefault("notes", None)
        row["mouse_id"] = mouse_id
        if collapse_days and day == previous_day:
            _merge(rows[-1], row)
            day_trials[-1].extend(raw_trials(session))
            day_counts[-1].append(counts)
            continue
        row["day"] = day
        previous_day = day
        rows.append(row)
        day_trials.append(list(raw_trials(session)))
        day_counts.append([counts])
    if collapse_days:
        for row, trials, trial_counts in zip(rows, day_trials, day_counts, strict=True):
            row["d_prime_day"] = original_d_prime(trials) if row.get("trials") else None
            row["reaction_time_median"] = _median(
                [v for t in trial_counts for v in t.reaction_times]
            )
            row["lift_latency_median"] = _median(
                [v for t in trial_counts for v in t.lift_latencies]
            )
    return rows


def _spout_positions(position: Any) -> dict[str, Any]:
    if isinstance(position, list):
        return {f"spout_position_{n}": value for n, value in enumerate(position)}
    if is_number(position):
        # Files of early 2020 hold one position for both spouts.
        return {"spout_position_0": position, "spout_position_1": position}
    return {}


def mouse_trials(
    mouse_id: str | None, sessions: Sequence[Session], collapse_days: bool = True
) -> list[dict[str, Any]]:
    """The original's ``Mouse.get_trials(collapse_days)`` rows: one per trial with an ``outcome``.

    Each is a copy of the trial with ``day``, ``mouse_id`` and
    ``spout_position_0``/``_1`` added, plus reachlab's ``reaction_time`` and
    ``lift_latency`` (s, None where there is none). Trials without an outcome
    (cut short) are left out, as by the original.
    """
    rows: list[dict[str, Any]] = []
    for day, session in zip(day_numbers(sessions, collapse_days), sessions, strict=True):
        for trial in trial_dicts(session):
            if "outcome" not in trial:
                continue
            row = dict(trial)
            row["day"] = day
            row["mouse_id"] = mouse_id
            row.update(_spout_positions(trial.get("spout_position")))
            row["reaction_time"] = reaction_time(trial)
            row["lift_latency"] = lift_latency(trial)
            rows.append(row)
    return rows


def session_spontaneous_reaches(session: Session) -> list[dict[str, Any]]:
    """The original's ``Session.get_spontaneous_reaches()``: ``timing`` and ``location``."""
    return [{"timing": t, "location": s} for t, s in side_events(session, "spontaneous_reaches")]


def mouse_spontaneous_reaches(
    mouse_id: str | None, sessions: Sequence[Session]
) -> list[dict[str, Any]]:
    """The original's ``Mouse.get_spontaneous_reaches()``: each reach with its ``day`` and mouse."""
    rows: list[dict[str, Any]] = []
    for day, session in enumerate(sessions, start=1):
        for reach in session_spontaneous_reaches(session):
            rows.append({**reach, "day": day, "mouse_id": mouse_id})
    return rows


__all__ = [
    "day_numbers",
    "mouse_results",
    "mouse_spontaneous_reaches",
    "mouse_trials",
    "session_d_prime",
    "session_results",
    "session_spontaneous_reaches",
]
