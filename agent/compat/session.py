"""The original library's later ``Session`` (2020 on): ``run(backend)`` on reachlab's task engine.

The original ran the task in a loop of its own that read the wall clock and
slept. Here :class:`Session` only drives: it calls the backend, reads
``time.time()`` and sleeps where the original's loop did (backends and test
rigs written for it rely on that cadence), and hands every event the backend
reports to reachlab's task engine. The engine decides everything the task
decides (ITI breaks, outcomes, spout advances, cue decay, carry-over) and
records the session as documents; ``Session.data`` is folded from them, as a
rig's own copy is.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.api import Session as SessionData
from agent.compat.backends import Backend
from agent.compat.rig import BackendRig, PolledClock
from agent.engine import State, TaskEngine, window_rate
from agent.variant import LATER_ORIGINAL
from shared.carryover import carry_over_from
from shared.config import MAX_DURATION_S, TaskConfig
from shared.documents import (
    CueChanged,
    Document,
    SessionStart,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
)
from shared.outcomes import CORRECT, INCORRECT, MISSED

__all__ = ["Outcomes", "Session", "SlidingTrialList", "Targets", "print_results"]

#: Keys of a session dict that the engine writes, never taken from the dict before the run.
RECORDED = frozenset(
    {
        "trials", "resets", "spontaneous_reaches", "start_time", "end_time", "date",
        "session_id", "box", "status", "software_version",
    }
)  # fmt: skip
#: The original polled every 20 ms in the ITI countdown and every 8 ms while the cue was on.
ITI_POLL_S = 0.020
CUE_POLL_S = 0.008


class Outcomes:
    """A trial's outcome as stored in ``trial["outcome"]``."""

    TBD = MISSED
    MISSED = MISSED
    CORRECT = CORRECT
    INCORRECT = INCORRECT
    CANCELLED = 3


class Targets:
    """The two spouts."""

    LEFT = 0
    RIGHT = 1


class SlidingTrialList(deque[dict[str, Any]]):
    """The last :attr:`WINDOW` trials of one spout, the window the task advances on."""

    WINDOW = 15

    def __init__(self) -> None:
        super().__init__([], self.WINDOW)

    def get_hit_rate(self) -> float:
        """Correct trials as a share of the whole window."""
        return window_rate((t.get("outcome") for t in self), self.WINDOW)

    def get_touch_rate(self) -> float:
        """Correct and incorrect trials as a share of the whole window."""
        return window_rate((t.get("outcome") for t in self), self.WINDOW, with_incorrects=True)


def _config(**given: Any) -> TaskConfig:
    values = {k: v for k, v in given.items() if v is not None}
    # The original took any duration; reachlab's settings cap one at a day. A longer one
    # is stored as the cap and still run for its length (TaskEngine.duration).
    duration = min(values.pop("duration", 1800), MAX_DURATION_S)
    return TaskConfig.from_dict({**values, "duration": duration}, "run()")


