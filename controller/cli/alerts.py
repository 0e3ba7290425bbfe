"""labctl alerts (where the lab's alerts go, what was sent) and labctl watch (the sender)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller.cli.app import app, console, fail, log, print_json, say, state_of, warn, when
from controller.cli.husbandry import By, who

if TYPE_CHECKING:
    from shared.protocol import Status

alerts_app = typer.Typer(
    help="Where the lab's alerts go (Apprise URLs: e-mail, phone push, chat, webhooks), and "
    "what was sent. `labctl watch` sends them.",
    no_args_is_help=True,
)


@alerts_app.command("add")
def alerts_add(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help="an Apprise URL (mailto://, ntfy://, tgram://, json://, ...); '-' reads it "
            "from stdin, so a token stays off the command line",
        ),
    ],
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="KIND",
            help="only this kind of alert, repeatable (default: all)",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        str,
        typer.Option(
            "--quiet",
            metavar="HH:MM-HH:MM",
            help="quiet hours (local time): messages wait until they end",
        ),
    ] = "",
    by: By = None,
) -> None:
    """Send the lab's alerts to URL too (`labctl alerts test` tries it)."""  # fmt: skip
    from controller.alerts.ledger import add_target
    from controller.alerts.send import check_url, shown

    if url == "-":
        url = sys.stdin.readline().strip()
    check_url(url)
    with state_of(ctx).db().session() as tx:
        target = add_target(tx, url, only or [], quiet, who(by))
        ident = target.id
    kinds = f" ({', '.join(only)} only)" if only else ""
    quiet_note = f", quiet {target.quiet}" if target.quiet else ""
    say(f"alert target {ident}: {shown(url)}{kinds}{quiet_note}")


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every alert target (URLs with their secrets masked), and the alerts holding now."""
    from sqlalchemy import select

    from controller.alerts.ledger import targets
    from controller.alerts.models import Alert
    from controller.alerts.send import shown

    rows: list[dict[str, Any]]
    with state_of(ctx).db().reader() as tx:
        rows = [
            {"id": t.id, "url": shown(t.url), "only": t.only.split(",") if t.only else [],
             "quiet": t.quiet, "added_at": t.added_at, "added_by": t.added_by}
            for t in targets(tx)
        ]  # fmt: skip
        holding: list[dict[str, Any]] = [
            {"kind": a.kind, "text": a.text, "since": a.raised_at}
            for a in tx.scalars(
                select(Alert).where(Alert.cleared_at.is_(None)).order_by(Alert.raised_at)
            )
        ]
    if as_json:
        print_json({"targets": rows, "holding": holding})
        return
    if not rows:
        say("no alert targets: `labctl alerts add URL` (docs/alerts.md has examples)")
    for r in rows:
        only = f"  only {', '.join(r['only'])}" if r["only"] else ""
        quiet = f"  quiet {r['quiet']}" if r["quiet"] else ""
        say(f"{r['id']}  {r['url']}{only}{quiet}  (added {when(r['added_at'])} by {r['added_by']})")
    for a in holding:
        say(f"holding since {when(a['since'])}: {a['kind']}: {a['text']}")


@alerts_app.command("remove")
def alerts_remove(
    ctx: typer.Context,
    target_id: Annotated[int, typer.Argument(metavar="ID", help="from `labctl alerts list`")],
) -> None:
    """Stop sending alerts to target ID (its history is kept)."""
    import time

    from controller.alerts.ledger import get_target
    from controller.alerts.send import shown

    with state_of(ctx).db().session() as tx:
        target = get_target(tx, target_id)
        target.removed_at = time.time()
        url = target.url
    say(f"alert target {target_id} removed: {shown(url)}")


@alerts_app.command("test")
def alerts_test(
    ctx: typer.Context,
    target_id: Annotated[
        int | None,
        typer.Argument(metavar="[ID]", help="one target (default: every one)", show_default=False),
    ] = None,
) -> None:
    """Send a test message now and say whether each target took it (recorded in history)."""
    import socket
    import time

    from controller.alerts.ledger import get_target, queue, targets
    from controller.alerts.models import AlertDelivery
    from controller.alerts.watch import dispatch

    db = state_of(ctx).db()
    now = time.time()
    with db.session() as tx:
        chosen = [get_target(tx, target_id)] if target_id is not None else targets(tx)
        if not chosen:
            fail("no alert targets: `labctl alerts add URL` first")
        body = f"A test of the lab's alerts from {socket.gethostname()} at {when(now)}."
        made = [
            (d.id, d.target_id)
            for d in queue(
                tx, None, "test", "reachlab test", body, "test", now, only=chosen, quiet=False
            )
        ]
    failed = 0
    logging.getLogger("labctl.watch").setLevel(logging.ERROR)  # each result is said below
    for delivery_id, ident in made:
        dispatch(db, time.time(), only_id=delivery_id)
        with db.reader() as tx:
            row = tx.get(AlertDelivery, delivery_id)
            assert row is not None
            if row.state == "sent":
                say(f"target {ident}: sent")
            else:
                failed += 1
                warn(f"target {ident}: not sent: {row.last_error} (`labctl watch` retries it)")
    if failed:
        raise typer.Exit(1)


@alerts_app.command("history")
def alerts_history(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", help="the N newest")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every message the alerts sent or tried to, newest first: when, to which target,
    what, and whether it went (or why not, and how often it was tried)."""
    from rich.table import Table

    from controller.alerts.ledger import history

    if limit < 1:
        fail(f"--limit must be at least 1, got {limit}")
    rows: list[dict[str, Any]]
    with state_of(ctx).db().reader() as tx:
        rows = [
            {"id": d.id, "created_at": d.created_at, "target": t.id, "what": d.what,
             "title": d.title, "body": d.body, "state": d.state, "attempts": d.attempts,
             "sent_at": d.sent_at, "error": d.last_error, "due_at": d.due_at}
            for d, t in history(tx, limit)
        ]  # fmt: skip
    if as_json:
        print_json(rows)
        return
    if not rows:
        say("no alerts sent yet")
        return
    view = Table(title="alerts history", title_justify="left")
    for column in ("when", "target", "what", "message", "state", "tries"):
        view.add_column(column)
    for r in rows:
        state = r["state"]
        if state == "pending" and r["error"]:
            state = f"retry {when(r['due_at'])}: {r['error']}"
        elif state == "pending" and r["due_at"] > r["created_at"]:
            state = f"held until {when(r['due_at'])} (quiet hours)"
        elif state in ("failed", "dropped"):
            state = f"{state}: {r['error']}"
        message = r["body"].splitlines()[0] if r["body"] else r["title"]
        view.add_row(when(r["created_at"]), str(r["target"]), r["what"], message, state,
                     str(r["attempts"]))  # fmt: skip
    console().print(view)


