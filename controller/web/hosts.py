"""The dashboard's Host header check: only the names the lab gave it (DNS rebinding).

A web page from anywhere can make a browser on the lab's machine send requests to
``127.0.0.1:8080`` under a name the attacker controls (DNS rebinding) and read the
answers; the ``Host`` header still carries the attacker's name. The dashboard answers
only requests whose host is one of its allowed names: the loopback names by default,
the address it listens on, and each ``labctl web --allowed-host NAME``.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: Names a browser on the dashboard's own machine uses for it.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

#: Listening on these means every address of the machine: they name no host of their own.
ANY_ADDRESS = ("0.0.0.0", "::", "")


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port; IPv6 without its brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def allowed_hosts(listen_host: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The loopback names, the address listened on (unless it is every address), and
    ``extra`` (``--allowed-host``), each as :func:`host_name` gives it."""
    names = [*LOOPBACK_HOSTS, *(host_name(name) for name in extra)]
    if listen_host not in ANY_ADDRESS:
        names.append(host_name(listen_host) if ":" not in listen_host else listen_host.lower())
    return tuple(dict.fromkeys(names))


class HostCheck:
    """ASGI middleware: 421 for an HTTP request (or a closed WebSocket) from another host."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if host_name(header) in self.hosts:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        answer = PlainTextResponse(
            f"labctl: error: host {header!r} is not one of this dashboard's names: start it "
            "with labctl web --allowed-host NAME",
            status_code=421,
        )
        await answer(scope, receive, send)
