"""agent.compat: the original library's later API (``Session.run(backend)``) on reachlab's engine.

The backends here are written for these tests in the original's backend
interface; the mouse files are made here in the shapes the original wrote.
Time is the test's: ``time.time`` and ``time.sleep`` are replaced (as the
original's own tests did), so a 60 s session runs at once and every count is
exact.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agent.compat as reach
from agent.compat import Cohort, Mouse, Session
from agent.compat.backends import Backend
from agent.compat.session import Outcomes, SlidingTrialList, Targets, print_results

from .conftest import REPO


class FakeTime:
    """``time.time`` and ``time.sleep`` for one test; ``at(t, action)`` runs during a sleep."""

    #: Readings a test may take: a session that never ends fails instead of hanging.
    BUDGET = 2_000_000

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.start = start
        self.readings = 0
        self._at: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        self.readings += 1
        if self.readings > self.BUDGET:
            raise AssertionError(f"{self.BUDGET} clock readings: the session never ended")
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        due = [item for item in self._at if item[0] <= self.t]
        self._at = [item for item in self._at if item[0] > self.t]
        for _when, action in due:
            action()

    def at(self, offset: float, action: Callable[[], None]) -> None:
        self._at.append((self.start + offset, action))


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(time, "time", fake.time)
    monkeypatch.setattr(time, "sleep", fake.sleep)
    return fake


@pytest.fixture(autouse=True)
def keep_sigint() -> Iterator[None]:
    """``run`` leaves Ctrl-C ignored after a session, as the original did: undo that here."""
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


class ScriptedBackend(Backend):
    """A rig whose mouse does what ``plan`` says, one word a trial: correct, incorrect, miss.

    It reports the trial's events from inside ``start_trial``, as a backend whose
    inputs call back at once would; ``lifts_at_rest`` lifts are reported while it
    waits for rest. Every call is recorded in ``calls``.
    """

    def __init__(self, plan: list[str], lifts_at_rest: int = 0) -> None:
        super().__init__()
        self.plan = list(plan)
        self.lifts_at_rest = lifts_at_rest
        self.calls: list[tuple[str, Any]] = []
        self.session: Any = None
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def configure_callbacks(self, session: Any) -> None:
        self.session = session

    def position_spouts(self, position: Any, spout_number: int | None = None) -> None:
        self.calls.append(("position_spouts", list(position)))

    def wait_for_rest(self) -> bool:
        self.calls.append(("wait_for_rest", None))
        for _ in range(self.lifts_at_rest):
            self.session.on_iti_lift(Targets.RIGHT)
        return True

    def start_trial(self, spout_number: int) -> None:
        self.calls.append(("start_trial", spout_number))
        what = self.plan.pop(0) if self.plan else "miss"
        if what != "miss":
            self.session.on_trial_lift(Targets.LEFT)
        if what == "correct":
            self.session.on_trial_correct()
        elif what == "incorrect":
            self.session.on_trial_incorrect()

    def give_reward(self, spout_number: int) -> None:
        self.calls.append(("give_reward", spout_number))

    def miss_trial(self) -> None:
        self.calls.append(("miss_trial", None))

    def end_trial(self) -> None:
        self.calls.append(("end_trial", None))

    def cleanup(self) -> None:
        self.calls.append(("cleanup", None))

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)


def later_session(
    date: str, start: float, spec: list[tuple[int, int]], **extra: Any
) -> dict[str, Any]:
    """A session dict in the shape the original's later versions wrote."""
    trials = []
    for n, (spout, outcome) in enumerate(spec):
        t = start + 20 * n
        trial: dict[str, Any] = {"start": t}
        if outcome:
            trial.update(lift_time=t + 0.4, lift_paw=spout)
        trial.update(
            end=t + (1.2 if outcome else 6.0),
            spout=spout,
            cue_duration=extra.get("cue", 6000.0),
            outcome=outcome,
            spout_position=extra.get("position", [3, 2]),
        )
        trials.append(trial)
    return {
        "trainer": "Matt",
        "weight": "21.1",
        "training_box": 1,
        "duration": 1800,
        "timeout": 8000,
        "intertrial_interval": [4000, 6000],
        "trials": trials,
        "resets": [[start + 3.0, 0], [start + 9.5, 1]],
        "spontaneous_reaches": [[start + 5.0, 1]],
        "advance_with_incorrects": False,
        "start_time": start,
        "end_time": start + 1800,
        "date": date,
        "notes": "",
    }


