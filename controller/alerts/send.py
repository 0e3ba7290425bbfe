"""Handing one message to Apprise: one URL, a title and a body; the reason when it fails.

Apprise understands one URL form for e-mail (``mailto://``), chat, push and webhooks
(``json://``); a URL may hold a token or password, so it is shown only in Apprise's
privacy form (:func:`shown`), never in an error line.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.errors import ConfigError

#: The Apprise notification type of each kind of message (a chat shows it as a colour).
NOTIFY_TYPES = {"raised": "warning", "repeat": "warning", "cleared": "success"}


def warm_up() -> None:
    """Import Apprise and its plugins now: the first import takes about a second, which
    the first alert after a rig's crash should not wait for."""
    import apprise

    apprise.Apprise.instantiate("json://127.0.0.1/")


def _service(url: str) -> Any:
    import apprise

    return apprise.Apprise.instantiate(url.strip())


def check_url(url: str) -> str:
    """The URL, stripped; ConfigError (without the URL, which may hold a secret) if Apprise
    does not understand it."""
    if _service(url) is None:
        scheme = url.split("://", 1)[0] if "://" in url else url[:0]
        raise ConfigError(
            f"Apprise does not understand the URL (scheme {scheme or 'missing'!r}): see "
            "docs/alerts.md for e-mail (mailto://), ntfy, Telegram, Slack and webhook forms"
        )
    return url.strip()


def shown(url: str) -> str:
    """The URL as it may be shown: Apprise's privacy form, passwords and tokens masked."""
    service = _service(url)
    if service is None:
        return "(a URL Apprise does not understand)"
    return str(service.url(privacy=True)).split("?", 1)[0]


def notify(url: str, title: str, body: str, what: str = "raised") -> str | None:
    """Send one message; None when Apprise reports it delivered, else why not."""
    import apprise

    service = _service(url)
    if service is None:
        return "Apprise does not understand the URL"
    sender = apprise.Apprise()
    sender.add(service)
    # Apprise's reason is captured for the history; not printed too (its logger would
    # otherwise reach the root handlers: a second line for the same failure).
    logger = logging.getLogger("apprise")
    propagate, logger.propagate = logger.propagate, False
    try:
        capture = apprise.LogCapture(level=logging.WARNING, fmt="%(message)s")  # type: ignore[no-untyped-call]
        with capture as captured:
            delivered = sender.notify(
                body=body, title=title, notify_type=NOTIFY_TYPES.get(what, "info")
            )
    finally:
        logger.propagate = propagate
    if delivered:
        return None
    lines = [line for line in captured.getvalue().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "Apprise reported the delivery failed"
