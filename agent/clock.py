"""The task's clock and event loop: timers and hardware events, on virtual or scaled time.

Task logic never reads the wall clock or sleeps. It asks the loop for
``now()`` and schedules callbacks with ``call_later``; hardware threads hand
their edges over with ``call_soon_threadsafe``. The loop has two ways of
letting time pass:

* ``time_scale=math.inf`` (virtual): when nothing is ready, time jumps straight
  to the next timer, so a 30-minute simulated session runs in well under a second;
* a finite ``time_scale`` (1.0 on a real rig, 60 for a fast simulation): the
  loop waits on a condition variable until the next timer is due or another
  thread posts work. It never polls.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class TimerHandle:
    """A scheduled callback; ``cancel()`` stops it from running."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    """A single-threaded event loop whose clock runs at ``time_scale`` task seconds per second.

    ``start_time`` is the task clock's reading at creation (Unix seconds); it
    defaults to the wall clock, so recorded times are real dates.
    """

    def __init__(self, time_scale: float = 1.0, start_time: float | None = None) -> None:
        if not time_scale > 0:
            raise ValueError(f"time scale must be positive, got {time_scale}")
        self.time_scale = time_scale
        self.virtual = math.isinf(time_scale)
        self._origin = time.time() if start_time is None else start_time
        self._mono_origin = time.monotonic()
        self._virtual_now = self._origin
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._ready: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread_id: int | None = None

    # ------------------------------------------------------------------ time

    def now(self) -> float:
        """Task time, Unix seconds."""
        if self.virtual:
            return self._virtual_now
        return self._origin + (time.monotonic() - self._mono_origin) * self.time_scale

    def _wall_delay(self, task_delay: float) -> float:
        return max(0.0, task_delay / self.time_scale)

    def rebase(self, when: float) -> None:
        """Set the task clock to read ``when`` now, forwards or back.

        Every pending timer moves by the same amount, so each still fires after
        the task delay it was scheduled with. A scaled clock runs ahead of the
        calendar by design; rebasing it at a session's start is what keeps the
        session's dates on the day it ran (see :meth:`agent.runtime.RigRuntime.new_session`).
        Call it from the loop's thread (or before the loop runs).
        """
        with self._cond:
            shift = when - self.now()
            self._origin += shift
            self._virtual_now += shift
            # The same shift on every key keeps the list a valid heap.
            self._timers = [(at + shift, n, handle) for at, n, handle in self._timers]
            for _at, _n, handle in self._timers:
                handle.when += shift
            self._cond.notify()

    # ------------------------------------------------------------------ scheduling

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` at task time ``when``."""
        handle = TimerHandle(when, callback, args)
        with self._cond:
            heapq.heappush(self._timers, (when, next(self._counter), handle))
            self._cond.notify()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` after ``delay`` task seconds."""
        return self.call_at(self.now() + max(0.0, delay), callback, *args)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop's thread soon; safe from any thread."""
        with self._cond:
            self._ready.append((callback, args))
            self._cond.notify()

    def stop(self) -> None:
        """Make ``run`` return after the callback now running; safe from any thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def in_loop_thread(self) -> bool:
        return self._thread_id == threading.get_ident()

    # ------------------------------------------------------------------ running

    def _next_batch(
        self, idle_exit: bool
    ) -> list[tuple[Callable[..., Any], tuple[Any, ...]]] | None:
        """Wait for the next runnable callbacks; None when the loop should return."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                while self._timers and self._timers[0][2].cancelled:
                    heapq.heappop(self._timers)
                if self._ready:
                    batch = list(self._ready)
                    self._ready.clear()
                    return batch
                if not self._timers:
                    if idle_exit:
                        return None
                    self._cond.wait()
                    continue
                when = self._timers[0][0]
                if self.virtual:
                    self._virtual_now = max(self._virtual_now, when)
                else:
                    wait = self._wall_delay(when - self.now())
                    if wait > 0:
                        self._cond.wait(wait)
                        continue
                handle = heapq.heappop(self._timers)[2]
                return [(handle.callback, handle.args)]

    def run(self, until: Callable[[], bool] | None = None, idle_exit: bool | None = None) -> None:
        """Run callbacks until ``stop()``, or until ``until()`` holds after a callback.

        With ``idle_exit`` (the default on virtual time) the loop also returns
        when nothing is scheduled and nothing is ready: nothing more can happen.
        """
        if idle_exit is None:
            idle_exit = self.virtual
        self._thread_id = threading.get_ident()
        try:
            while (batch := self._next_batch(idle_exit)) is not None:
                for callback, args in batch:
                    callback(*args)
                if until is not None and until():
                    break
        finally:
            with self._cond:
                self._stopping = False
            self._thread_id = None
