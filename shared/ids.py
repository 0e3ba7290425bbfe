"""Validation of the ids people type: mouse ids become file names, box ids topic levels."""

import re

from shared.errors import InvalidIdError

MOUSE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BOX_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
#: A rig's broker user name is its box id (docker/mosquitto/acl), so a box id must never be
#: one of the lab's own user names: these prefixes name collectors, labctl users and viewers.
RESERVED_BOX_PREFIXES = ("controller", "collector", "labctl", "viewer")


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
