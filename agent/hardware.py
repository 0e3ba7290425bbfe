"""The rig's hardware as gpiozero devices behind one small class with an injected pin factory.

Inputs (paw sensors, spout touch sensors) are handed to the task as events
through the loop's ``call_soon_threadsafe``, because real pins call back on a
background thread. With ``--sim`` the same devices sit on gpiozero's mock
pins, which the simulated mouse drives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ConfigError, HardwareError

log = logging.getLogger("labagent.hardware")

#: Duty cycles (%) of the Actuonix PQ12-P at 50 Hz that place the spout at 1..7 mm,
#: the original library's table.
DUTY_CYCLES = (7.2, 7.7, 7.95, 8.2, 8.4, 8.7, 8.9)
ACTUATOR_FREQUENCY_HZ = 50
#: The original library removed actuator power a second after each move to stop it humming.
ACTUATOR_HOLD_S = 1.0
LEFT, RIGHT = 0, 1


@contextlib.contextmanager
def _gpio(part: str) -> Iterator[None]:
    """gpiozero's errors while driving ``part`` as a :class:`HardwareError` naming it."""
    from gpiozero.exc import GPIOZeroError

    try:
        yield
    except GPIOZeroError as exc:
        raise HardwareError(f"{part}: {str(exc) or type(exc).__name__}") from None


def duty_cycle(position: int) -> float:
    """PWM value (0-1) for actuator ``position`` in mm (1-7)."""
    if not 1 <= position <= len(DUTY_CYCLES):
        raise HardwareError(f"spout position {position} is outside 1-{len(DUTY_CYCLES)}")
    return DUTY_CYCLES[position - 1] / 100


class PinMap(BaseModel):
    """BCM pin numbers of one rig; every pin is configurable (``--pins FILE``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paw_sensors: tuple[int, int] = Field((17, 18), description="left, right paw rest sensors")
    touch_sensors: tuple[int, int] = Field((5, 6), description="left, right spout touch")
    cue_leds: tuple[int, int] = Field((22, 23), description="left, right cue LEDs")
    solenoids: tuple[int, int] = Field((24, 25), description="left, right reward solenoids")
    actuators: tuple[int, int] = Field((12, 13), description="left, right PWM spout actuators")
    sync: int = Field(4, description="sync signal output, high during the cue")

    def roles(self) -> dict[str, int | tuple[int, int]]:
        """Pin numbers by role, as ``session_start`` announces them."""
        return {name: getattr(self, name) for name in type(self).model_fields}

    def all_pins(self) -> list[int]:
        return [
            *self.paw_sensors,
            *self.touch_sensors,
            *self.cue_leds,
            *self.solenoids,
            *self.actuators,
            self.sync,
        ]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PinMap:
        """Read a JSON file of pin numbers; errors name the file and the key."""
        file = Path(path).expanduser()
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
            pins = cls.model_validate(values)
        except FileNotFoundError:
            raise ConfigError(f"pins file {file} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"pins file {file}: not valid JSON ({exc})") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"pins file {file}: key {key!r}: {err['msg']}") from None
        used = pins.all_pins()
        if len(set(used)) != len(used):
            raise ConfigError(f"pins file {file}: a pin is used twice")
        return pins


class Scheduler(Protocol):
    """What the rig needs of the event loop."""

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None: ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any: ...


#: The changes of state a simulated rig's mock pin keeps (gpiozero's ``states``, 120 bytes
#: each). A pin changes 2 to 11 times in a minute's session; at 1000 a rig's 11 pins took
#: a hundred sessions and more to fill theirs, so an hour's soak grew all the way through.
PIN_HISTORY = 100


def mock_pin_factory() -> Any:
    """gpiozero's MockFactory with PWM-capable pins that report output changes, for ``--sim``.

    The simulated mouse watches the cue LED pins exactly as a mouse watches the
    LEDs: through the pins, not through the task's internals.
    """
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    class WatchedPin(MockPWMPin):  # type: ignore[misc]  # gpiozero is untyped
        history_limit = PIN_HISTORY

        def __init__(self, factory: Any, info: Any) -> None:
            super().__init__(factory, info)
            self.watchers: list[Callable[[float], None]] = []
            #: Changes to high over the pin's whole life (``states`` keeps only the recent).
            self.rises = 0

        # The one private gpiozero name used: the hook its own mock pins override
        # (MockConnectedPin), called on every change of the pin's state.
        def _change_state(self, value: Any) -> bool:
            changed = bool(super()._change_state(value))
            if changed and value:
                self.rises += 1
            # gpiozero keeps every change; a sim agent runs for days, so keep the recent ones.
            if len(self.states) > self.history_limit:
                del self.states[: len(self.states) - self.history_limit]
            if changed and self.function == "output":
                for watcher in list(self.watchers):
                    watcher(float(value))
            return changed

    return MockFactory(pin_class=WatchedPin)


def real_pin_factory() -> Any:
    """gpiozero's default pin factory for this Pi (``GPIOZERO_PIN_FACTORY`` may choose).

    gpiozero tries its pin libraries in turn and warns (two lines each) about every
    one it falls back from. Those warnings are gathered into one line instead: the
    "no GPIO" error when none worked, else one log line naming the library in use.
    """
    from gpiozero import Device
    from gpiozero.exc import PinFactoryFallback

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            # gpiozero's own choice, as a device made without a pin factory would get it.
            Device.ensure_pin_factory()
            factory = Device.pin_factory
        except Exception as exc:  # gpiozero raises several unrelated types here
            tried = _fallbacks(caught, PinFactoryFallback)
            raise HardwareError(
                f"no GPIO available ({tried or exc}); "
                "on a machine that is not a Raspberry Pi use --sim"
            ) from None
    for other in caught:
        if not issubclass(other.category, PinFactoryFallback):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    tried = _fallbacks(caught, PinFactoryFallback)
    if tried:
        log.info("GPIO through %s, after %s", type(factory).__name__, tried)
    return factory


def _fallbacks(caught: list[warnings.WarningMessage], category: type[Warning]) -> str:
    """``tried lgpio: No module named 'lgpio'; ...`` from gpiozero's fallback warnings."""
    reasons = [
        str(w.message).removeprefix("Falling back from ")
        for w in caught
        if issubclass(w.category, category)
    ]
    return f"tried {'; '.join(reasons)}" if reasons else ""


