"""labctl assign / unassign and the ``labctl mouse`` group: mice and their boxes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller.cli.app import (
    LabctlGroup,
    State,
    app,
    console,
    fail,
    print_json,
    say,
    state_of,
    warn,
    when,
)

if TYPE_CHECKING:
    from shared.protocol import Status

mouse_app = typer.Typer(cls=LabctlGroup, help="Add, list and show mice.", no_args_is_help=True)


def rig_statuses(state: State) -> dict[str, Status]:
    """The boxes' live statuses; without a broker, the collector's last record (and a warning)."""
    from controller.lab import recorded_statuses
    from controller.mqtt import BrokerError

    try:
        with state.link() as link, link.cond:
            return dict(link.statuses)
    except BrokerError as exc:
        with state.db().reader() as tx:
            statuses = recorded_statuses(tx)
        warn(f"{exc}; judged by the boxes' last recorded states")
        return statuses


@app.command()
def assign(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(metavar="MOUSE", help="mouse id (created if new)")],
    box: Annotated[
        str,
        typer.Option(
            "--box",
            "-b",
            metavar="BOX",
            help="box id, one of `labctl box list`",
            show_default=False,
        ),
    ],
    move: Annotated[
        bool, typer.Option("--move", help="move the mouse off its current box")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="take the mouse already on BOX off it")
    ] = False,
) -> None:
    """Put a mouse on a box (one mouse per box, one box per mouse; the history is kept).

    A mouse whose session runs is not moved or replaced: stop it first."""
    from controller.lab import assign as assign_mouse
    from controller.lab import assign_takes_off

    state = state_of(ctx)
    db = state.db()
    with db.reader() as tx:
        taken = assign_takes_off(tx, mouse, box, move=move, replace=replace)
    # Only a move or a replace asks the rigs: a plain assignment needs no broker.
    statuses = rig_statuses(state) if taken else {}
    with db.session() as tx:
        result = assign_mouse(tx, mouse, box, move=move, replace=replace, statuses=statuses)
    if result.created_mouse:
        say(f"created mouse {mouse}")
    if result.already:
        say(f"{mouse} is already on box {box}")
        return
    if result.replaced:
        say(f"took {result.replaced} off box {box}")
    if result.moved_from:
        say(f"moved {mouse} from box {result.moved_from} to box {box}")
    else:
        say(f"assigned {mouse} to box {box}")


@app.command()
def unassign(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(metavar="MOUSE", help="mouse id")],
    stop_first: Annotated[
        bool, typer.Option("--stop", help="stop the mouse's running session first")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="wait for the box's reply to --stop")
    ] = 10.0,
) -> None:
    """Take a mouse off its box (refused while its session runs, unless --stop)."""
    from controller.control import stop_boxes
    from controller.lab import get_mouse, running_box
    from controller.lab import unassign as unassign_mouse

    state = state_of(ctx)
    db = state.db()
    with db.reader() as tx:
        get_mouse(tx, mouse)  # an unknown mouse is told before the broker is asked
    if not stop_first:
        statuses = rig_statuses(state)
    else:
        with state.link() as link:
            statuses = dict(link.statuses)
            running = running_box(statuses, mouse)
            if running is not None:
                (outcome,) = stop_boxes(link, [(mouse, running)], timeout=timeout)
                if not outcome.ok:
                    fail(f"could not stop {mouse}'s session on box {running}: {outcome.reason}")
                say(f"stopped {mouse}'s session on box {running}")
                del statuses[running]  # it is ending; the box said so
    with db.session() as tx:
        box = unassign_mouse(tx, mouse, statuses=statuses)
    say(f"took {mouse} off box {box}")


@mouse_app.command("add")
def mouse_add(
    ctx: typer.Context,
    mice: Annotated[list[str], typer.Argument(metavar="MOUSE...", help="mouse ids")],
    notes: Annotated[
        str, typer.Option("--notes", metavar="TEXT", help="a note kept with each mouse")
    ] = "",
) -> None:
    """Add mice to the lab."""
    from controller.lab import add_mouse

    with state_of(ctx).db().session() as tx:
        results = [(m, add_mouse(tx, m, notes)[1]) for m in mice]
    for mouse_id, created in results:
        say(f"created mouse {mouse_id}" if created else f"mouse {mouse_id} already exists")


@mouse_app.command("set")
def mouse_set(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(metavar="MOUSE", help="mouse id")],
    species: Annotated[
        str | None,
        typer.Option("--species", metavar="NAME", help='Latin binomial, e.g. "Mus musculus"'),
    ] = None,
    sex: Annotated[
        str | None, typer.Option("--sex", metavar="M|F|U|O", help="male, female, unknown, other")
    ] = None,
    dob: Annotated[
        str | None, typer.Option("--dob", metavar="YYYY-MM-DD", help="date of birth")
    ] = None,
    age: Annotated[
        str | None,
        typer.Option("--age", metavar="P8W", help="age today, ISO 8601 days or weeks (no --dob)"),
    ] = None,
    strain: Annotated[
        str | None, typer.Option("--strain", metavar="TEXT", help="e.g. C57BL/6J")
    ] = None,
    genotype: Annotated[
        str | None, typer.Option("--genotype", metavar="TEXT", help="e.g. Vglut2-Cre/wt")
    ] = None,
) -> None:
    """Describe a mouse as the subject of published data (NWB export, docs/nwb.md).

    DANDI requires species, sex and a date of birth or an age; strain and genotype
    are kept when given. An age is counted on from the day it is given."""
    from controller.lab import get_mouse
    from controller.nwb.subject import Subject, apply, checked

    values = checked(
        {"species": species, "sex": sex, "date_of_birth": dob, "age": age,
         "strain": strain, "genotype": genotype}
    )  # fmt: skip
    if not values:
        fail("nothing to set: give --species, --sex, --dob or --age, --strain or --genotype")
    with state_of(ctx).db().session() as tx:
        row = get_mouse(tx, mouse)
        changed = apply(row, values)
        missing = Subject.of(row).missing()
    say(f"{mouse}: set {', '.join(changed)}" if changed else f"{mouse}: unchanged")
    if missing:
        say(f"{mouse} still lacks what DANDI requires: {', '.join(missing)}")


@mouse_app.command("list")
def mouse_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every mouse: its box, cohorts and stored sessions."""
    from dataclasses import asdict

    from rich.table import Table

    from controller.lab import mouse_summaries

    with state_of(ctx).db().reader() as tx:
        rows = mouse_summaries(tx)
    if as_json:
        print_json([asdict(r) for r in rows])
        return
    if not rows:
        say("no mice yet: `labctl assign MOUSE --box BOX` or `labctl mouse add MOUSE`")
        return
    table = Table()
    for column in ("mouse", "box", "cohorts", "sessions", "last session", "notes"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.mouse, r.box or "-", ", ".join(r.cohorts) or "-", str(r.sessions),
            r.last_date or "-", r.notes,
        )  # fmt: skip
    console().print(table)


