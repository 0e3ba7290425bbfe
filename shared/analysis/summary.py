"""reachlab's results figure: one row per session or per training day, and its table.

This is what ``labctl results``, ``labagent train`` and the demo print. Its
d' is the original library's (:mod:`shared.analysis.dprime`), a day's d' is
the same rule over the day's trials, and its days are the original's
(:func:`shared.analysis.original.day_numbers`). docs/analysis.md defines
every figure.

* **Pairs** are ``(left, right)``: per target spout for the outcomes, per paw
  for resets, per touched spout for spontaneous reaches.
* **trials** counts every trial as the original did; **trials_skipped** says
  how many of them analysis could not count (empty, cut short, cancelled).
* **d_prime** is None for a row without any trial (the original gave such a
  session no row at all), the original's number otherwise.
* **Water**: every correct trial is rewarded at the touch and every shaping
  trial at cue onset as well, so ``rewards = correct + shaping trials`` and
  ``water_ul = rewards x reward_volume_ul`` (the session's own setting, or
  6 µl before that key existed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

from shared.analysis.dprime import original_counts
from shared.analysis.original import day_numbers
from shared.analysis.trials import (
    count_trials,
    raw_trials,
    side_events,
)
from shared.outcomes import CORRECT, INCORRECT, MISSED, rewards_in

#: Water per reward assumed for sessions recorded before ``reward_volume_ul`` existed.
DEFAULT_REWARD_VOLUME_UL = 6.0

Pair = tuple[int, int]


@dataclass(frozen=True)
class SessionResults:
    """The results of one session, or of one day's sessions together."""

    mouse: str | None
    date: str | None
    sessions: int
    status: str | None  # complete / stopped / aborted; a day's differing ones joined by "/"
    trials: int
    trials_skipped: int
    correct: Pair
    incorrect: Pair
    missed: Pair
    resets: Pair
    spontaneous_reaches: Pair
    correction_trials: int
    signal_trials: int
    hits: int
    noise_trials: int
    false_alarms: int
    d_prime: float | None
    reaction_time_median: float | None
    lift_latency_median: float | None
    rewards: int
    water_ul: float

    @property
    def total_correct(self) -> int:
        return sum(self.correct)

    @property
    def total_incorrect(self) -> int:
        return sum(self.incorrect)

    @property
    def total_missed(self) -> int:
        return sum(self.missed)

    def as_dict(self) -> dict[str, Any]:
        """The results as JSON-ready values; pairs become ``[left, right]`` lists."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }


def _reward_volume(session: Mapping[str, Any]) -> float:
    value = session.get("reward_volume_ul")
    if isinstance(value, bool):
        return DEFAULT_REWARD_VOLUME_UL
    if isinstance(value, int | float | str):
        try:
            volume = float(value)
        except ValueError:
            return DEFAULT_REWARD_VOLUME_UL
        if math.isfinite(volume) and volume >= 0:
            return volume
    return DEFAULT_REWARD_VOLUME_UL


def _median(values: list[float]) -> float | None:
    return median(values) if values else None


def _sides(events: Iterable[tuple[Any, int | None]]) -> Pair:
    counts = [0, 0]
    for _, spout in events:
        if spout is not None:
            counts[spout] += 1
    return counts[0], counts[1]


def _status(sessions: Sequence[Mapping[str, Any]]) -> str | None:
    seen: list[str] = []
    for session in sessions:
        status = session.get("status")
        if isinstance(status, str) and status not in seen:
            seen.append(status)
    return "/".join(seen) or None


def summarise(sessions: Sequence[Mapping[str, Any]], mouse: str | None = None) -> SessionResults:
    """One row for these sessions together (one session, or one day's in order)."""
    sessions = [s if isinstance(s, Mapping) else {} for s in sessions]
    trial_counts = [count_trials(s) for s in sessions]
    outcomes = [
        [sum(t.outcomes[o][side] for t in trial_counts) for side in (0, 1)] for o in range(3)
    ]
    total = sum(len(raw_trials(s)) for s in sessions)
    counts = original_counts(t for s in sessions for t in raw_trials(s))
    rewards, water = 0, 0.0
    for session in sessions:
        session_shaping = session.get("shaping") is True
        given = sum(
            rewards_in(trial, session_shaping)
            for trial in raw_trials(session)
            if isinstance(trial, Mapping)
        )
        rewards += given
        water += given * _reward_volume(session)
    dates = [s.get("date") for s in sessions]
    return SessionResults(
        mouse=mouse,
        date=dates[0] if dates and isinstance(dates[0], str) else None,
        sessions=len(sessions),
        status=_status(sessions),
        trials=total,
        trials_skipped=sum(t.skipped for t in trial_counts),
        correct=(outcomes[CORRECT][0], outcomes[CORRECT][1]),
        incorrect=(outcomes[INCORRECT][0], outcomes[INCORRECT][1]),
        missed=(outcomes[MISSED][0], outcomes[MISSED][1]),
        resets=_sides(e for s in sessions for e in side_events(s, "resets")),
        spontaneous_reaches=_sides(
            e for s in sessions for e in side_events(s, "spontaneous_reaches")
        ),
        correction_trials=counts.correction_trials,
        signal_trials=counts.signal_trials,
        hits=counts.hits,
        noise_trials=counts.noise_trials,
        false_alarms=counts.false_alarms,
        d_prime=counts.d_prime if total else None,
        reaction_time_median=_median([v for t in trial_counts for v in t.reaction_times]),
        lift_latency_median=_median([v for t in trial_counts for v in t.lift_latencies]),
        rewards=rewards,
        water_ul=water,
    )


def session_results(session: Mapping[str, Any]) -> SessionResults:
    """The results of one session dict as stored in a per-mouse file."""
    return summarise([session])


def mouse_results(
    mouse_id: str, sessions: Sequence[Mapping[str, Any]], collapse_days: bool = False
) -> list[SessionResults]:
    """One row per session in training order, or per training day with ``collapse_days``.

    A day is the original's (:func:`~shared.analysis.original.day_numbers`):
    consecutive sessions with trials sharing a ``date``.
    """
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for day, session in zip(day_numbers(sessions, collapse_days), sessions, strict=True):
        groups.setdefault(day, []).append(session)
    return [summarise(group, mouse_id) for group in groups.values()]


def cohort_results(
    mice: Mapping[str, Sequence[Mapping[str, Any]]], collapse_days: bool = False
) -> list[dict[str, Any]]:
    """Rows for every mouse, in the order given, each mouse's sessions (or days) numbered from 1."""
    rows: list[dict[str, Any]] = []
    for mouse_id, sessions in mice.items():
        for index, result in enumerate(mouse_results(mouse_id, sessions, collapse_days), 1):
            rows.append({"mouse": mouse_id, "index": index, **result.as_dict()})
    return rows
