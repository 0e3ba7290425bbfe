"""labctl serve: the collector service, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import re
import signal
from types import FrameType
from typing import Annotated

import typer

from controller.cli.app import (
    app,
    fail,
    log,
    state_of,
)


@app.command()
def serve(
    ctx: typer.Context,
    heartbeat_timeout: Annotated[
        float,
        typer.Option(
            "--heartbeat-timeout", metavar="S", help="mark a silent box offline after S s"
        ),
    ] = 30.0,
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            envvar="LABCTL_CLIENT_ID",
            help="this collector's own MQTT client id (default: one per prefix, or per group "
            "and host)",
            show_default=False,
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            envvar="LABCTL_GROUP",
            metavar="NAME",
            help="share the rigs with every collector of group NAME (MQTT shared "
            "subscriptions; PostgreSQL only, each collector with its own --client-id)",
            show_default=False,
        ),
    ] = None,
    writers: Annotated[
        int | None,
        typer.Option(
            "--writers",
            envvar="LABCTL_WRITERS",
            metavar="N",
            min=1,
            max=16,
            help="threads storing the rigs' messages, each box's on one of them (default: 2 "
            "on PostgreSQL, 1 on SQLite, which has one writer at a time)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The collector: store every rig's documents and status until SIGTERM or Ctrl-C."""
    from controller.collector.ingest import IngestSettings
    from controller.collector.leases import CollectorRefused
    from controller.collector.service import Collector
    from shared.errors import ReachlabError
    from shared.ids import check_collector_id

    state = state_of(ctx)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("labctl.mqtt").setLevel(logging.WARNING)
    if group is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", group):
        fail(f"--group: invalid group name {group!r}: use 1-64 letters, digits, '_' or '-'")
    try:
        if client_id is not None:
            check_collector_id(client_id)
    except ReachlabError as exc:
        fail(f"--client-id: {exc}")
    db = state.db()
    collector = Collector(
        db,
        state.broker(),
        topics=state.topics(),
        client_id=client_id,
        group=group,
        settings=IngestSettings(heartbeat_timeout=heartbeat_timeout),
        writers=writers,
    )
    try:
        collector.claim()
    except CollectorRefused as exc:
        fail(str(exc))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the collector", signal.Signals(signum).name)
        collector.stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        collector.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
