"""Which lab database labctl uses on this machine: ``labctl lab use`` and its config file.

The database is taken from ``--db``, else ``LABCTL_DB``, else this file
(``labctl.toml`` in the user's config directory), else the default SQLite file.
Set once per machine, so a terminal without ``LABCTL_DB`` never commands the
real rigs from an empty local database (DESIGN §15).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.app import fail, say
from controller.cli.husbandry import lab_app

CONFIG_FILE = "labctl.toml"


def config_path() -> Path:
    """``labctl.toml`` in the user config directory (``$XDG_CONFIG_HOME/reachlab`` on Linux)."""
    import platformdirs

    from controller.db import APP_NAME

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILE


def configured_database() -> str | None:
    """The database URL ``labctl lab use`` wrote, or None; a broken file is one clear line."""
    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}; fix it or run `labctl lab use URL`")
    try:
        value = tomllib.loads(text).get("db")
    except tomllib.TOMLDecodeError as exc:
        fail(f"{path} is not valid TOML ({exc}); run `labctl lab use URL` to write it again")
    if not isinstance(value, str) or not value.strip():
        fail(f'{path} has no `db = "URL"` line; run `labctl lab use URL` to write it again')
    return value.strip()


@lab_app.command("use")
def lab_use(
    url: Annotated[str, typer.Argument(metavar="URL", help="the lab's database URL")],
) -> None:
    """Make URL this machine's lab database (read when neither --db nor LABCTL_DB is given)."""
    from controller.db import display_url, open_database
    from controller.lab import database_identity

    db = open_database(url)  # unreachable or not a database: refused, nothing written
    try:
        identity = database_identity(db)
    finally:
        db.close()
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    # The URL may hold a password: the file is the user's alone.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"# written by `labctl lab use`\ndb = {json.dumps(url.strip())}\n")
    partial.replace(path)
    say(f"labctl on this machine now uses database {display_url(url)} (lab {identity[:8]})")
    say(f"written to {path}; --db and LABCTL_DB still take precedence")
