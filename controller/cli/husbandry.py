"""labctl weigh, water, mouse baseline and lab: the husbandry records a person enters.

Who entered a record is ``--by NAME``, else ``$LABCTL_USER``, else the login name;
it is kept with the record.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated

import typer

from controller.cli.app import (
    LabctlGroup,
    app,
    confirm,
    fail,
    print_json,
    say,
    state_of,
    warn,
    when,
)
from controller.cli.mice import mouse_app

lab_app = typer.Typer(
    cls=LabctlGroup,
    help="The lab's husbandry settings: weight threshold, water rule, calibration age.",
    no_args_is_help=True,
)

By = Annotated[
    str | None,
    typer.Option(
        "--by", metavar="NAME", help="who (default: $LABCTL_USER or the login)", show_default=False
    ),
]
At = Annotated[
    str | None,
    typer.Option(
        "--at", metavar="TIME", help="when, if not now: 'YYYY-MM-DD HH:MM' or 'HH:MM' (today)",
        show_default=False,
    ),
]  # fmt: skip
Note = Annotated[str, typer.Option("--note", metavar="TEXT", help="a note kept with it")]


def who(by: str | None) -> str:
    """The name kept with a record."""
    name = (by or os.environ.get("LABCTL_USER") or "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):  # no login name (a container without a passwd entry)
            name = "unknown"
    return name[:64]


def at_time(at: str | None) -> float | None:
    """The time ``--at`` names as Unix seconds; None (now) without it."""
    from controller.husbandry.days import parse_time

    return parse_time(at) if at is not None else None


@app.command()
def weigh(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(metavar="MOUSE", help="mouse id")],
    grams: Annotated[float, typer.Argument(metavar="GRAMS", help="weight in grams")],
    at: At = None,
    by: By = None,
    note: Note = "",
) -> None:
    """Record a weighing, and say how it compares with the mouse's baseline."""
    from controller.husbandry import entry

    with state_of(ctx).db().session() as tx:
        said = entry.weigh(tx, mouse, grams, by=who(by), at=at_time(at), note=note)
    say(said.line)
    for line in said.warnings:
        warn(line)


# ``-50`` is an amount to refuse in words, not an unknown option "-5".
@app.command(context_settings={"ignore_unknown_options": True})
def water(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(metavar="MOUSE", help="mouse id")],
    microliters: Annotated[float, typer.Argument(metavar="UL", help="volume in µL")],
    kind: Annotated[
        str, typer.Option("--kind", metavar="KIND", help="water, supplement or gel")
    ] = "water",
    at: At = None,
    by: By = None,
    note: Note = "",
    force: Annotated[
        bool, typer.Option("--force", help="store a volume over the lab's limit without asking")
    ] = False,
) -> None:
    """Record water given by hand, and show the mouse's water for that day.

    More than 1500 µL at once (a mouse's whole day is about 1 mL) is stored only when
    confirmed at the prompt, or with --force."""  # fmt: skip
    from controller.husbandry import entry
    from controller.husbandry.water import over_limit

    if microliters <= 0:
        fail(f"the amount must be positive, got {microliters:g} µL: labctl water {mouse} 50")
    question = over_limit(microliters)
    if question is not None and not force:
        if not sys.stdin.isatty():
            fail(f"{question}; give --force if it is right")
        if not confirm(f"{question} Store it?"):
            fail("nothing stored")
    with state_of(ctx).db().session() as tx:
        said = entry.water(
            tx, mouse, microliters, by=who(by), kind=kind, at=at_time(at), note=note,
            confirmed=True,  # asked above, or --force
        )  # fmt: skip
    say(said.line)
    for line in said.warnings:
        warn(line)


