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
    from controller.db import Database
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
    file_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="json: DIR/<mouse>.json; nwb: one NWB file per session for DANDI "
            "(DIR/sub-<mouse>/sub-<mouse>_ses-<start>_behavior.nwb; the nwb extra)",
        ),
    ] = "json",
) -> None:
    """Write each mouse's sessions to DIR/<mouse>.json (the canonical per-mouse file).

    With --format nwb, each session becomes an NWB file in DANDI's layout instead
    (docs/nwb.md); the mice must have their species, sex and date of birth or age
    (`labctl mouse set`)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from controller.files import export_mice, mice_with_sessions
    from controller.lab import get_mouse

    db = state_of(ctx).db()
    if file_format not in ("json", "nwb"):
        fail(f"invalid --format {file_format!r}: expected json or nwb")
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
    if file_format == "nwb":
        _export_nwb(db, selected, out)
        return
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


def _export_nwb(db: Database, mice: list[str], out: Path) -> None:
    try:
        from controller.nwb.export import export_nwb
        from controller.nwb.writer import require_pynwb

        require_pynwb()
    except ImportError as exc:
        fail(f"{exc}: install the nwb extra (pip install 'reachlab[nwb]')")
    results = export_nwb(db, mice, out)
    for mouse in mice:
        mine = [r for r in results if r.mouse == mouse]
        written = [r for r in mine if r.written]
        say(
            f"{mouse}: {len(written)} session(s) -> "
            f"{written[0].path.parent if written and written[0].path else out}"
        )
        for r in mine:
            if r.failed:
                typer.echo(f"labctl: error: {mouse}: {r.note}", err=True)
            elif not r.written:
                warn(f"{mouse}: {r.note}")
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
    subjects: Annotated[
        Path | None,
        typer.Option(
            "--subjects",
            metavar="FILE",
            help="the mice's species, sex, dob or age, strain, genotype: a CSV with a 'mouse' "
            "column, or JSON (docs/nwb.md)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Load per-mouse JSON files into the database; importing twice changes nothing.

    Every shape of file the original single-rig library wrote is kept as it came
    and exported again with equal content. A file that cannot be used is refused
    with the reason and changes nothing; the other files are still imported, and
    the exit status is then 1 (2 when every file was refused).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from controller.files import files_to_import, import_files
    from controller.nwb.subject import read_subjects

    # Checked before anything is imported: a bad sheet changes nothing.
    described = read_subjects(subjects) if subjects is not None else {}
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
    if described:
        _describe_mice(db, described)
    refused = [r for r in results if r.refused]
    for r in results:
        for conflict in r.conflicts:
            warn(f"{r.path}: {conflict}")
    for r in refused:
        typer.echo(f"labctl: error: {r.error}", err=True)
    if refused:
        raise typer.Exit(EXIT_ERROR if len(refused) == len(results) else EXIT_FAILED)


def _describe_mice(db: Database, described: dict[str, dict[str, str | None]]) -> None:
    from controller.models import Mouse
    from controller.nwb.subject import apply

    unknown = []
    with db.session() as tx:
        for mouse, values in described.items():
            row = tx.get(Mouse, mouse)
            if row is None:
                unknown.append(mouse)
            elif changed := apply(row, values):
                say(f"{mouse}: subject {', '.join(changed)} set")
    if unknown:
        warn(f"--subjects names mice with no sessions here, left out: {', '.join(unknown)}")


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
