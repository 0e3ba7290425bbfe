"""labctl results: per-session and per-day figures of one mouse."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli.app import (
    app,
    print_json,
    say,
    state_of,
)


@app.command()
def results(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(help="mouse id")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    days: Annotated[
        bool,
        typer.Option("--days", help="one row per training day (consecutive sessions of a date)"),
    ] = False,
) -> None:
    """Per-session results: status, outcomes, d', reaction time, lift latency, water.

    Reaction time and lift latency are per-session medians. d' is the original library's, for a
    day over the day's trials (docs/analysis.md). Trials that cannot be counted (empty, cut short,
    cancelled) are in 'trials' and said under the table.
    """
    from controller.lab import get_mouse
    from controller.store import mouse_sessions
    from shared.analysis import format_table, mouse_results

    db = state_of(ctx).db()
    with db.reader() as tx:
        get_mouse(tx, mouse)
    with db.reader_engine.connect() as conn:
        sessions = mouse_sessions(conn, mouse)
    rows = mouse_results(mouse, sessions, collapse_days=days)
    if as_json:
        print_json([{"index": i, **r.as_dict()} for i, r in enumerate(rows, 1)])
        return
    if not rows:
        say(f"mouse {mouse} has no stored sessions yet")
        return
    say(format_table(rows))
