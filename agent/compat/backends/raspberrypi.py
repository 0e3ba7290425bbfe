"""The original library's later Raspberry Pi backend (``RaspberryPi``, ``Pins``, ``Utilities``),
on gpiozero instead of RPi.GPIO, so it also runs on gpiozero's mock pins.

The pin layout is the original's: a list of paw sensors, two spouts each with
a cue LED, a touch sensor, a reward solenoid and an actuator, and a sync
output high while the cue is on. Pass ``pin_factory`` (gpiozero's) to run it
anywhere; without one gpiozero picks the Pi's pins (``GPIOZERO_PIN_FACTORY``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.compat.backends import Backend
from agent.hardware import ACTUATOR_FREQUENCY_HZ, ACTUATOR_HOLD_S, duty_cycle

__all__ = ("Pins", "RaspberryPi", "Utilities")

#: How often ``wait_for_rest`` looks at the paw sensors, in seconds.
REST_POLL_S = 0.010
#: Keys the utilities read: arrows, and space to stop.
LEFT_KEY, RIGHT_KEY, UP_KEY, DOWN_KEY, EXIT_KEY = "left", "right", "up", "down", " "


class Pins:
    """BCM pin numbers, the original's layout; subclass it to change them."""

    paw_sensors: list[int] = [12]
    spouts: list[dict[str, int]] = [
        {"cue": 7, "touch": 14, "reward": 6, "actuator": 2},
        {"cue": 8, "touch": 15, "reward": 9, "actuator": 4},
    ]
    sync_signal: int | None = 27


