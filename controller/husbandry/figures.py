"""A session's reward figures, computed once when it is stored: the rewards per spout and
when they were given, the volume and durations the session names.

The water accounting (:mod:`.water`) reckons a day's earned water from these stored
figures, so ``labctl report`` over a year never reads a session's trials again. Which
trials gave water is :mod:`shared.outcomes`'s rule; this module only finds each reward's
spout and time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.outcomes import is_reward, is_shaping_reward

#: The ``sessions`` columns :func:`reward_figures` fills.
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
