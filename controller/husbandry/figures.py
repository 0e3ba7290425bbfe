"""A session's figures, computed once when it is stored: the rewards per spout and when
they were given, the volume and durations the session names (:func:`reward_figures`),
and its part of the day's correct % and d' (:func:`training_figures`).

The water accounting (:mod:`.water`) reckons a day's earned water from these stored
figures and ``labctl today`` its training figures, so neither ``labctl report`` over a
year nor ``today`` reads a session's trials again. Which trials gave water is
:mod:`shared.outcomes`'s rule and how trials count towards d' is
:mod:`shared.analysis.dprime`'s; this module only stores what they find.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.analysis.dprime import DPrimeCounts, SessionTouches, session_touches
from shared.analysis.trials import count_trials, raw_trials
from shared.outcomes import CORRECT, is_reward, is_shaping_reward

#: The ``sessions`` columns :func:`reward_figures` fills (migration 0007).
FIGURE_COLUMNS = (
    "left_rewards", "right_rewards", "first_reward_at", "last_reward_at",
    "reward_ul", "left_reward_ms", "right_reward_ms",
)  # fmt: skip


def number(value: Any) -> float | None:
    """A JSON number as a float (true/false are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def rewards(data: dict[str, Any]) -> Iterable[tuple[int, float]]:
    """(spout, time) of every reward a session dict records."""
    trials = data.get("trials")
    if not isinstance(trials, list):
        return
    for trial in trials:
        if not isinstance(trial, dict):
            continue
        spout = trial.get("spout")
        if isinstance(spout, bool) or spout not in (0, 1):
            continue
        if is_shaping_reward(trial) and (t := number(trial.get("start"))) is not None:
            yield spout, t
        if is_reward(trial.get("outcome")):
            t = number(trial.get("end")) or number(trial.get("start"))
            if t is not None:
                yield spout, t


def durations(data: dict[str, Any]) -> list[float | None]:
    """The reward duration of each spout in ms, as the session names it."""
    value = data.get("reward_duration_ms")
    if isinstance(value, list) and len(value) == 2:
        return [number(v) for v in value]
    one = number(value)
    return [one, one]


def reward_figures(data: Any) -> dict[str, Any]:
    """The figure columns of a stored session's dict (all empty for what is not a dict)."""
    counts = [0, 0]
    first = last = None
    left_ms = right_ms = volume = None
    if isinstance(data, dict):
        for spout, t in rewards(data):
            counts[spout] += 1
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
        left_ms, right_ms = durations(data)
        volume = number(data.get("reward_volume_ul"))
    values = (counts[0], counts[1], first, last, volume, left_ms, right_ms)
    return dict(zip(FIGURE_COLUMNS, values, strict=True))


#: The ``sessions`` columns :func:`training_figures` fills (migration 0011).
TRAINING_COLUMNS = (
    "listed_trials", "correct_trials", "signal_trials", "hits", "noise_trials",
    "false_alarms", "correction_trials", "first_touch_left", "first_touch_incorrect",
    "last_touch_incorrect",
)  # fmt: skip


def training_figures(data: Any) -> dict[str, Any]:
    """The training figure columns of a stored session's dict: every entry of its trials
    list (the analysis's ``trials``), the correct ones, and its :class:`SessionTouches`."""
    session = data if isinstance(data, dict) else {}
    trials = raw_trials(session)
    correct = sum(count_trials(session).outcomes[CORRECT]) if trials else 0
    touches = session_touches(trials)
    c, first = touches.counts, touches.first_touch
    values = (
        len(trials), correct, c.signal_trials, c.hits, c.noise_trials, c.false_alarms,
        c.correction_trials, None if first is None else first[0],
        None if first is None else first[1], touches.last_touch_incorrect,
    )  # fmt: skip
    return dict(zip(TRAINING_COLUMNS, values, strict=True))


def session_figures(data: Any) -> dict[str, Any]:
    """Every figure column of a stored session's dict: what is stored with its ``data``."""
    return {**reward_figures(data), **training_figures(data)}


def touches_of(row: Any) -> SessionTouches:
    """The :class:`SessionTouches` of a row with the :data:`TRAINING_COLUMNS`."""
    counts = DPrimeCounts(
        row.signal_trials, row.hits, row.noise_trials, row.false_alarms, row.correction_trials
    )
    first = (
        None
        if row.first_touch_left is None
        else (row.first_touch_left, bool(row.first_touch_incorrect))
    )
    return SessionTouches(counts, first, bool(row.last_touch_incorrect))
