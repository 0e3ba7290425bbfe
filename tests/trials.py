"""Trial dicts in the session file format, for the analysis tests to build sessions from."""

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
