"""Starting and stopping sessions on the boxes: ``labctl start`` and ``labctl stop``.

A start is planned from the database (which box each mouse is on, the
carry-over from its previous session) and the boxes' retained statuses
(offline, busy), then every start command goes out back to back, so a cohort
starts at the same moment, and the replies are awaited together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from controller.db import Database
from controller.lab import (
    LabError,
    assigned_mice,
    box_of,
    cohort_members,
    get_box,
    get_mouse,
    running_box,
)
from controller.mqtt import BrokerLink
from controller.store import recent_sessions
from shared.carryover import CarryOver, carry_over_from
from shared.config import TaskConfig
from shared.ids import check_box_id, new_request_id, new_session_id
from shared.protocol import Reply, StartCommand, Status, StopCommand, box_online

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
    if not box_online(status):
        return f"box {box} is offline"
    if status.state in ("running", "stopping"):
        who = f" with {status.mouse}" if status.mouse else ""
        return f"box {box} is busy: a session{who} is {status.state}"
    if status.state == "error":
        return f"box {box} reports an error state"
    return None


def select_mice(
    db: Database, mice: Sequence[str] | None, cohort: str | None, every: bool, what: str
) -> list[str]:
    """The mice a start names: MOUSE..., a cohort's or every assigned one (exactly one of them).

    :class:`LabError` (labctl's one line) for a choice that names nothing or an unknown mouse,
    before anything is sent. Used by ``labctl start`` and the web dashboard.
    """
    if sum((bool(mice), cohort is not None, every)) != 1:
        raise LabError(
            f"give the mice to {what}: MOUSE..., --cohort NAME or --all (exactly one of them)"
        )
    with db.reader() as tx:
        if cohort is not None:
            selected = cohort_members(tx, cohort)
            if not selected:
                raise LabError(f"cohort {cohort} has no mice")
        elif every:
            selected = assigned_mice(tx)
            if not selected:
                raise LabError("no mouse is assigned to a box: `labctl assign MOUSE --box BOX`")
        else:
            selected = list(dict.fromkeys(mice or []))
        for mouse_id in selected:
            get_mouse(tx, mouse_id)  # unknown ones end the command before anything is sent
    return selected


@dataclass
class StopPlan:
    """What a stop names, checked against the database; the boxes come from :meth:`targets`."""

    mice: dict[str, str | None]  # mouse -> the box it is on
    boxes: list[str]
    every: bool

    def targets(self, db: Database, link: BrokerLink) -> list[tuple[str | None, str]]:
        """The (mouse, box) pairs to stop; ``--all`` with nothing running gives none.

        A mouse is stopped where its session runs, as the boxes report it, even if it
        has since been moved or taken off that box; otherwise on the box it is on.
        """
        targets: list[tuple[str | None, str]] = [(None, box) for box in self.boxes]
        for mouse_id, on_box in self.mice.items():
            where = running_box(link.statuses, mouse_id) or on_box
            if where is None:
                raise LabError(f"mouse {mouse_id} has no running session and is not on any box")
            targets.append((mouse_id, where))
        if self.every:
            targets = [
                (status.mouse, name)
                for name, status in sorted(link.statuses.items())
                if status.state == "running"
            ]
        for _, box_id in targets:
            if box_id not in link.statuses:
                with db.reader() as tx:
                    get_box(tx, box_id)  # an unknown box: one line
        return targets


def plan_stop(
    db: Database, mice: Sequence[str] | None, boxes: Sequence[str] | None, every: bool
) -> StopPlan:
    """A stop of MOUSE..., --box BOX... or --all (exactly one), checked before the broker.

    :class:`LabError` (labctl's one line) for an unknown mouse or a bad box id. Used by
    ``labctl stop`` and the web dashboard.
    """
    if sum((bool(mice), bool(boxes), every)) != 1:
        raise LabError("give what to stop: MOUSE..., --box BOX or --all (exactly one of them)")
    assigned: dict[str, str | None] = {}
    if mice:
        with db.reader() as tx:
            for mouse_id in dict.fromkeys(mice):
                get_mouse(tx, mouse_id)  # unknown ones end the command before the broker
                assigned[mouse_id] = box_of(tx, mouse_id)
    return StopPlan(assigned, [check_box_id(b) for b in boxes or []], every)


def start_sessions(
    db: Database,
    link: BrokerLink,
    mice: Sequence[str],
    config: TaskConfig,
    metadata: dict[str, Any],
    *,
    timeout: float = 10.0,
    extra_metadata: Callable[[str, str], dict[str, Any]] | None = None,
) -> list[Outcome]:
    """Start each mouse on its box; one outcome per mouse, in the order given.

    ``extra_metadata(mouse, box)`` adds to one start's metadata (the weight given with it,
    the box's calibration in force)."""
    outcomes: dict[str, Outcome] = {}
    commands: dict[str, tuple[str, StartCommand]] = {}
    with db.reader() as tx:
        boxes = {mouse: box_of(tx, get_mouse(tx, mouse).id) for mouse in mice}
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
            request_id=new_request_id(),
            session_id=new_session_id(box),
            mouse=mouse,
            config=config.settings(),
            carry_over=carry,
            metadata={**metadata, **(extra_metadata(mouse, box) if extra_metadata else {})},
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
    link: BrokerLink, targets: Sequence[tuple[str | None, str]], *, timeout: float = 10.0
) -> list[Outcome]:
    """Send ``stop`` to each (mouse, box) target and collect the replies."""
    commands = []
    outcomes = []
    for mouse, box in targets:
        outcome = Outcome(mouse, box, False)
        outcomes.append(outcome)
        status = link.statuses.get(box)
        if not box_online(status):
            outcome.reason = f"box {box} is offline"
            continue
        command = StopCommand(request_id=new_request_id())
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
