"""The reach task rules of DESIGN §3, on gpiozero mock pins, a scripted mouse and virtual time."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from agent.clock import EventLoop
from agent.engine import IllegalTransition, State, TaskEngine
from agent.hardware import PinMap, Rig, mock_pin_factory
from shared.carryover import CarryOver, carry_over_from
from shared.config import TaskConfig
from shared.documents import Document, build_session, dump_document, parse_document

T0 = 1_000_000.0
# A fixed ITI makes every time in these tests exact.
FIXED = {"intertrial_interval": (5000, 5000), "initial_spout": 0, "duration": 86_400}


class ScriptedRig:
    """A session on mock pins whose mouse does exactly what the test says, when it says."""

    def __init__(self, carry_over: CarryOver | None = None, **settings: Any) -> None:
        self.loop = EventLoop(math.inf, start_time=T0)
        self.rig = Rig(PinMap(), mock_pin_factory(), self.loop)
        self.config = TaskConfig.from_dict({**FIXED, **settings})
        self.docs: list[Document] = []
        self.session = TaskEngine(
            config=self.config,
            clock=self.loop,
            rig=self.rig,
            sink=self.docs.append,
            carry_over=carry_over,
            rng=random.Random(7),
        )
        for paw in self.rig.paws:
            paw.pin.drive_high()  # the mouse sits with both paws resting

    # scripted actions, at task times relative to T0
    def at(self, t: float, action: Callable[[], None]) -> None:
        self.loop.call_at(T0 + t, action)

    def lift(self, paw: int) -> Callable[[], None]:
        drive: Callable[[], None] = self.rig.paws[paw].pin.drive_low
        return drive

    def rest(self, paw: int) -> Callable[[], None]:
        drive: Callable[[], None] = self.rig.paws[paw].pin.drive_high
        return drive

    def touch(self, spout: int) -> Callable[[], None]:
        pin = self.rig.touches[spout].pin

        def tap() -> None:
            pin.drive_high()
            pin.drive_low()

        return tap

    def respond(self, choose: Callable[[int], int | None], delay: float = 1.0) -> None:
        """On every cue, touch ``choose(cued_spout)`` after ``delay`` s (None: do nothing)."""
        for spout, cue in enumerate(self.rig.cues):
            cue.pin.watchers.append(lambda v, s=spout: self._on_cue(s, v, choose, delay))

    def _on_cue(
        self, spout: int, value: float, choose: Callable[[int], int | None], delay: float
    ) -> None:
        if value > 0 and (target := choose(spout)) is not None:
            self.loop.call_later(delay, self.touch(target))

    def run(self, until: float | None = None, trials: int | None = None) -> dict[str, Any]:
        if self.session.state is State.READY:
            self.session.start()

        def done() -> bool:
            if self.session.ended:
                return True
            if trials is not None and len(self.session.data["trials"]) >= trials:
                return True
            return until is not None and self.loop.now() >= T0 + until

        self.loop.run(until=done)
        return self.session.data

    @property
    def trials(self) -> list[dict[str, Any]]:
        return list(self.session.data["trials"])


def rel(t: float) -> float:
    return round(t - T0, 6)


# ---------------------------------------------------------------- ITI


def test_first_trial_starts_after_the_iti_once_paws_rest() -> None:
    rig = ScriptedRig()
    rig.run(trials=1)
    assert rel(rig.trials[0]["start"]) == 5.0


def test_iti_countdown_waits_until_every_paw_rests() -> None:
    rig = ScriptedRig()
    rig.lift(1)()  # the mouse starts with its right paw up
    rig.at(3.0, rig.rest(1))
    rig.run(trials=1)
    assert rel(rig.trials[0]["start"]) == 8.0  # 3 s waiting for rest + 5 s ITI
    assert rig.session.data["resets"] == []  # a paw up before the countdown is no reset


def test_paw_lift_during_iti_records_a_reset_and_adds_the_timeout() -> None:
    rig = ScriptedRig(timeout=8000)
    rig.at(2.0, rig.lift(0))
    rig.at(2.5, rig.rest(0))
    rig.run(trials=1)
    assert rig.session.data["resets"] == [[T0 + 2.0, 0]]
    # broken at 2 s, timeout to 10 s, paws resting, ITI of 5 s
    assert rel(rig.trials[0]["start"]) == 15.0


def test_spout_touch_during_iti_records_a_spontaneous_reach_and_adds_the_timeout() -> None:
    rig = ScriptedRig(timeout=3000)
    rig.at(4.0, rig.touch(1))
    rig.run(trials=1)
    assert rig.session.data["spontaneous_reaches"] == [[T0 + 4.0, 1]]
    assert rel(rig.trials[0]["start"]) == 12.0  # 4 + 3 timeout + 5 ITI


def test_broken_iti_waits_for_rest_again_after_the_timeout() -> None:
    rig = ScriptedRig(timeout=2000)
    rig.at(1.0, rig.lift(0))
    rig.at(6.0, rig.rest(0))  # still up when the timeout ends at 3 s
    rig.run(trials=1)
    assert rel(rig.trials[0]["start"]) == 11.0  # rest at 6 s + 5 s ITI


# ---------------------------------------------------------------- trials


def test_touching_the_cued_spout_is_correct_and_opens_its_solenoid_for_the_reward() -> None:
    rig = ScriptedRig(reward_duration_ms=(70, 120))
    solenoid_open: list[tuple[float, int, bool]] = []
    for spout in (0, 1):
        rig.rig.solenoids[spout].pin.watchers.append(
            lambda v, s=spout: solenoid_open.append((rel(rig.loop.now()), s, v > 0))
        )
    rig.at(5.0 + 1.2, rig.touch(0))  # cue on spout 0 at 5 s
    rig.run(trials=1)
    assert not rig.rig.cues[0].is_lit
    rig.loop.run(until=lambda: rig.loop.now() >= T0 + 7)
    trial = rig.trials[0]
    assert trial["outcome"] == 1
    assert rel(trial["end"]) == 6.2
    assert solenoid_open == [(6.2, 0, True), (6.27, 0, False)]


def test_touching_the_other_spout_is_incorrect_and_adds_the_timeout() -> None:
    rig = ScriptedRig(timeout=8000)
    rig.at(6.0, rig.touch(1))
    rig.run(trials=2)
    first, second = rig.trials
    assert first["outcome"] == 2 and rel(first["end"]) == 6.0
    assert rel(second["start"]) == 6.0 + 8.0 + 5.0
    assert not rig.rig.solenoids[1].is_active


def test_no_touch_before_the_cue_expires_is_missed_and_ends_at_the_cue_end() -> None:
    rig = ScriptedRig(cue_duration=10000)
    rig.run(trials=2)
    first, second = rig.trials
    assert first["outcome"] == 0
    assert rel(first["end"]) == 15.0
    assert rel(second["start"]) == 20.0  # no timeout after a miss


def test_the_first_paw_lift_of_a_trial_is_recorded() -> None:
    rig = ScriptedRig()
    rig.at(5.5, rig.lift(1))
    rig.at(5.6, rig.lift(0))
    rig.at(6.0, rig.touch(0))
    rig.at(7.0, rig.rest(0))
    rig.at(7.0, rig.rest(1))
    rig.run(trials=1)
    trial = rig.trials[0]
    assert (rel(trial["lift_time"]), trial["lift_paw"]) == (5.5, 1)
    assert list(trial) == [
        "start", "lift_time", "lift_paw", "end", "spout", "shaping",
        "cue_duration", "outcome", "spout_position",
    ]  # fmt: skip


def test_trial_dict_holds_spout_cue_outcome_position_and_shaping() -> None:
    rig = ScriptedRig()
    rig.run(trials=1)
    assert rig.trials[0] == {
        "start": T0 + 5.0,
        "end": T0 + 15.0,
        "spout": 0,
        "shaping": False,
        "cue_duration": 10000.0,
        "outcome": 0,
        "spout_position": [1, 1],
    }


def test_sync_pin_is_high_exactly_while_the_cue_is_on() -> None:
    rig = ScriptedRig()
    edges: list[tuple[float, bool]] = []
    rig.rig.sync.pin.watchers.append(lambda v: edges.append((rel(rig.loop.now()), v > 0)))
    rig.at(7.0, rig.touch(0))
    rig.run(trials=1)
    assert edges == [(5.0, True), (7.0, False)]


# ---------------------------------------------------------------- next target


def test_three_correction_trials_repeat_the_spout_after_misses_and_incorrects() -> None:
    rig = ScriptedRig(initial_spout=1, timeout=1000)
    answers = iter([None, 0, None, 1])  # miss, incorrect, miss, then correct

    rig.respond(lambda cued: next(answers, cued))
    rig.run(trials=4)
    assert [t["spout"] for t in rig.trials] == [1, 1, 1, 1]
    assert [t["outcome"] for t in rig.trials] == [0, 2, 0, 1]


def test_after_a_correct_trial_the_next_spout_is_random() -> None:
    rig = ScriptedRig()
    rig.respond(lambda cued: cued)
    rig.run(trials=60)
    spouts = [t["spout"] for t in rig.trials]
    assert 15 < spouts.count(0) < 45  # both spouts come up; a repeat-only rule would fail


# ---------------------------------------------------------------- adaptation


def full_window(hits: int, size: int = 15) -> tuple[int, ...]:
    return tuple([0] * (size - hits) + [1] * hits)


def test_a_window_at_the_threshold_advances_the_spout_one_position() -> None:
    carry = CarryOver(spout_position=(3, 2), cue_duration=10000, windows=(full_window(14), ()))
    rig = ScriptedRig(carry_over=carry)
    rig.run(trials=1)
    assert rig.trials[0]["spout_position"] == [4, 2]  # 14/15 = 0.93 >= 0.90
    assert rig.rig.spout_position == [4, 2]
    # the actuator was driven at the PQ12-P's 4 mm duty cycle, then powered down
    assert [s.state for s in rig.rig.actuators[0].pin.states][-2:] == pytest.approx([0.082, 0.0])


def test_a_window_below_the_threshold_does_not_advance() -> None:
    carry = CarryOver(spout_position=(3, 2), cue_duration=10000, windows=(full_window(13), ()))
    rig = ScriptedRig(carry_over=carry)
    rig.run(trials=1)
    assert rig.trials[0]["spout_position"] == [3, 2]  # 13/15 = 0.87 < 0.90


def test_fifteen_hits_at_ninety_percent_advance_the_spout() -> None:
    rig = ScriptedRig(initial_spout=0)
    rig.respond(lambda cued: cued)
    rig.run(trials=80)
    positions = [t["spout_position"][0] for t in rig.trials if t["spout"] == 0]
    hits_before_first_move = positions.index(2)
    assert hits_before_first_move == 14  # 14 of 15 >= 0.9; the 15th trial runs at 2 mm
    assert max(positions) > 2


def test_advance_delay_counts_trials_since_the_last_advance() -> None:
    carry = CarryOver(spout_position=(1, 1), cue_duration=10000, windows=(full_window(15), ()))
    rig = ScriptedRig(carry_over=carry, advance_delay=3, advance_with_incorrects=True)
    rig.respond(lambda cued: 1 - cued)  # incorrect touches count toward advancing here
    rig.run(trials=8)
    assert [t["spout_position"][0] for t in rig.trials] == [2, 2, 2, 3, 3, 3, 4, 4]


def test_a_spout_at_seven_moves_the_other_spout() -> None:
    carry = CarryOver(spout_position=(7, 3), cue_duration=10000, windows=(full_window(15), ()))
    rig = ScriptedRig(carry_over=carry)
    rig.run(trials=1)
    assert rig.trials[0]["spout_position"] == [7, 4]
    assert rig.trials[0]["spout"] == 0


def test_both_spouts_at_seven_shorten_the_cue_by_the_decay() -> None:
    carry = CarryOver(spout_position=(7, 7), cue_duration=5000, windows=(full_window(15), ()))
    rig = ScriptedRig(carry_over=carry)
    rig.respond(lambda cued: 1 - cued)  # stay on spout 0, window keeps 14+ hits for a while
    rig.run(trials=2)
    assert [t["cue_duration"] for t in rig.trials] == pytest.approx([5000 * 0.997, 5000 * 0.997**2])


def test_the_cue_never_shortens_below_the_floor() -> None:
    carry = CarryOver(spout_position=(7, 7), cue_duration=2005, windows=(full_window(15), ()))
    rig = ScriptedRig(carry_over=carry, min_cue_duration=2000)
    rig.respond(lambda cued: 1 - cued)
    rig.run(trials=3)
    assert [t["cue_duration"] for t in rig.trials] == [2000.0, 2000.0, 2000.0]


def test_advance_with_incorrects_counts_any_touch() -> None:
    window = (2,) * 15
    carry = CarryOver(spout_position=(1, 1), cue_duration=10000, windows=(window, ()))
    assert ScriptedRig(carry_over=carry).run(trials=1)["trials"][0]["spout_position"] == [1, 1]
    rig = ScriptedRig(carry_over=carry, advance_with_incorrects=True)
    assert rig.run(trials=1)["trials"][0]["spout_position"] == [2, 1]


# ---------------------------------------------------------------- shaping


def test_shaping_on_gives_water_at_cue_onset() -> None:
    rig = ScriptedRig(shaping="on")
    opened: list[float] = []

    def on_solenoid(value: float) -> None:
        if value > 0:
            opened.append(rel(rig.loop.now()))

    rig.rig.solenoids[0].pin.watchers.append(on_solenoid)
    rig.run(trials=1)
    assert rig.trials[0]["shaping"] is True
    assert opened == [5.0]  # at cue onset, though the trial was missed


def test_shaping_auto_is_on_without_hits_and_off_once_the_window_reaches_the_threshold() -> None:
    rig = ScriptedRig(shaping="auto")
    assert rig.run(trials=1)["trials"][0]["shaping"] is True
    carry = CarryOver(spout_position=(1, 1), cue_duration=10000, windows=(full_window(14), ()))
    rig = ScriptedRig(shaping="auto", carry_over=carry)
    assert rig.run(trials=1)["trials"][0]["shaping"] is False
    carry = CarryOver(spout_position=(1, 1), cue_duration=10000, windows=(full_window(5), ()))
    rig = ScriptedRig(shaping="auto", carry_over=carry)
    assert rig.run(trials=1)["trials"][0]["shaping"] is True  # still on until the threshold


# ---------------------------------------------------------------- carry-over and end


def test_a_session_carries_over_from_the_previous_one() -> None:
    first = ScriptedRig(initial_spout=0, cue_duration=9000)
    first.respond(lambda cued: cued)
    previous = first.run(trials=40)
    first.session.stop()
    carry = carry_over_from(previous, window=15)
    assert carry is not None
    second = ScriptedRig(carry_over=carry, cue_duration=9000)
    second.session.start()
    assert second.rig.spout_position == previous["trials"][-1]["spout_position"]
    assert second.session.cue_duration == 9000
    for spout in (0, 1):
        outcomes = [t["outcome"] for t in previous["trials"] if t["spout"] == spout][-15:]
        assert list(second.session.windows[spout]) == outcomes


def test_carry_over_takes_the_shortest_of_the_per_spout_last_cues() -> None:
    previous = {
        "trials": [
            {"spout": 0, "cue_duration": 4000.0, "outcome": 1, "spout_position": [7, 7]},
            {"spout": 1, "cue_duration": 3500.0, "outcome": 1, "spout_position": [7, 7]},
            {"spout": 0, "cue_duration": 3900.0, "outcome": 0, "spout_position": [7, 7]},
        ]
    }
    carry = carry_over_from(previous, window=15)
    assert carry is not None and carry.cue_duration == 3500.0
    rig = ScriptedRig(carry_over=carry)
    assert rig.run(trials=1)["trials"][0]["cue_duration"] == 3500.0


def test_the_session_ends_complete_between_trials_once_the_duration_has_elapsed() -> None:
    rig = ScriptedRig(duration=60)
    data = rig.run()
    assert data["status"] == "complete"
    # trials start at 5, 20, 35, 50 (each missed: 10 s cue, 5 s ITI); the last ends at 60 s,
    # when the duration is checked before the next ITI
    assert [rel(t["start"]) for t in data["trials"]] == [5.0, 20.0, 35.0, 50.0]
    assert rel(data["end_time"]) == 60.0
    assert data["duration"] == 60.0


def test_stop_mid_trial_ends_stopped_with_outputs_off_and_drops_the_open_trial() -> None:
    rig = ScriptedRig(shaping="on", reward_duration_ms=(500, 500))
    rig.at(3.0, rig.touch(0))  # spontaneous reach: timeout to 11 s, ITI to 16 s, cue on
    states: list[State] = []

    def stop_now() -> None:
        states.append(rig.session.state)
        rig.session.stop()

    rig.at(16.2, stop_now)
    data = rig.run()
    assert states == [State.CUE]  # stopped during the cue, while the shaping water flows
    assert data["status"] == "stopped"
    assert all(not c.is_lit for c in rig.rig.cues)
    assert all(not s.is_active for s in rig.rig.solenoids)
    assert not rig.rig.sync.is_active
    assert len(data["trials"]) == 0  # the only trial was still open


def test_session_dict_rebuilt_from_documents_equals_the_live_dict() -> None:
    rig = ScriptedRig(duration=300)
    answered: list[bool] = []  # what the scripted mouse did on each cue, in order

    def choose(cued: int) -> int | None:
        answered.append(random.Random(len(rig.docs)).random() < 0.7)
        return cued if answered[-1] else None

    rig.respond(choose)
    rig.at(2.0, rig.lift(0))
    rig.at(2.2, rig.rest(0))
    data = rig.run()
    assert [d.seq for d in rig.docs] == list(range(len(rig.docs)))
    # The live dict holds what the mouse and the hardware did, not only what the fold says:
    # a correct trial for each answered cue, a miss for each other, one solenoid opening
    # per correct trial, and the lift during the first ITI as a reset.
    outcomes = [t["outcome"] for t in data["trials"]]
    assert outcomes == [1 if a else 0 for a in answered[: len(outcomes)]]
    assert 0 < outcomes.count(1) < len(outcomes)
    assert sum(rig.rig.solenoid_openings() or []) == outcomes.count(1)
    assert data["resets"] == [[T0 + 2.0, 0]]
    # Rebuilt from the documents as they go on the wire (JSON and back), as the collector
    # and the journal rebuild it, the dict is the live one.
    wire = [parse_document(dump_document(doc)) for doc in rig.docs]
    assert build_session(wire) == data
    assert data["session_id"] == rig.session.session_id


def test_an_illegal_transition_raises() -> None:
    rig = ScriptedRig()
    with pytest.raises(IllegalTransition):
        rig.session._goto(State.CUE)
    rig.session.start()
    with pytest.raises(IllegalTransition):
        rig.session.start()


def test_a_dead_output_ends_the_session_as_aborted_with_everything_else_off() -> None:
    """A cue LED whose GPIO fails mid-session: the session ends as aborted, keeps what it
    recorded, and every other output goes off (no solenoid is left open)."""
    rig = ScriptedRig(duration=600)
    rig.respond(lambda cued: cued)
    broken_at: list[float] = []

    def break_left_cue() -> None:
        broken_at.append(rig.loop.now())
        rig.rig.cues[0].close()  # its GPIO goes away

    rig.at(120.0, break_left_cue)
    data = rig.run()
    assert data["status"] == "aborted"
    assert data["trials"] and all(t["end"] <= data["end_time"] for t in data["trials"])
    assert data["end_time"] - data["start_time"] < 600  # it did not run to its end
    assert data["end_time"] >= broken_at[0]
    assert not any(s.is_active for s in rig.rig.solenoids)
    assert not rig.rig.sync.is_active and not rig.rig.cues[1].is_lit
    (failure,) = rig.rig.all_off()  # the broken LED is still the only failure
    assert failure.startswith("cues[0]: ")


@pytest.mark.parametrize("shift", [-86_400.0, 3_600.0])
def test_rebasing_the_clock_keeps_every_pending_timer_s_delay(shift: float) -> None:
    loop = EventLoop(math.inf, start_time=T0)
    fired: list[tuple[str, float]] = []
    loop.call_later(30, lambda: fired.append(("late", loop.now())))
    loop.call_later(10, lambda: fired.append(("early", loop.now())))
    loop.call_later(5, lambda: loop.rebase(loop.now() + shift))
    loop.run()
    assert fired == [("early", T0 + shift + 10), ("late", T0 + shift + 30)]
