"""The original library's later backend interface: what a rig must do for ``Session.run``.

A backend drives the box and reports what the mouse did by calling the
session's ``on_iti_lift``, ``on_iti_grasp``, ``on_trial_lift``,
``on_trial_correct`` and ``on_trial_incorrect``. Subclass :class:`Backend` and
override what your hardware needs; every method here does nothing. Spout 0 is
the left one, 1 the right one.
"""

from __future__ import annotations

from typing import Any

__all__ = ("Backend",)


class Backend:
    """The base of every backend; a backend that overrides nothing runs no task."""

    def __init__(self) -> None:
        self.on_iti_lift: Any = None
        self.on_iti_grasp: Any = None
        self.on_trial_lift: Any = None
        self.on_trial_correct: Any = None
        self.on_trial_incorrect: Any = None

    def configure_callbacks(self, session: Any) -> None:
        """Keep ``session`` to report events to through its ``on_*`` methods."""

    def wait_to_start(self) -> None:
        """Block until the person at the rig starts the session."""

    def position_spouts(self, position: Any, spout_number: int | None = None) -> None:
        """Move the spouts to ``position`` mm (1-7): a list of [left, right] or one number."""

    def wait_for_rest(self) -> bool:
        """Block until the paws rest; False when the session was cancelled meanwhile."""
        return True

    def start_iti(self) -> None:
        """The inter-trial interval begins."""

    def start_trial(self, spout_number: int) -> None:
        """Cue spout ``spout_number``: the trial begins."""

    def give_reward(self, spout_number: int) -> None:
        """Dispense water from spout ``spout_number``."""

    def miss_trial(self) -> None:
        """The trial ended without a touch of the target (missed or incorrect)."""

    def end_trial(self) -> None:
        """The trial ended: cues off."""

    def cleanup(self) -> None:
        """The session is over: outputs off, inputs released."""
