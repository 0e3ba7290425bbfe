"""labctl start and stop: sessions on the rigs, every selected mouse at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from controller.cli.app import (
    EXIT_FAILED,
    app,
    console,
    fail,
    say,
    state_of,
)
from shared.config import parse_meta, read_config


def _select_mice(
    ctx: typer.Context, mice: list[str] | None, cohort: str | None, every: bool, what: str
) -> list[str]:
    from controller.lab import assigned_mice, cohort_members, get_mouse

    chosen = sum((bool(mice), cohort is not None, every))
    if chosen != 1:
        fail(f"give the mice to {what}: MOUSE..., --cohort NAME or --all (exactly one of them)")
    with state_of(ctx).db().reader() as session:
        if cohort is not None:
            selected = cohort_members(session, cohort)
            if not selected:
                fail(f"cohort {cohort} has no mice")
        elif every:
            selected = assigned_mice(session)
            if not selected:
                fail("no mouse is assigned to a box: `labctl assign MOUSE --box BOX`")
        else:
            selected = list(dict.fromkeys(mice or []))
        for mouse_id in selected:
            get_mouse(session, mouse_id)  # unknown ones end the command before anything is sent
    return selected


def _outcome_table(outcomes: list[Any], verb: str) -> Any:
    from rich.table import Table

    table = Table()
    for column in ("mouse", "box", verb, "session", "why not"):
        table.add_column(column)
    for o in outcomes:
        done = "[green]yes[/green]" if o.ok else "[red]no[/red]"
        table.add_row(o.mouse or "-", o.box or "-", done, o.session_id or "-", o.reason or "")
    return table


@app.command()
def start(
    ctx: typer.Context,
    mice: Annotated[list[str] | None, typer.Argument(help="mouse ids", show_default=False)] = None,
    cohort: Annotated[
        str | None,
        typer.Option("--cohort", help="start every mouse of a cohort", show_default=False),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="start every assigned mouse")] = False,
    duration: Annotated[
        float | None,
        typer.Option("--duration", metavar="S", help="session length in s", show_default=False),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", metavar="FILE", help="task config file (.ini)", show_default=False
        ),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option("--meta", metavar="KEY=VALUE", help="session metadata, repeatable"),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="wait for replies")
    ] = 10.0,
) -> None:
    """Start sessions: every mouse on its assigned box, all at the same moment."""
    from controller.rigs import start_sessions

    state = state_of(ctx)
    if config_file is not None and not config_file.expanduser().is_file():
        fail(f"--config: no such file {config_file}")
    config = read_config(config_file)
    if duration is not None:
        if duration <= 0:
            fail(f"--duration must be positive, got {duration:g}")
        config = config.replace(duration=duration)
    metadata = parse_meta(meta)
    selected = _select_mice(ctx, mice, cohort, every, "start")
    db = state.db()
    with state.link() as link:
        outcomes = start_sessions(db, link, selected, config, metadata, timeout=timeout)
    console().print(_outcome_table(outcomes, "started"))
    failed = [o for o in outcomes if not o.ok]
    started = len(outcomes) - len(failed)
    say(f"{started} of {len(outcomes)} session(s) started")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def stop(
    ctx: typer.Context,
    mice: Annotated[list[str] | None, typer.Argument(help="mouse ids", show_default=False)] = None,
    box: Annotated[
        list[str] | None,
        typer.Option("--box", "-b", help="a box id, repeatable", show_default=False),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="stop every running session")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="wait for replies")
    ] = 10.0,
) -> None:
    """Stop running sessions (they end as "stopped" and are kept).

    A mouse is stopped where its session runs, as the boxes report it, even if it
    has since been moved or taken off that box; otherwise on the box it is on."""
    from controller.lab import box_of, get_mouse, running_box
    from controller.rigs import stop_boxes
    from shared.ids import check_box_id

    state = state_of(ctx)
    if sum((bool(mice), bool(box), every)) != 1:
        fail("give what to stop: MOUSE..., --box BOX or --all (exactly one of them)")
    assigned: dict[str, str | None] = {}
    if mice:
        with state.db().reader() as session:
            for mouse_id in dict.fromkeys(mice):
                get_mouse(session, mouse_id)  # unknown ones end the command before the broker
                assigned[mouse_id] = box_of(session, mouse_id)
    targets: list[tuple[str | None, str]] = [(None, check_box_id(b)) for b in box or []]
    with state.link() as link:
        for mouse_id, on_box in assigned.items():
            where = running_box(link.statuses, mouse_id) or on_box
            if where is None:
                fail(f"mouse {mouse_id} has no running session and is not on any box")
            targets.append((mouse_id, where))
        if every:
            targets = [
                (status.mouse, name)
                for name, status in sorted(link.statuses.items())
                if status.state == "running"
            ]
            if not targets:
                say("no session is running")
                return
        for _, box_id in targets:
            if box_id not in link.statuses:
                from controller.lab import get_box

                with state.db().reader() as session:
                    get_box(session, box_id)  # unknown box: one line, exit 2
        outcomes = stop_boxes(link, targets, timeout=timeout)
    console().print(_outcome_table(outcomes, "stopped"))
    if any(not o.ok for o in outcomes):
        raise typer.Exit(EXIT_FAILED)
