"""The rig side of reachlab: task engine, gpiozero hardware, simulated mouse, MQTT agent.

The single-rig API of the original library lives here too, so its scripts work
with only the import line changed (``from agent import Mouse, generate_config``).
Importing this package stays light: no SQLAlchemy, no typer.
"""

from agent.api import Cohort, Mouse, Session, generate_config

__all__ = ["Cohort", "Mouse", "Session", "generate_config"]
