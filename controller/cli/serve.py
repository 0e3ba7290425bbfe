"""labctl serve: the collector service, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Annotated

import typer

from controller.cli.app import (
    app,
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
            "--client-id", help="MQTT client id (default: one per prefix)", show_default=False
        ),
    ] = None,
) -> None:
    """The collector: store every rig's documents and status until SIGTERM or Ctrl-C."""
    from controller.collector import Collector
    from controller.ingest import IngestSettings

    state = state_of(ctx)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("labctl.mqtt").setLevel(logging.WARNING)
    db = state.db()
    collector = Collector(
        db,
        state.broker(),
        topics=state.topics(),
        client_id=client_id,
        settings=IngestSettings(heartbeat_timeout=heartbeat_timeout),
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the collector", signal.Signals(signum).name)
        collector.stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        collector.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
