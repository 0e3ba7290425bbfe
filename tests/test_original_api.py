"""The original library's analysis API on Mouse, Cohort and Session: names, row keys, numbers.

The expected numbers are hand-computed with the original's definitions
(m-col/reach ``reach/session.py``, ``reach/mouse.py``; docs/analysis.md). A
notebook-like script written against the original's API runs unchanged and
prints them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from agent import Cohort, Mouse, Session
from shared.errors import ConfigError

from .trials import T0
from .trials import trial as analysis_trial

REPO = Path(__file__).resolve().parents[1]
Z = NormalDist().inv_cdf

#: Keys the original's ``Mouse.get_results`` adds to a copy of each session dict.
ORIGINAL_RESULT_KEYS = {
    "missed_l", "missed_r", "correct_l", "correct_r", "incorrect_l", "incorrect_r",
    "trials", "resets", "resets_l", "resets_r", "spontaneous_reaches",
    "spontaneous_reaches_l", "spontaneous_reaches_r", "d_prime", "notes", "mouse_id", "day",
}  # fmt: skip
#: What reachlab adds beside them (docs/analysis.md).
REACHLAB_RESULT_KEYS = {"trials_skipped", "reaction_time_median", "lift_latency_median"}


def trial(n: int, spout: Any, outcome: Any, rt: float = 1.0, **extra: Any) -> dict[str, Any]:
    """A trial of tests.trials, at spout position [2, 3] unless ``extra`` says otherwise."""
    return analysis_trial(n, spout, outcome, rt, **{"spout_position": [2, 3], **extra})


def session(date: str | None, spec: list[tuple[int, int]], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "trainer": "Matt",
        "duration": 1800,
        "trials": [trial(n, s, o, rt=0.1 * n) for n, (s, o) in enumerate(spec, 1)],
        "resets": [],
        "spontaneous_reaches": [],
        "start_time": T0,
        "end_time": T0 + 1800,
    }
    if date is not None:
        data["date"] = date
    data.update(extra)
    return data


def lab_files(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """M1: two sessions on day 1 and one on day 2; M2: a stopped and an aborted empty session."""
    mice = {
        "M1": [
            # A: L hit, R false alarm, correction -> H = 1.5/2, FA = 1.5/2 -> d' 0
            session(
                "2024-05-01",
                [(0, 1), (1, 2), (0, 1)],
                notes="am",
                resets=[[T0 + 1, 0], [T0 + 2, 1]],
                spontaneous_reaches=[[T0 + 3, 1]],
            ),
            # B: R correct, L missed, L hit -> H = 1.5/2, FA = 0.5/2
            session(
                "2024-05-01",
                [(1, 1), (0, 0), (0, 1)],
                notes="pm",
                resets=[[T0 + 4, 1]],
                spontaneous_reaches=[[T0 + 5, 0], [T0 + 6, 0]],
            ),
            # C: L hit, R correct, L incorrect, correction -> H = 1.5/3, FA = 0.5/2
            session("2024-05-02", [(0, 1), (1, 1), (0, 2), (1, 1)]),
        ],
        "M2": [
            # D: R correct twice -> H = 0.5, FA = 0.5/3
            session("2024-05-01", [(1, 1), (1, 1)], status="stopped"),
            # E: aborted before any trial; the original's get_results crashed on it
            session("2024-05-02", [], status="aborted"),
        ],
    }
    for mouse_id, sessions in mice.items():
        (folder / f"{mouse_id}.json").write_text(json.dumps(sessions))
    return mice


D_A, D_B, D_C, D_D = 0.0, Z(0.75) - Z(0.25), Z(0.5) - Z(0.25), Z(0.5) - Z(0.5 / 3)
# Day 1 of M1, the trials of A then B: A1 hit, A2 false alarm, A3 correction, B1 right
# correct, B2 dropped (missed), B3 hit -> H = 2.5/3, FA = 1.5/3
D_DAY1 = Z(2.5 / 3) - Z(0.5)

NOTEBOOK = """
import json, sys
from statistics import NormalDist

from agent import Cohort, Mouse  # was: from reach import Cohort, Mouse

data_dir = sys.argv[1]
cohort = Cohort.init_from_files(data_dir=data_dir, mouse_ids=["M1", "M2"])
results = list(cohort.get_results())  # pandas.DataFrame(cohort.get_results())
trials = list(cohort.get_trials())
by_session = list(cohort.get_results(collapse_days=False))

# As the original's training_summary.py: re-calculate d' of merged days from the trials.
def z(p):
    return -NormalDist().inv_cdf(p)

