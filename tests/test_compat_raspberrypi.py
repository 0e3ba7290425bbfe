"""agent.compat.backends.raspberrypi: the original's later Pi backend, on gpiozero's mock pins.

The pins call back on their own threads, as a Pi's do; the mouse here lifts a
paw and touches the cued spout from a timer thread a moment after each cue.
"""

from __future__ import annotations

import builtins
import itertools
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from agent.compat.backends.raspberrypi import Pins, RaspberryPi, Utilities
from agent.compat.session import Session
from agent.hardware import duty_cycle


class TwoPaws(Pins):
    paw_sensors = [12, 13]


@pytest.fixture
def factory() -> Iterator[Any]:
    pins = MockFactory(pin_class=MockPWMPin)
    yield pins
    pins.reset()


@pytest.fixture(autouse=True)
def keep_sigint() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


def rises(pin: Any) -> int:
    """How often an output pin went high (its history of states)."""
    states = [bool(s.state) for s in pin.states]
    return sum(1 for before, now in itertools.pairwise(states) if now and not before)


class MouseOnTheRig(RaspberryPi):
    """The backend, with a mouse that reaches for the cued spout 2 ms after the cue."""

    def __init__(self, factory: Any, **kwargs: Any) -> None:
        super().__init__(pin_numbers=TwoPaws, pin_factory=factory, **kwargs)
        self.factory = factory
        self.reaches: list[threading.Timer] = []

    def start_trial(self, spout_number: int) -> None:
        super().start_trial(spout_number)
        reach = threading.Timer(0.002, self.reach, (spout_number,))
        self.reaches.append(reach)
        reach.start()

    def reach(self, spout: int) -> None:
        paw = self.factory.pin(12)
        paw.drive_low()  # the lift
        paw.drive_high()
        touch = self.factory.pin(TwoPaws.spouts[spout]["touch"])
        touch.drive_high()
        touch.drive_low()


def test_a_session_on_the_gpio_backend(factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtins, "input", lambda _prompt="": "")
    rig = MouseOnTheRig(factory, reward_duration=0.001)
    for paw in TwoPaws.paw_sensors:
        factory.pin(paw).drive_high()  # resting (after the set-up, which pulls the pins down)
    session = Session()
    watchdog = threading.Timer(30, rig.cleanup)  # a hung session still ends
    watchdog.start()
    try:
        session.run(rig, duration=0.5, intertrial_interval=(0, 0), timeout=0)
    finally:
        watchdog.cancel()
        for reach in rig.reaches:
            reach.join(timeout=5)
    trials = session.data["trials"]
    assert session.data["status"] == "complete" and len(trials) >= 3
    assert all(t["outcome"] == 1 and t["lift_paw"] == 0 for t in trials)
    assert all(t["start"] <= t["lift_time"] <= t["end"] for t in trials)
    solenoids = [factory.pin(s["reward"]) for s in TwoPaws.spouts]
    assert sum(rises(p) for p in solenoids) == len(trials) == session.reward_count
    assert session.data["reward_duration_ms"] == [1, 1]
    cues = [factory.pin(s["cue"]) for s in TwoPaws.spouts]
    assert not any(p.state for p in [*cues, *solenoids, factory.pin(TwoPaws.sync_signal)])
    rig.close()


def test_wait_for_rest_waits_for_every_paw_and_ends_on_cleanup(factory: Any) -> None:
    rig = RaspberryPi(pin_numbers=TwoPaws, pin_factory=factory)
    factory.pin(12).drive_high()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(rig.wait_for_rest()))
    waiter.start()
    waiter.join(timeout=0.1)
    assert waiter.is_alive(), "one paw of two resting is not rest"
    factory.pin(13).drive_high()
    waiter.join(timeout=5)
    assert result == [True]
    factory.pin(13).drive_low()
    waiter = threading.Thread(target=lambda: result.append(rig.wait_for_rest()))
    waiter.start()
    rig.cleanup()
    waiter.join(timeout=5)
    assert result == [True, False]
    rig.close()


def test_positions_are_clamped_and_use_the_actuator_table(factory: Any) -> None:
    rig = RaspberryPi(pin_factory=factory)
    rig.position_spouts([0, 9])
    assert [a.value for a in rig.actuators] == [duty_cycle(1), duty_cycle(7)]
    rig.position_spouts(4)
    assert [a.value for a in rig.actuators] == [duty_cycle(4)] * 2
    rig.close()


def test_utilities_from_the_keyboard(factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    keys = iter(["right", "right", "up", "left", " ", "left", "right", " ", "left", " "])
    rig = Utilities(pin_factory=factory, reward_duration=0.001, key_reader=lambda: next(keys))
    rig.step_actuators()
    assert [a.value for a in rig.actuators] == [duty_cycle(6)] * 2
    assert "Spout position: 7" in capsys.readouterr().out
    rig.toggle_solenoids()  # left opens, right opens; stopping closes both
    reward_pins = [factory.pin(s["reward"]) for s in Pins.spouts]
    assert [rises(p) for p in reward_pins] == [1, 1] and not any(p.state for p in reward_pins)
    rig.dispense_reward_volume()
    assert [rises(p) for p in reward_pins] == [2, 1]
    rig.enable_leds()
    assert all(factory.pin(s["cue"]).state for s in Pins.spouts)
    rig.close()
