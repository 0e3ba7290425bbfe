"""labctl export and import: the canonical per-mouse JSON files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.app import (
    EXIT_ERROR,
    EXIT_FAILED,
    app,
    console,
    fail,
    say,
    state_of,
    warn,
)

if TYPE_CHECKING:
    from controller.files import ImportResult


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
        with db.reader() as tx:
            for mouse_id in selected:
                get_mouse(tx, mouse_id)
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
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH",
            help="per-mouse files (<mouse id>.json) or folders of them (every *.json inside)",
        ),
    ],
) -> None:
    """Load per-mouse JSON files into the database; importing twice changes nothing.

    Every shape of file the original single-rig library wrote is kept as it came
    and exported again with equal content. A file that cannot be used is refused
    with the reason and changes nothing; the other files are still imported, and
    the exit status is then 1 (2 when every file was refused).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from controller.files import files_to_import, import_files

    db = state_of(ctx).db()
    count = len(files_to_import(paths))
    show_bar = count > 3 and sys.stdout.isatty()
    with Progress(
        TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=console(), disable=not show_bar, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("", total=count)
        results = import_files(
            db, paths, progress=lambda r: progress.update(task, advance=1, description=r.path.name)
        )
    _import_summary(results)
    refused = [r for r in results if r.refused]
    for r in results:
        for conflict in r.conflicts:
            warn(f"{r.path}: {conflict}")
    for r in refused:
        typer.echo(f"labctl: error: {r.error}", err=True)
    if refused:
        raise typer.Exit(EXIT_ERROR if len(refused) == len(results) else EXIT_FAILED)


def _import_summary(results: list[ImportResult]) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    # File names are never cut short; a long reason wraps (stderr has it whole, too).
    longest = max((len(str(r.path)) for r in results), default=4)
    table.add_column("file", no_wrap=True, min_width=longest)
    table.add_column("imported", justify="right", no_wrap=True)
    table.add_column("already stored", justify="right", no_wrap=True)
    table.add_column("refused", overflow="fold", min_width=16)
    for r in results:
        table.add_row(str(r.path), str(r.imported), str(r.present), r.refused)
    console().print(table)
    for r in results:
        if r.created_mouse:
            say(f"created mouse {r.mouse}")
    good = [r for r in results if not r.refused]
    say(
        f"{sum(r.imported for r in good)} session(s) imported, "
        f"{sum(r.present for r in good)} already stored, from {len(good)} file(s); "
        f"{len(results) - len(good)} file(s) refused"
    )
