"""The simulated mouse: seeded sessions repeat exactly, and its profile shapes its behaviour."""

from __future__ import annotations

import argparse
import json
import math
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent import Mouse
from agent.runtime import RigRuntime
from agent.settings import add_arguments, resolve
from agent.sim import MouseProfile
from shared.config import TaskConfig
from shared.documents import Document, TrialEnd
from shared.errors import ConfigError
from shared.sessionfile import read_sessions

from .offline_agent import offline_agent

SHORT = {"duration": 900}


def simulated_session(seed: int, profile: MouseProfile | None = None) -> dict[str, Any]:
    mouse = Mouse("SimMouse")
    session = mouse.train(
        config=SHORT, sim=True, time_scale=math.inf, seed=seed, mouse_profile=profile
    )
    return session.data


def behaviour(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What the mouse did, in task time from the session's start (the start is wall time)."""
    t0 = data["start_time"]
    return [
        (t["spout"], t["outcome"], round(t["start"] - t0, 6), t.get("lift_paw"))
        for t in data["trials"]
    ] + [("reset", round(t - t0, 6), paw) for t, paw in data["resets"]]


def test_a_seed_repeats_a_session_exactly_and_another_seed_does_not() -> None:
    first, again, other = simulated_session(7), simulated_session(7), simulated_session(8)
    assert len(first["trials"]) > 40
    assert behaviour(first) == behaviour(again)
    assert behaviour(first) != behaviour(other)


def missed_fraction(data: dict[str, Any]) -> float:
    trials: list[dict[str, Any]] = data["trials"]
    return sum(1 for t in trials if t["outcome"] == 0) / len(trials)


def correct_among_touches(data: dict[str, Any]) -> float:
    touched: list[dict[str, Any]] = [t for t in data["trials"] if t["outcome"] != 0]
    return sum(1 for t in touched if t["outcome"] == 1) / len(touched)


def test_the_profile_sets_how_often_the_mouse_reaches_and_how_well() -> None:
    # A missed trial repeats its spout, so the rates are per trial, not exact; seeded, so
    # these numbers are the same on every run.
    keen = simulated_session(3, MouseProfile(hit_probability=0.95, correct_probability=0.95))
    idle = simulated_session(3, MouseProfile(hit_probability=0.3, correct_probability=0.5))
    assert missed_fraction(keen) < 0.15
    assert 0.55 < missed_fraction(idle) < 0.85
    assert correct_among_touches(keen) > 0.85
    assert correct_among_touches(idle) < 0.7


def test_profile_items_are_checked_and_name_the_bad_key() -> None:
    profile = MouseProfile.from_items(["hit_probability=0.4", "reach_time=0.5"])
    assert (profile.hit_probability, profile.reach_time) == (0.4, 0.5)
    assert profile.correct_probability == MouseProfile().correct_probability
    assert MouseProfile.from_text("hit_probability=0.4,reach_time=0.5") == profile
    for items, message in [
        (["hit=0.5"], "unknown key 'hit'"),
        (["hit_probability"], "expected KEY=VALUE"),
        (["reach_time=soon"], "reach_time must be a number, got 'soon'"),
        (["hit_probability=1.5"], "hit_probability must be between 0 and 1"),
        (["drink_time=-1"], "drink_time must not be negative"),
    ]:
        with pytest.raises(ConfigError, match=message):
            MouseProfile.from_items(items)


def _run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_labagent_run_takes_the_profile_from_options_or_the_environment(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path), "LABAGENT_BOX": "1"}
    settings = resolve(_run_args("--sim", "--sim-mouse", "hit_probability=0.5"), env)
    assert settings.sim_mouse == MouseProfile(hit_probability=0.5)
    from_env = resolve(_run_args("--sim"), {**env, "LABAGENT_SIM_MOUSE": "reach_time=0.2"})
    assert from_env.sim_mouse == MouseProfile(reach_time=0.2)
    assert resolve(_run_args("--sim"), env).sim_mouse is None
    with pytest.raises(ConfigError, match="needs --sim"):
        resolve(_run_args("--sim-mouse", "hit_probability=0.5"), env)


# ---------------------------------------------------------------- many sessions on one agent


