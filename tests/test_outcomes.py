"""shared/outcomes.py: the one reward rule, and every side that counts rewards agreeing on it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.husbandry.water import earned_in_session
from controller.models import TrainingSession
from controller.store import rewards_of
from shared.analysis.summary import summarise
from shared.documents import SessionBuilder
from shared.outcomes import OUTCOME_NAMES, is_reward, outcome_name, rewards_in
from tests.fakes import synthetic_session


def test_only_a_correct_outcome_earns_water_and_a_json_true_is_not_one() -> None:
    assert [is_reward(o) for o in (0, 1, 2, 1.0)] == [False, True, False, True]
    assert not is_reward(True)
    assert not is_reward(None)


@pytest.mark.parametrize(
    ("trial", "rewards"),
    [
        ({"outcome": 1}, 1),
        ({"outcome": 2}, 0),
        ({"outcome": 0, "shaping": True}, 1),  # water at cue onset, none at the end
        ({"outcome": 1, "shaping": True}, 2),
        ({"outcome": True, "shaping": 1}, 0),  # neither is the real thing
    ],
)
def test_a_trial_gives_one_reward_when_shaping_and_one_when_correct(
    trial: dict[str, Any], rewards: int
) -> None:
    assert rewards_in(trial) == rewards


def test_the_session_level_shaping_of_the_2019_files_counts_only_where_a_trial_has_none() -> None:
    assert rewards_in({"outcome": 0}, session_shaping=True) == 1
    assert rewards_in({"outcome": 0, "shaping": False}, session_shaping=True) == 0


def test_outcome_names_are_the_logs_words() -> None:
    assert [outcome_name(o) for o in sorted(OUTCOME_NAMES)] == ["missed", "correct", "incorrect"]


def test_the_fold_the_store_the_analysis_and_the_water_count_the_same_rewards() -> None:
    """A session as a rig records it: the documents' own count, the stored reward count,
    the results table and husbandry's water all say the same number."""
    builder = SessionBuilder()
    for doc in synthetic_session(trials=40, seed=3):
        builder.add(doc)
    data = builder.data
    expected = sum(rewards_in(trial) for trial in data["trials"])
    assert expected > 0
    assert builder.rewards == expected
    assert rewards_of(data) == expected
    assert summarise([data]).rewards == expected
    row = TrainingSession(data=json.dumps(data), box=None, start_time=data["start_time"])
    assert earned_in_session(row, {}, data).rewards == expected