@mouse_app.command("show")
def mouse_show(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(metavar="MOUSE", help="mouse id")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """One mouse: box, cohorts, assignment history and sessions."""
    from rich.table import Table

    from controller.lab import assignment_history, get_mouse, mouse_summaries, session_rows
    from controller.nwb.subject import Subject
    from controller.nwb.subject import describe as describe_subject

    with state_of(ctx).db().reader() as tx:
        (summary,) = mouse_summaries(tx, [mouse])
        subject = describe_subject(Subject.of(get_mouse(tx, mouse)))
        history: list[dict[str, Any]] = [
            {"box": a.box_id, "from": a.started_at, "until": a.ended_at}
            for a in assignment_history(tx, mouse)
        ]
        sessions: list[dict[str, Any]] = [
            {
                "session_id": s.session_id,
                "date": s.date,
                "box": s.box,
                "origin": s.origin,
                "status": s.status,
                "complete": s.complete,
                "trials": s.trial_count,
                "rewards": s.reward_count,
                "problem": s.problem,
            }
            for s in session_rows(tx, mouse)
        ]
    if as_json:
        print_json(
            {
                "mouse": summary.mouse,
                "box": summary.box,
                "cohorts": summary.cohorts,
                "notes": summary.notes,
                "subject": subject,
                "assignments": history,
                "sessions": sessions,
            }
        )
        return
    say(
        f"mouse {summary.mouse}: box {summary.box or '-'}, "
        f"cohorts {', '.join(summary.cohorts) or '-'}"
    )
    if summary.notes:
        say(f"notes: {summary.notes}")
    given = {k: v for k, v in subject.items() if v is not None and k != "age_on"}
    if given:
        say("subject: " + ", ".join(f"{k} {v}" for k, v in given.items()))
    for a in history:
        until = when(a["until"]) if a["until"] else "now"
        say(f"  on box {a['box']} from {when(a['from'])} until {until}")
    table = Table(title=f"{len(sessions)} session(s)", title_justify="left")
    for column in ("#", "date", "box", "status", "trials", "rewards", "origin", "state"):
        table.add_column(column)
    for number, s in enumerate(sessions, 1):
        collected = "stored" if s["complete"] else (s["problem"] or "collecting")
        table.add_row(
            str(number), s["date"] or "-", s["box"] or "-", s["status"] or "-",
            str(s["trials"]), str(s["rewards"]), s["origin"], collected,
        )  # fmt: skip
    console().print(table)
