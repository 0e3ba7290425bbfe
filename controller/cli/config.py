"""The ``labctl config`` group: task configuration files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.cli.app import (
    LabctlGroup,
    fail,
    print_json,
    say,
)
from shared.config import generate_config, read_config

config_app = typer.Typer(cls=LabctlGroup, help="Task configuration files.", no_args_is_help=True)


@config_app.command("init")
def config_init(
    path: Annotated[Path, typer.Argument(help="where to write the file")],
    force: Annotated[bool, typer.Option("--force", help="replace an existing file")] = False,
) -> None:
    """Write a task config file with every setting at its default."""
    written = generate_config(path, overwrite=force)
    say(f"wrote {written}")


@config_app.command("show")
def config_show(
    path: Annotated[
        Path | None, typer.Argument(help="a config file (default: the defaults)")
    ] = None,
) -> None:
    """Check a config file and print the settings it gives."""
    if path is not None and not path.expanduser().is_file():
        fail(f"no such config file {path}")
    config = read_config(path)
    print_json(config.settings())
