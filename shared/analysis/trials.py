"""Reading trials and ITI events out of raw session dicts, whatever shape the original wrote.

Nothing here refuses a session: a value of an unexpected type is simply not
counted. Numbers compare the way the original library compared them (``==``),
so ``1.0`` is a right spout just as it was for the original.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

#: Trial outcomes, as the original library numbered them.
MISSED, CORRECT, INCORRECT, CANCELLED = 0, 1, 2, 3
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


def skipped_trials(session: Mapping[str, Any]) -> int:
    """How many of the session's trials analysis cannot count (see :func:`countable`)."""
    return sum(1 for t in raw_trials(session) if not countable(t))


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


def shaping_trial(trial: Trial, session: Mapping[str, Any]) -> bool:
    """Water was given at this trial's cue onset.

    The trial's own ``shaping`` when it is true/false; when it is missing or
    null, the session-level ``shaping`` of the 2019 files, else no.
    """
    own = trial.get("shaping")
    if isinstance(own, bool):
        return own
    return session.get("shaping") is True


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
