"""labctl web: the lab's dashboard in a browser, until SIGTERM or Ctrl-C (the ``web`` extra)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.app import app, fail, state_of
from controller.web import MISSING_EXTRA
from controller.web.streams import MAX_STREAMS, MAX_STREAMS_PER_CLIENT

#: The packages of the web extra; a missing one is the extra missing, not a bug.
EXTRA_MODULES = {"starlette", "uvicorn", "plotly", "anyio", "h11"}


@app.command()
def web(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="address to listen on (0.0.0.0: the whole lab's network)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8080,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="allow starting and stopping from the page with the token in FILE "
            "(mode 600; or set LABCTL_WEB_TOKEN); without one the page is read-only",
            show_default=False,
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="a name the lab reaches the dashboard by (its host name or address), "
            "repeatable; localhost, 127.0.0.1, ::1 and the --host address always are",
            show_default=False,
        ),
    ] = None,
    max_streams: Annotated[
        int,
        typer.Option(
            "--max-streams",
            metavar="N",
            help="live streams (open pages) served at once, all clients together; more "
            "are refused (503) and their pages try again later",
        ),
    ] = MAX_STREAMS,
    max_streams_per_client: Annotated[
        int,
        typer.Option(
            "--max-streams-per-client",
            metavar="N",
            help="live streams one client address may hold at once",
        ),
    ] = MAX_STREAMS_PER_CLIENT,
) -> None:
    """The dashboard: live rig cards, learning curves per mouse and per cohort.

    It answers only requests addressed to one of its names (a page elsewhere cannot reach
    it through DNS rebinding): with --host 0.0.0.0, give the names the lab uses."""
    try:
        from controller.web.app import create_app, listen, plotly_js, serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in EXTRA_MODULES:
            fail(MISSING_EXTRA)
        raise
    try:
        plotly_js()
    except ModuleNotFoundError:
        fail(MISSING_EXTRA)
    from controller.web.control import read_token
    from controller.web.hosts import allowed_hosts

    if not 0 < port < 65536:
        fail(f"--port must be between 1 and 65535, got {port}")
    if max_streams < 1 or max_streams_per_client < 1:
        fail(
            f"--max-streams and --max-streams-per-client must be at least 1, got "
            f"{max_streams} and {max_streams_per_client}"
        )
    from controller.web.streams import StreamLimiter, make_room

    no_room = make_room(max_streams)
    if no_room is not None:
        fail(no_room)
    state = state_of(ctx)
    token = read_token(token_file)
    db = state.db()
    application = create_app(
        db,
        state.broker(),
        state.topics(),
        token=token,
        database_display=state.db_url_display,
        allowed_hosts=allowed_hosts(host, allowed_host or ()),
        streams=StreamLimiter(max_streams, max_streams_per_client),
    )
    sock = listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    mode = "control with the token" if token else "read-only"
    print(f"labctl web: http://{shown}:{port}/ ({mode}); Ctrl-C to stop", flush=True)
    logging.getLogger("labctl.web").setLevel(logging.INFO)
    try:
        serve(application, sock)
    finally:
        sock.close()
    sys.stdout.flush()
