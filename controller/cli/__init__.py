"""``labctl``: the lab's command line (typer), one module per command group.

:mod:`controller.cli.app` holds the app, its global options and the one-line
error handling; each other module registers its commands on it. The order of
the imports below is the order of ``labctl --help``.
"""

from __future__ import annotations

# isort: off
# Each import registers that module's commands, in the order of `labctl --help`.
from controller.cli import mice, cohorts, sessions, status, files, results, config, serve, web  # noqa: F401
from controller.cli import boxes  # noqa: F401  # the rigs themselves
from controller.cli import husbandry, labfile, calibrate, day  # noqa: F401  # the lab around the sessions
from controller.cli import alerts  # noqa: F401  # the lab's voice

# isort: on
from controller.cli.app import app
from controller.cli.boxes import box_app
from controller.cli.cohorts import cohort_app
from controller.cli.config import config_app
from controller.cli.mice import mouse_app

app.add_typer(mouse_app, name="mouse")
app.add_typer(box_app, name="box")
app.add_typer(cohort_app, name="cohort")
app.add_typer(config_app, name="config")


def _register_demo() -> None:
    """``labctl demo`` lives with the rest of the demo, in :mod:`controller.demo.run`."""
    from controller.demo.run import demo_command

    app.command("demo")(demo_command)


_register_demo()


def main() -> None:
    """The ``labctl`` entry point."""
    app(prog_name="labctl")


__all__ = ["app", "main"]
