"""labctl start and stop: sessions on the rigs, every selected mouse at once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:  # the real import is deferred to keep labctl quick to start
    from controller import control
    from controller.control import Outcome, OutcomeCode, Problem


#: A start's or stop's broken rule, in labctl's words (its flags).
REQUEST_WORDS: dict[Problem, str] = {
    "choose_mice": "give the mice to start: MOUSE..., --cohort NAME or --all (exactly one of them)",
    "choose_stop": "give what to stop: MOUSE..., --box BOX or --all (exactly one of them)",
    "weight_twice": "give the weight once: --weight G or --meta weight=G",
    "weight_one_mouse": "--weight is one mouse's weight: give exactly one MOUSE",
    "shift_needs_cohort": "--shift needs --cohort NAME (and no MOUSE... or --all)",
    "force_needs_reason": "--force needs --reason WHY: the override is kept for the welfare record",
    "reserved_key": "--meta names a key the session records itself",
}


def request_words(exc: control.RequestError) -> str:
    """A broken rule of a start or stop in labctl's words; a reserved key names its option."""
    if exc.problem != "reserved_key" or exc.key is None:
        return REQUEST_WORDS[exc.problem]
    if exc.key == "duration":
        how = "set the session length with --duration S"
    elif exc.setting:
        how = "it is a task setting: set it in a config file, --config FILE (labctl config init)"
    else:
        how = "reachlab records it itself: store yours under another name"
    return f"--meta {exc.key}=...: {exc.key!r} is the session's own key; {how}"


#: What a person can do about an outcome, in labctl's words, after its reason.
HINTS: dict[OutcomeCode, str] = {
    "no_box": " (labctl assign)",
    "weight_check": " (weigh it with `labctl weigh`, or --force --reason WHY)",
}


def _outcome_table(outcomes: list[Outcome], verb: str) -> Any:
    from rich.table import Table

    table = Table()
    for column in ("mouse", "box", verb, "session", "why not"):
        table.add_column(column)
    for o in outcomes:
        done = "[green]yes[/green]" if o.ok else "[red]no[/red]"
        why = o.reason + HINTS.get(o.code, "") if o.reason else ""
        table.add_row(o.mouse or "-", o.box or "-", done, o.session_id or "-", why)
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
    from controller import control
    from controller.cli.husbandry import who

    state = state_of(ctx)
    if config_file is not None and not config_file.expanduser().is_file():
        fail(f"--config: no such file {config_file}")
    config = read_config(config_file)
    if duration is not None:
        if duration <= 0:
            fail(f"--duration must be positive, got {duration:g}")
        config = config.replace(duration=duration)
    by_name = who(by)
    try:
        request = control.StartRequest(
            mice=mice or (), cohort=cohort, every=every, shift=shift, config=config,
            metadata=parse_meta(meta), weight=weight, force=force, reason=reason, by=by_name,
            timeout=timeout,
        )  # fmt: skip
    except control.RequestError as exc:
        fail(request_words(exc))
    result = control.start(state.db(), state.link, request)
    for warning in result.warnings:
        if warning.kind == "no_collector":
            warn(warning.text)
    for line in result.placements:
        say(line)
    for warning in result.warnings:
        if warning.kind != "no_collector":
            warn(warning.text)
    for warning in result.box_warnings:
        warn(warning.text)
    for mouse in result.overridden:
        say(f"{mouse}: started despite the weight check; override recorded ({by_name})")
    console().print(_outcome_table(result.outcomes, "started"))
    say(f"{result.started} of {len(result.outcomes)} session(s) started")
    if not result.ok:
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
    from controller import control

    state = state_of(ctx)
    try:
        request = control.StopRequest(
            mice=mice or (), boxes=box or (), every=every, timeout=timeout
        )
    except control.RequestError as exc:
        fail(REQUEST_WORDS[exc.problem])
    result = control.stop(state.db(), state.link, request)
    if result.nothing_running:
        say("no session is running")
        return
    console().print(_outcome_table(result.outcomes, "stopped"))
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
