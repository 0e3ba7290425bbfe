"""reachlab's results figure: the original's d', counts, skipped trials, medians, water, days.

Every expected number is worked out by hand in the comments with the original
library's definitions (docs/analysis.md).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from shared.analysis import (
    TABLE_COLUMNS,
    SessionResults,
    cohort_results,
    format_table,
    joined_counts,
    loglinear_d_prime,
    mouse_results,
    original_counts,
    original_d_prime,
    session_results,
    session_touches,
)
from shared.analysis.original import day_numbers, day_numbers_of
from shared.sessionfile import read_sessions

from .trials import trial

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "data"
Z = NormalDist().inv_cdf


def make_session(
    spec: Sequence[tuple[Any, Any]], date: str | None = "2024-05-01", **extra: Any
) -> dict[str, Any]:
    """A session whose trials are ``(spout, outcome)`` in order."""
    session: dict[str, Any] = {
        "trials": [trial(n, s, o) for n, (s, o) in enumerate(spec, 1)],
        "resets": [],
        "spontaneous_reaches": [],
    }
    if date is not None:
        session["date"] = date
    session.update(extra)
    return session


def scripted_session() -> dict[str, Any]:
    """Corrections after an incorrect on the other spout, missed trials, a cancel, a partial."""
    trials = [
        trial(1, 0, 1, rt=0.1, lift_time=1_700_000_100.05, lift_paw=0),  # L correct: hit
        trial(2, 1, 2, rt=0.2),  # R incorrect: false alarm
        trial(3, 0, 1, rt=0.3),  # L correct after an incorrect (on R): correction
        trial(4, 1, 0, rt=10.0, lift_time=1_700_000_400.4, lift_paw=1),  # missed: dropped
        trial(5, 1, 1, rt=0.5),  # R correct: noise trial, no false alarm
        trial(6, 0, 2, rt=0.6, lift_time=1_700_000_600.25, lift_paw=0),  # L incorrect: no hit
        trial(7, 0, 0, rt=10.0),  # missed: dropped
        trial(8, 0, 1, rt=0.8),  # after incorrect 6 (the miss 7 dropped): correction
        trial(9, 1, 1, rt=0.9),  # R correct: noise trial
        trial(10, 0, 3, rt=0.4),  # cancelled: not countable
        {"start": 1_700_001_100.0, "lift_time": 1_700_001_100.1, "lift_paw": 1},  # cut short
    ]
    return {
        "trials": trials,
        "resets": [[1.0, 0], [2.0, 1], [3.0, 1]],
        "spontaneous_reaches": [[4.0, 1]],
        "date": "2024-05-01",
        "status": "stopped",
    }


def test_scripted_session_counts_and_the_originals_d_prime() -> None:
    result = session_results(scripted_session())
    assert result.trials == 11  # every trial, as the original counts them
    assert result.trials_skipped == 2  # the cancelled and the cut-short trial
    assert result.correct == (3, 2)  # L: 1, 3, 8 ; R: 5, 9
    assert result.incorrect == (1, 1)  # L: 6 ; R: 2
    assert result.missed == (1, 1)  # L: 7 ; R: 4
    assert result.resets == (1, 2)
    assert result.spontaneous_reaches == (0, 1)
    assert result.status == "stopped"
    assert result.correction_trials == 2  # 3 and 8
    # signal (left) trials 1, 6: 1 hit ; noise (right) trials 2, 5, 9: 1 false alarm (2)
    assert (result.signal_trials, result.hits, result.noise_trials, result.false_alarms) == (
        2,
        1,
        3,
        1,
    )
    # H = (1 + 0.5) / (2 + 1) = 0.5 ; FA = (1 + 0.5) / (3 + 1) = 0.375
    assert result.d_prime == pytest.approx(Z(0.5) - Z(0.375))
    assert result.d_prime == pytest.approx(0.3186394, abs=1e-6)


def test_reaction_time_and_lift_latency_medians() -> None:
    result = session_results(scripted_session())
    # touched trials 1, 2, 3, 5, 6, 8, 9: 0.1 0.2 0.3 0.5 0.6 0.8 0.9 s -> median 0.5
    assert result.reaction_time_median == pytest.approx(0.5)
    # lifts on countable trials 1, 4 (missed), 6: 0.05 0.4 0.25 s -> 0.25 (not the cut-short)
    assert result.lift_latency_median == pytest.approx(0.25)
    empty = session_results(make_session([(0, 0)]))
    assert empty.reaction_time_median is None and empty.lift_latency_median is None


def test_no_trials_on_one_side() -> None:
    # Only left trials, all correct: H = (4 + 0.5) / (4 + 1) = 0.9 ; no right trials: FA = 0.5
    only_left = session_results(make_session([(0, 1)] * 4))
    assert only_left.d_prime == pytest.approx(Z(0.9) - Z(0.5))
    assert only_left.d_prime == pytest.approx(1.2815516, abs=1e-6)
    # Only right trials, 1 of 3 incorrect: H = 0.5 ; FA = (1 + 0.5) / (3 + 1) = 0.375
    only_right = session_results(make_session([(1, 1), (1, 2), (1, 1)]))
    # trial 3 follows the incorrect trial 2: a correction, so right trials are 1 and 2
    assert (only_right.noise_trials, only_right.false_alarms) == (2, 1)
    assert only_right.d_prime == pytest.approx(Z(0.5) - Z(1.5 / 3))
    assert only_right.d_prime == 0.0


def test_no_touches_gives_the_originals_zero_and_no_trials_gives_none() -> None:
    missed_only = session_results(make_session([(0, 0), (1, 0), (1, 0)]))
    assert missed_only.d_prime == 0.0  # both rates 0.5
    assert missed_only.missed == (1, 2)
    none = session_results(make_session([]))
    assert none.trials == 0 and none.d_prime is None
    assert session_results({}).d_prime is None
    # Only a cut-short trial: the original still gives the session a row, with d' 0.0.
    partial = session_results({"trials": [{"start": 1.0}]})
    assert (partial.trials, partial.trials_skipped, partial.d_prime) == (1, 1, 0.0)


def test_original_counts_and_loglinear_formula() -> None:
    counts = original_counts(scripted_session()["trials"])
    assert counts.d_prime == original_d_prime(scripted_session()["trials"])
    # H = (10 + 0.5) / (10 + 1) ; FA = (0 + 0.5) / (10 + 1)
    assert loglinear_d_prime(10, 10, 0, 10) == pytest.approx(3.3812433, abs=1e-6)
    assert loglinear_d_prime(0, 0, 0, 0) == 0.0


def test_water_counts_correct_and_shaping_trials_times_reward_volume() -> None:
    session = make_session([(0, 1), (1, 1), (1, 0), (0, 2)], reward_volume_ul=5)
    session["trials"][2]["shaping"] = True
    session["trials"][3]["shaping"] = None  # null: not shaping (no session-level shaping)
    result = session_results(session)
    # 2 correct + 1 shaping trial = 3 rewards x 5 µl
    assert (result.rewards, result.water_ul) == (3, 15.0)


def test_session_level_shaping_of_2019_counts_every_trial_without_its_own() -> None:
    session = make_session([(0, 1), (1, 0)], shaping=True)
    for t in session["trials"]:
        del t["shaping"]
    # 1 correct + 2 shaping trials = 3 rewards x 6 µl (no reward_volume_ul)
    assert (session_results(session).rewards, session_results(session).water_ul) == (3, 18.0)


@pytest.mark.parametrize("volume", [None, "lots", True, -3, [6]])
def test_water_defaults_to_6_ul_per_reward_without_a_usable_volume(volume: Any) -> None:
    session = make_session([(0, 1), (1, 1), (1, 0)])
    if volume is not None:
        session["reward_volume_ul"] = volume
    assert (session_results(session).rewards, session_results(session).water_ul) == (2, 12.0)


def test_odd_values_are_not_counted_and_never_crash() -> None:
    odd: dict[str, Any] = {
        "start_time": "16:45:18",
        "weight": "21.1",
        "date": 20200207,  # not a string: no date
        "trials": [
            "not a trial",
            {"spout": 1, "outcome": 1, "start": "x", "end": 2.0},  # counts; no reaction time
            {"spout": 2, "outcome": 1},  # unknown spout: not countable
            {"spout": 0, "outcome": 7},  # unknown outcome: not countable
            {"spout": 0, "outcome": True},  # true is not an outcome
            {},
        ],
        "resets": [[1.0, 0], [2.0], "x", [3.0, 5], [4.0, 1]],
        "spontaneous_reaches": None,
    }
    result = session_results(odd)
    assert (result.trials, result.trials_skipped) == (6, 5)
    assert result.correct == (0, 1)
    assert result.resets == (1, 1)
    assert result.spontaneous_reaches == (0, 0)
    assert result.date is None and result.reaction_time_median is None
    assert session_results({"trials": None}).trials == 0


def test_as_dict_is_json_ready_with_left_right_lists() -> None:
    data = session_results(scripted_session()).as_dict()
    assert data["correct"] == [3, 2]
    assert data["status"] == "stopped"
    assert json.loads(json.dumps(data)) == data


def test_days_follow_the_same_d_prime_rule_over_the_days_trials() -> None:
    morning = make_session([(0, 1), (1, 2)], status="complete")  # ends on an incorrect
    afternoon = make_session([(0, 1), (1, 1)], status="stopped")
    other_day = make_session([(1, 1)], date="2024-05-02")
    rows = mouse_results("M1", [morning, afternoon, other_day])
    # morning: H = 1.5/2, FA = 1.5/2 -> 0 ; afternoon: H = 1.5/2, FA = 0.5/2
    assert [r.d_prime for r in rows[:2]] == [0.0, pytest.approx(Z(0.75) - Z(0.25))]
    day, second = mouse_results("M1", [morning, afternoon, other_day], collapse_days=True)
    assert (day.sessions, day.trials, day.status) == (2, 4, "complete/stopped")
    # The day's trials in order: the afternoon's first trial follows the morning's
    # incorrect one and is a correction. Signal: 1 trial, 1 hit ; noise: 2, 1 FA.
    # H = 1.5 / 2 = 0.75 ; FA = 1.5 / 3 = 0.5
    assert day.correction_trials == 1
    assert day.d_prime == pytest.approx(Z(0.75) - Z(0.5))
    assert (second.date, second.sessions) == ("2024-05-02", 1)


def test_a_days_counts_join_from_each_sessions_touches_alone() -> None:
    """What the husbandry stores per session (session_touches) gives the counts of the
    day's trials joined, the correction rule running across every boundary."""
    rng = random.Random(7)
    outcomes = (0, 1, 2, 2, 3, None)
    for _ in range(300):
        sessions = [
            [{"spout": rng.choice((0, 1, 1.0, True)), "outcome": rng.choice(outcomes)}
             for _ in range(rng.randrange(0, 6))] + rng.choice(([], ["not a trial"]))
            for _ in range(rng.randrange(1, 5))
        ]  # fmt: skip
        joined = [t for trials in sessions for t in trials]
        parts = [session_touches(trials) for trials in sessions]
        assert joined_counts(parts) == original_counts(joined)


