"""One rig's moving parts wired together: the loop, the hardware and, with ``--sim``, a mouse.

``labagent train``, ``labagent run`` and the benchmarks all build their rig
through :meth:`RigRuntime.create`, so a session runs the same way everywhere.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.clock import EventLoop
from agent.engine import Sink, TaskEngine
from agent.hardware import PinMap, Rig, mock_pin_factory, real_pin_factory
from agent.sim import MouseProfile, SimulatedMouse
from shared.carryover import CarryOver
from shared.config import TaskConfig
from shared.errors import ConfigError


@dataclass
class RigRuntime:
    """The loop, the rig, and the simulated mouse when there is one.

    ``calendar`` is the wall clock each session's task clock starts from (None: the
    loop's clock is left as it is, for a caller that chose its own ``start_time``).
    """

    loop: EventLoop
    rig: Rig
    mouse: SimulatedMouse | None = None
    seed: int | None = None
    sessions_run: int = field(default=0)
    calendar: Callable[[], float] | None = None

    @classmethod
    def create(
        cls,
        *,
        sim: bool,
        time_scale: float = 1.0,
        pins: PinMap | None = None,
        seed: int | None = None,
        profile: MouseProfile | None = None,
        start_time: float | None = None,
        pin_factory: Any = None,
        calendar: Callable[[], float] | None = None,
        loop: EventLoop | None = None,
    ) -> RigRuntime:
        """Build a rig on mock pins (``sim``) or this Pi's GPIO.

        ``time_scale`` is task seconds per wall second; ``math.inf`` runs as fast
        as the CPU allows. Only a simulated rig may run faster than real time.
        Each session starts at ``calendar()`` (default: the wall clock, unless a
        ``start_time`` fixes the task clock instead). A ``loop`` given is shared with
        other rigs (:class:`agent.fleet.Fleet`): it is never rebased, since moving it
        would move every rig's running session, so it must run at the calendar's pace.
        """
        if not time_scale > 0:
            raise ConfigError(f"--time-scale must be positive, got {time_scale}")
        if not sim and time_scale != 1.0:
            raise ConfigError("--time-scale needs --sim: a real rig runs in real time")
        shared = loop is not None
        if loop is None:
            loop = EventLoop(time_scale=time_scale, start_time=start_time)
        factory = pin_factory or (mock_pin_factory() if sim else real_pin_factory())
        rig = Rig(pins or PinMap(), factory, loop)
        mouse = SimulatedMouse(rig, loop, profile, seed=seed) if sim else None
        if calendar is None and start_time is None and not shared:
            calendar = time.time
        return cls(loop=loop, rig=rig, mouse=mouse, seed=seed, calendar=calendar)

    def new_session(
        self,
        *,
        config: TaskConfig,
        mouse: str,
        box: str = "local",
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        carry_over: CarryOver | None = None,
        sink: Sink | None = None,
    ) -> TaskEngine:
        """A session on this rig; the simulated mouse (if any) sits down when it starts.

        The task clock is set to the calendar first: a scaled clock has run ahead
        (an agent up for an hour at ``--time-scale 60`` is 60 hours ahead), and a
        session's ``start_time`` and ``date`` must be when and the day it ran, the
        day its controller-made session id names. From there the session runs on
        its own clock, scaled.
        """
        if self.calendar is not None:
            self.loop.rebase(self.calendar())
        rng_seed = None if self.seed is None else self.seed * 1000 + self.sessions_run
        self.sessions_run += 1
        session = TaskEngine(
            config=config,
            clock=self.loop,
            rig=self.rig,
            sink=sink,
            mouse=mouse,
            box=box,
            session_id=session_id,
            metadata=metadata,
            carry_over=carry_over,
            rng=random.Random(rng_seed),
            pins=self.rig.pins.roles(),
        )
        if self.mouse is not None:
            sim_mouse = self.mouse
            session.on_end.append(lambda _s: sim_mouse.stop())
            sim_mouse.start()
        return session

    def run_session(self, session: TaskEngine) -> dict[str, Any]:
        """Start ``session`` and run the loop on this thread until it ends."""
        session.start()
        self.loop.run(until=lambda: session.ended, idle_exit=self.loop.virtual)
        if not session.ended:  # virtual time ran out of events: nothing can happen any more
            session.stop("aborted")
        return session.data

    def close(self) -> None:
        if self.mouse is not None:
            self.mouse.stop()
        self.rig.close()


def parse_time_scale(text: str) -> float:
    """``--time-scale`` values: a positive number, or ``max``/``inf`` for unlimited."""
    if text.lower() in ("max", "inf", "unlimited"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--time-scale must be a number or 'max', got {text!r}") from None
    if not value > 0:
        raise ConfigError(f"--time-scale must be positive, got {text!r}")
    return value
