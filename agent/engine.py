"""The reach task engine (DESIGN §3): an event-driven state machine on an injected clock.

A :class:`TaskEngine` reacts to three things only: paw sensor edges, spout touch
edges and its own timers. It never reads the wall clock, never sleeps and
never polls. Everything it records leaves as session documents through
``sink``; ``TaskEngine.data`` is the session dict folded from those same
documents by :class:`~shared.documents.SessionBuilder`, so the controller,
folding the same documents, rebuilds exactly the same dict.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from agent.variant import REACHLAB, Variant
from shared import SOFTWARE_VERSION
from shared.carryover import CarryOver
from shared.config import TaskConfig
from shared.days import session_day
from shared.documents import (
    CueChanged,
    Document,
    Lift,
    Reset,
    Reward,
    SessionBuilder,
    SessionEnd,
    SessionStart,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
    TrialStart,
)
from shared.errors import HardwareError, ReachlabError
from shared.ids import new_session_id
from shared.outcomes import CORRECT, INCORRECT, MISSED, is_reward
from shared.sessionfile import SessionStatus

log = logging.getLogger(__name__)


class State(enum.Enum):
    """Where the session is in the task sequence."""

    READY = "ready"
    WAIT_REST = "wait_rest"  # ITI: waiting for every paw to rest
    ITI = "iti"  # ITI countdown running
    TIMEOUT = "timeout"  # penalty wait after an incorrect reach or a broken ITI
    CUE = "cue"  # trial running, cue on
    ENDED = "ended"


#: Allowed transitions; anything else is a bug and raises.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.READY: frozenset({State.WAIT_REST, State.ENDED}),
    State.WAIT_REST: frozenset({State.ITI, State.ENDED}),
    State.ITI: frozenset({State.CUE, State.TIMEOUT, State.ENDED}),
    State.TIMEOUT: frozenset({State.WAIT_REST, State.ENDED}),
    State.CUE: frozenset({State.WAIT_REST, State.TIMEOUT, State.ENDED}),
    State.ENDED: frozenset(),
}


class IllegalTransition(ReachlabError, RuntimeError):
    """The engine tried a transition outside :data:`TRANSITIONS`."""


class Clock(Protocol):
    """What the engine needs of the loop (see :class:`agent.clock.EventLoop`)."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any: ...


class RigIO(Protocol):
    """What the engine needs of the hardware (see :class:`agent.hardware.Rig`)."""

    on_paw: Callable[[int, bool], None] | None
    on_touch: Callable[[int, bool], None] | None

    def paws_resting(self) -> bool: ...

    def set_cue(self, spout: int, on: bool) -> None: ...

    def set_sync(self, on: bool) -> None: ...

    def open_solenoid(self, spout: int) -> None: ...

    def close_solenoid(self, spout: int) -> None: ...

    def move_spout(self, spout: int, position: int) -> None: ...

    def all_off(self) -> list[str]: ...


Sink = Callable[[Document], None]


def window_rate(outcomes: Iterable[object], window: int, with_incorrects: bool = False) -> float:
    """The share of a ``window``-trial window that counts toward advancing (DESIGN §3.5).

    Correct trials count, and incorrect ones too ``with_incorrects``; the
    denominator is the whole window, so a half-filled window advances nothing.
    """
    counted = (CORRECT, INCORRECT) if with_incorrects else (CORRECT,)
    return sum(1 for outcome in outcomes if outcome in counted) / window


