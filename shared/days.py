"""The session's day: the local calendar day of a moment, as a session's ``date`` names it.

One rule for both sides: the engine writes a session's ``date`` with it and husbandry
counts a day's sessions, weighings and water by it, so the water a mouse earned in the box
and the day it is accounted to always agree (the original library wrote the same
``%Y-%m-%d`` of the rig's local time).
"""

from __future__ import annotations

import time

DAY_FORMAT = "%Y-%m-%d"


def session_day(t: float) -> str:
    """The local ``%Y-%m-%d`` day of Unix time ``t``."""
    return time.strftime(DAY_FORMAT, time.localtime(t))
