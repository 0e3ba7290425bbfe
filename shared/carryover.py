"""Carry-over: the state a session inherits from the mouse's previous session (DESIGN §3.6).

The controller computes it from the database, the single-rig API from the
per-mouse file; both use :func:`carry_over_from` so they agree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CarryOver(BaseModel):
    """Where the previous session left the spouts, the cue and each spout's window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spout_position: tuple[int, int] = Field(description="[left, right] position in mm")
    cue_duration: float = Field(gt=0, description="cue duration in ms")
    windows: tuple[tuple[int, ...], tuple[int, ...]] = Field(
        description="outcomes of the previous session's last trials, per spout, oldest first"
    )


def _usable(trial: Any) -> bool:
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if not isinstance(trial, dict):
        return False
    position = trial.get("spout_position")
    return (
        trial.get("spout") in (0, 1)
        and trial.get("outcome") in (0, 1, 2)
        and number(trial.get("cue_duration"))
        and trial["cue_duration"] > 0
        and isinstance(position, list)
        and len(position) == 2
        and all(isinstance(p, int) and not isinstance(p, bool) for p in position)
    )


def carry_over_from(previous: dict[str, Any] | None, window: int) -> CarryOver | None:
    """The carry-over from ``previous`` (a session dict), or None if it had no usable trials."""
    if not previous or window < 1:
        return None
    trials = previous.get("trials")
    # Imported files hold trials this cannot use (a last trial cut short by Ctrl-C, an
    # empty one, a single actuator's position): carry over from the ones it can.
    usable = [t for t in trials if _usable(t)] if isinstance(trials, list) else []
    if not usable:
        return None
    position = usable[-1]["spout_position"]
    last_cue: dict[int, float] = {}
    outcomes: dict[int, list[int]] = {0: [], 1: []}
    for trial in usable:
        spout = trial["spout"]
        last_cue[spout] = float(trial["cue_duration"])
        outcomes[spout].append(int(trial["outcome"]))
    return CarryOver(
        spout_position=(int(position[0]), int(position[1])),
        cue_duration=min(last_cue.values()),
        windows=(tuple(outcomes[0][-window:]), tuple(outcomes[1][-window:])),
    )


def last_carry_over(sessions: list[dict[str, Any]], window: int) -> CarryOver | None:
    """Carry-over from the most recent session in ``sessions`` that had trials."""
    for session in reversed(sessions):
        carry = carry_over_from(session, window)
        if carry is not None:
            return carry
    return None