app.add_typer(alerts_app, name="alerts")


@app.command()
def watch(
    ctx: typer.Context,
    every: Annotated[
        float, typer.Option("--every", metavar="S", help="check the lab every S seconds")
    ] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="one round, then exit")] = False,
) -> None:
    """Send the lab's alerts (docs/alerts.md) until SIGTERM or Ctrl-C: rigs, sessions,
    collectors, weights, water, calibrations; a rig's crash is sent within seconds."""
    from controller.alerts.watch import Watch
    from controller.mqtt import BrokerLink

    if not 0.5 <= every <= 3600:
        fail(f"--every must be 0.5 to 3600 seconds, got {every:g}")
    state = state_of(ctx)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("labctl.mqtt").setLevel(logging.WARNING)
    db = state.db()
    broker, topics = state.broker(), state.topics()

    def make_link(on_status: Callable[[str, Status], None]) -> BrokerLink:
        return BrokerLink(broker, topics, on_status=on_status)

    sender = Watch(db, make_link, every=every)
    if once:
        sent = sender.round()
        if sender.link is not None:
            sender.link.close()
        say(f"{sent} message(s) sent")
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the alerts", signal.Signals(signum).name)
        sender.stop.set()
        sender.wake.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("watching the lab (database %s, broker %s)", db.url, broker.url)
    try:
        sender.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
