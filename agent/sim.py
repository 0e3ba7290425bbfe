"""A simulated mouse that drives the rig's mock pins, seeded for reproducibility.

The mouse sees the cue LEDs through their pins and answers through the
sensor pins, exactly where a real mouse would: the task cannot tell it from
hardware. All its behaviour is scheduled on the task loop, so it runs on
virtual time as happily as on the wall clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from agent.hardware import Rig, Scheduler
from shared.errors import ConfigError


@dataclass(frozen=True)
class MouseProfile:
    """How the simulated mouse behaves. Times are seconds."""

    hit_probability: float = 0.8  # reaches at all during a cue
    correct_probability: float = 0.85  # touches the cued spout when it reaches
    reaction_time_median: float = 0.9  # cue onset to paw lift (lognormal)
    reaction_time_sigma: float = 0.5
    reach_time: float = 0.35  # lift to touch
    drink_time: float = 1.5  # paw back on the sensor after a touch
    fidget_rate: float = 0.03  # paw lifts per second while resting (ITI resets)
    fidget_time: float = 0.4
    spontaneous_rate: float = 0.01  # touches per second without a cue
    touch_time: float = 0.15

    def __post_init__(self) -> None:
        for name in ("hit_probability", "correct_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"simulated mouse: {name} must be between 0 and 1")
        for item in fields(self):
            if getattr(self, item.name) < 0:
                raise ConfigError(f"simulated mouse: {item.name} must not be negative")

    @classmethod
    def from_items(cls, items: Iterable[str]) -> MouseProfile:
        """A profile from ``KEY=VALUE`` texts (``--sim-mouse hit_probability=0.5``); the
        keys not given keep their defaults. An unknown key or a bad number is a
        :class:`~shared.errors.ConfigError` naming it."""
        known = {item.name for item in fields(cls)}
        values: dict[str, float] = {}
        for text in items:
            key, sep, raw = text.partition("=")
            key = key.strip()
            if not sep:
                raise ConfigError(f"simulated mouse: expected KEY=VALUE, got {text!r}")
            if key not in known:
                raise ConfigError(
                    f"simulated mouse: unknown key {key!r} (known: {', '.join(sorted(known))})"
                )
            try:
                values[key] = float(raw)
            except ValueError:
                raise ConfigError(f"simulated mouse: {key} must be a number, got {raw!r}") from None
        return cls(**values)

    @classmethod
    def from_text(cls, text: str) -> MouseProfile:
        """A profile from ``KEY=VALUE,KEY=VALUE`` (the ``LABAGENT_SIM_MOUSE`` variable)."""
        return cls.from_items(item for item in text.split(",") if item.strip())


class SimulatedMouse:
    """Drives a :class:`~agent.hardware.Rig` built on :func:`~agent.hardware.mock_pin_factory`."""

    def __init__(
        self,
        rig: Rig,
        loop: Scheduler,
        profile: MouseProfile | None = None,
        seed: int | None = None,
    ) -> None:
        self.rig = rig
        self.loop = loop
        self.profile = profile or MouseProfile()
        self.rng = random.Random(seed)
        self.active = False
        self._busy = False  # a paw is off its sensor for a reach or a fidget
        self._reach_timer: Any = None
        self._timers: list[Any] = []
        for spout, cue in enumerate(rig.cues):
            cue.pin.watchers.append(lambda value, s=spout: self._on_cue(s, value > 0))

    def _pin(self, device: Any) -> Any:
        return device.pin

    def start(self) -> None:
        """Sit down with both paws on the sensors and start fidgeting now and then.

        Each start is a fresh sit-down: whatever the mouse was doing when the last
        session stopped (drinking, mid-reach) is over, so an agent's later sessions
        get a mouse that answers.
        """
        self.stop()
        self.active = True
        for touch in self.rig.touches:
            self._pin(touch).drive_low()
        for paw in self.rig.paws:
            self._pin(paw).drive_high()
        self._schedule_fidget()
        self._schedule_spontaneous()

    def stop(self) -> None:
        """Leave the rig: no more reaches, and no timer of this sitting runs later."""
        self.active = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._reach_timer = None
        # The cancelled timers included the one that would have ended a reach or a drink.
        self._busy = False

    def _later(self, delay: float, callback: Any, *args: Any) -> Any:
        timer = self.loop.call_later(delay, callback, *args)
        self._timers.append(timer)
        if len(self._timers) > 64:
            self._timers = [t for t in self._timers if not t.cancelled][-32:]
        return timer

    # ----------------------------------------------------------- spontaneous behaviour

    def _schedule_fidget(self) -> None:
        if self.profile.fidget_rate > 0:
            self._later(self.rng.expovariate(self.profile.fidget_rate), self._fidget)

    def _schedule_spontaneous(self) -> None:
        if self.profile.spontaneous_rate > 0:
            self._later(self.rng.expovariate(self.profile.spontaneous_rate), self._spontaneous)

    def _fidget(self) -> None:
        if self.active and not self._busy and not self._cue_on():
            paw = self.rng.randint(0, 1)
            self._busy = True
            self._pin(self.rig.paws[paw]).drive_low()
            self._later(self.profile.fidget_time, self._rest_paw, paw)
        self._schedule_fidget()

    def _spontaneous(self) -> None:
        # A brush with the whiskers or the other paw: a touch with no sensor paw lifted.
        if self.active and not self._busy and not self._cue_on():
            spout = self.rng.randint(0, 1)
            self._pin(self.rig.touches[spout]).drive_high()
            self._later(self.profile.touch_time, self._release, spout)
        self._schedule_spontaneous()

    # ----------------------------------------------------------- cued behaviour

    def _cue_on(self) -> bool:
        return any(cue.is_lit for cue in self.rig.cues)

    def _on_cue(self, spout: int, on: bool) -> None:
        if not (self.active and on) or self._busy:
            return
        if self.rng.random() >= self.profile.hit_probability:
            return
        profile = self.profile
        reaction = profile.reaction_time_median * math.exp(
            self.rng.gauss(0, profile.reaction_time_sigma)
        )
        target = spout if self.rng.random() < profile.correct_probability else 1 - spout
        paw = self.rng.randint(0, 1)
        self._busy = True
        self._reach_timer = self._later(reaction, self._lift, paw, target)

    def _lift(self, paw: int, target: int) -> None:
        if not self.active:
            return
        self._pin(self.rig.paws[paw]).drive_low()
        self._later(self.profile.reach_time, self._touch, paw, target)

    def _touch(self, paw: int, target: int) -> None:
        if not self.active:
            return
        self._pin(self.rig.touches[target]).drive_high()
        self._later(self.profile.touch_time, self._release, target)
        self._later(self.profile.drink_time, self._rest_paw, paw)

    def _release(self, spout: int) -> None:
        self._pin(self.rig.touches[spout]).drive_low()

    def _rest_paw(self, paw: int) -> None:
        self._pin(self.rig.paws[paw]).drive_high()
        self._busy = False
