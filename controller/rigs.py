"""Starting and stopping sessions on the boxes: ``labctl start`` and ``labctl stop``.

A start is planned from the database (which box each mouse is on, the
carry-over from its previous session) and the boxes' retained statuses
(offline, busy), then every start command goes out back to back, so a cohort
starts at the same moment, and the replies are awaited together.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.db import Database
from controller.lab import box_of, get_mouse
from controller.mqtt import LabLink
from controller.store import recent_sessions
from shared.carryover import CarryOver, carry_over_from
from shared.config import TaskConfig
from shared.protocol import Reply, StartCommand, Status, StopCommand

#: Looked at when searching for the carry-over: older sessions than this are stale.
CARRY_OVER_LOOKBACK = 50


@dataclass
class Outcome:
    """What became of one mouse's (or box's) command."""

    mouse: str | None
    box: str | None
    ok: bool
    reason: str = ""
    session_id: str | None = None
    carry_over: bool = False


def new_session_id(box: str) -> str:
    """Unique, and readable in logs: ``20250101T093000-<box>-<random>``."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{box}-{uuid.uuid4().hex[:8]}"


def carry_over_for(db: Database, mouse: str, window: int) -> CarryOver | None:
    """Carry-over from the mouse's most recent stored session that had trials."""
    with db.reader_engine.connect() as conn:
        for number, session in enumerate(recent_sessions(conn, mouse)):
            if number >= CARRY_OVER_LOOKBACK:
                return None
            carry = carry_over_from(session, window)
            if carry is not None:
                return carry
    return None


def box_problem(status: Status | None, box: str) -> str | None:
    """Why a start cannot go to this box now, from its retained status (None: it can)."""
    if status is None:
        return f"box {box} is offline: it has never reported to the broker (is labagent running?)"
    if status.state == "offline":
        return f"box {box} is offline"
    if status.state in ("running", "stopping"):
        who = f" with {status.mouse}" if status.mouse else ""
        return f"box {box} is busy: a session{who} is {status.state}"
    if status.state == "error":
        return f"box {box} reports an error state"
    return None


def start_sessions(
    db: Database,
    link: LabLink,
    mice: Sequence[str],
    config: TaskConfig,
    metadata: dict[str, Any],
    *,
    timeout: float = 10.0,
) -> list[Outcome]:
    """Start each mouse on its box; one outcome per mouse, in the order given."""
    outcomes: dict[str, Outcome] = {}
    commands: dict[str, tuple[str, StartCommand]] = {}
    with db.reader() as session:
        boxes = {mouse: box_of(session, get_mouse(session, mouse).id) for mouse in mice}
    for mouse in mice:
        box = boxes[mouse]
        if box is None:
            outcomes[mouse] = Outcome(mouse, None, False, "no box assigned (labctl assign)")
            continue
        problem = box_problem(link.statuses.get(box), box)
        if problem is not None:
            outcomes[mouse] = Outcome(mouse, box, False, problem)
            continue
        carry = carry_over_for(db, mouse, config.window)
        command = StartCommand(
            request_id=uuid.uuid4().hex[:16],
            session_id=new_session_id(box),
            mouse=mouse,
            config=config.settings(),
            carry_over=carry,
            metadata=metadata,
        )
        commands[mouse] = (box, command)
        outcomes[mouse] = Outcome(
            mouse, box, False, "", session_id=command.session_id, carry_over=carry is not None
        )
    # All the planning is done before the first command, so they leave together.
    for box, command in commands.values():
        link.send(box, command)
    replies = link.wait_replies({c.request_id for _, c in commands.values()}, timeout)
    for mouse, (_, command) in commands.items():
        _judge(outcomes[mouse], replies.get(command.request_id), timeout)
    return [outcomes[mouse] for mouse in mice]


def stop_boxes(
    link: LabLink, targets: Sequence[tuple[str | None, str]], *, timeout: float = 10.0
) -> list[Outcome]:
    """Send ``stop`` to each (mouse, box) target and collect the replies."""
    commands = []
    outcomes = []
    for mouse, box in targets:
        outcome = Outcome(mouse, box, False)
        outcomes.append(outcome)
        status = link.statuses.get(box)
        if status is None or status.state == "offline":
            outcome.reason = f"box {box} is offline"
            continue
        command = StopCommand(request_id=uuid.uuid4().hex[:16])
        commands.append((outcome, command))
        link.send(box, command)
    replies = link.wait_replies({c.request_id for _, c in commands}, timeout)
    for outcome, command in commands:
        reply = replies.get(command.request_id)
        _judge(outcome, reply, timeout)
        if reply is not None and reply.ok:
            outcome.session_id = reply.data.get("session_id")
    return outcomes


def _judge(outcome: Outcome, reply: Reply | None, timeout: float) -> None:
    if reply is None:
        outcome.ok = False
        outcome.reason = f"no reply from box {outcome.box} within {timeout:g} s"
    elif reply.ok:
        outcome.ok = True
        outcome.reason = "already running" if reply.data.get("already_running") else ""
    else:
        outcome.ok = False
        outcome.reason = reply.error or reply.code or "refused"
