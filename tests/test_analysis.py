"""Session results: counts, d-prime without correction trials, water, days and tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from shared.analysis import (
    TABLE_COLUMNS,
    SessionResults,
    cohort_results,
    d_prime,
    format_table,
    mouse_results,
    session_results,
)
from shared.sessionfile import read_sessions

REPO = Path(__file__).resolve().parents[1]
# The legacy sample files of DESIGN §4, as the original library wrote them.
SAMPLES = REPO / "tests" / "data"
Z = NormalDist().inv_cdf


def make_session(
    spec: Sequence[tuple[Any, ...]],
    date: str | None = "2024-05-01",
    **extra: Any,
) -> dict[str, Any]:
    """A session dict whose trials are (spout, outcome[, shaping]) in order."""
    trials = []
    for n, item in enumerate(spec):
        spout, outcome = item[0], item[1]
        shaping = item[2] if len(item) > 2 else False
        start = 1_700_000_000.0 + 20 * n
        trials.append(
            {
                "start": start,
                "end": start + 1.5,
                "spout": spout,
                "shaping": shaping,
                "cue_duration": 10000.0,
                "outcome": outcome,
                "spout_position": [1, 1],
            }
        )
    session: dict[str, Any] = {"trials": trials, "resets": [], "spontaneous_reaches": []}
    if date is not None:
        session["date"] = date
    session.update(extra)
    return session


# (spout, outcome); S = signal (right-spout) trial, N = noise (left-spout) trial,
# C = correction trial (previous trial missed/incorrect on the same spout).
TEN_TRIALS = [
    (1, 1, True),  # 1  S hit            (shaping)
    (0, 2, True),  # 2  N false alarm    (shaping)
    (0, 1),  # 3  C after the incorrect trial 2
    (1, 0),  # 4  S miss
    (1, 1),  # 5  C after the missed trial 4
    (1, 1),  # 6  S hit
    (0, 0),  # 7  N missed: not a false alarm
    (0, 1),  # 8  C after the missed trial 7
    (0, 1),  # 9  N correct
    (1, 1),  # 10 S hit
]


def test_session_counts_outcomes_per_target_spout() -> None:
    result = session_results(make_session(TEN_TRIALS))
    assert result.trials == 10
    # correct on spout 0: trials 3, 8, 9; on spout 1: trials 1, 5, 6, 10
    assert result.correct == (3, 4)
    # incorrect: trial 2 (spout 0) only
    assert result.incorrect == (1, 0)
    # missed: trial 7 (spout 0) and trial 4 (spout 1)
    assert result.missed == (1, 1)
    assert result.correction_trials == 3
    assert (result.total_correct, result.total_incorrect, result.total_missed) == (7, 1, 2)


def test_session_counts_resets_per_paw_and_spontaneous_reaches_per_spout() -> None:
    session = make_session(
        [(0, 1)],
        resets=[[1.0, 0], [2.0, 0], [3.0, 1]],
        spontaneous_reaches=[[4.0, 1]],
    )
    result = session_results(session)
    assert result.resets == (2, 1)
    assert result.spontaneous_reaches == (0, 1)
    assert (result.total_resets, result.total_spontaneous_reaches) == (3, 1)


def test_d_prime_uses_log_linear_rates_and_excludes_correction_trials() -> None:
    result = session_results(make_session(TEN_TRIALS))
    # Non-correction right-spout trials 1, 4, 6, 10: hits on 1, 6, 10.
    assert (result.signal_trials, result.hits) == (4, 3)
    # Non-correction left-spout trials 2, 7, 9: a false alarm on 2 only.
    assert (result.noise_trials, result.false_alarms) == (3, 1)
    # H = (3 + 0.5) / (4 + 1) = 0.7 ; FA = (1 + 0.5) / (3 + 1) = 0.375
    # d' = Z(0.7) - Z(0.375) = 0.5244005 - (-0.3186394) = 0.8430399
    assert result.d_prime == pytest.approx(Z(0.7) - Z(0.375))
    assert result.d_prime == pytest.approx(0.8430399, abs=1e-6)
    # Counting the correction trials 3, 5, 8 too would give
    # H = (4 + 0.5) / (5 + 1) = 0.75, FA = (1 + 0.5) / (5 + 1) = 0.25, d' = 1.349.
    assert result.d_prime != pytest.approx(Z(0.75) - Z(0.25), abs=1e-3)


def test_first_trial_and_trial_after_miss_on_other_spout_are_not_corrections() -> None:
    # Old files drew every target at random: trial 2 follows a miss but on the other
    # spout, so it was not predictable and counts. Trial 1 starts the session.
    result = session_results(make_session([(0, 0), (1, 1), (1, 2), (1, 1)]))
    assert result.correction_trials == 1  # trial 4 only (after incorrect trial 3, spout 1)
    # S trials 2, 3 (hit on 2); N trial 1 (missed, no false alarm)
    assert (result.signal_trials, result.hits, result.noise_trials, result.false_alarms) == (
        2,
        1,
        1,
        0,
    )
    # H = (1 + 0.5) / (2 + 1) = 0.5 ; FA = (0 + 0.5) / (1 + 1) = 0.25
    assert result.d_prime == pytest.approx(Z(0.5) - Z(0.25))


def test_d_prime_is_none_without_signal_or_noise_trials() -> None:
    assert session_results(make_session([(0, 1), (0, 1)])).d_prime is None
    assert session_results(make_session([(1, 1), (1, 1)])).d_prime is None
    assert session_results(make_session([])).d_prime is None
    assert d_prime(hits=0, signal_trials=0, false_alarms=0, noise_trials=5) is None


def test_d_prime_stays_finite_for_perfect_performance() -> None:
    # H = (10 + 0.5) / (10 + 1) ; FA = (0 + 0.5) / (10 + 1)
    value = d_prime(hits=10, signal_trials=10, false_alarms=0, noise_trials=10)
    assert value == pytest.approx(Z(10.5 / 11) - Z(0.5 / 11))
    assert value == pytest.approx(3.3812433, abs=1e-6)


def test_water_counts_correct_and_shaping_trials_times_reward_volume() -> None:
    # 7 correct + 2 shaping trials = 9 rewards; 9 x 5 µl = 45 µl
    result = session_results(make_session(TEN_TRIALS, reward_volume_ul=5))
    assert result.rewards == 9
    assert result.water_ul == pytest.approx(45.0)


@pytest.mark.parametrize("volume", [None, "lots", True, -3, [6]])
def test_water_defaults_to_6_ul_per_reward_without_a_usable_volume(volume: Any) -> None:
    session = make_session([(0, 1), (1, 1), (1, 0)])
    if volume is not None:
        session["reward_volume_ul"] = volume
    result = session_results(session)
    # 2 correct, no shaping: 2 x 6 µl
    assert (result.rewards, result.water_ul) == (2, 12.0)


def test_old_sessions_with_missing_keys_and_odd_values_do_not_crash() -> None:
    empty = session_results({})
    assert (empty.trials, empty.correct, empty.resets, empty.water_ul) == (0, (0, 0), (0, 0), 0.0)
    assert empty.date is None and empty.d_prime is None

    odd: dict[str, Any] = {
        "start_time": "16:45:18",
        "end_time": "17:04:26",
        "weight": "21.1",
        "date": 20200207,  # not a string: no date
        "trials": [
            "not a trial",
            {"spout": 1, "outcome": 1},  # counts
            {"spout": 2, "outcome": 1},  # unknown spout: counted as a trial only
            {"spout": 0, "outcome": 7},  # unknown outcome: counted as a trial only
            {"spout": 0, "outcome": True},  # a bool is not an outcome
            {"outcome": 2},  # no spout
        ],
        "resets": [[1.0, 0], [2.0], "x", [3.0, 5], [4.0, 1]],
        "spontaneous_reaches": None,
    }
    result = session_results(odd)
    assert result.trials == 5
    assert result.correct == (0, 1)
    assert result.incorrect == result.missed == (0, 0)
    assert result.resets == (1, 1)
    assert result.spontaneous_reaches == (0, 0)
    assert result.date is None
    assert session_results({"trials": None}).trials == 0


def test_as_dict_is_json_ready_with_left_right_lists() -> None:
    data = session_results(make_session(TEN_TRIALS)).as_dict()
    assert data["correct"] == [3, 4]
    assert data["missed"] == [1, 1]
    assert data["d_prime"] == pytest.approx(0.8430399, abs=1e-6)
    assert json.loads(json.dumps(data)) == data


def test_mouse_results_one_row_per_session_in_training_order() -> None:
    sessions = [make_session([(0, 1)], date="2024-05-01"), make_session([], date="2024-05-02")]
    rows = mouse_results("M1", sessions)
    assert [(r.mouse, r.date, r.trials, r.sessions) for r in rows] == [
        ("M1", "2024-05-01", 1, 1),
        ("M1", "2024-05-02", 0, 1),
    ]


def test_collapse_days_merges_sessions_of_the_same_date() -> None:
    morning = make_session(
        [(1, 1), (0, 2), (1, 0)],  # S hit, N false alarm, S miss (ends on a miss)
        date="2024-05-01",
        resets=[[1.0, 0]],
        reward_volume_ul=5,
    )
    other_day = make_session([(0, 1)], date="2024-05-02")
    undated = make_session([(0, 1)], date=None)
    afternoon = make_session(
        # Trial 1 follows the morning's miss on spout 1, but a new session starts
        # fresh: it is a signal trial (hit), not a correction. Trial 3 is a correction.
        [(1, 1), (0, 0), (0, 1)],
        date="2024-05-01",
        spontaneous_reaches=[[2.0, 1], [3.0, 0]],
    )
    rows = mouse_results("M1", [morning, other_day, undated, afternoon], collapse_days=True)

    assert [(r.date, r.sessions) for r in rows] == [("2024-05-01", 2), ("2024-05-02", 1), (None, 1)]
    day = rows[0]
    assert day.mouse == "M1"
    assert day.trials == 6
    assert day.correct == (1, 2)
    assert day.incorrect == (1, 0)
    assert day.missed == (1, 1)
    assert day.resets == (1, 0)
    assert day.spontaneous_reaches == (1, 1)
    assert day.correction_trials == 1
    # S: morning 1, 3 and afternoon 1 -> 3 trials, 2 hits
    # N: morning 2 (false alarm) and afternoon 2 (missed) -> 2 trials, 1 false alarm
    assert (day.signal_trials, day.hits, day.noise_trials, day.false_alarms) == (3, 2, 2, 1)
    # H = (2 + 0.5) / (3 + 1) = 0.625 ; FA = (1 + 0.5) / (2 + 1) = 0.5
    assert day.d_prime == pytest.approx(Z(0.625) - Z(0.5))
    # morning: 1 correct x 5 µl ; afternoon: 2 correct x 6 µl (no volume key)
    assert day.rewards == 3
    assert day.water_ul == pytest.approx(17.0)


def test_cohort_rows_name_mouse_and_number_sessions_or_days() -> None:
    mice = {
        "M2": [make_session([(0, 1)], date="2024-05-01"), make_session([], date="2024-05-01")],
        "M1": [make_session([(1, 0)], date="2024-05-03")],
    }
    rows = cohort_results(mice)
    assert [(r["mouse"], r["index"], r["date"], r["trials"]) for r in rows] == [
        ("M2", 1, "2024-05-01", 1),
        ("M2", 2, "2024-05-01", 0),
        ("M1", 1, "2024-05-03", 1),
    ]
    assert rows[2]["missed"] == [0, 1]

    days = cohort_results(mice, collapse_days=True)
    assert [(r["mouse"], r["index"], r["sessions"], r["trials"]) for r in days] == [
        ("M2", 1, 2, 1),
        ("M1", 1, 1, 1),
    ]


def test_format_table_aligns_columns_and_shows_totals() -> None:
    rows = cohort_results(
        {
            "M1": [make_session(TEN_TRIALS, resets=[[1.0, 0], [2.0, 1]])],
            "longer-mouse": [make_session([], date=None)],
        }
    )
    lines = format_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("mouse" + " " * (len("longer-mouse") - len("mouse") + 2) + "date")
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == [
        "M1", "2024-05-01", "10", "7", "1", "2", "2", "0", "0.84", "54.0",
    ]  # fmt: skip
    assert lines[3].split() == ["longer-mouse", "-", "0", "0", "0", "0", "0", "0", "-", "0.0"]
    # Every column header sits over its values: numbers end where their header ends.
    for header in TABLE_COLUMNS[2:]:
        end = lines[0].index(header) + len(header)
        assert lines[2][end - 1] != " " and (end == len(lines[2]) or lines[2][end] == " ")
    assert all(line == line.rstrip() for line in lines)


def test_format_table_accepts_results_and_empty_input() -> None:
    result = mouse_results("M1", [make_session([(0, 1)])])[0]
    assert isinstance(result, SessionResults)
    assert format_table([result]).splitlines()[2].split()[:3] == ["M1", "2024-05-01", "1"]
    assert format_table([]).splitlines()[0].split("  ")[0] == "mouse"


def test_legacy_clock_times_sample_results() -> None:
    sessions = read_sessions(SAMPLES / "legacy-clock-times.json")
    first, second = mouse_results("legacy", sessions)

    # Day 1 (spout, outcome): (0,1) (0,0) (1,0) (0,2) (0,1) (0,1), shaping on every trial.
    assert (first.date, first.trials) == ("2020-02-07", 6)
    assert (first.correct, first.incorrect, first.missed) == ((3, 0), (1, 0), (1, 1))
    assert first.resets == (1, 1)  # [..., 1], [..., 0]
    assert first.spontaneous_reaches == (0, 0)
    # Trial 3 follows a miss on the other spout: not a correction. Trial 5 follows
    # the incorrect trial 4 on spout 0: a correction.
    assert first.correction_trials == 1
    # S: trial 3 (missed) -> 1 trial, 0 hits; N: trials 1, 2, 4, 6 -> 4 trials, 1 FA (4)
    # H = (0 + 0.5) / (1 + 1) = 0.25 ; FA = (1 + 0.5) / (4 + 1) = 0.3
    assert first.d_prime == pytest.approx(Z(0.25) - Z(0.3))
    assert first.d_prime == pytest.approx(-0.1500892, abs=1e-6)
    # 3 correct + 6 shaping trials = 9 rewards x 6 µl (file has no reward_volume_ul)
    assert (first.rewards, first.water_ul) == (9, 54.0)

    # Day 2: (0,1) (1,1) (1,1) (0,1) (0,1), no shaping.
    assert (second.date, second.trials) == ("2020-02-08", 5)
    assert (second.correct, second.incorrect, second.missed) == ((3, 2), (0, 0), (0, 0))
    assert second.resets == (1, 0)
    assert second.spontaneous_reaches == (0, 1)
    # H = (2 + 0.5) / (2 + 1) ; FA = (0 + 0.5) / (3 + 1) = 0.125
    assert second.d_prime == pytest.approx(Z(2.5 / 3) - Z(0.125))
    assert (second.rewards, second.water_ul) == (5, 30.0)


def test_later_float_times_sample_results() -> None:
    sessions = read_sessions(SAMPLES / "later-float-times.json")
    (result,) = mouse_results("later", sessions, collapse_days=True)

    # (spout, outcome): (1,1) (1,1) (1,1) (1,1) (0,1) (1,0) (1,2)
    assert (result.date, result.trials, result.sessions) == ("2022-04-15", 7, 1)
    assert (result.correct, result.incorrect, result.missed) == ((1, 4), (0, 1), (0, 1))
    assert result.resets == (0, 0)
    assert result.spontaneous_reaches == (1, 0)
    assert result.correction_trials == 1  # the incorrect trial 7 repeats the missed trial 6
    # S: trials 1-4, 6 -> 5 trials, 4 hits; N: trial 5 -> 1 trial, 0 false alarms
    # H = (4 + 0.5) / (5 + 1) = 0.75 ; FA = (0 + 0.5) / (1 + 1) = 0.25
    assert result.d_prime == pytest.approx(Z(0.75) - Z(0.25))
    assert result.d_prime == pytest.approx(1.3489795, abs=1e-6)
    assert (result.rewards, result.water_ul) == (5, 30.0)
