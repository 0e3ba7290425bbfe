"""Local receivers for real alert deliveries: a JSON webhook (HTTP) and an SMTP server.

Apprise's ``json://127.0.0.1:PORT/alerts`` posts ``{"title", "message", "type", ...}``
to :class:`WebhookReceiver`; ``mailto://127.0.0.1:PORT?from=...&to=...`` (plain SMTP,
no TLS: Apprise's ``mailto`` without ``mode=`` is unencrypted) reaches :class:`MailReceiver`
(aiosmtpd). Each keeps what arrived, with its arrival time, under a condition variable.
Both listen on loopback only and are stopped by :meth:`close`.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from controller.demo.broker import find_free_port


@dataclass(frozen=True)
class Received:
    """One message as it arrived: its title (or subject), its body, when."""

    title: str
    body: str
    at: float


class WebhookReceiver:
    """An HTTP server taking Apprise's JSON posts on ``/alerts``."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
                with receiver.cond:
                    receiver.messages.append(
                        Received(str(payload.get("title", "")), str(payload.get("message", "")),
                                 time.time())
                    )  # fmt: skip
                    receiver.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads the messages, not an access log

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_port}/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class MailReceiver:
    """An SMTP server (aiosmtpd) on loopback keeping every mail's subject and text."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Received] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
                part = mail.get_body(preferencelist=("plain", "html"))
                text = part.get_content() if part is not None else ""
                with receiver.cond:
                    receiver.messages.append(Received(str(mail["Subject"]), text, time.time()))
                    receiver.cond.notify_all()
                return "250 OK"

        self.port = find_free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=reachlab@lab.example&to=care@lab.example"

    def close(self) -> None:
        self.controller.stop()


def titles(receiver: WebhookReceiver | MailReceiver) -> list[str]:
    with receiver.cond:
        return [m.title for m in receiver.messages]
