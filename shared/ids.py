"""Making and checking ids: each kind of id in one shape, for both sides.

Mouse ids become file names, box and collector ids topic levels: they are checked here.
Session and command request ids are made here.

A task session id names when and where it started and is unique
(``20250101T093000-<box>-<8 hex digits>``); a request id is 16 hex digits (a reply
echoes it). Stored ids of any older shape (the agent once made 32 hex digits) stay
readable: documents and commands accept any id of 1-64 characters.
"""

import re
import time
import uuid

from shared.errors import InvalidIdError

MOUSE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BOX_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
#: A rig's broker user name is its box id (docker/mosquitto/acl), so a box id must never be
#: one of the lab's own user names: these prefixes name collectors, labctl users and viewers.
RESERVED_BOX_PREFIXES = ("controller", "collector", "labctl", "viewer")
#: A collector's MQTT client id, also a topic level of its presence.
COLLECTOR_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def check_mouse_id(mouse_id: str) -> str:
    """Return ``mouse_id`` unchanged, or raise :class:`InvalidIdError` naming it."""
    if not isinstance(mouse_id, str) or not MOUSE_ID_PATTERN.fullmatch(mouse_id):
        raise InvalidIdError(
            f"invalid mouse id {mouse_id!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return mouse_id


def check_box_id(box_id: str) -> str:
    """Return ``box_id`` unchanged, or raise :class:`InvalidIdError` naming it."""
    if not isinstance(box_id, str) or not BOX_ID_PATTERN.fullmatch(box_id):
        raise InvalidIdError(f"invalid box id {box_id!r}: use 1-32 letters, digits, '_' or '-'")
    if box_id.lower().startswith(RESERVED_BOX_PREFIXES):
        raise InvalidIdError(
            f"invalid box id {box_id!r}: names starting with "
            f"{', '.join(RESERVED_BOX_PREFIXES)} are reserved for the lab's broker users"
        )
    return box_id


def check_collector_id(client_id: str) -> str:
    """Return ``client_id`` unchanged, or raise :class:`InvalidIdError` naming it."""
    if not isinstance(client_id, str) or not COLLECTOR_ID_PATTERN.fullmatch(client_id):
        raise InvalidIdError(
            f"invalid collector client id {client_id!r}: use 1-100 letters, digits, '_' or '-'"
        )
    return client_id


def new_session_id(box: str, t: float | None = None) -> str:
    """Unique, and readable in logs: ``20250101T093000-<box>-<random>`` (local time ``t``,
    default now)."""
    when = time.localtime(time.time() if t is None else t)
    # A box name given to `labagent train` is not checked as a box id: keep the id within
    # the 64 characters a document allows, and free of spaces and slashes.
    where = re.sub(r"[^A-Za-z0-9_-]", "-", box)[:32] or "box"
    return f"{time.strftime('%Y%m%dT%H%M%S', when)}-{where}-{uuid.uuid4().hex[:8]}"


def new_request_id() -> str:
    """The id of one command; its reply carries it back."""
    return uuid.uuid4().hex[:16]