PawHandler = Callable[[int, bool], None]
TouchHandler = Callable[[int, bool], None]


class Rig:
    """One training box's inputs and outputs.

    ``on_paw(paw, resting)`` and ``on_touch(spout, touching)`` are called on the
    loop's thread. Positions are tracked so the status and tests can read them.
    """

    def __init__(self, pins: PinMap, pin_factory: Any, loop: Scheduler) -> None:
        from gpiozero import LED, DigitalInputDevice, DigitalOutputDevice, PWMOutputDevice
        from gpiozero.exc import GPIOZeroError

        self.pins = pins
        self.pin_factory = pin_factory
        self._loop = loop
        self.on_paw: PawHandler | None = None
        self.on_touch: TouchHandler | None = None
        self.spout_position = [0, 0]
        self._power_off: list[Any] = [None, None]
        try:
            # DigitalInputDevice rather than Button: Button starts a hold thread per pin.
            self.paws = [
                DigitalInputDevice(p, pull_up=False, pin_factory=pin_factory)
                for p in pins.paw_sensors
            ]
            self.touches = [
                DigitalInputDevice(p, pull_up=False, pin_factory=pin_factory)
                for p in pins.touch_sensors
            ]
            self.cues = [LED(p, pin_factory=pin_factory) for p in pins.cue_leds]
            self.solenoids = [
                DigitalOutputDevice(p, pin_factory=pin_factory) for p in pins.solenoids
            ]
            self.actuators = [
                PWMOutputDevice(p, frequency=ACTUATOR_FREQUENCY_HZ, pin_factory=pin_factory)
                for p in pins.actuators
            ]
            self.sync = DigitalOutputDevice(pins.sync, pin_factory=pin_factory)
        except GPIOZeroError as exc:
            self.close()
            # Some gpiozero errors carry no text (PinPWMUnsupported on a plain pin): name the class.
            raise HardwareError(f"GPIO set-up failed: {str(exc) or type(exc).__name__}") from None
        for index, device in enumerate(self.paws):
            device.when_activated = lambda _d=None, i=index: self._post_paw(i, True)
            device.when_deactivated = lambda _d=None, i=index: self._post_paw(i, False)
        for index, device in enumerate(self.touches):
            device.when_activated = lambda _d=None, i=index: self._post_touch(i, True)
            device.when_deactivated = lambda _d=None, i=index: self._post_touch(i, False)

    # ------------------------------------------------------------- inputs

    def _post_paw(self, paw: int, resting: bool) -> None:
        if self.on_paw is not None:
            self._loop.call_soon_threadsafe(self.on_paw, paw, resting)

    def _post_touch(self, spout: int, touching: bool) -> None:
        if self.on_touch is not None:
            self._loop.call_soon_threadsafe(self.on_touch, spout, touching)

    def paws_resting(self) -> bool:
        """True when every paw sensor is held."""
        return all(device.is_active for device in self.paws)

    def sensors(self) -> dict[str, list[bool]]:
        """Current state of every input, for the ``read_sensors`` utility."""
        return {
            "paws_resting": [bool(d.is_active) for d in self.paws],
            "spouts_touched": [bool(d.is_active) for d in self.touches],
        }

    # ------------------------------------------------------------- outputs

    def set_cue(self, spout: int, on: bool) -> None:
        with _gpio(f"cue LED of spout {spout}"):
            self.cues[spout].value = on

    def set_sync(self, on: bool) -> None:
        with _gpio("sync output"):
            self.sync.value = on

    def solenoid_openings(self) -> list[int] | None:
        """How often each solenoid's pin went high, from the mock pins' history (``--sim``);
        None on real pins, which keep none."""
        rises = [getattr(d.pin, "rises", None) for d in self.solenoids]
        counts = [r for r in rises if isinstance(r, int)]
        return counts if len(counts) == len(rises) else None

    def open_solenoid(self, spout: int) -> None:
        with _gpio(f"solenoid of spout {spout}"):
            self.solenoids[spout].on()

    def close_solenoid(self, spout: int) -> None:
        with _gpio(f"solenoid of spout {spout}"):
            self.solenoids[spout].off()

    def move_spout(self, spout: int, position: int) -> None:
        """Drive actuator ``spout`` to ``position`` mm, then remove power after a second."""
        value = duty_cycle(position)
        with _gpio(f"actuator of spout {spout}"):
            self.actuators[spout].value = value
        self.spout_position[spout] = position
        pending = self._power_off[spout]
        if pending is not None:
            pending.cancel()
        self._power_off[spout] = self._loop.call_later(
            ACTUATOR_HOLD_S, self._actuator_power_off, spout
        )

    def _actuator_power_off(self, spout: int) -> None:
        self._power_off[spout] = None
        self.actuators[spout].value = 0

    def all_off(self) -> list[str]:
        """Cues, solenoids, sync and actuator power off: the safe state.

        Every output is tried even when one fails (a dead LED must never leave a
        solenoid open); what failed is logged and returned, not raised, so a session
        or the agent can still end and keep its data.
        """
        from gpiozero.exc import GPIOZeroError

        failed: list[str] = []

        def off(name: str, device: Any, action: Callable[[Any], None]) -> None:
            try:
                action(device)
            except GPIOZeroError as exc:
                failed.append(f"{name}: {str(exc) or type(exc).__name__}")

        for name in ("cues", "solenoids"):
            for number, device in enumerate(getattr(self, name, [])):
                off(f"{name}[{number}]", device, lambda d: d.off())
        for number, device in enumerate(getattr(self, "actuators", [])):
            off(f"actuators[{number}]", device, lambda d: setattr(d, "value", 0))
        if hasattr(self, "sync"):
            off("sync", self.sync, lambda d: d.off())
        for failure in failed:
            log.error("could not switch off %s", failure)
        return failed

    def close(self) -> None:
        """Outputs off and every pin released."""
        self.all_off()
        for name in ("paws", "touches", "cues", "solenoids", "actuators"):
            for device in getattr(self, name, []):
                device.close()
        if hasattr(self, "sync"):
            self.sync.close()