class LoopAgent:
    """A real :class:`~agent.daemon.Agent` whose commands the test hands straight to it.

    No broker: the agent is driven through the link's own entry point, ``link_message``,
    and its task loop runs on virtual time on the test's thread, so five half-hour
    sessions take well under a second. The rig, the simulated mouse and the journal are
    the ones ``labagent run --sim`` uses, kept from one session to the next.
    """

    def __init__(self, folder: Path, seed: int) -> None:
        self.agent, self.runtime = offline_agent(folder, seed=seed)
        self.cmd_topic = self.agent.topics.cmd("1")

    def command(self, command: str, **fields: Any) -> None:
        payload = {"command": command, "request_id": uuid.uuid4().hex[:12], **fields}
        self.agent.link_message(self.cmd_topic, json.dumps(payload).encode())

    def run_session(self, config: dict[str, Any], *, stop_after_a_reward: bool = False) -> None:
        self.command("start", session_id=uuid.uuid4().hex, mouse="M1", config=config)
        session = self.agent.session
        assert session is not None and not session.ended, "the start was refused"
        if stop_after_a_reward:
            # Stopped the moment a trial is rewarded: the mouse is still drinking.
            def on_document(doc: Document) -> None:
                if isinstance(doc, TrialEnd) and doc.outcome == 1:
                    stop = {"session_id": session.session_id}
                    self.runtime.loop.call_soon_threadsafe(lambda: self.command("stop", **stop))

            session.add_sink(on_document)
        self.runtime.loop.run(until=lambda: session.ended, idle_exit=True)
        assert session.ended

    def close(self) -> None:
        self.runtime.close()
        self.agent.link.close()
        self.agent.journal.close()


def test_the_mouse_keeps_answering_over_five_sessions_on_one_agent(tmp_path: Path) -> None:
    rig = LoopAgent(tmp_path, seed=4)
    try:
        # The first session ends while the mouse drinks its reward; the others run to
        # their end, and a session that ends on its duration often does so mid-drink too.
        rig.run_session(SHORT, stop_after_a_reward=True)
        for _ in range(4):
            rig.run_session(SHORT)
    finally:
        rig.close()
    sessions = read_sessions(tmp_path / "data" / "M1.json")
    assert [s["status"] for s in sessions] == ["stopped"] + ["complete"] * 4
    assert [t["outcome"] for t in sessions[0]["trials"]][-1] == 1
    for number, session in enumerate(sessions[1:], 2):
        answered = [t for t in session["trials"] if t["outcome"] != 0]
        assert len(answered) >= 5, f"session {number}: {len(answered)} answered trials"
        assert any("lift_time" in t for t in session["trials"]), f"session {number}: no lifts"
    later = sessions[1:]
    assert sum(len(s["resets"]) for s in later) > 0, "no ITI resets after the first session"


def test_each_session_starts_at_the_wall_clock_time_of_its_start(tmp_path: Path) -> None:
    # Virtual time is the extreme of a time scale: each 15-minute session takes
    # milliseconds, so a task clock left running would put session 5 an hour ahead.
    rig = LoopAgent(tmp_path, seed=2)
    started: list[tuple[float, float]] = []
    try:
        for _ in range(5):
            before = time.time()
            rig.run_session(SHORT)
            started.append((before, time.time()))
    finally:
        rig.close()
    sessions = read_sessions(tmp_path / "data" / "M1.json")
    assert len(sessions) == 5
    for (before, after), session in zip(started, sessions, strict=True):
        assert before <= session["start_time"] <= after
        assert session["end_time"] - session["start_time"] >= SHORT["duration"]
        assert session["date"] == time.strftime("%Y-%m-%d", time.localtime(session["start_time"]))
        assert all(
            session["start_time"] <= t["start"] <= session["end_time"] for t in session["trials"]
        )


def test_a_session_is_dated_the_day_it_started_even_when_it_ends_after_midnight(
    tmp_path: Path,
) -> None:
    # A calendar the test controls: 23:50 local time, moving a minute per session as a
    # rig at --time-scale 15 would (a 15-minute session in a wall minute).
    evening = time.mktime((2026, 3, 1, 23, 50, 0, 0, 0, -1))
    wall = [evening]
    runtime = RigRuntime.create(sim=True, time_scale=math.inf, seed=9, calendar=lambda: wall[0])
    try:
        dates = []
        for _ in range(2):
            session = runtime.new_session(config=TaskConfig.from_dict(SHORT), mouse="M1")
            data = runtime.run_session(session)
            dates.append((data["date"], data["start_time"], data["end_time"]))
            wall[0] += 60
    finally:
        runtime.close()
    (first_date, first_start, first_end), (second_date, second_start, _end) = dates
    assert (first_date, first_start) == ("2026-03-01", evening)
    assert time.localtime(first_end).tm_mday == 2  # ran on past midnight
    assert (second_date, second_start) == ("2026-03-01", evening + 60)


def test_a_simulated_rig_keeps_no_more_pin_history_after_many_sessions_than_after_some() -> None:
    """Issue 20 (soak): a sim rig's mock pins keep a bounded history of their changes, and the
    bound is reached within the soak's first minutes, so back-to-back sessions stop adding
    memory. Counted in pin states held, on virtual time: no timing in the test."""
    runtime = RigRuntime.create(sim=True, time_scale=math.inf, seed=3)
    config = TaskConfig.from_dict({"duration": 60})

    def run(sessions: int) -> int:
        for _ in range(sessions):
            runtime.run_session(runtime.new_session(config=config, mouse="M1"))
        return sum(len(pin.states) for pin in runtime.rig.pin_factory.pins.values())

    try:
        after_some = run(60)
        after_many = run(120)
    finally:
        runtime.close()
    assert after_many == after_some
