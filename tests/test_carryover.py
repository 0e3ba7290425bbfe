"""Carry-over (shared.carryover): where the next session starts, from the last sessions' trials."""

from __future__ import annotations

from typing import Any

from shared.carryover import CarryOver, carry_over_from, last_carry_over

from .trials import spout_trial as trial

# ================================================================ carry-over


def test_no_carry_over_without_trials() -> None:
    assert carry_over_from(None, 15) is None
    assert carry_over_from({}, 15) is None
    assert carry_over_from({"trials": []}, 15) is None


def test_carry_over_takes_last_position_shortest_last_cue_and_windows() -> None:
    previous = {
        "trials": [
            trial(0, 1, cue=7000.0, position=[2, 1]),
            trial(1, 0, cue=9000.0, position=[2, 1]),
            trial(0, 2, cue=8000.0, position=[3, 1]),
            trial(0, 1, cue=8000.0, position=[3, 1]),
            trial(1, 1, cue=8500.0, position=[3, 2]),
            trial(0, 0, cue=8000.0, position=[3, 2]),
        ]
    }
    carry = carry_over_from(previous, window=2)
    assert carry == CarryOver(
        spout_position=(3, 2),  # the last trial's
        cue_duration=8000.0,  # min(last on spout 0 = 8000, last on spout 1 = 8500), not 7000
        windows=((1, 0), (0, 1)),  # last 2 outcomes per spout, oldest first
    )
    whole = carry_over_from(previous, window=15)
    assert whole is not None
    assert whole.windows == ((1, 2, 1, 0), (0, 1))


def test_carry_over_from_an_old_file_uses_the_trials_it_can_and_never_fails() -> None:
    # The original's files: a last trial cut short by Ctrl-C, an empty or cancelled trial,
    # a single actuator's int position; before, the cut trial hid the whole session.
    previous = {
        "trials": [
            trial(0, 1, cue=7000.0, position=[2, 1]),
            trial(1, 2, cue=6500.0, position=[2, 3]),
            {**trial(1, 1), "spout_position": 4},
            {**trial(0, 3), "outcome": 3},
            {**trial(0, 1), "cue_duration": None},
            {},
            {"start": 1.0, "lift_time": 1.5, "lift_paw": 0},
        ]
    }
    carry = carry_over_from(previous, window=15)
    assert carry == CarryOver(spout_position=(2, 3), cue_duration=6500.0, windows=((1,), (2,)))
    odd: list[dict[str, Any]] = [
        {"trials": None},
        {"trials": {"0": trial(0, 1)}},
        {"trials": [{}, None, 3]},
    ]
    for session_dict in odd:
        assert carry_over_from(session_dict, 15) is None


def test_last_carry_over_skips_sessions_without_trials() -> None:
    sessions: list[dict[str, Any]] = [
        {"trials": [trial(1, 1, cue=6000.0, position=[5, 4])]},
        {"trials": []},
        {"notes": "aborted before the first trial"},
    ]
    carry = last_carry_over(sessions, window=15)
    assert carry is not None
    assert (carry.spout_position, carry.cue_duration, carry.windows) == ((5, 4), 6000.0, ((), (1,)))
    assert last_carry_over([], window=15) is None
