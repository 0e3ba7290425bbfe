"""Task variants: reachlab's task, or the original library's later one (for agent.compat).

The task engine (:mod:`agent.engine`) holds every rule; a :class:`Variant`
only chooses where the original's later ``Session.run`` (2020 on) did things
in another order or at another pace, so a script of that API run through
:mod:`agent.compat` trains as it did, on the same engine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """Where the original library's later task (its ``Session.run``) differs from reachlab's."""

    pick_targets: bool = True  # False: the target changes only through set_target (hooks)
    adapt_before_iti: bool = False  # True: adapt as a trial's ITI begins, before a hook runs
    paced_cue_decay: bool = False  # True: the cue shortens once per advance_delay trials, to ms


REACHLAB = Variant()
LATER_ORIGINAL = Variant(pick_targets=False, adapt_before_iti=True, paced_cue_decay=True)