for row in results:
    if row["d_prime"] is None and row["trials"]:
        day = [t for t in trials if t["day"] == row["day"] and t["mouse_id"] == row["mouse_id"]
               and t["outcome"] in (1, 2)]
        lefts, rights, prev = [], [], None
        for t in day:
            if prev != 2:
                (lefts if t["spout"] == 0 else rights).append(t["outcome"])
            prev = t["outcome"]
        H = (lefts.count(1) + 0.5) / (len(lefts) + 1)
        FA = (rights.count(2) + 0.5) / (len(rights) + 1)
        row["d_prime"] = z(FA) - z(H)

mouse = Mouse.init_from_file(data_dir, "M1")
same = Mouse.init_from_file(json_path=data_dir, mouse_id="M1")
reaction_times = [t["end"] - t["start"] for t in trials if t["outcome"] in (1, 2)]
print(json.dumps({
    "days": [[r["mouse_id"], r["day"], r["trials"], r["correct_l"], r["correct_r"],
              r["incorrect_l"], r["incorrect_r"], r["missed_l"], r["missed_r"],
              r["resets_l"], r["resets_r"], r["spontaneous_reaches"], r["d_prime"]]
             for r in results],
    "session_d_primes": [r["d_prime"] for r in by_session],
    "get_d_prime": [s.get_d_prime() for s in mouse],
    "trial_days": [[t["mouse_id"], t["day"]] for t in trials],
    "reaction_times": reaction_times,
    "sponts": [[s["mouse_id"], s["day"], s["location"]] for s in cohort.get_spontaneous_reaches()],
    "same": [s.data for s in same] == [s.data for s in mouse],
}))
"""


def test_a_notebook_written_for_the_original_runs_unchanged(tmp_path: Path) -> None:
    lab_files(tmp_path)
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    approx = pytest.approx
    assert out["days"] == [
        # mouse, day, trials, correct l/r, incorrect l/r, missed l/r, resets l/r, sponts, d'
        ["M1", 1, 6, 3, 1, 0, 1, 1, 0, 1, 2, 3, approx(D_DAY1)],
        ["M1", 2, 4, 1, 2, 1, 0, 0, 0, 0, 0, 0, approx(D_C)],
        ["M2", 1, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, approx(D_D)],
        ["M2", 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None],
    ]
    assert out["session_d_primes"] == [D_A, approx(D_B), approx(D_C), approx(D_D), None]
    assert out["get_d_prime"] == [D_A, approx(D_B), approx(D_C)]
    assert out["trial_days"] == [["M1", 1]] * 6 + [["M1", 2]] * 4 + [["M2", 1]] * 2
    # touched trials: A 1-3, B 1 and 3, C 1-4, D 1-2; rt = 0.1 x trial number
    assert out["reaction_times"] == approx([0.1, 0.2, 0.3, 0.1, 0.3, 0.1, 0.2, 0.3, 0.4, 0.1, 0.2])
    assert out["sponts"] == [["M1", 1, 1], ["M1", 2, 0], ["M1", 2, 0]]
    assert out["same"] is True


def test_results_rows_have_the_originals_keys_and_merge_days_like_it(tmp_path: Path) -> None:
    mice = lab_files(tmp_path)
    mouse = Mouse.init_from_file(tmp_path, "M1")
    per_session = mouse.get_results(collapse_days=False)
    for row, raw in zip(per_session, mice["M1"], strict=True):
        assert set(row) == set(raw) | ORIGINAL_RESULT_KEYS | REACHLAB_RESULT_KEYS
    assert [r["day"] for r in per_session] == [1, 2, 3]
    assert per_session[0]["trainer"] == "Matt"  # session keys are kept, as by the original
    day1, day2 = mouse.get_results()  # collapse_days=True by default, as the original
    assert set(day1) == set(mice["M1"][0]) | ORIGINAL_RESULT_KEYS | REACHLAB_RESULT_KEYS | {
        "d_prime_day"
    }
    # The original: sums, the last end_time, notes joined, and no d' for a merged day.
    assert (day1["trials"], day1["duration"], day1["resets"]) == (6, 3600, 3)
    assert day1["notes"] == "am ... pm"
    assert day1["d_prime"] is None
    assert day1["d_prime_day"] == pytest.approx(D_DAY1)
    # reachlab's medians of the whole day: rt 0.1 0.2 0.3 0.1 0.3 ; no lifts recorded
    assert day1["reaction_time_median"] == pytest.approx(0.2)
    assert day1["lift_latency_median"] is None
    assert (day2["day"], day2["d_prime"], day2["notes"]) == (2, pytest.approx(D_C), None)


def test_analysis_never_changes_the_session_data(tmp_path: Path) -> None:
    mice = lab_files(tmp_path)
    cohort = Cohort.init_from_files(tmp_path, ["M1", "M2"])
    cohort.get_trials()
    cohort.get_results()
    cohort.get_spontaneous_reaches()
    assert [[s.data for s in m] for m in cohort] == [mice["M1"], mice["M2"]]
    out = tmp_path / "out"
    cohort[0].save_data_to_file(out)
    assert (out / "M1.json").read_text() == json.dumps(mice["M1"])


def test_sessions_the_original_crashed_on_give_rows(tmp_path: Path) -> None:
    lab_files(tmp_path)
    mouse = Mouse.init_from_file(tmp_path, "M2")
    stopped, aborted = mouse.get_results(collapse_days=False)
    assert (stopped["status"], stopped["trials"], stopped["d_prime"]) == (
        "stopped",
        2,
        pytest.approx(D_D),
    )
    assert (aborted["status"], aborted["trials"], aborted["d_prime"]) == ("aborted", 0, None)
    assert mouse[1].get_trials() == [] and mouse[1].get_d_prime() == 0.0
    assert Session({}).get_trials() is None  # no trials list at all, as the original
    assert Session({}).get_results()["trials"] == 0


def test_init_from_file_spellings(tmp_path: Path) -> None:
    mice = lab_files(tmp_path)
    for mouse in (
        Mouse.init_from_file(tmp_path, "M1"),
        Mouse.init_from_file(data_dir=tmp_path, mouse_id="M1"),
        Mouse.init_from_file(mouse_id="M1", json_path=str(tmp_path)),
        Mouse.init_from_file(tmp_path / "M1.json", "M1"),  # the file itself
    ):
        assert mouse.mouse_id == "M1" and [s.data for s in mouse] == mice["M1"]
    assert len(Mouse.init_from_file(tmp_path, "NewMouse")) == 0
    with pytest.raises(ConfigError, match="data_dir or json_path, not both"):
        Mouse.init_from_file(tmp_path, "M1", json_path=tmp_path)
    for cohort in (
        Cohort.init_from_files(tmp_path, ["M1", "M2"]),
        Cohort.init_from_files(data_dir=tmp_path, mouse_ids=["M1", "M2"]),
        Cohort.init_from_files(json_path=tmp_path, mouse_ids=["M1", "M2"]),
        Cohort.init_from_files(["M1", "M2"], tmp_path),  # reachlab's first order
    ):
        assert [m.mouse_id for m in cohort] == ["M1", "M2"] and len(cohort) == 2
        assert repr(cohort) == "Cohort containing mice: M1, M2"
    assert [m.mouse_id for m in Cohort.init_from_files(tmp_path, "M2")] == ["M2"]


def test_trials_rows_carry_day_mouse_positions_and_times(tmp_path: Path) -> None:
    sessions = [
        {
            "date": "2024-05-01",
            "trials": [
                trial(1, 0, 1, rt=0.5, lift_time=T0 + 100.2, lift_paw=0),
                {"start": T0 + 150, "spout": 1, "outcome": 0, "spout_position": 3},  # no end
                trial(2, 1, 3, rt=0.4, spout_position=2.5),  # cancelled
                {"start": T0 + 300, "lift_time": T0 + 300.1, "lift_paw": 1},  # cut short
                {},
            ],
        }
    ]
    (tmp_path / "M1.json").write_text(json.dumps(sessions))
    rows = Mouse.init_from_file(tmp_path, "M1").get_trials()
    assert [r["outcome"] for r in rows] == [1, 0, 3]  # trials without an outcome left out
    assert [(r["day"], r["mouse_id"]) for r in rows] == [(1, "M1")] * 3
    assert [(r["spout_position_0"], r["spout_position_1"]) for r in rows] == [
        (2, 3),
        (3, 3),
        (2.5, 2.5),
    ]
    assert rows[0]["reaction_time"] == pytest.approx(0.5)
    assert rows[0]["lift_latency"] == pytest.approx(0.2)
    assert rows[1]["reaction_time"] is None and rows[2]["reaction_time"] is None
    (result,) = Mouse.init_from_file(tmp_path, "M1").get_results()
    assert (result["trials"], result["trials_skipped"]) == (5, 3)
    assert (result["correct_l"], result["missed_r"]) == (1, 1)


# Every shape the original wrote over its life (docs/data-format.md), as one session each.
SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "trial shaping null": (
        {"date": "2020-03-01", "trials": [trial(1, 0, 1, shaping=None)], "resets": [],
         "spontaneous_reaches": []},
        {"trials": 1, "correct_l": 1, "d_prime": Z(0.75), "trials_skipped": 0},
    ),
    "trial shaping missing, session shaping (2019)": (
        {"date": "2019-11-20", "shaping": True,
         "trials": [{k: v for k, v in trial(1, 1, 2).items() if k != "shaping"}],
         "resets": [], "spontaneous_reaches": []},
        {"trials": 1, "incorrect_r": 1, "d_prime": -Z(0.75)},
    ),
    "spout_position int": (
        {"date": "2020-02-28", "trials": [trial(1, 0, 0, spout_position=1)], "resets": [],
         "spontaneous_reaches": []},
        {"trials": 1, "missed_l": 1, "d_prime": 0.0},
    ),
    "spout_position float": (
        {"date": "2020-03-02", "trials": [trial(1, 1, 1, spout_position=3.5)], "resets": [],
         "spontaneous_reaches": []},
        {"trials": 1, "correct_r": 1, "d_prime": -Z(0.25)},
    ),
    "missed without end, outcome 3, partial and empty trials": (
        {"date": "2019-12-05",
         "trials": [{"start": T0, "spout": 1, "outcome": 0, "cue_duration": 10000},
                    trial(2, 0, 3), {"start": T0 + 300},
                    {"start": T0 + 350, "lift_time": T0 + 351, "lift_paw": 1},
                    {"start": T0 + 400, "lift_time": T0 + 401, "lift_paw": 0, "end": T0 + 402},
                    {}],
         "resets": [[T0 - 1, 0]], "spontaneous_reaches": []},
        {"trials": 6, "trials_skipped": 5, "missed_r": 1, "resets_l": 1, "d_prime": 0.0},
    ),
    "cue_duration in seconds, clock-string times, weight string, no notes": (
        {"trainer": "alex", "weight": "21.1", "start_time": "16:45:18", "end_time": "17:04:26",
         "date": "2020-02-07", "trials": [trial(1, 0, 1, cue_duration=10.0)],
         "resets": [], "spontaneous_reaches": []},
        {"trials": 1, "correct_l": 1, "notes": None, "start_time": "16:45:18"},
    ),
    "no date": (
        {"trials": [trial(1, 1, 1)], "resets": [], "spontaneous_reaches": []},
        {"trials": 1, "correct_r": 1, "day": 1},
    ),
    "no trials and no start or end": (
        {"trainer": "alex"},
        {"trials": 0, "resets": 0, "spontaneous_reaches": 0, "d_prime": None},
    ),
    "2019 session keys": (
        {"iti": [4000, 6000], "spout_count": 1, "reward_duration_ms": [70, 70],
         "cue_duration_ms": 10000, "cued_lift_timepoints": [[T0 + 1], []], "shaping": False,
         "date": "2019-10-18", "trials": [trial(1, 0, 1)], "resets": [],
         "spontaneous_reaches": []},
        {"trials": 1, "correct_l": 1, "spout_count": 1},
    ),
    "Sept-2019 timepoints": (
        {"date": "2019-09-19", "start_time": "16:45:18", "end_time": "17:04:26",
         "duration": 1800, "shaping": True, "spout_count": 2, "iti": [4000, 6000],
         "cue_duration_ms": 10000, "reward_duration_ms": 100,
         "cue_timepoints": [[T0 + 10], [T0 + 30]], "touch_timepoints": [[T0 + 12], []],
         "resets_timepoints": [[T0 + 1, T0 + 2], [T0 + 3]],
         "spont_reach_timepoints": [[T0 + 5], [T0 + 6, T0 + 7]],
         "cued_lift_timepoints": [[T0 + 11], []], "notes": ""},
        {"trials": 0, "resets_l": 2, "resets_r": 1, "spontaneous_reaches_l": 1,
         "spontaneous_reaches_r": 2, "d_prime": None},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_shape_the_original_wrote_is_analysed_and_written_back_unchanged(
    tmp_path: Path, name: str
) -> None:
    raw, expected = SHAPES[name]
    text = json.dumps([raw])
    (tmp_path / "M1.json").write_text(text)
    mouse = Mouse.init_from_file(tmp_path, "M1")
    (row,) = mouse.get_results()
    for key, value in expected.items():
        assert row[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    mouse.get_trials()
    mouse.get_spontaneous_reaches()
    mouse[0].get_d_prime()
    figure = mouse.results()[0]
    assert figure.trials == row["trials"] and figure.trials_skipped == row["trials_skipped"]
    out = tmp_path / "out"
    mouse.save_data_to_file(out)
    assert (out / "M1.json").read_text() == text