class Session(SessionData):
    """One training session: its data, and ``run(backend)`` to train with it.

    ``data`` holds what the script added (``add_data``) and, once run, the
    session as reachlab records it (``trials``, ``resets``, ...).
    """

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        super().__init__(data)
        self.mouse_id: str | None = None
        self._recent_trials = [SlidingTrialList(), SlidingTrialList()]
        self._outcome = Outcomes.TBD  # an outcome reported between trials, for the next one
        self._current_spout = Targets.LEFT
        self._message: Callable[[str], Any] = print
        self._hook: Callable[[], Any] | None = None
        self._engine: TaskEngine | None = None
        self._clock = PolledClock(0.0)
        self._rig: BackendRig | None = None
        self._backend: Backend | None = None
        self._lock = threading.RLock()
        self._busy = False
        self._queued: list[tuple[float, Callable[[], None]]] = []
        self._cancelled = False
        self._end_wanted = False

    # ------------------------------------------------------------------ running

    def run(
        self,
        backend: Backend,
        duration: float | None = None,
        intertrial_interval: tuple[int, int] | list[int] | None = None,
        previous_data: dict[str, Any] | None = None,
        hook: Callable[[], Any] | None = None,
        timeout: int | None = None,
        initial_spout: int | None = None,
        advance_with_incorrects: bool = False,
    ) -> None:
        """Run a training session on ``backend``; Ctrl-C ends it and keeps its data.

        ``duration`` in s (1800), ``intertrial_interval`` as (min, max) ms
        ((4000, 6000)), ``timeout`` in ms (8000); ``previous_data`` (the mouse's
        last session dict) gives the spout positions, cue and windows to start
        from; ``hook()`` runs before each trial and may call :meth:`set_spout`;
        ``initial_spout`` 0 or 1, else random.
        """
        if not isinstance(backend, Backend):
            raise TypeError("the backend must be an instance of agent.compat.backends.Backend")
        config = _config(
            duration=duration,
            intertrial_interval=tuple(intertrial_interval) if intertrial_interval else None,
            timeout=timeout,
            initial_spout=initial_spout,
            advance_with_incorrects=advance_with_incorrects,
            reward_duration_ms=_reward_ms(backend),
        )
        self._backend = backend
        self._hook = hook
        self._message = getattr(backend, "message", print)
        self._cancelled = self._end_wanted = False  # a Session may be run again
        self._queued.clear()
        self._recent_trials = [SlidingTrialList(), SlidingTrialList()]
        self.data.update(config.settings())
        self.data.update(trials=[], resets=[], spontaneous_reaches=[])

        carry = carry_over_from(previous_data, config.window)
        if carry is not None and previous_data is not None:
            for trial in previous_data.get("trials") or []:
                if isinstance(trial, dict) and trial.get("spout") in (0, 1) and "outcome" in trial:
                    self._recent_trials[trial["spout"]].append(trial)
        first = config.spout_positions[0]
        position = list(carry.spout_position) if carry else [first, first]
        self._rig = BackendRig(backend, position)
        # What the engine records comes from the engine; the rest (the script's keys) stays.
        metadata = {
            k: v for k, v in self.data.items() if k not in config.settings() and k not in RECORDED
        }
        self._engine = TaskEngine(
            config=config,
            clock=self._clock,
            rig=self._rig,
            sink=self._on_document,
            mouse=self.mouse_id or "mouse",
            metadata=metadata,
            carry_over=carry,
            variant=LATER_ORIGINAL,
        )
        if duration is not None:
            self._engine.duration = float(duration)
        self._rig.send_position()
        cue = self._engine.cue_duration
        low, high = config.intertrial_interval
        self._message(
            f"Session: {duration or config.duration} s, ITI {low}-{high} ms, cue {cue:.0f} ms, "
            f"spouts at {position}, timeout {config.timeout} ms"
        )
        backend.configure_callbacks(self)
        try:
            backend.wait_to_start()
        except KeyboardInterrupt:
            backend.cleanup()
            self._message("Cancelled before the start.")
            return
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._end_session)
        try:
            self._trial_loop()
        finally:  # also when a hook raises: the rig is left safe and the data ends
            self._end_session()

    def _running(self) -> bool:
        if self._end_wanted and not self._cancelled:
            self._end_session()
        engine = self._engine
        return engine is not None and not engine.ended and not self._cancelled

    def _state(self) -> State:
        assert self._engine is not None
        return self._engine.state

    def _call(self, t: float | None, action: Callable[[], Any] | None = None) -> None:
        """Set the engine's clock to ``t`` and run ``action`` on it; events reported meanwhile
        (by a backend method the engine called) follow it, in order."""
        with self._lock:
            if t is not None:
                self._clock.t = t
            self._busy = True
            try:
                if action is not None and not (self._engine is not None and self._engine.ended):
                    action()
                while self._queued and self._engine is not None and not self._engine.ended:
                    when, queued = self._queued.pop(0)
                    self._clock.t = when
                    queued()
            finally:
                self._busy = False

    def _trial_loop(self) -> None:
        engine = self._engine
        assert engine is not None
        self._call(time.time(), engine.start)
        number = 0
        while self._running():
            number += 1
            self._outcome = Outcomes.TBD
            elapsed = self._clock.t - engine.start_time
            self._message(f"-- trial {number} at {elapsed:.0f} s --")
            if self._hook is not None:
                self._hook()
            if self._inter_trial_interval():
                self._trial()
                self._message(f"Rewards so far: {engine.rewards}")
                self._call(time.time(), self._clock.fire_due)

    def _inter_trial_interval(self) -> bool:
        """Wait for rest and count the ITI down, until a cue has come on; False if cancelled."""
        engine = self._engine
        assert self._backend is not None and self._rig is not None and engine is not None
        self._backend.start_iti()
        started = engine.trial
        while self._running() and engine.trial == started and self._state() is State.WAIT_REST:
            if not self._backend.wait_for_rest():  # the backend says: cancelled
                self._end_session()
                return False
            self._call(time.time(), self._rig.rest)
            while self._running() and self._state() is State.ITI:
                if self._clock.due():
                    self._call(time.time(), self._clock.fire_due)
                else:
                    time.sleep(ITI_POLL_S)
                    self._call(time.time())
            broken = engine.trial == started and self._state() is State.TIMEOUT
            if broken and self._running():
                self._wait_timeout()
        # The trial may be over already: a backend that reports at once ends it at its cue.
        return engine.trial > started

    def _wait_timeout(self) -> None:
        timeout_s = self.data["timeout"] / 1000
        time.sleep(timeout_s)
        self._call(self._clock.t + timeout_s, self._clock.fire_due)

    def _trial(self) -> None:
        engine = self._engine
        assert engine is not None
        if self._outcome in (Outcomes.CORRECT, Outcomes.INCORRECT) and self._state() is State.CUE:
            # Reported before this cue came on: the original let it decide this trial.
            self._call(None, lambda: self._touch(self._outcome == Outcomes.CORRECT))
        while self._running() and self._state() is State.CUE:
            time.sleep(CUE_POLL_S)
            self._call(time.time(), self._clock.fire_due)
        if self._running() and self._state() is State.TIMEOUT:  # after an incorrect reach
            self._wait_timeout()

    def _touch(self, correct: bool) -> None:
        engine, rig = self._engine, self._rig
        assert engine is not None and rig is not None
        if rig.on_touch is not None:
            rig.on_touch(engine.target if correct else 1 - engine.target, True)

    def _on_document(self, doc: Document) -> None:
        engine = self._engine
        assert engine is not None and self._backend is not None
        if isinstance(doc, SessionStart):
            self.data.clear()
        self.data.update(engine.data)
        if isinstance(doc, TrialEnd):
            trial = self.data["trials"][-1]
            self._recent_trials[trial["spout"]].append(trial)
            if doc.outcome != CORRECT:
                self._backend.miss_trial()
            self._message(("Missed.", "Correct reach!", "Incorrect reach.")[doc.outcome])
        elif isinstance(doc, SpontaneousReach):
            self._message("Spontaneous reach.")
        elif isinstance(doc, SpoutsMoved):
            self._message(f"Spouts moved to {list(doc.spout_position)}")
        elif isinstance(doc, CueChanged):
            self._message(f"Cue shortened to {doc.cue_duration:.0f} ms")

    # ------------------------------------------------------------------ the backend's reports

    def _report(self, action: Callable[[], None]) -> None:
        t = time.time()
        with self._lock:
            if self._engine is None or self._engine.ended:
                return
            if self._busy:
                self._queued.append((t, action))
            else:
                self._call(t, action)

    def on_iti_lift(self, side: int) -> None:
        """A paw left its rest outside a trial: an ITI reset."""
        self._report(lambda: self._engine.report_iti_event("lift", side) if self._engine else None)

    def on_iti_grasp(self, side: int) -> None:
        """A spout was touched outside a trial: a spontaneous reach."""
        self._report(lambda: self._engine.report_iti_event("touch", side) if self._engine else None)

    def on_trial_lift(self, side: int) -> None:
        """A paw lifted during the trial (the first one is the trial's lift)."""

        def lift() -> None:
            rig = self._rig
            if self._state() is State.CUE and rig is not None and rig.on_paw is not None:
                rig.on_paw(side, False)

        self._report(lift)

    def on_trial_correct(self) -> None:
        """The target spout was touched."""
        self._report(lambda: self._trial_touch(Outcomes.CORRECT))

    def on_trial_incorrect(self) -> None:
        """The other spout was touched."""
        self._report(lambda: self._trial_touch(Outcomes.INCORRECT))

    def _trial_touch(self, outcome: int) -> None:
        if self._state() is State.CUE:
            self._touch(outcome == Outcomes.CORRECT)
        else:
            self._outcome = outcome

    def _end_session(self, signal_number: int | None = None, frame: Any = None) -> None:
        """End the session now (also the Ctrl-C handler): backend cleaned up, data kept."""
        with self._lock:
            if self._cancelled or self._engine is None or self._backend is None:
                return
            if self._busy:  # Ctrl-C inside an engine step: end right after it
                self._end_wanted = True
                return
            self._cancelled = True
        self._message = print
        self._backend.cleanup()
        if threading.current_thread() is threading.main_thread():
            # As the original: a second Ctrl-C must not kill the script before it saves.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        engine = self._engine
        self._call(time.time(), lambda: engine.stop("stopped"))

    # ------------------------------------------------------------------ for hooks and scripts

    @property
    def reward_count(self) -> int:
        """Rewards given in this session (correct trials, for a session read from a file)."""
        if self._engine is not None:
            return self._engine.rewards
        trials = self.get_trials() or []
        return sum(1 for t in trials if isinstance(t, dict) and t.get("outcome") == CORRECT)

    def set_spout(self, spout: int) -> None:
        """Make ``spout`` the next trial's target; -1 swaps to the other spout."""
        current = self._engine.target if self._engine is not None else self._current_spout
        self._current_spout = 1 - current if spout == -1 else spout
        if self._engine is not None:
            self._engine.set_target(self._current_spout)

    def get_recent_trials(self, spout: int | None = None) -> SlidingTrialList:
        """The window of ``spout`` (default: the next trial's target)."""
        if spout is None:
            spout = self._engine.target if self._engine is not None else self._current_spout
        return self._recent_trials[spout]