def test_day_numbers_of_a_sessions_keys_are_the_days_of_its_dicts() -> None:
    sessions = [make_session([(0, 1)], date="2024-05-01"), make_session([]),
                make_session([(0, 1)], date="2024-05-01"), make_session([(0, 1)], date=None),
                "not a session"]  # fmt: skip
    keys = [(bool(s["trials"]), s.get("date")) if isinstance(s, dict) else (False, None)
            for s in sessions]  # fmt: skip
    for collapse in (True, False):
        assert day_numbers_of(keys, collapse) == day_numbers(sessions, collapse)  # type: ignore[arg-type]


def test_a_day_without_touches_has_the_sessions_d_prime_not_a_made_up_one() -> None:
    left_misses = make_session([(0, 0)] * 3)
    right_misses = make_session([(1, 0)] * 2)
    per_session = mouse_results("M1", [left_misses, right_misses])
    (day,) = mouse_results("M1", [left_misses, right_misses], collapse_days=True)
    assert [r.d_prime for r in per_session] == [0.0, 0.0]
    assert day.d_prime == 0.0
    # Sessions without any trial have no d', alone or as a day.
    empty = [make_session([]), make_session([])]
    assert [r.d_prime for r in mouse_results("M1", empty, collapse_days=True)] == [None, None]


