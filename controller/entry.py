"""``labctl``'s entry point: the command's imports under :mod:`shared.entry`'s Ctrl-C handling."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from shared import entry  # first: its SIGINT handler covers every import after it


def _load() -> Callable[[], int | None]:
    from controller.cli import main as labctl_main

    return labctl_main


def main() -> NoReturn:
    """The ``labctl`` console script."""
    entry.run("labctl", _load)
