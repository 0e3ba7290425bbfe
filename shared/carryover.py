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


def carry_over_from(previous: dict[str, Any] | None, window: int) -> CarryOver | None:
    """The carry-over from ``previous`` (a session dict), or None if it had no usable trials."""
    if not previous or window < 1:
        return None
    trials = [t for t in previous.get("trials", []) if isinstance(t, dict)]
    if not trials:
        return None
    last = trials[-1]
    position = last.get("spout_position")
    if not (isinstance(position, list) and len(position) == 2):
        return None
    last_cue: dict[int, float] = {}
    outcomes: dict[int, list[int]] = {0: [], 1: []}
    for trial in trials:
        spout = trial.get("spout")
        if spout not in (0, 1):
            continue
        last_cue[spout] = float(trial["cue_duration"])
        outcomes[spout].append(int(trial["outcome"]))
    if not last_cue:
        return None
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
