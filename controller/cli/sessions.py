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
    warn,
)
from shared.config import parse_meta, read_config


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
    mice: Annotated[
        list[str] | None,
        typer.Argument(metavar="MOUSE...", help="mouse ids", show_default=False),
    ] = None,
    cohort: Annotated[
        str | None,
        typer.Option(
            "--cohort", metavar="NAME", help="start every mouse of a cohort", show_default=False
        ),
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
    shift: Annotated[
        int | None,
        typer.Option(
            "--shift",
            metavar="N",
            help="with --cohort: only shift N of its schedule, each mouse put on its scheduled box",
            show_default=False,
        ),
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option(
            "--weight",
            metavar="G",
            help="the mouse's weight now in grams: recorded as a "
            "weighing and as the session's 'weight'",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="start mice the weight check warns about")
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            metavar="WHY",
            help="why --force (kept with the override)",
            show_default=False,
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            metavar="NAME",
            help="who starts (default: $LABCTL_USER or the login)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start sessions: every mouse on its assigned box, all at the same moment.

    A mouse on water restriction (it has a baseline) that is not weighed today, or weighs
    less than the lab's threshold of its baseline, starts only with --force and --reason;
    the override is kept with who gave it and why."""  # fmt: skip
    from controller.cli.husbandry import who
    from controller.husbandry.starts import finish_start, place_shift_mice, prepare_start
    from controller.rigs import select_mice, start_sessions

    state = state_of(ctx)
    if config_file is not None and not config_file.expanduser().is_file():
        fail(f"--config: no such file {config_file}")
    config = read_config(config_file)
    if duration is not None:
        if duration <= 0:
            fail(f"--duration must be positive, got {duration:g}")
        config = config.replace(duration=duration)
    metadata = parse_meta(meta)
    if weight is not None and "weight" in metadata:
        fail("give the weight once: --weight G or --meta weight=G")
    if weight is not None and len(dict.fromkeys(mice or [])) != 1:
        fail("--weight is one mouse's weight: give exactly one MOUSE")
    if shift is not None and (cohort is None or mice or every):
        fail("--shift needs --cohort NAME (and no MOUSE... or --all)")
    if force and not (reason or "").strip():
        fail("--force needs --reason WHY: the override is kept for the welfare record")
    db = state.db()
    selected = select_mice(db, mice, cohort, every, "start") if shift is None else []
    if shift is not None and cohort is not None:
        from controller.husbandry.schedule import shift_slots

        with db.reader() as tx:
            shift_slots(tx, cohort, shift)  # no such shift: one line, nothing sent
    shift_waiting: list[Any] = []
    with state.link() as link:
        if not link.online_collectors():
            from controller.collector.leases import NO_COLLECTOR

            warn(NO_COLLECTOR)
        if shift is not None and cohort is not None:
            placed = place_shift_mice(db, cohort, shift, link.statuses)
            selected, shift_waiting = placed.mice, placed.waiting_outcomes()
            for line in placed.notes:
                say(line)
        plan = prepare_start(db, selected, weight=weight, force=force, reason=reason, by=who(by))
        for line in plan.warnings:
            warn(line)
        outcomes = start_sessions(
            db, link, plan.allowed, config, metadata, timeout=timeout,
            extra_metadata=plan.metadata_for,
        )  # fmt: skip
    outcomes += plan.refused_outcomes() + shift_waiting
    finish_start(plan, outcomes)
    for line in plan.box_warnings:
        warn(line)
    for mouse in plan.forced:
        if any(o.ok and o.mouse == mouse for o in outcomes):
            say(f"{mouse}: started despite the weight check; override recorded ({who(by)})")
    console().print(_outcome_table(outcomes, "started"))
    failed = [o for o in outcomes if not o.ok]
    started = len(outcomes) - len(failed)
    say(f"{started} of {len(outcomes)} session(s) started")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def stop(
    ctx: typer.Context,
    mice: Annotated[
        list[str] | None,
        typer.Argument(metavar="MOUSE...", help="mouse ids", show_default=False),
    ] = None,
    box: Annotated[
        list[str] | None,
        typer.Option("--box", "-b", metavar="BOX", help="a box id, repeatable", show_default=False),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="stop every running session")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="wait for replies")
    ] = 10.0,
) -> None:
    """Stop running sessions (they end as "stopped" and are kept).

    A mouse is stopped where its session runs, as the boxes report it, even if it
    has since been moved or taken off that box; otherwise on the box it is on."""
    from controller.rigs import plan_stop, stop_boxes

    state = state_of(ctx)
    db = state.db()
    plan = plan_stop(db, mice, box, every)
    with state.link() as link:
        targets = plan.targets(db, link)
        if every and not targets:
            say("no session is running")
            return
        outcomes = stop_boxes(link, targets, timeout=timeout)
    console().print(_outcome_table(outcomes, "stopped"))
    if any(not o.ok for o in outcomes):
        raise typer.Exit(EXIT_FAILED)
