"""The dashboard's ASGI app (Starlette) and its server (uvicorn): pages, JSON, the live stream.

Pages: ``/rigs`` (live rig cards), ``/mouse/{mouse}`` (learning curves, the weight
curve and the running session trial by trial), ``/cohort`` (``labctl results`` for
every mouse, curves overlaid), ``/care`` (the animal-care staff's page: today's
table, weight curves, weighings and water recorded with the token). The browser draws
them from the JSON under ``/api`` and keeps them live from ``/api/stream`` (server-sent
events). Plotly's JavaScript comes from the ``plotly`` package installed with the
extra, so a page needs no internet access.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import importlib.util
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from controller.db import Database
from controller.husbandry.water import NeedsConfirmation
from controller.web import care
from controller.web.control import Control, ControlError
from controller.web.hosts import LOOPBACK_HOSTS, HostCheck
from controller.web.live import LiveLab
from controller.web.pages import Pages
from controller.web.streams import RETRY_AFTER_S, StreamLimiter, refusal_line
from shared import __version__
from shared.broker_url import BrokerSettings
from shared.errors import ReachlabError
from shared.ids import check_mouse_id
from shared.protocol import Topics

#: Seconds between keep-alive messages on the stream: a page that hears nothing for
#: three of them knows the stream is dead and reconnects.
PING_S = 5.0
PAGES = ("rigs", "mouse", "cohort", "care")


def plotly_js() -> Path:
    """plotly.min.js as shipped inside the ``plotly`` package (its package data)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("No module named 'plotly'", name="plotly")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ModuleNotFoundError(f"plotly is installed without {path.name}", name="plotly")
    return path


def _template(name: str) -> str:
    return (resources.files("controller.web") / "templates" / name).read_text(encoding="utf-8")


def render_page(page: str, subject: str = "") -> str:
    """A page: the shared frame around the page's body; the browser fills in the data."""
    body = _template(f"{page}.html")
    return (
        _template("base.html")
        .replace("{{page}}", page)
        .replace("{{subject}}", html.escape(subject, quote=True))
        .replace("{{version}}", html.escape(__version__))
        .replace("{{body}}", body)
    )


def sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class HeldStream(StreamingResponse):
    """A streaming response that calls ``release`` when it is over, however it ends:
    finished, the client gone, or the server stopping before its body even began."""

    def __init__(
        self,
        content: AsyncIterator[str],
        release: Callable[[], None],
        *,
        media_type: str,
        headers: dict[str, str],
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


def create_app(
    db: Database,
    settings: BrokerSettings,
    topics: Topics,
    *,
    token: str | None = None,
    database_display: str = "",
    live: LiveLab | None = None,
    reply_timeout: float = 10.0,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    streams: StreamLimiter | None = None,
) -> Starlette:
    """The dashboard for ``db`` and the broker ``settings``; control only with ``token``;
    answering only requests whose Host header is one of ``allowed_hosts``; at most as
    many live streams as ``streams`` allows (its defaults without one)."""
    lab = live or LiveLab(db, settings, topics)
    limiter = streams or StreamLimiter()
    pages = Pages(db)
    control = Control(db, settings, topics, token, timeout=reply_timeout)
    plotly_path = plotly_js()

    async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": f"labctl: error: {message}"}, status_code=status)

    async def index(request: Request) -> Response:
        return RedirectResponse("/rigs", status_code=307)

    async def rigs_page(request: Request) -> Response:
        return HTMLResponse(render_page("rigs"))

    async def mouse_page(request: Request) -> Response:
        return HTMLResponse(render_page("mouse", request.path_params["mouse"]))

    async def cohort_page(request: Request) -> Response:
        return HTMLResponse(render_page("cohort", request.query_params.get("name", "")))

    async def care_page(request: Request) -> Response:
        return HTMLResponse(render_page("care"))

    async def care_today(request: Request) -> Response:
        return JSONResponse(await in_thread(care.care_day, db))

    async def weights(request: Request) -> Response:
        try:
            check_mouse_id(request.path_params["mouse"])
            data = await in_thread(care.weight_curve, db, request.path_params["mouse"])
        except ReachlabError as exc:
            return error(str(exc), 404)
        return JSONResponse(data)

    def care_record(kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                control.authorize(request.headers.get("authorization"))
                try:
                    body = await request.json()
                except ValueError:
                    raise ControlError("the request is not JSON", 400) from None
                if not isinstance(body, dict):
                    raise ControlError("the request must be a JSON object", 400)
                result = await in_thread(care.record, db, kind, body)
            except ControlError as exc:
                return error(str(exc), exc.status)
            except NeedsConfirmation as exc:  # the page asks, and sends it again confirmed
                return error(str(exc), 409)
            except ReachlabError as exc:  # labctl's own checks: the same line, as exit 2 is
                return error(str(exc), 400)
            return JSONResponse(result)

        return endpoint

    async def plotly(request: Request) -> Response:
        return FileResponse(plotly_path, headers={"Cache-Control": "public, max-age=86400"})

    async def info(request: Request) -> Response:
        return JSONResponse(
            {
                "mode": "control" if control.enabled else "read-only",
                "broker": lab.broker_state(),
                "database": database_display,
                "version": __version__,
                "server_time": time.time(),
                "viewers": lab.viewers,  # open live streams
            }
        )

    async def rigs_state() -> dict[str, Any]:
        return {"server_time": time.time(), "broker": lab.broker_state(), "boxes": lab.cards()}

    async def rigs(request: Request) -> Response:
        return JSONResponse(await rigs_state())

    async def mouse(request: Request) -> Response:
        mouse_id = request.path_params["mouse"]
        try:
            check_mouse_id(mouse_id)
            data = await in_thread(pages.mouse, mouse_id)
        except ReachlabError as exc:
            return error(str(exc), 404)
        data["current"] = lab.current_trials(mouse_id)
        return JSONResponse(data)

    async def cohort(request: Request) -> Response:
        name = request.query_params.get("name") or None
        try:
            body = await in_thread(pages.cohort_json, name)
        except ReachlabError as exc:
            return error(str(exc), 404)
        return Response(body, media_type="application/json")

    Endpoint = Callable[[Request], Awaitable[Response]]

    def controlled(action: Callable[[dict[str, Any]], Any]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                control.authorize(request.headers.get("authorization"))
                try:
                    body = await request.json()
                except ValueError:
                    raise ControlError("the request is not JSON", 400) from None
                if not isinstance(body, dict):
                    raise ControlError("the request must be a JSON object", 400)
                result = await in_thread(action, body)
            except ControlError as exc:
                return error(str(exc), exc.status)
            except ReachlabError as exc:  # labctl's own checks: the same line, as exit 2 is
                return error(str(exc), 400)
            return JSONResponse(result.as_dict(), status_code=200 if result.ok else 207)

        return endpoint

    async def stream(request: Request) -> Response:
        client = request.client.host if request.client else ""
        refused = limiter.acquire(client)
        if refused is not None:
            return PlainTextResponse(
                refusal_line(refused),
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        subscriber = lab.subscribe()

        def release() -> None:
            lab.unsubscribe(subscriber)
            limiter.release(client)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                yield sse("snapshot", await rigs_state())
                while True:
                    try:
                        item = await asyncio.wait_for(subscriber.queue.get(), PING_S)
                    except TimeoutError:
                        yield sse("ping", {"server_time": time.time()})
                        continue
                    # Whatever else is waiting goes out in the same write.
                    items = [item]
                    while not subscriber.queue.empty() and items[-1] is not None:
                        items.append(subscriber.queue.get_nowait())
                    chunk: list[str] = []
                    for entry in items:
                        if entry is None or entry[0] == "bye":
                            if chunk:
                                yield "".join(chunk)
                            return
                        chunk.append(sse(*entry))
                    yield "".join(chunk)
            finally:
                lab.unsubscribe(subscriber)

        return HeldStream(
            events(),
            release,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await lab.start()
        try:
            yield
        finally:
            await lab.stop()

    routes = [
        Route("/", index),
        Route("/rigs", rigs_page),
        Route("/mouse/{mouse}", mouse_page),
        Route("/cohort", cohort_page),
        Route("/care", care_page),
        Route("/static/plotly.min.js", plotly),
        Mount("/static", StaticFiles(packages=[("controller.web", "static")]), name="static"),
        Route("/api/info", info),
        Route("/api/rigs", rigs),
        Route("/api/mouse/{mouse}", mouse),
        Route("/api/cohort", cohort),
        Route("/api/stream", stream),
        Route("/api/care", care_today),
        Route("/api/weights/{mouse}", weights),
        Route("/api/care/weigh", care_record("weigh"), methods=["POST"]),
        Route("/api/care/water", care_record("water"), methods=["POST"]),
        Route("/api/start", controlled(control.start), methods=["POST"]),
        Route("/api/stop", controlled(control.stop), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(HostCheck, hosts=allowed_hosts)],
    )
    app.state.live = lab
    app.state.control = control
    app.state.streams = limiter
    return app


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound now so a taken port is one clear line (OSError)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve until SIGINT or SIGTERM, then return; open streams get two seconds to end."""
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=2, access_log=False, lifespan="on"
    )
    # uvicorn handles the signals while it runs and raises them again once it has shut
    # down; with these handlers in place that second time is harmless, so labctl ends
    # with status 0 instead of dying of the signal or a KeyboardInterrupt.
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _Server(config, app.state.live).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Server(uvicorn.Server):
    """uvicorn's server, ending the open streams first when it stops: they never end on
    their own, and would hold the shutdown for the whole grace period."""

    def __init__(self, config: uvicorn.Config, live: LiveLab) -> None:
        super().__init__(config)
        self.live = live

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.live.end_streams()
        await super().shutdown(sockets)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A signal that arrives again after the server stopped."""
