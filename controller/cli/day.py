"""labctl schedule, today and report: a cohort's shifts, the day in one view, the welfare report.

The report's columns are explained in docs/husbandry.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from controller.cli.app import app, console, fail, print_json, say, state_of, warn, when
from controller.cli.husbandry import By, who


@app.command()
def schedule(
    ctx: typer.Context,
    cohort: Annotated[str, typer.Argument(metavar="NAME", help="cohort name")],
    shifts: Annotated[
        int | None,
        typer.Option(
            "--shifts", metavar="K", help="spread the cohort over K shifts", show_default=False
        ),
    ] = None,
    boxes: Annotated[
        list[str] | None,
        typer.Option(
            "--box",
            "-b",
            metavar="BOX",
            help="a box to use, repeatable (default: the lab's boxes in order)",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option(
            "--table", metavar="FILE", help="CSV with columns mouse,box,shift", show_default=False
        ),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="every schedule the cohort had")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    by: By = None,
) -> None:
    """Give each mouse of a cohort a box and a shift (more mice than boxes); without
    --shifts or --table, show the schedule. Start a shift with
    `labctl start --cohort NAME --shift N`."""  # fmt: skip
    from controller.husbandry.schedule import (
        current_entries,
        known_boxes,
        parse_table,
        plan_shifts,
        schedule_history,
        set_schedule,
    )
    from controller.lab import cohort_members, get_cohort

    if shifts is not None and table is not None:
        fail("give --shifts K or --table FILE, not both")
    if boxes and shifts is None:
        fail("--box goes with --shifts K (a --table names the boxes itself)")
    db = state_of(ctx).db()
    if shifts is not None or table is not None:
        with db.session() as tx:
            if table is not None:
                if not table.expanduser().is_file():
                    fail(f"--table: no such file {table}")
                slots = parse_table(table.expanduser().read_text(encoding="utf-8"), str(table))
            else:
                assert shifts is not None
                mice = cohort_members(tx, cohort)
                if not mice:
                    fail(f"cohort {cohort} has no mice")
                slots = plan_shifts(mice, shifts, boxes or known_boxes(tx))
            set_schedule(tx, cohort, slots, by=who(by))
    with db.reader() as tx:
        get_cohort(tx, cohort)
        rows = schedule_history(tx, cohort) if history else current_entries(tx, cohort)
        entries: list[dict[str, Any]] = [
            {"mouse": e.mouse_id, "box": e.box_id, "shift": e.shift, "from": e.valid_from,
             "until": e.valid_until, "set_by": e.set_by}
            for e in rows
        ]  # fmt: skip
    if as_json:
        print_json(entries)
        return
    if not entries:
        say(f"cohort {cohort} has no schedule: `labctl schedule {cohort} --shifts N`")
        return
    from rich.table import Table

    view = Table(title=f"cohort {cohort}", title_justify="left")
    for column in ("shift", "box", "mouse", *(("from", "until", "by") if history else ())):
        view.add_column(column)
    for e in entries:
        extra = (when(e["from"]), when(e["until"]) if e["until"] else "now", e["set_by"])
        view.add_row(str(e["shift"]), e["box"], e["mouse"], *(extra if history else ()))
    console().print(view)


def _n(value: Any, fmt: str = "g") -> str:
    return "-" if value is None else format(value, fmt)


@app.command()
def today(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    day: Annotated[
        str | None,
        typer.Option("--date", metavar="YYYY-MM-DD", help="another day", show_default=False),
    ] = None,
) -> None:
    """The day in one view: one row per mouse with its box and shift, weight against its
    baseline, sessions, trials, correct %, d', water earned, given and owed, and warnings."""
    from rich.table import Table

    from controller.husbandry.days import parse_day
    from controller.husbandry.days import today as today_day
    from controller.husbandry.report import box_warnings, today_rows
    from controller.husbandry.schedule import next_mice
    from controller.husbandry.settings import lab_settings

    when = parse_day(day) if day is not None else today_day()
    with state_of(ctx).db().reader() as tx:
        settings = lab_settings(tx)
        rows = today_rows(tx, when, settings)
        boxes = box_warnings(tx, rows, settings) if day is None else []
        upcoming = next_mice(tx) if day is None else {}
    if as_json:
        print_json(
            {
                "date": when,
                "mice": [r.as_dict() for r in rows],
                "box_warnings": boxes,
                "next": {b: {"mouse": n.mouse, "cohort": n.cohort, "shift": n.shift}
                         for b, n in upcoming.items()},
            }
        )  # fmt: skip
        return
    if not rows:
        say(f"nothing recorded for {when}, and no mouse is on a box or on restriction")
        return
    view = Table(title=f"{when}", title_justify="left")
    columns = ("mouse", "box", "shift", "weight g", "% base", "sessions", "trials", "correct %",
               "d'", "earned µl", "given µl", "owed µl", "warnings")  # fmt: skip
    for column in columns:
        view.add_column(column)
    for r in rows:
        pct = _n(r.weight_pct, ".1f")
        view.add_row(
            r.mouse, r.box or "-", f"{r.cohort} {r.shift}" if r.cohort else "-",
            _n(r.weight_g), f"[red]{pct}[/red]" if r.below_threshold else pct,
            str(r.sessions), str(r.trials), _n(r.correct_pct, ".1f"), _n(r.d_prime, ".2f"),
            f"{r.earned_ul:.0f}", f"{r.given_ul:g}", _n(r.owed_ul, ".0f"),
            "; ".join(r.warnings + [f"override by {o}" for o in r.overrides]),
        )  # fmt: skip
    console().print(view)
    for box, n in sorted(upcoming.items()):
        say(f"next in box {box}: {n.mouse} (cohort {n.cohort} shift {n.shift})")
    for line in boxes:
        warn(line)


