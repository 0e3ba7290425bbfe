"""The original library's later public API (m-col/reach, 2020 on) under its own module names.

A script written for it runs with ``reach`` changed to ``agent.compat`` in its
import lines: ``from agent.compat import Mouse``, ``from
agent.compat.backends.raspberrypi import RaspberryPi``, and ``import
agent.compat as reach`` where it did ``import reach.session`` (so
``reach.session.Targets`` still works). Sessions run on reachlab's task engine
(:mod:`agent.engine`); docs/single-rig.md has the table of names.
"""

from agent.compat import backends, cohort, mouse, session
from agent.compat.cohort import Cohort
from agent.compat.mouse import Mouse
from agent.compat.session import Session

__all__ = ["Cohort", "Mouse", "Session", "backends", "cohort", "mouse", "session"]