def test_run_counts_outcomes_rewards_and_backend_calls_as_the_original(
    fake_time: FakeTime,
) -> None:
    backend = ScriptedBackend(["correct", "incorrect", "miss", "correct", "correct"])
    hooks: list[int] = []
    session = Session({"trainer": "Matt"})

    def hook() -> None:
        hooks.append(len(session.data["trials"]))
        if len(hooks) == 6:
            session._end_session()  # as the original's own tests end a session

    session.run(
        backend,
        duration=600,
        intertrial_interval=(1000, 1000),
        timeout=500,
        hook=hook,
        initial_spout=Targets.LEFT,
    )
    data = session.data
    outcomes = [t["outcome"] for t in data["trials"]]
    assert outcomes == [1, 2, 0, 1, 1]
    assert hooks == [0, 1, 2, 3, 4, 5]
    # The later original never picks the target itself: it stays unless a hook sets it.
    assert {t["spout"] for t in data["trials"]} == {Targets.LEFT}
    assert backend.count("give_reward") == 3 == session.reward_count
    assert backend.count("miss_trial") == 2  # the incorrect and the missed trial
    assert backend.count("end_trial") == 5 and backend.count("cleanup") == 1
    assert data["trials"][2]["end"] - data["trials"][2]["start"] == pytest.approx(10.0)
    assert "lift_time" in data["trials"][0] and "lift_time" not in data["trials"][2]
    assert data["trainer"] == "Matt" and data["status"] == "stopped"
    assert data["intertrial_interval"] == [1000, 1000] and data["timeout"] == 500
    results = session.get_results()
    assert (results["correct_l"], results["incorrect_l"], results["missed_l"]) == (3, 1, 1)
    assert backend.messages, "the backend's message() gets the session's messages"


def test_a_hook_sets_the_next_target(fake_time: FakeTime) -> None:
    backend = ScriptedBackend(["correct"] * 6)
    session = Session()

    def hook() -> None:
        if len(session.data["trials"]) == 6:
            session._end_session()
        session.set_spout(-1)  # swap every trial

    session.run(backend, intertrial_interval=(0, 0), hook=hook, initial_spout=Targets.RIGHT)
    assert [t["spout"] for t in session.data["trials"]] == [0, 1, 0, 1, 0, 1]
    assert [spout for call, spout in backend.calls if call == "give_reward"] == [0, 1, 0, 1, 0, 1]
    assert len(session.get_recent_trials(Targets.LEFT)) == 3


def test_the_session_ends_after_its_duration(fake_time: FakeTime) -> None:
    backend = ScriptedBackend(["miss"] * 100)
    session = Session()
    session.run(backend, duration=60, intertrial_interval=(4000, 4000), timeout=0)
    # Each missed trial: 4 s ITI and a 10 s cue; the duration is checked between trials.
    assert len(session.data["trials"]) == 5
    assert session.data["status"] == "complete"
    assert session.data["duration"] == pytest.approx(70.0, abs=0.2)  # + the polls' lag
    assert backend.count("cleanup") == 1


def test_a_lift_while_waiting_for_rest_counts_and_the_wait_goes_on(fake_time: FakeTime) -> None:
    backend = ScriptedBackend(["correct", "correct"], lifts_at_rest=2)
    session = Session()
    session.run(backend, duration=1, intertrial_interval=(1500, 1500), initial_spout=0)
    assert [paw for _t, paw in session.data["resets"]] == [1, 1]
    assert backend.count("wait_for_rest") == 1  # not broken: no second wait
    assert len(session.data["trials"]) == 1


def test_a_lift_or_a_touch_during_the_countdown_breaks_the_iti(fake_time: FakeTime) -> None:
    backend = ScriptedBackend(["correct"])
    session = Session()
    fake_time.at(0.3, lambda: session.on_iti_lift(Targets.LEFT))
    fake_time.at(1.8, lambda: session.on_iti_grasp(Targets.RIGHT))
    session.run(backend, duration=3, intertrial_interval=(1000, 1000), timeout=1000)
    data = session.data
    assert [paw for _t, paw in data["resets"]] == [Targets.LEFT]
    assert [spout for _t, spout in data["spontaneous_reaches"]] == [Targets.RIGHT]
    # Rest, broken at 0.3 s, 1 s timeout; rest, broken at 1.8 s, timeout; rest, 1 s ITI, cue.
    assert backend.count("wait_for_rest") == 3
    assert data["trials"][0]["start"] - data["start_time"] == pytest.approx(3.8, abs=0.05)


