"""Every id the controller makes: command request ids, task session ids, MQTT client ids.

One place, so each kind has one shape: a request id is 16 hex digits (a reply
echoes it), a task session id names when and where it started and is unique
(``20250101T093000-<box>-<8 hex digits>``), and a short-lived labctl client id
is random, so it can never take over a collector's session.
"""

from __future__ import annotations

import time
import uuid


def new_request_id() -> str:
    """The id of one command; its reply carries it back."""
    return uuid.uuid4().hex[:16]


def new_session_id(box: str) -> str:
    """Unique, and readable in logs: ``20250101T093000-<box>-<random>``."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{box}-{uuid.uuid4().hex[:8]}"


def new_client_id(role: str) -> str:
    """A labctl command's MQTT client id: ``labctl-<role>-<8 hex digits>``."""
    return f"labctl-{role}-{uuid.uuid4().hex[:8]}"