@app.command()
def report(
    ctx: typer.Context,
    first: Annotated[str, typer.Option("--from", metavar="YYYY-MM-DD", help="first day")],
    last: Annotated[str, typer.Option("--to", metavar="YYYY-MM-DD", help="last day")],
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="csv, json or md")] = "csv",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="write to FILE (default: stdout)",
            show_default=False,
        ),
    ] = None,
    mice: Annotated[
        list[str] | None,
        typer.Option(
            "--mouse",
            "-m",
            metavar="MOUSE",
            help="only this mouse, repeatable",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The welfare report: weights, water and overrides per mouse per day (columns in
    docs/husbandry.md)."""  # fmt: skip
    import time

    from controller.husbandry.days import parse_day
    from controller.husbandry.report import format_report, report_rows
    from controller.husbandry.settings import lab_settings
    from controller.lab import get_mouse
    from shared.sessionfile import atomic_write_text

    if fmt not in ("csv", "json", "md"):
        fail(f"--format must be csv, json or md, got {fmt!r}")
    start, end = parse_day(first, "--from"), parse_day(last, "--to")
    with state_of(ctx).db().reader() as tx:
        settings = lab_settings(tx)
        for mouse in mice or []:
            get_mouse(tx, mouse)  # an unknown one is a mistake, not an empty report
        rows = report_rows(tx, start, end)  # each day under that day's settings
    if mice:
        rows = [r for r in rows if r.mouse in mice]
    header = [
        f"# Husbandry report {start} to {end}",
        "",
        f"Made {time.strftime('%Y-%m-%d %H:%M')}. Each day is judged by the rules in force "
        f"that day; now: weight threshold {settings.weight_threshold_pct:g} % of baseline, "
        f"daily water {settings.water_requirement}.",
    ]
    text = format_report(rows, fmt, header=header)
    if out is None:
        typer.echo(text)
        return
    atomic_write_text(out.expanduser(), text + "\n")
    say(f"{len(rows)} row(s) -> {out}")
    if not rows:
        warn(f"nothing recorded from {start} to {end}")