def test_train_continues_from_the_previous_session_in_the_original_shape(
    tmp_path: Path, fake_time: FakeTime
) -> None:
    good = [(0, 1)] * 15 + [(1, 1)] * 15
    (tmp_path / "M1.json").write_text(
        json.dumps([later_session("2020-02-13", 1581600000.0, good, cue=6000.0, position=[3, 2])])
    )
    mouse = Mouse.init_from_file(tmp_path, "M1")
    backend = ScriptedBackend(["correct"])
    mouse.train(
        backend,
        additional_data={"weight": "20.5"},
        duration=1,
        intertrial_interval=(0, 0),
        initial_spout=Targets.LEFT,
    )
    assert len(mouse) == 2
    new = mouse[-1]
    assert isinstance(new, Session) and new.data["weight"] == "20.5"
    first = new.data["trials"][0]
    assert first["cue_duration"] == 6000.0
    # A full window of hits on the left: the left spout advances before the first cue.
    assert first["spout_position"] == [4, 2]
    assert backend.calls[0] == ("position_spouts", [3, 2])
    assert ("position_spouts", [4, 2]) in backend.calls
    assert [len(new.get_recent_trials(s)) for s in (0, 1)] == [15, 15]
    assert SlidingTrialList.WINDOW == 15 and new.get_recent_trials(1).get_hit_rate() == 1.0


def test_the_names_scripts_import(tmp_path: Path) -> None:
    assert reach.session.Targets.RIGHT == 1 and reach.session.Outcomes.CANCELLED == 3
    assert reach.Session is Session and reach.mouse.Mouse is Mouse
    assert reach.cohort.Cohort is Cohort
    (tmp_path / "A1.json").write_text(
        json.dumps([later_session("2020-02-13", 1581600000.0, [(0, 1), (1, 2), (1, 0)])])
    )
    cohort = Cohort.init_from_files(tmp_path, ["A1"])
    assert isinstance(cohort[0], Mouse) and isinstance(cohort[0][0], Session)
    assert cohort[0][0].reward_count == 1
    assert [r["correct_l"] for r in cohort.get_results()] == [1]
    with pytest.raises(TypeError, match="Backend"):
        Session().run(object())  # type: ignore[arg-type]


def test_print_results(capsys: pytest.CaptureFixture[str], fake_time: FakeTime) -> None:
    session = Session(later_session("2020-02-13", 1581600000.0, [(0, 1), (1, 2), (1, 0), (0, 1)]))
    print_results(session)
    out = capsys.readouterr().out
    assert "Trials:              4" in out and "Correct reaches:     2 (50.0%)" in out
    assert "ITI resets:          2 (left paw 1, right paw 1)" in out
    print_results(Session({"trials": []}))
    assert capsys.readouterr().out == ""


def test_the_seed_api_still_trains_under_compat(tmp_path: Path) -> None:
    mouse = Mouse.init_from_file(tmp_path, "S1")
    session = mouse.train(config={"duration": 60}, sim=True, time_scale=float("inf"), seed=1)
    assert isinstance(session, Session) and session.data["status"] == "complete"
    assert mouse.save_data_to_file(tmp_path).sessions == 1


def test_ctrl_c_ends_the_session_keeps_its_data_and_then_is_ignored(fake_time: FakeTime) -> None:
    backend = ScriptedBackend(["correct"] * 10)
    session = Session()

    def hook() -> None:
        if len(session.data["trials"]) == 3:
            signal.raise_signal(signal.SIGINT)

    session.run(backend, intertrial_interval=(0, 0), hook=hook)
    assert len(session.data["trials"]) == 3 and session.data["status"] == "stopped"
    assert backend.count("cleanup") == 1
    # As the original: a second Ctrl-C while the script saves must not kill it.
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


