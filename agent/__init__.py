"""The rig side of reachlab: task engine, gpiozero hardware, simulated mouse, MQTT agent.

The single-rig API of the original library lives here too, so its scripts work
with only the import line changed (``from agent import Mouse, generate_config``).
Importing this package stays light: no SQLAlchemy, no typer; the API itself is
imported on first use, so that ``labagent``'s entry point (:mod:`agent.entry`) has
its Ctrl-C handling in place before any heavy import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.api import Cohort, Mouse, Session, generate_config

__all__ = ["Cohort", "Mouse", "Session", "generate_config"]


def __getattr__(name: str) -> Any:
    # PEP 562: ``from agent import Mouse`` imports agent.api here, on first use.
    if name in __all__:
        from agent import api

        return getattr(api, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
