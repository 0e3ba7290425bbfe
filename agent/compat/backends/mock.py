"""A backend with no hardware: it prints what a rig would do and takes a rig's time."""

from __future__ import annotations

import time

from agent.compat.backends import Backend

__all__ = ("Mock",)

#: How long the mock mouse takes to settle its paws, and a reward to flow, in seconds.
REST_S = 1.0
REWARD_S = 0.05


class Mock(Backend):
    """A rig that exists only on the screen; the mouse never touches a spout."""

    def wait_to_start(self) -> None:
        input("Press Enter to start the session.\n")

    def wait_for_rest(self) -> bool:
        print("Waiting for the paws to rest...")
        time.sleep(REST_S)
        return True

    def start_trial(self, spout_number: int) -> None:
        print(f"Cue on (spout {spout_number})")

    def give_reward(self, spout_number: int) -> None:
        time.sleep(REWARD_S)