class TaskEngine:
    """One training session of one mouse on one rig.

    Create it, then ``start()``; it ends by itself when ``config.duration`` has
    elapsed (checked between trials), or on ``stop()``. ``on_end`` callbacks run
    once the end document has been emitted.
    """

    def __init__(
        self,
        *,
        config: TaskConfig,
        clock: Clock,
        rig: RigIO,
        sink: Sink | None = None,
        mouse: str = "mouse",
        box: str = "local",
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        carry_over: CarryOver | None = None,
        rng: random.Random | None = None,
        pins: dict[str, int | tuple[int, int]] | None = None,
        variant: Variant = REACHLAB,
    ) -> None:
        self.config = config
        #: The rig's pin numbers, announced in ``session_start`` for the record.
        self.pins = pins
        self.variant = variant
        #: Seconds after which the session ends; a driver may set a length beyond the
        #: settings' cap (the original's scripts ran any length; agent.compat).
        self.duration = float(config.duration)
        self.clock = clock
        self.rig = rig
        self.mouse = mouse
        self.box = box
        self.session_id = session_id or new_session_id(box)
        self.metadata = dict(metadata or {})
        self.carry_over = carry_over
        self.rng = rng or random.Random()
        self._sinks: list[Sink] = [sink] if sink is not None else []
        self.builder = SessionBuilder()
        self.on_end: list[Callable[[TaskEngine], None]] = []

        self.state = State.READY
        self.seq = 0
        self.trial = 0  # trials started
        self.rewards = 0
        self.start_time = 0.0
        self._timer: Any = None
        self._reward_timers: list[Any] = [None, None]
        self._lifted = False
        self._spout = 0
        self._next_spout: int | None = None
        self._cue_start = 0.0

        positions = config.spout_positions
        self.cue_duration = float(config.cue_duration)
        self.spout_position = [positions[0], positions[0]]
        self.windows: tuple[deque[int], deque[int]] = (
            deque(maxlen=config.window),
            deque(maxlen=config.window),
        )
        if carry_over is not None:
            self.spout_position = list(carry_over.spout_position)
            self.cue_duration = max(float(config.min_cue_duration), carry_over.cue_duration)
            for spout in (0, 1):
                self.windows[spout].extend(carry_over.windows[spout])
        self._trials_since_advance = config.advance_delay
        self._auto_shaping = True

    # ------------------------------------------------------------------ public API

    @property
    def data(self) -> dict[str, Any]:
        """The session dict, folded from the documents emitted so far."""
        return self.builder.data

    @property
    def ended(self) -> bool:
        return self.state is State.ENDED

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def start(self) -> None:
        """Emit ``session_start``, place the spouts and begin the first ITI."""
        if self.state is not State.READY:
            raise IllegalTransition("session already started")
        self.start_time = self.clock.now()
        self._emit(
            SessionStart,
            t=self.start_time,
            mouse=self.mouse,
            settings=self.config.settings(),
            metadata=self.metadata,
            carry_over=self.carry_over,
            software_version=SOFTWARE_VERSION,
            pins=self.pins,
        )
        initial = self.config.initial_spout
        self._spout = self.rng.randint(0, 1) if initial == "random" else int(initial)
        for spout in (0, 1):
            self.rig.move_spout(spout, self.spout_position[spout])
        self.rig.on_paw = self._guarded(self._on_paw)
        self.rig.on_touch = self._guarded(self._on_touch)
        self._next_trial()

    @property
    def target(self) -> int:
        """The spout of the trial running, or of the next one."""
        return self._spout

    def set_target(self, spout: int) -> None:
        """Make ``spout`` the next trial's target; a trial already cued keeps its own."""
        if spout not in (0, 1):
            raise ValueError(f"spout must be 0 (left) or 1 (right), got {spout!r}")
        if self.state is State.CUE:
            self._next_spout = spout
        else:
            self._spout = spout

    def report_iti_event(self, kind: Literal["lift", "touch"], side: int) -> None:
        """A lift or touch that a backend of the original's later API reports as the ITI's
        (``on_iti_lift``/``on_iti_grasp``): recorded whenever the session runs, it breaks
        the ITI only during the countdown (a lift while waiting for rest counts, as there).
        """
        if self.state in (State.READY, State.ENDED):
            return
        now = self.clock.now()
        if kind == "lift":
            self._emit(Reset, t=now, paw=side)
        else:
            self._emit(SpontaneousReach, t=now, spout=side)
        if self.state is State.ITI:
            self._break_iti()

    def stop(self, status: SessionStatus = "stopped") -> None:
        """End now; a trial in progress is dropped (it has no outcome)."""
        if self.state is not State.ENDED:
            self._end(status)

    # ------------------------------------------------------------------ plumbing

    def _emit(self, kind: type[Any], **fields: Any) -> None:
        doc = kind(session_id=self.session_id, box=self.box, seq=self.seq, **fields)
        self.seq += 1
        self.builder.add(doc)
        for sink in self._sinks:
            sink(doc)

    def _goto(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {new.value}")
        self.state = new

    def _schedule(self, delay_s: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self.clock.call_later(delay_s, self._guarded(callback))

    def _guarded(self, callback: Callable[..., None]) -> Callable[..., None]:
        """``callback``, but a hardware fault in it ends the session as ``aborted``.

        The loop runs the task's callbacks; an exception there would end the loop and
        leave the rig as it was. Instead the outputs go off (as many as still work),
        the session ends, and everything recorded so far is kept.
        """

        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except HardwareError as exc:
                log.error("session %s of %s: %s; ending it", self.session_id, self.mouse, exc)
                if self.state is not State.ENDED:
                    self._end("aborted")

        return guarded

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------------ ITI

    def _begin_iti(self) -> None:
        """After a broken ITI's timeout: wait for rest again."""
        if self.clock.now() - self.start_time >= self.duration:
            self._end("complete")
            return
        self._goto(State.WAIT_REST)
        if self.rig.paws_resting():
            self._start_countdown()

    def _next_trial(self) -> None:
        """The ITI before a new trial (the first, or after one ended)."""
        if self.variant.adapt_before_iti and self.clock.now() - self.start_time < self.duration:
            self._adapt(self.clock.now())
        self._begin_iti()

    def _start_countdown(self) -> None:
        self._goto(State.ITI)
        low, high = self.config.intertrial_interval
        self._schedule(self.rng.uniform(low, high) / 1000, self._start_trial)

    def _break_iti(self) -> None:
        self._cancel_timer()
        self._goto(State.TIMEOUT)
        self._schedule(self.config.timeout / 1000, self._begin_iti)

    # ------------------------------------------------------------------ inputs

    def _on_paw(self, paw: int, resting: bool) -> None:
        now = self.clock.now()
        if resting:
            if self.state is State.WAIT_REST and self.rig.paws_resting():
                self._start_countdown()
            return
        if self.state is State.ITI:
            self._emit(Reset, t=now, paw=paw)
            self._break_iti()
        elif self.state is State.CUE and not self._lifted:
            self._lifted = True
            self._emit(Lift, t=now, trial=self.trial - 1, paw=paw)

    def _on_touch(self, spout: int, touching: bool) -> None:
        if not touching:
            return
        now = self.clock.now()
        if self.state is State.ITI:
            self._emit(SpontaneousReach, t=now, spout=spout)
            self._break_iti()
        elif self.state is State.CUE:
            if spout == self._spout:
                self._finish_trial(now, CORRECT)
            else:
                self._finish_trial(now, INCORRECT)

    # ------------------------------------------------------------------ trials

    def _shaping_now(self) -> bool:
        mode = self.config.shaping
        if mode != "auto":
            return mode == "on"
        window = self.windows[self._spout]
        if not any(outcome == CORRECT for outcome in window):
            self._auto_shaping = True
        elif self._window_rate(self._spout) >= self.config.advance_threshold:
            self._auto_shaping = False
        return self._auto_shaping

    def _window_rate(self, spout: int) -> float:
        config = self.config
        return window_rate(self.windows[spout], config.window, config.advance_with_incorrects)

    def _adapt(self, now: float) -> None:
        """Advance the current spout, then the other, then shorten the cue (DESIGN §3.5)."""
        spout = self._spout
        if self._window_rate(spout) < self.config.advance_threshold:
            return
        last = self.config.spout_positions[-1]
        if self.spout_position[spout] >= last and self.spout_position[1 - spout] >= last:
            paced = self.variant.paced_cue_decay
            if paced and self._trials_since_advance < self.config.advance_delay:
                return
            shorter = max(self.cue_duration * self.config.cue_decay, self.config.min_cue_duration)
            if paced:
                shorter = max(float(int(shorter)), self.config.min_cue_duration)
            if shorter < self.cue_duration:
                self.cue_duration = shorter
                if paced:
                    self._trials_since_advance = 0
                self._emit(CueChanged, t=now, cue_duration=shorter)
            return
        if self._trials_since_advance < self.config.advance_delay:
            return
        target = spout if self.spout_position[spout] < last else 1 - spout
        self.spout_position[target] = self._next_position(self.spout_position[target])
        self.rig.move_spout(target, self.spout_position[target])
        self._trials_since_advance = 0
        self._emit(SpoutsMoved, t=now, spout_position=tuple(self.spout_position))

    def _next_position(self, current: int) -> int:
        further = [p for p in self.config.spout_positions if p > current]
        return further[0] if further else current

    def _start_trial(self) -> None:
        now = self.clock.now()
        if not self.variant.adapt_before_iti:
            self._adapt(now)
        shaping = self._shaping_now()
        self._goto(State.CUE)
        self._lifted = False
        self._cue_start = now
        spout = self._spout
        self.rig.set_cue(spout, True)
        self.rig.set_sync(True)
        self._emit(
            TrialStart,
            t=now,
            trial=self.trial,
            spout=spout,
            cue_duration=self.cue_duration,
            spout_position=tuple(self.spout_position),
            shaping=shaping,
        )
        self.trial += 1
        if shaping:
            self._reward(spout, now)
        self._schedule(self.cue_duration / 1000, self._cue_expired)

    def _cue_expired(self) -> None:
        self._finish_trial(self._cue_start + self.cue_duration / 1000, MISSED)

    def _finish_trial(self, end: float, outcome: int) -> None:
        self._cancel_timer()
        spout = self._spout
        self.rig.set_cue(spout, False)
        self.rig.set_sync(False)
        self._emit(TrialEnd, t=end, trial=self.trial - 1, outcome=outcome)
        self.windows[spout].append(outcome)
        self._trials_since_advance += 1
        if is_reward(outcome):
            self._reward(spout, end)
            if self.variant.pick_targets:
                self._spout = self.rng.randint(0, 1)
        if self._next_spout is not None:
            self._spout, self._next_spout = self._next_spout, None
        # After a missed or incorrect trial the same spout comes again: a correction trial.
        if outcome == INCORRECT:
            self._goto(State.TIMEOUT)
            self._schedule(self.config.timeout / 1000, self._next_trial)
        else:
            self._next_trial()

    def _reward(self, spout: int, now: float) -> None:
        duration_ms = self.config.reward_duration_ms[spout]
        self.rig.open_solenoid(spout)
        self.rewards += 1
        if self._reward_timers[spout] is not None:
            self._reward_timers[spout].cancel()  # a second reward extends the first
        self._reward_timers[spout] = self.clock.call_later(
            duration_ms / 1000, self._guarded(self._close_solenoid), spout
        )
        self._emit(Reward, t=now, spout=spout, duration_ms=duration_ms)

    def _close_solenoid(self, spout: int) -> None:
        self._reward_timers[spout] = None
        self.rig.close_solenoid(spout)

    # ------------------------------------------------------------------ end

    def _end(self, status: SessionStatus) -> None:
        self._cancel_timer()
        self._goto(State.ENDED)
        self.rig.on_paw = None
        self.rig.on_touch = None
        # Outputs off now; a reward already flowing is cut short rather than left open.
        for timer in self._reward_timers:
            if timer is not None:
                timer.cancel()
        self.rig.all_off()
        now = self.clock.now()
        # notes must be text (the start command checks it); odd metadata made in-process must
        # still end the session rather than raise here, where nothing could catch it.
        notes = self.metadata.get("notes")
        self._emit(
            SessionEnd,
            t=now,
            status=status,
            end_time=now,
            duration=round(now - self.start_time, 6),
            date=session_day(self.start_time),
            notes=notes if isinstance(notes, str) else None,
            counts=self.builder.counts.as_dict(),
        )
        log.debug("session %s of %s ended: %s", self.session_id, self.mouse, status)
        for callback in self.on_end:
            callback(self)
