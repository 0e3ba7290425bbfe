"""labctl export and import: the canonical per-mouse JSON files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.app import (
    EXIT_FAILED,
    app,
    console,
    fail,
    say,
    state_of,
)


@app.command("export")
def export_command(
    ctx: typer.Context,
    mice: Annotated[list[str] | None, typer.Argument(help="mouse ids", show_default=False)] = None,
    every: Annotated[bool, typer.Option("--all", help="every mouse with sessions")] = False,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="folder for <mouse>.json files")
    ] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="replace files holding sessions the database lacks")
    ] = False,
) -> None:
    """Write each mouse's sessions to DIR/<mouse>.json (the canonical per-mouse file)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from controller.files import export_mice, mice_with_sessions
    from controller.lab import get_mouse

    db = state_of(ctx).db()
    if bool(mice) == every:
        fail("give the mice to export: MOUSE... or --all")
    if every:
        with db.reader_engine.connect() as conn:
            selected = mice_with_sessions(conn)
        if not selected:
            say("no mouse has stored sessions yet: nothing to export")
            return
    else:
        selected = list(dict.fromkeys(mice or []))
        with db.reader() as session:
            for mouse_id in selected:
                get_mouse(session, mouse_id)
    show_bar = len(selected) > 3 and sys.stdout.isatty()
    with Progress(
        TextColumn("exporting"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=console(), disable=not show_bar, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("", total=len(selected))
        results = export_mice(
            db,
            selected,
            out,
            force=force,
            progress=lambda r: progress.update(task, advance=1, description=r.mouse),
        )
    for r in results:
        if r.failed:
            typer.echo(f"labctl: error: {r.mouse}: {r.note}", err=True)
        elif r.written:
            say(f"{r.mouse}: {r.sessions} session(s) -> {r.path}")
        else:
            say(f"{r.mouse}: {r.note} ({r.path})")
    if any(r.failed for r in results):
        raise typer.Exit(EXIT_FAILED)


@app.command("import")
def import_command(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="per-mouse files: <mouse id>.json")],
) -> None:
    """Load per-mouse JSON files into the database (importing twice changes nothing)."""
    from controller.files import import_files

    results = import_files(state_of(ctx).db(), files)
    for r in results:
        if r.created_mouse:
            say(f"created mouse {r.mouse}")
        say(f"{r.path}: {r.imported} session(s) imported, {r.present} already stored")
        for conflict in r.conflicts:
            typer.echo(f"labctl: warning: {r.path}: {conflict}", err=True)
