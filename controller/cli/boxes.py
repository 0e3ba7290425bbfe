"""The ``labctl box`` group: the lab's boxes, listed, added, retired and renamed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.app import LabctlGroup, State, console, print_json, say, state_of, when
from controller.cli.husbandry import By, who

if TYPE_CHECKING:
    from shared.protocol import Status

box_app = typer.Typer(
    cls=LabctlGroup,
    help="The lab's boxes: list them, add a new rig, retire or rename one.",
    no_args_is_help=True,
)

BoxId = Annotated[str, typer.Argument(metavar="BOX", help="box id")]


def _statuses_if_reported(state: State, box_id: str) -> dict[str, Status]:
    """The boxes' statuses when ``box_id`` ever reported; a box that never did runs
    nothing, so retiring a typo needs no broker."""
    from controller.cli.mice import rig_statuses
    from controller.husbandry.boxes import has_reported
    from controller.lab import get_box

    with state.db().reader() as tx:
        reported = has_reported(get_box(tx, box_id, retired=True))
    return rig_statuses(state) if reported else {}


@box_app.command("list")
def box_list(
    ctx: typer.Context,
    every: Annotated[bool, typer.Option("--all", help="retired boxes too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The boxes in use: state, mouse, when and by whom added, when last seen."""
    from rich.table import Table

    from controller.husbandry.boxes import box_entries
    from controller.views import age

    with state_of(ctx).db().reader() as tx:
        rows = box_entries(tx, retired=every)
    if as_json:
        print_json([r.as_dict() for r in rows])
        return
    if not rows:
        say("no boxes yet: a rig's box appears when its agent first reports; `labctl box add BOX`")
        return
    now = time.time()
    table = Table()
    for column in ("box", "state", "mouse", "added", "retired", "last seen"):
        table.add_column(column)
    for r in rows:
        added = f"{when(r.added_at)} " + (f"by {r.added_by}" if r.added_by else "(first report)")
        if r.renamed_from:
            added += f" (was {r.renamed_from})"
        retired = "-"
        if r.retired_at is not None:
            retired = when(r.retired_at) + (f" by {r.retired_by}" if r.retired_by else "")
            if r.renamed_to:
                retired += f" (now {r.renamed_to})"
        seen = f"{age(now - r.last_seen)} ago" if r.last_seen is not None else "never"
        table.add_row(r.box, r.state, r.mouse or "-", added, retired, seen)
    console().print(table)


@box_app.command("add")
def box_add(ctx: typer.Context, box: BoxId, by: By = None) -> None:
    """Add a box for a new rig before its agent first reports (or bring a retired one back)."""
    from controller.husbandry.boxes import add_box

    with state_of(ctx).db().session() as tx:
        _, done = add_box(tx, box, by=who(by))
    if done == "known":
        say(f"box {box} is already in the lab")
    elif done == "back":
        say(f"box {box} is back in use (its history is kept)")
    else:
        say(f"added box {box}")


@box_app.command("retire")
def box_retire(ctx: typer.Context, box: BoxId, by: By = None) -> None:
    """Retire a box: it leaves status, monitor and the dashboard; its sessions stay.

    Refused while a mouse is on it, a schedule places mice on it, or a session runs."""
    from controller.husbandry.boxes import retire_box

    state = state_of(ctx)
    statuses = _statuses_if_reported(state, box)
    with state.db().session() as tx:
        retire_box(tx, box, by=who(by), statuses=statuses)
    say(f"retired box {box} (its sessions stay; `labctl box add {box}` brings it back)")


@box_app.command("rename")
def box_rename(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(metavar="OLD", help="the box's id now")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="its new id")],
    by: By = None,
) -> None:
    """Rename a box that is offline (set the rig's agent to the new id too).

    Its sessions keep the old id; its mouse, schedule places and calibrations move."""
    from controller.husbandry.boxes import rename_box

    state = state_of(ctx)
    statuses = _statuses_if_reported(state, old)
    with state.db().session() as tx:
        rename_box(tx, old, new, by=who(by), statuses=statuses)
    say(f"renamed box {old} to {new} (box {old} is retired; its sessions keep its id)")
