"""What a trial's outcome means: the three outcomes, their names, and the reward rule.

The one home of "which trials gave water" (DESIGN §3): a correct trial is rewarded at its
end from its target spout, and a shaping trial was also rewarded at its cue onset. The
engine, the document fold, the stored counts, husbandry's water accounting and the
analysis all ask here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Outcome = Literal[0, 1, 2]
MISSED, CORRECT, INCORRECT = 0, 1, 2
#: What each outcome is called in logs and tables.
OUTCOME_NAMES: dict[int, str] = {MISSED: "missed", CORRECT: "correct", INCORRECT: "incorrect"}


def outcome_name(outcome: int) -> str:
    """``missed``, ``correct`` or ``incorrect``."""
    return OUTCOME_NAMES[outcome]


def is_reward(outcome: object) -> bool:
    """True for the outcome that earns water at the trial's end: correct. A JSON ``true``
    (which Python would take for 1) is not an outcome."""
    return outcome == CORRECT and not isinstance(outcome, bool)


def is_shaping_reward(trial: Mapping[str, Any], session_shaping: bool = False) -> bool:
    """True when the trial gave water at its cue onset: its own ``shaping`` is true, or,
    with ``session_shaping`` (the session-level ``shaping: true`` of the 2019 files), it has
    no true/false of its own."""
    own = trial.get("shaping")
    return own is True or (session_shaping and not isinstance(own, bool))


def rewards_in(trial: Mapping[str, Any], session_shaping: bool = False) -> int:
    """How many rewards a trial dict records: one at cue onset when shaping, one at the end
    when correct."""
    return int(is_shaping_reward(trial, session_shaping)) + int(is_reward(trial.get("outcome")))