@mouse_app.command("baseline")
def mouse_baseline(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(metavar="MOUSE", help="mouse id")],
    grams: Annotated[
        float | None,
        typer.Argument(metavar="GRAMS", help="reference weight in grams", show_default=False),
    ] = None,
    mean: Annotated[
        bool, typer.Option("--mean", help="the mean of the mouse's first N weighings instead")
    ] = False,
    end: Annotated[
        bool,
        typer.Option(
            "--end", help="end the mouse's water restriction (a new baseline restricts it again)"
        ),
    ] = False,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            metavar="N",
            help="weighings for --mean (default: the lab's baseline_weighings, 3)",
            show_default=False,
        ),
    ] = None,
    at: At = None,
    by: By = None,
    note: Note = "",
) -> None:
    """Set a mouse's baseline (reference) weight; without GRAMS or --mean, show its history.

    Water restriction is tracked from the first baseline on: from then the mouse's weight
    is checked against the lab's threshold of it, until --end."""  # fmt: skip
    from controller.husbandry.settings import lab_settings
    from controller.husbandry.weights import baselines, end_restriction, set_baseline
    from controller.lab import get_mouse

    db = state_of(ctx).db()
    if end:
        if grams is not None or mean:
            fail("--end takes no GRAMS or --mean")
        with db.session() as tx:
            end_restriction(tx, mouse, by=who(by), at=at_time(at or None), note=note)
        say(f"{mouse}: off water restriction (its weight is no longer checked)")
        return
    if grams is None and not mean:
        with db.reader() as tx:
            get_mouse(tx, mouse)
            rows = baselines(tx, mouse)
        if not rows:
            say(f"{mouse} has no baseline: it is not on water restriction")
        for b in rows:
            say(f"{when(b.set_at)}  {b.grams:g} g  {b.method}  by {b.set_by}  {b.note}".rstrip())
        return
    set_at = at_time(at)
    with db.session() as tx:
        n = (count or lab_settings(tx).baseline_weighings) if mean else None
        row = set_baseline(tx, mouse, grams, by=who(by), mean_of=n, at=set_at, note=note)
    say(f"{mouse}: baseline {row.grams:g} g ({row.method})")


@app.command()
def records(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(metavar="MOUSE", help="mouse id")],
    first: Annotated[
        str | None,
        typer.Option("--from", metavar="YYYY-MM-DD", help="first day", show_default=False),
    ] = None,
    last: Annotated[
        str | None,
        typer.Option("--to", metavar="YYYY-MM-DD", help="last day", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A mouse's weighings, water by hand, baselines and overrides, oldest first, with the
    ids `labctl void` takes (voided ones shown as such)."""
    from controller.husbandry.days import day_bounds, parse_day
    from controller.husbandry.records import mouse_records

    since = day_bounds(parse_day(first, "--from"))[0] if first else None
    until = day_bounds(parse_day(last, "--to"))[1] if last else None
    with state_of(ctx).db().reader() as tx:
        rows = mouse_records(tx, mouse, since, until)
    if as_json:
        print_json([r.as_dict() for r in rows])
        return
    if not rows:
        say(f"no husbandry records of {mouse}")
    for r in rows:
        extra = "".join(f"  [{x}]" for x in (r.note, r.voided) if x)
        say(f"{when(r.at)}  {r.kind} {r.id}  {r.what}  by {r.by}{extra}")


@app.command()
def void(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(metavar="KIND", help="weighing or water")],
    record_id: Annotated[int, typer.Argument(metavar="ID", help="its id (`labctl records`)")],
    reason: Annotated[
        str, typer.Option("--reason", metavar="WHY", help="why (kept with it)", show_default=False)
    ],
    by: By = None,
) -> None:
    """Void a weighing or water entry made by mistake: it is kept, marked with who voided it
    and why, and left out of every check, sum and report."""
    from controller.husbandry.records import void_record

    with state_of(ctx).db().session() as tx:
        what = void_record(tx, kind, record_id, by=who(by), reason=reason)
    say(f"voided {what}")


@lab_app.command("show")
def lab_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    history: Annotated[bool, typer.Option("--history", help="every value ever set")] = False,
) -> None:
    """The husbandry settings in force (a key never set has its default)."""
    from dataclasses import asdict

    from controller.husbandry.settings import KEYS, lab_settings, setting_history

    with state_of(ctx).db().reader() as tx:
        settings = lab_settings(tx)
        rows = setting_history(tx)
    values = asdict(settings)
    values["water_requirement"] = str(settings.water_requirement)
    if as_json:
        changes = [
            {"key": r.key, "value": r.value, "set_at": r.set_at, "set_by": r.set_by} for r in rows
        ]
        print_json({"settings": values, "history": changes} if history else values)
        return
    for key, (_, meaning) in KEYS.items():
        say(f"{key} = {values[key]}    # {meaning}")
    if history:
        for r in rows:
            say(f"{when(r.set_at)}  {r.key} = {r.value}  by {r.set_by}")


@lab_app.command("set")
def lab_set(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="a setting (`labctl lab show`)")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="its new value")],
    by: By = None,
) -> None:
    """Change a husbandry setting (the old value stays in the history)."""
    from controller.husbandry.settings import set_lab_setting

    with state_of(ctx).db().session() as tx:
        parsed = set_lab_setting(tx, key, value, by=who(by))
    say(f"{key} = {parsed}")


app.add_typer(lab_app, name="lab")
