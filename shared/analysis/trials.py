"""Reading trials and ITI events out of raw session dicts, whatever shape the original wrote.

Nothing here refuses a session: a value of an unexpected type is simply not
counted. Numbers compare the way the original library compared them (``==``),
so ``1.0`` is a right spout just as it was for the original.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from shared.outcomes import CORRECT, INCORRECT, MISSED, is_shaping_reward

#: The original library's code for a cancelled trial (reachlab never records one).
CANCELLED = 3
#: Spouts and paws.
LEFT, RIGHT = 0, 1

Trial = Mapping[str, Any]


def is_number(value: Any) -> TypeGuard[int | float]:
    """A finite JSON number (true/false and strings are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def equals(value: Any, wanted: int) -> bool:
    """``value == wanted`` for a JSON number; true/false never match (the original wrote none)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == wanted


def raw_trials(session: Mapping[str, Any]) -> list[Any]:
    """The session's ``trials`` list as stored; [] when it has none (the 2019 timepoints shape)."""
    trials = session.get("trials") if isinstance(session, Mapping) else None
    return trials if isinstance(trials, list) else []


def trial_dicts(session: Mapping[str, Any]) -> list[Trial]:
    """The session's trials that are dicts, in order."""
    return [t for t in raw_trials(session) if isinstance(t, Mapping)]


def side(value: Any) -> int | None:
    """``value`` as LEFT or RIGHT when it equals one of them, else None."""
    for wanted in (LEFT, RIGHT):
        if equals(value, wanted):
            return wanted
    return None


def outcome(trial: Trial) -> int | None:
    """The trial's outcome if it is missed, correct or incorrect, else None."""
    value = trial.get("outcome")
    for wanted in (MISSED, CORRECT, INCORRECT):
        if equals(value, wanted):
            return wanted
    return None


def countable(trial: Any) -> bool:
    """A trial with a target spout and a missed/correct/incorrect outcome.

    What is not countable: ``{}``, a last trial cut short by Ctrl-C (no spout
    or no outcome), a cancelled trial (outcome 3), anything that is not a dict.
    """
    return (
        isinstance(trial, Mapping)
        and side(trial.get("spout")) is not None
        and (outcome(trial) is not None)
    )


def reaction_time(trial: Trial) -> float | None:
    """Touch minus cue onset (``end - start``, s) of a correct or incorrect trial, else None.

    Missed trials have no touch (their ``end`` is the cue's end) and give None,
    as in the original's reaction-time scripts.
    """
    if not countable(trial) or outcome(trial) == MISSED:
        return None
    return _since_start(trial, "end")


def lift_latency(trial: Trial) -> float | None:
    """First paw lift minus cue onset (``lift_time - start``, s); None without a lift."""
    if not countable(trial):
        return None
    return _since_start(trial, "lift_time")


def _since_start(trial: Trial, key: str) -> float | None:
    start, then = trial.get("start"), trial.get(key)
    if is_number(start) and is_number(then):
        return float(then) - float(start)
    return None


def _pairs(value: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(value, list):
        for event in value:
            if isinstance(event, list | tuple) and len(event) >= 2:
                yield event[0], event[1]


def _per_side(value: Any) -> Iterator[tuple[Any, int | None]]:
    """The 2019 ``[[left times], [right times]]`` lists, or one flat list of times."""
    if not isinstance(value, list):
        return
    if value and all(isinstance(v, list) for v in value):
        for index, times in enumerate(value):
            for t in times:
                yield t, index if index in (LEFT, RIGHT) else None
    else:
        for t in value:
            yield t, None


def side_events(session: Mapping[str, Any], key: str) -> list[tuple[Any, int | None]]:
    """``(time, side)`` of every reset (``key="resets"``) or spontaneous reach.

    Reads ``[[t, side], ...]`` and, for 2019 sessions without it, the
    per-side ``resets_timepoints`` / ``spont_reach_timepoints`` lists. A side
    that is not 0 or 1 (or unknown, in a flat 2019 list) is None.
    """
    if key in session:
        return [(t, side(s)) for t, s in _pairs(session.get(key))]
    legacy = {"resets": "resets_timepoints", "spontaneous_reaches": "spont_reach_timepoints"}
    return list(_per_side(session.get(legacy[key])))


_NUMBER_TYPES = (int, float)


def _code(value: Any, allowed: tuple[int, ...]) -> int | None:
    # The hot path of :func:`count_trials`: equals() for each allowed value, inlined.
    if type(value) in _NUMBER_TYPES and value in allowed:
        return int(value)
    return None


@dataclass
class TrialCounts:
    """What one pass over a session's trials counts (see :func:`count_trials`)."""

    #: ``outcomes[outcome][side]`` for countable trials, outcome MISSED/CORRECT/INCORRECT.
    outcomes: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0], [0, 0]])
    skipped: int = 0
    shaping: int = 0
    reaction_times: list[float] = field(default_factory=list)
    lift_latencies: list[float] = field(default_factory=list)


def count_trials(session: Mapping[str, Any]) -> TrialCounts:
    """Count a session's trials in one pass.

    Countable trials as :func:`countable`, their :func:`reaction_time` and
    :func:`lift_latency`; shaping trials (water at cue onset) are a trial's own
    ``shaping`` when true/false, else, when it is missing or null, the
    session-level ``shaping`` of the 2019 files.
    """
    result = TrialCounts()
    session_shaping = session.get("shaping") is True
    for trial in raw_trials(session):
        if not isinstance(trial, Mapping):
            result.skipped += 1
            continue
        if is_shaping_reward(trial, session_shaping):
            result.shaping += 1
        spout = _code(trial.get("spout"), (LEFT, RIGHT))
        result_code = _code(trial.get("outcome"), (MISSED, CORRECT, INCORRECT))
        if spout is None or result_code is None:
            result.skipped += 1
            continue
        result.outcomes[result_code][spout] += 1
        start = trial.get("start")
        if not is_number(start):
            continue
        if result_code != MISSED:
            end = trial.get("end")
            if is_number(end):
                result.reaction_times.append(float(end) - float(start))
        lift = trial.get("lift_time")
        if is_number(lift):
            result.lift_latencies.append(float(lift) - float(start))
    return result
