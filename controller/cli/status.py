"""labctl status, monitor and dead-letters: what the rigs and the collector are doing."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller.cli.app import (
    State,
    app,
    console,
    fail,
    print_json,
    say,
    state_of,
    warn,
)

if TYPE_CHECKING:
    from controller.last_session import SessionMemory
    from controller.mqtt import BrokerLink


def collectors_line(collectors: list[Any]) -> str:
    """``collectors online: a (group g, host h), b ...`` for the screen."""
    shown = [
        f"{c.collector} ({f'group {c.group}, ' if c.group else ''}host {c.host})"
        for c in collectors
    ]
    return f"collectors online: {', '.join(shown)}"


def _views(state: State, link: BrokerLink | None, memory: SessionMemory | None = None) -> list[Any]:
    from controller.last_session import last_sessions
    from controller.views import box_views, stored_boxes

    stored, assigned = stored_boxes(state.db())
    last = last_sessions(state.db())
    if link is None:
        return box_views(stored, assigned, None, None, last=last)
    with link.cond:  # paho's thread adds to them
        live, texts = dict(link.statuses), dict(link.status_texts)
        events = list(link.events) if memory is not None else []
    if memory is not None:  # the monitor: what it saw live is newer than the database
        memory.update(live, events)
        last = memory.merged(last)
    return box_views(stored, assigned, live, texts, last=last)


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every box: online, state, mouse, session progress, trials, rewards, last event."""
    from controller.mqtt import BrokerError
    from controller.views import status_table

    state = state_of(ctx)
    state.db()
    broker = state.broker()
    warning = None
    collectors: list[Any] | None = None
    uncopied: dict[str, list[str]] = {}
    try:
        with state.link(check_lab=False) as link:
            views = _views(state, link)
            collectors = link.online_collectors()
            uncopied = {b: s.uncopied for b, s in sorted(link.statuses.items()) if s.uncopied}
    except BrokerError as exc:
        warning = f"{exc}; showing the database's last known state"
        views = _views(state, None)
    from dataclasses import asdict

    from controller.husbandry.notices import box_notices

    with state.db().reader() as tx:
        notices = box_notices(tx, {v.box: v.state for v in views})
    if not as_json:
        # First, so a person sees at once which lab this terminal talks to.
        say(f"database {state.db_url_display} · broker {broker.url}")
    if as_json:
        print_json(
            {
                "broker": broker.url,
                "broker_reachable": warning is None,
                "database": state.db_url_display,
                "boxes": [v.as_dict() for v in views],
                "collectors": None
                if collectors is None
                else [c.model_dump(exclude={"schema_version"}) for c in collectors],
                "warnings": notices.warnings,
                "next_mice": {b: asdict(n) for b, n in notices.next_mice.items()},
            }
        )
    elif not views:
        say("no boxes yet: start `labagent run` on the rigs and `labctl serve` here")
    else:
        console().print(status_table(views))
        for line in notices.next_lines():
            say(line)
    from controller.collector.leases import NO_COLLECTOR

    if collectors and not as_json:
        say(collectors_line(collectors))
    if collectors:
        from controller.collector.leases import WrongLab, check_same_lab
        from controller.lab import database_identity

        try:
            check_same_lab(state.db_url_display, database_identity(state.db()), collectors)
        except WrongLab as exc:
            warn(str(exc).replace(": nothing was sent;", ";"))
    if warning:
        warn(warning)
    elif not collectors:
        warn(NO_COLLECTOR)
    for line in notices.warnings:
        warn(line)
    for box, sessions in uncopied.items():
        warn(
            f"box {box} could not write the local copy of {len(sessions)} session(s) "
            f"({', '.join(sessions[:3])}): check the Pi's disk (df -h) and its <mouse>.json "
            "files; its journal keeps them until the copy is written"
        )


@app.command()
def monitor(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="print one snapshot and exit")] = False,
    duration: Annotated[
        float | None,
        typer.Option("--duration", metavar="S", help="exit after S seconds", show_default=False),
    ] = None,
    refresh: Annotated[float, typer.Option("--refresh", metavar="S", help="redraw period")] = 0.5,
) -> None:
    """A live view of every rig and the latest events (Ctrl-C to leave)."""
    from rich.live import Live

    from controller.husbandry.notices import Notices, next_for_idle_boxes
    from controller.last_session import SessionMemory
    from controller.views import monitor_view

    state = state_of(ctx)
    state.db()
    memory = SessionMemory()  # a row keeps its session's trials when the session ends
    with state.link(events=True, check_lab=False) as link:
        base = f"reachlab monitor: broker {link.settings.url}, prefix {link.topics.prefix}"

        def render() -> Any:
            views = _views(state, link, memory)
            with link.cond:
                events = list(link.events)
            collectors = link.online_collectors()
            from controller.collector.leases import NO_COLLECTOR

            line = collectors_line(collectors) if collectors else f"WARNING: {NO_COLLECTOR}"
            with state.db().reader() as tx:  # when a session ends: who goes in next
                upcoming = next_for_idle_boxes(tx, {v.box: v.state for v in views})
            nexts = "".join(f"\n{n}" for n in Notices(next_mice=upcoming).next_lines())
            return monitor_view(views, events, f"{base}\n{line}{nexts}")

        if once:
            console().print(render())
            return
        deadline = None if duration is None else time.monotonic() + duration
        # Ctrl-C (or a SIGINT from a script) ends the loop between redraws rather than
        # interrupting whatever runs (a database read, a redraw): the last view stays on
        # screen and the exit status is 0, even where a parent left SIGINT ignored.
        leave = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            leave.set()
            with link.cond:  # re-entrant: safe even if this thread holds it
                link.cond.notify_all()

        # SIGTERM (how the demo ends it) leaves the same clean way, the cursor restored.
        in_main = threading.current_thread() is threading.main_thread()  # else no signals
        previous = (
            {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            if in_main
            else {}
        )
        try:
            with Live(render(), console=console(), refresh_per_second=4, transient=False) as live:
                while not leave.is_set() and (deadline is None or time.monotonic() < deadline):
                    wait = (
                        refresh if deadline is None else min(refresh, deadline - time.monotonic())
                    )
                    link.wait_for_message(max(wait, 0.0))
                    if leave.is_set():
                        break
                    live.update(render())
                    # However busy the lab, redraw at most ten times a second.
                    link.wait_for(leave.is_set, 0.1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@app.command("dead-letters")
def dead_letters(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", help="show the N newest")
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Messages the collector could not use, newest first, with the reason.

    One row each: when it arrived, its topic, why the collector refused it, and
    the start of its payload with its size. They are kept in the database's
    dead_letters table; listing them changes nothing.
    """
    from controller.views import dead_letters_table, recent_dead_letters

    if limit < 1:
        fail(f"--limit must be at least 1, got {limit}")
    rows, total = recent_dead_letters(state_of(ctx).db(), limit)
    if as_json:
        print_json([row.as_dict() for row in rows])
    elif not rows:
        say("no dead letters")
    else:
        console().print(dead_letters_table(rows, total))
