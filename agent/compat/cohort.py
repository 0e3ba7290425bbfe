"""The original library's later ``Cohort``: several mice read from one folder, for analysis."""

from __future__ import annotations

from agent import api
from agent.compat.mouse import Mouse

__all__ = ["Cohort"]


class Cohort(api.Cohort):
    """:class:`agent.api.Cohort` holding :class:`agent.compat.mouse.Mouse` objects."""

    mouse_type = Mouse
