"""The ``labctl cohort`` group: groups of mice that are started together."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Protocol

import typer

from controller.cli.app import (
    LabctlGroup,
    confirm,
    print_json,
    say,
    state_of,
)

if TYPE_CHECKING:
    from controller.db import Transaction

cohort_app = typer.Typer(
    cls=LabctlGroup, help="Groups of mice that are started together.", no_args_is_help=True
)


CREATE_HELP = "add mice the lab does not know yet (otherwise refused; asked on a terminal)"


def _may_create(ctx: typer.Context, mice: list[str], create: bool) -> bool:
    """Whether unknown mice may be created: --create, or a yes on a terminal."""
    from controller.lab import unknown_mice

    if create:
        return True
    with state_of(ctx).db().reader() as tx:
        unknown = unknown_mice(tx, mice)
    if not unknown or not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False  # nothing to ask, or nobody to ask: unknown mice are refused
    return confirm(f"{', '.join(unknown)} not in the lab yet: create them?")


class _CohortChange(Protocol):
    """``create_cohort`` or ``add_to_cohort``: put mice in a cohort, return the mice created."""

    def __call__(
        self, tx: Transaction, name: str, mice: list[str], *, create_mice: bool
    ) -> list[str]: ...


def _change_cohort(
    ctx: typer.Context, change: _CohortChange, name: str, mice: list[str], create: bool
) -> None:
    """Put mice in cohort ``name`` with ``change``, creating unknown mice if allowed; say which."""
    create = _may_create(ctx, mice, create)
    with state_of(ctx).db().session() as tx:
        created = change(tx, name, mice, create_mice=create)
    for mouse_id in created:
        say(f"created mouse {mouse_id}")


@cohort_app.command("create")
def cohort_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="cohort name")],
    mice: Annotated[list[str], typer.Argument(metavar="MOUSE...", help="mouse ids")],
    create: Annotated[bool, typer.Option("--create", help=CREATE_HELP)] = False,
) -> None:
    """Create a cohort of mice."""
    from controller.lab import create_cohort

    _change_cohort(ctx, create_cohort, name, mice, create)
    say(f"created cohort {name}: {' '.join(dict.fromkeys(mice))}")


@cohort_app.command("add")
def cohort_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="cohort name")],
    mice: Annotated[list[str], typer.Argument(metavar="MOUSE...", help="mouse ids")],
    create: Annotated[bool, typer.Option("--create", help=CREATE_HELP)] = False,
) -> None:
    """Add mice to a cohort."""
    from controller.lab import add_to_cohort

    _change_cohort(ctx, add_to_cohort, name, mice, create)
    say(f"cohort {name}: added {' '.join(mice)}")


@cohort_app.command("remove")
def cohort_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="cohort name")],
    mice: Annotated[list[str], typer.Argument(metavar="MOUSE...", help="mouse ids")],
) -> None:
    """Take mice out of a cohort (the mice and their data stay)."""
    from controller.lab import remove_from_cohort

    with state_of(ctx).db().session() as tx:
        remove_from_cohort(tx, name, mice)
    say(f"cohort {name}: removed {' '.join(mice)}")


@cohort_app.command("list")
def cohort_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every cohort and its mice."""
    from controller.lab import list_cohorts

    with state_of(ctx).db().reader() as tx:
        cohorts = list_cohorts(tx)
    if as_json:
        print_json([{"cohort": name, "mice": mice} for name, mice in cohorts])
        return
    if not cohorts:
        say("no cohorts yet: `labctl cohort create NAME MOUSE...`")
    for name, mice in cohorts:
        say(f"{name}: {' '.join(mice) or '(no mice)'}")


@cohort_app.command("show")
def cohort_show(
    ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="cohort name")]
) -> None:
    """A cohort's mice with their boxes."""
    from controller.lab import box_of, cohort_members

    with state_of(ctx).db().reader() as tx:
        rows = [(m, box_of(tx, m)) for m in cohort_members(tx, name)]
    say(f"cohort {name}: {len(rows)} mice")
    for mouse_id, box in rows:
        say(f"  {mouse_id}  box {box or '- (not assigned)'}")
