"""What the task engine needs, for a session of the original's later API: a clock and a rig.

:class:`PolledClock` reads as the driver last read ``time.time()`` and fires
timers only when the driver says, as the original's polling loop noticed them;
:class:`BackendRig` turns the engine's outputs into calls to an original-style
backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.clock import TimerHandle
from agent.compat.backends import Backend

__all__ = ["BackendRig", "PolledClock"]


class PolledClock:
    """The engine's clock, read and advanced only where the driver reads ``time.time()``."""

    def __init__(self, now: float) -> None:
        self.t = now
        self._timers: list[TimerHandle] = []

    def now(self) -> float:
        return self.t

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(self.t + max(0.0, delay), callback, args)
        self._timers.append(handle)
        return handle

    def due(self) -> bool:
        return any(h.when <= self.t and not h.cancelled for h in self._timers)

    def fire_due(self) -> None:
        """Run every timer due by now, earliest first (one may schedule another)."""
        while True:
            self._timers = [h for h in self._timers if not h.cancelled]
            ready = [h for h in self._timers if h.when <= self.t]
            if not ready:
                return
            first = min(ready, key=lambda h: h.when)
            self._timers.remove(first)
            first.callback(*first.args)


class BackendRig:
    """The engine's rig (:class:`agent.engine.RigIO`) as calls to an original-style backend."""

    def __init__(self, backend: Backend, position: list[int]) -> None:
        self.backend = backend
        self.on_paw: Callable[[int, bool], None] | None = None
        self.on_touch: Callable[[int, bool], None] | None = None
        self.resting = False
        self.sent: list[int] | None = None
        self.position = list(position)

    def send_position(self) -> None:
        if self.position != self.sent:
            self.sent = list(self.position)
            self.backend.position_spouts(list(self.position))

    def rest(self) -> None:
        """The backend's ``wait_for_rest`` returned: the paws rest."""
        if self.on_paw is not None:
            self.resting = True
            try:
                self.on_paw(0, True)
            finally:
                self.resting = False

    def paws_resting(self) -> bool:
        return self.resting

    def set_cue(self, spout: int, on: bool) -> None:
        if on:
            self.backend.start_trial(spout)
        else:
            self.backend.end_trial()

    def set_sync(self, on: bool) -> None:
        """The backend's ``start_trial``/``end_trial`` drive its sync output."""

    def open_solenoid(self, spout: int) -> None:
        self.backend.give_reward(spout)

    def close_solenoid(self, spout: int) -> None:
        """``give_reward`` has closed it already."""

    def move_spout(self, spout: int, position: int) -> None:
        self.position[spout] = position
        self.send_position()

    def all_off(self) -> list[str]:
        """The backend's ``cleanup`` does this, once (:meth:`Session._end_session`)."""
        return []
