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
    days: Annotated[bool, typer.Option("--days", help="one row per training day")] = False,
) -> None:
    """Per-session results: trials, outcomes, d', water given."""
    from controller.lab import get_mouse
    from controller.store import mouse_sessions
    from shared.analysis import format_table, mouse_results

    db = state_of(ctx).db()
    with db.reader() as session:
        get_mouse(session, mouse)
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