SCRIPT = """
    import sys
    import agent.compat as reach
    from agent.compat import Mouse
    from agent.compat.backends import Backend
    from agent.compat.session import print_results

    class Box(Backend):
        def configure_callbacks(self, session):
            self.session = session
        def start_trial(self, spout_number):
            if spout_number == reach.session.Targets.LEFT:
                self.session.on_trial_correct()
            else:
                self.session.on_trial_incorrect()

    data_dir = sys.argv[1]
    mouse = Mouse.init_from_file(data_dir=data_dir, mouse_id="Mouse1")
    trials = []
    def hook():
        if len(mouse[-1].data["trials"]) >= 4:
            mouse[-1]._end_session()
        mouse[-1].set_spout(len(mouse[-1].data["trials"]) % 2)
    mouse.train(Box(), additional_data={"trainer": "matt"}, duration=30,
                intertrial_interval=(0, 0), timeout=0, hook=hook)
    mouse[-1].add_data({"notes": "fine"})
    mouse.save_data_to_file(data_dir)
    print_results(mouse[-1])
    print("rewards", mouse[-1].reward_count)
"""


def test_a_script_in_the_original_style_runs_and_saves(tmp_path: Path) -> None:
    (tmp_path / "Mouse1.json").write_text(
        json.dumps([later_session("2020-02-13", 1581600000.0, [(0, 1), (1, 1)])])
    )
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    sessions = json.loads((tmp_path / "Mouse1.json").read_text())
    assert len(sessions) == 2 and sessions[1]["notes"] == "fine"
    assert [t["outcome"] for t in sessions[1]["trials"]] == [1, 2, 1, 2]
    assert "rewards 2" in done.stdout and "Trials:              4" in done.stdout
    assert not list(tmp_path.glob("*.bak")), "adding a session needs no backup"


def test_sliding_trial_list_rates() -> None:
    window = SlidingTrialList()
    for outcome in [Outcomes.CORRECT] * 9 + [Outcomes.INCORRECT] * 3 + [Outcomes.MISSED] * 5:
        window.append({"outcome": outcome})
    assert len(window) == SlidingTrialList.WINDOW
    assert window.get_hit_rate() == pytest.approx(7 / 15)  # the oldest two fell out
    assert window.get_touch_rate() == pytest.approx(10 / 15)


def test_events_from_another_thread_reach_the_engine(fake_time: FakeTime) -> None:
    backend = ScriptedBackend(["miss"] * 3)
    session = Session()
    done = threading.Event()

    def from_gpio_thread() -> None:
        def gpio() -> None:
            session.on_trial_correct()
            done.set()

        worker = threading.Thread(target=gpio)
        worker.start()
        worker.join(timeout=10)

    fake_time.at(1.0, from_gpio_thread)
    session.run(backend, duration=1, intertrial_interval=(0, 0))
    assert done.is_set()
    assert [t["outcome"] for t in session.data["trials"]] == [Outcomes.CORRECT]


def test_a_session_can_be_run_again(fake_time: FakeTime) -> None:
    session = Session()
    session.run(ScriptedBackend(["correct"]), duration=1, intertrial_interval=(1500, 1500))
    first = session.data["session_id"]
    session.run(ScriptedBackend(["incorrect"]), duration=1, intertrial_interval=(1500, 1500))
    assert session.data["session_id"] != first
    assert [t["outcome"] for t in session.data["trials"]] == [Outcomes.INCORRECT]


def test_the_cue_shortens_at_the_later_originals_pace(tmp_path: Path, fake_time: FakeTime) -> None:
    full = [(0, 1)] * 15 + [(1, 1)] * 15
    (tmp_path / "M1.json").write_text(
        json.dumps([later_session("2020-02-13", 1581600000.0, full, cue=6000.0, position=[7, 7])])
    )
    mouse = Mouse.init_from_file(tmp_path, "M1")

    def hook() -> None:
        running = mouse[-1]
        assert isinstance(running, Session)
        if len(running.data["trials"]) == 12:
            running._end_session()

    mouse.train(
        ScriptedBackend(["correct"] * 20), intertrial_interval=(0, 0), hook=hook, initial_spout=0
    )
    # At most once per advance_delay (5) trials, to whole ms: int(6000 * 0.997) = 5982, ...
    cues = [t["cue_duration"] for t in mouse[-1].data["trials"]]
    assert cues == [5982.0] * 5 + [5964.0] * 5 + [5946.0] * 2