class RaspberryPi(Backend):
    """A training box on a Raspberry Pi's GPIO.

    ``reward_duration`` is how long a solenoid opens, in seconds (0.070).
    ``pin_numbers`` is :class:`Pins` or a subclass of it.
    """

    def __init__(
        self,
        reward_duration: float | None = None,
        pin_numbers: type[Pins] | Pins | None = None,
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import LED, DigitalInputDevice, DigitalOutputDevice, PWMOutputDevice

        super().__init__()
        pins = pin_numbers or Pins
        self.reward_duration = reward_duration or 0.070
        self.session: Any = None
        self._is_trial = False
        self._target = 0
        self._finished = threading.Event()
        self._paw_pins = list(pins.paw_sensors)
        self.paws = [
            DigitalInputDevice(p, pull_up=False, pin_factory=pin_factory) for p in self._paw_pins
        ]
        self.touches = [
            DigitalInputDevice(s["touch"], pull_up=False, pin_factory=pin_factory)
            for s in pins.spouts
        ]
        self.cues = [LED(s["cue"], pin_factory=pin_factory) for s in pins.spouts]
        self.solenoids = [
            DigitalOutputDevice(s["reward"], pin_factory=pin_factory) for s in pins.spouts
        ]
        self.actuators = [
            PWMOutputDevice(s["actuator"], frequency=ACTUATOR_FREQUENCY_HZ, pin_factory=pin_factory)
            for s in pins.spouts
        ]
        sync = getattr(pins, "sync_signal", None)
        self.sync = DigitalOutputDevice(sync, pin_factory=pin_factory) if sync else None
        self._power_off: list[threading.Timer | None] = [None] * len(self.actuators)

    def configure_callbacks(self, session: Any) -> None:
        self.session = session

    def wait_to_start(self) -> None:
        """Wait for Enter, then listen to the sensors."""
        input("Press Enter to start the session.\n")
        self._listen()

    def _listen(self) -> None:
        for paw, device in enumerate(self.paws):
            device.when_deactivated = lambda _d=None, i=paw: self._paw_lifted(i)
        for spout, device in enumerate(self.touches):
            device.when_activated = lambda _d=None, i=spout: self._spout_touched(i)

    def _paw_lifted(self, paw: int) -> None:
        if self.session is None:
            return
        if self._is_trial:
            self.session.on_trial_lift(paw)
        else:
            self.session.on_iti_lift(paw)

    def _spout_touched(self, spout: int) -> None:
        if self.session is None:
            return
        if not self._is_trial:
            self.session.on_iti_grasp(spout)
        elif spout == self._target:
            self.session.on_trial_correct()
        else:
            self.session.on_trial_incorrect()

    def position_spouts(self, position: Any, spout_number: int | None = None) -> None:
        """Move the spouts: ``position`` a [left, right] list or one position for both."""
        if isinstance(position, list | tuple):
            targets = list(enumerate(position))
        elif spout_number is not None:
            targets = [(spout_number, position)]
        else:
            targets = [(spout, position) for spout in range(len(self.actuators))]
        for spout, value in targets:
            self._move(spout, min(max(int(value), 1), 7))

    def _move(self, spout: int, position: int) -> None:
        self.actuators[spout].value = duty_cycle(position)
        pending = self._power_off[spout]
        if pending is not None:
            pending.cancel()
        # Power off after the move, as the original did, so the actuator does not hum.
        timer = threading.Timer(ACTUATOR_HOLD_S, self._actuator_off, (spout,))
        timer.daemon = True
        self._power_off[spout] = timer
        timer.start()

    def _actuator_off(self, spout: int) -> None:
        if not self.actuators[spout].closed:
            self.actuators[spout].value = 0

    def wait_for_rest(self) -> bool:
        """Block until every paw sensor is held; False once the session has ended."""
        while not all(device.is_active for device in self.paws):
            if self._finished.wait(REST_POLL_S):
                return False
        return not self._finished.is_set()

    def start_trial(self, spout_number: int) -> None:
        self._target = spout_number
        self._is_trial = True
        self.cues[spout_number].on()
        if self.sync is not None:
            self.sync.on()

    def give_reward(self, spout_number: int) -> None:
        self.solenoids[spout_number].on()
        time.sleep(self.reward_duration)
        self.solenoids[spout_number].off()

    def end_trial(self) -> None:
        self._is_trial = False
        for cue in self.cues:
            cue.off()
        if self.sync is not None:
            self.sync.off()

    def cleanup(self) -> None:
        """Stop listening; cues, sync and solenoids off."""
        self._finished.set()
        _forget_callbacks([*self.paws, *self.touches])
        for device in [*self.cues, *self.solenoids]:
            device.off()
        if self.sync is not None:
            self.sync.off()

    def close(self) -> None:
        """Release every pin (the original left that to the interpreter's exit)."""
        self.cleanup()
        for timer in self._power_off:
            if timer is not None:
                timer.cancel()
        devices = [*self.paws, *self.touches, *self.cues, *self.solenoids, *self.actuators]
        for device in [*devices, *([self.sync] if self.sync else [])]:
            device.close()


def _forget_callbacks(devices: list[Any]) -> None:
    # gpiozero warns when a callback that was never set is set to None.
    for device in devices:
        if device.when_activated is not None:
            device.when_activated = None
        if device.when_deactivated is not None:
            device.when_deactivated = None


def read_key() -> str:
    """One key from the terminal: ``left``/``right``/``up``/``down`` for the arrows."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            return EXIT_KEY
        word = line.strip().lower()
        return word if word in (LEFT_KEY, RIGHT_KEY, UP_KEY, DOWN_KEY) else EXIT_KEY
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        key = sys.stdin.read(1)
        if key == "\x1b" and sys.stdin.read(1) == "[":
            key = {"A": UP_KEY, "B": DOWN_KEY, "C": RIGHT_KEY, "D": LEFT_KEY}.get(
                sys.stdin.read(1), key
            )
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return key


class Utilities(RaspberryPi):
    """The box's set-up checks, driven from the keyboard (arrows; space stops).

    ``key_reader`` returns one key a call (default: the terminal; a pipe gives
    one word a line: left, right, up, down, anything else stops).
    """

    def __init__(self, *args: Any, key_reader: Callable[[], str] = read_key, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_key = key_reader

    def enable_leds(self) -> None:
        """Both cue LEDs on (handy in a dark room)."""
        for cue in self.cues:
            cue.on()

    def test_sensors(self) -> None:
        """Print every paw and spout sensor change until Enter."""
        print("Touch the sensors; press Enter to stop.")
        for number, device in enumerate(self.paws):
            device.when_activated = lambda _d=None, i=number: print(f"Paw sensor {i}: 1")
            device.when_deactivated = lambda _d=None, i=number: print(f"Paw sensor {i}: 0")
        for number, device in enumerate(self.touches):
            device.when_activated = lambda _d=None, i=number: print(f"Spout {i + 1}: 1")
            device.when_deactivated = lambda _d=None, i=number: print(f"Spout {i + 1}: 0")
        input()
        _forget_callbacks([*self.paws, *self.touches])

    def _keys(self, prompt: str, on_key: Callable[[str], None]) -> None:
        print(prompt)
        print("Press space to stop.")
        while (key := self.read_key()) != EXIT_KEY:
            on_key(key)

    def toggle_solenoids(self) -> None:
        """Left/right arrow: open or close that spout's solenoid."""

        def toggle(key: str) -> None:
            if key in (LEFT_KEY, RIGHT_KEY):
                self.solenoids[0 if key == LEFT_KEY else 1].toggle()

        self._keys("Left or right arrow opens or closes that solenoid.", toggle)
        for solenoid in self.solenoids:
            solenoid.off()

    def toggle_spout_leds(self) -> None:
        """Left/right arrow: that spout's cue LED on or off (the sync output follows)."""

        def toggle(key: str) -> None:
            if key in (LEFT_KEY, RIGHT_KEY):
                self.cues[0 if key == LEFT_KEY else 1].toggle()
            if self.sync is not None:
                self.sync.value = any(cue.is_lit for cue in self.cues)

        self._keys("Left or right arrow turns that cue LED on or off.", toggle)

    def dispense_reward_volume(self) -> None:
        """Left/right arrow: one reward from that spout (to weigh what it gives)."""

        def dispense(key: str) -> None:
            if key in (LEFT_KEY, RIGHT_KEY):
                self.give_reward(0 if key == LEFT_KEY else 1)

        self._keys("Left or right arrow dispenses one reward from that spout.", dispense)

    def step_actuators(self) -> None:
        """Arrows step both spouts 1 mm back or forward; up/down go to the ends."""
        position = 1
        self.position_spouts(position)

        def step(key: str) -> None:
            nonlocal position
            moves = {LEFT_KEY: position - 1, RIGHT_KEY: position + 1, DOWN_KEY: 1, UP_KEY: 7}
            position = min(max(moves.get(key, position), 1), 7)
            print(f"Spout position: {position}")
            self.position_spouts(position)

        self._keys("Left/right arrow steps the spouts; up/down: fully out or in.", step)
