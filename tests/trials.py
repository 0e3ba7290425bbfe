"""Trials and task settings in the session file format, for tests to build sessions from."""

from __future__ import annotations

from typing import Any

#: When trial 0 of a made-up session starts (Unix seconds).
T0 = 1_700_000_000.0


def trial(n: int, spout: Any, outcome: Any, rt: float = 1.0, **extra: Any) -> dict[str, Any]:
    """Trial ``n`` of a session: cue at ``T0`` + 100 n s, touch (or cue end) ``rt`` s later;
    ``extra`` adds fields or replaces these (``spout_position`` is [1, 1] otherwise)."""
    start = T0 + 100 * n
    return {
        "start": start,
        "end": start + rt,
        "spout": spout,
        "shaping": False,
        "cue_duration": 10000.0,
        "outcome": outcome,
        "spout_position": [1, 1],
        **extra,
    }


def spout_trial(
    spout: int, outcome: int, cue: float = 10000.0, position: list[int] | None = None
) -> dict[str, Any]:
    """A trial where only the spout, the outcome, the cue and the spouts' position matter
    (the per-mouse file's and the carry-over's tests)."""
    return {
        "start": 1.0,
        "end": 2.0,
        "spout": spout,
        "shaping": False,
        "cue_duration": cue,
        "outcome": outcome,
        "spout_position": position or [1, 1],
    }


#: The task settings of the design, in its order (a session's settings follow its metadata).
DESIGN_DEFAULTS: dict[str, Any] = {
    "duration": 1800,
    "intertrial_interval": [4000, 6000],
    "timeout": 8000,
    "cue_duration": 10000,
    "min_cue_duration": 2000,
    "cue_decay": 0.997,
    "window": 15,
    "advance_threshold": 0.90,
    "advance_delay": 5,
    "advance_with_incorrects": False,
    "spout_positions": [1, 2, 3, 4, 5, 6, 7],
    "reward_duration_ms": [70, 70],
    "reward_volume_ul": 6,
    "initial_spout": "random",
    "shaping": "off",
}