def _reward_ms(backend: Backend) -> tuple[int, int] | None:
    seconds = getattr(backend, "reward_duration", None)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        ms = max(1, round(seconds * 1000))
        return (ms, ms)
    return None


def print_results(session: SessionData) -> None:
    """Print a session's counts: trials, correct, incorrect, missed, d', resets, reaches."""
    trials = [t for t in session.get_trials() or [] if isinstance(t, dict) and "outcome" in t]
    if not trials:
        return
    row = session.get_results()
    count = len(trials)
    correct = row["correct_l"] + row["correct_r"]
    incorrect = row["incorrect_l"] + row["incorrect_r"]
    missed = row["missed_l"] + row["missed_r"]
    print(
        "\n".join(
            [
                "-- results --",
                f"Trials:              {count}",
                f"Correct reaches:     {correct} ({100 * correct / count:.1f}%)",
                f"Incorrect reaches:   {incorrect} ({100 * incorrect / count:.1f}%)",
                f"Missed cues:         {missed} ({100 * missed / count:.1f}%)",
                f"d':                  {session.get_d_prime()}",
                f"Spontaneous reaches: {row['spontaneous_reaches']}",
                f"ITI resets:          {row['resets']} "
                f"(left paw {row['resets_l']}, right paw {row['resets_r']})",
            ]
        )
    )