def test_only_consecutive_dated_sessions_with_trials_make_a_day() -> None:
    sessions = [
        make_session([(0, 1)], date="2024-05-01"),
        make_session([(0, 1)], date="2024-05-02"),
        make_session([(0, 1)], date="2024-05-01"),  # the same date, but not consecutive
        make_session([(0, 1)], date=None),
        make_session([(0, 1)], date=None),  # undated sessions are never merged
    ]
    rows = mouse_results("M1", sessions, collapse_days=True)
    assert [(r.date, r.sessions) for r in rows] == [
        ("2024-05-01", 1),
        ("2024-05-02", 1),
        ("2024-05-01", 1),
        (None, 1),
        (None, 1),
    ]


def test_cohort_rows_name_mouse_and_number_sessions_or_days() -> None:
    mice = {
        "M2": [make_session([(0, 1)]), make_session([(1, 1)])],
        "M1": [make_session([(1, 0)], date="2024-05-03")],
    }
    rows = cohort_results(mice)
    assert [(r["mouse"], r["index"], r["trials"]) for r in rows] == [
        ("M2", 1, 1),
        ("M2", 2, 1),
        ("M1", 1, 1),
    ]
    days = cohort_results(mice, collapse_days=True)
    assert [(r["mouse"], r["index"], r["sessions"], r["trials"]) for r in days] == [
        ("M2", 1, 2, 2),
        ("M1", 1, 1, 1),
    ]


