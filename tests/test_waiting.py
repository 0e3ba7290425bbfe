"""The one polling helper: returns what held, names what it waited for, stops on a dead process."""

from __future__ import annotations

import itertools

import pytest

from .waiting import wait_until


def test_wait_until_returns_the_first_true_value_of_the_predicate() -> None:
    counter = itertools.count()
    assert wait_until(lambda: max(next(counter) - 2, 0), 5, "the third check", interval=0) == 1


def test_wait_until_names_what_it_waited_for_and_adds_the_detail() -> None:
    with pytest.raises(AssertionError, match="waiting for the rig to report") as info:
        wait_until(lambda: False, 0, "the rig to report", detail=lambda: "rig log: no broker")
    assert str(info.value).endswith("rig log: no broker")


def test_wait_until_fails_at_once_when_alive_says_a_process_has_gone() -> None:
    checks = []

    def gone() -> None:
        raise AssertionError("labctl serve exited with 1")

    with pytest.raises(AssertionError, match="exited with 1"):
        wait_until(lambda: checks.append(1), 60, "never", alive=gone)
    assert checks == []  # the process was checked before the predicate, and nothing waited