def test_format_table_columns_totals_and_skipped_line() -> None:
    rows = cohort_results({"M1": [scripted_session()], "longer-mouse": [make_session([])]})
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["mouse", "date", "status", "trials", "correct", "incorrect",
                                "missed", "resets", "spont", "d'", "rt", "s", "lift", "s",
                                "water", "µl"]  # fmt: skip
    assert lines[2].split() == [
        "M1", "2024-05-01", "stopped", "11", "5", "2", "2", "3", "1", "0.32", "0.50", "0.25",
        "30.0",
    ]  # fmt: skip
    assert lines[3].split() == [
        "longer-mouse", "2024-05-01", "-", "0", "0", "0", "0", "0", "0", "-", "-", "-", "0.0",
    ]  # fmt: skip
    assert (
        lines[4] == "2 trial(s) not counted (empty, cut short or cancelled); 'trials' includes them"
    )
    for header in TABLE_COLUMNS[3:]:
        end = lines[0].index(header) + len(header)
        assert lines[2][end - 1] != " " and (end == len(lines[2]) or lines[2][end] == " ")
    assert all(line == line.rstrip() for line in lines)


def test_format_table_accepts_results_and_empty_input() -> None:
    result = mouse_results("M1", [make_session([(0, 1)])])[0]
    assert isinstance(result, SessionResults)
    assert format_table([result]).splitlines()[2].split()[:4] == ["M1", "2024-05-01", "-", "1"]
    assert len(format_table([]).splitlines()) == 2


def test_legacy_clock_times_sample_results() -> None:
    first, second = mouse_results("legacy", read_sessions(SAMPLES / "legacy-clock-times.json"))
    # Day 1 (spout, outcome): (0,1) (0,0) (1,0) (0,2) (0,1) (0,1); shaping on every trial.
    assert (first.date, first.trials) == ("2020-02-07", 6)
    assert (first.correct, first.incorrect, first.missed) == ((3, 0), (1, 0), (1, 1))
    # Touched: 1 (L hit), 4 (L incorrect), 5 (correction after 4), 6 (L hit).
    # Signal 3 trials, 2 hits ; no right trials. H = 2.5 / 4 ; FA = 0.5
    assert (first.signal_trials, first.hits, first.noise_trials) == (3, 2, 0)
    assert first.d_prime == pytest.approx(Z(0.625) - Z(0.5))
    assert (first.rewards, first.water_ul) == (9, 54.0)  # 3 correct + 6 shaping, 6 µl
    # Day 2: (0,1) (1,1) (1,1) (0,1) (0,1). H = 3.5 / 4 ; FA = 0.5 / 3
    assert second.d_prime == pytest.approx(Z(3.5 / 4) - Z(0.5 / 3))
    assert second.d_prime == pytest.approx(2.1177709, abs=1e-6)


def test_later_float_times_sample_results() -> None:
    (result,) = mouse_results("later", read_sessions(SAMPLES / "later-float-times.json"), True)
    # (1,1) (1,1) (1,1) (1,1) (0,1) (1,0) (1,2): signal trial 5 (hit); noise 1-4 and 7 (FA)
    # H = 1.5 / 2 = 0.75 ; FA = 1.5 / 6 = 0.25
    assert (result.signal_trials, result.hits, result.noise_trials, result.false_alarms) == (
        1,
        1,
        5,
        1,
    )
    assert result.d_prime == pytest.approx(Z(0.75) - Z(0.25))
    assert result.correction_trials == 0
    assert (result.rewards, result.water_ul) == (5, 30.0)
