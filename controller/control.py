"""Starting and stopping sessions for every caller: typed requests in, outcomes and warnings out.

``labctl start`` and ``labctl stop``, the dashboard and any later caller (alerts,
schedules) build a :class:`StartRequest` or a :class:`StopRequest` and call
:func:`start` or :func:`stop`; the whole command is composed here, once: the mice
chosen (MOUSE..., a cohort, every assigned mouse, or a schedule's shift), the lab
link, the collector check, the husbandry plan (weight gate, overrides, calibration
metadata), the start commands sent back to back so that a cohort starts at the same
moment, the replies awaited together, the refusals and the overrides kept.

What comes back is data: an :class:`Outcome` per mouse (or box) with a code, and
:class:`StartWarning` items with a kind. A request that breaks a rule raises
:class:`RequestError` naming the :data:`Problem`; each caller words all of these in
its own terms (labctl's flags, the dashboard's JSON fields).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.collector.leases import NO_COLLECTOR
from controller.db import Database
from controller.husbandry.schedule import current_entries, shift_slots
from controller.husbandry.starts import finish_start, place_shift_mice, prepare_start
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
from controller.views import clock_warnings
from shared.carryover import CarryOver, carry_over_from
from shared.config import (
    SETTING_KEYS,
    ReservedKeyError,
    TaskConfig,
    check_metadata,
    check_not_reserved,
)
from shared.ids import check_box_id, new_request_id, new_session_id
from shared.protocol import Reply, StartCommand, Status, StopCommand, box_online

#: Looked at when searching for the carry-over: older sessions than this are stale.
CARRY_OVER_LOOKBACK = 50

#: A rule of a request that was broken; the caller words it (labctl names its flags).
Problem = Literal[
    "choose_mice",  # a start names none or several of: mice, a cohort, every assigned mouse
    "choose_stop",  # a stop names none or several of: mice, a cohort, boxes, every session
    "weight_twice",  # the weight given both as the weight and in the metadata
    "weight_one_mouse",  # a weight with other than exactly one mouse
    "shift_needs_cohort",  # a shift without its cohort, or with mice or every mouse
    "force_needs_reason",  # an override of the weight check without a reason
    "reserved_key",  # metadata names a key the session owns (``key`` says which)
]

#: What became of one mouse's (or box's) command.
OutcomeCode = Literal[
    "ok",  # started or stopped
    "already_running",  # the box already runs this very session (a retried start)
    "no_box",  # the mouse is on no box
    "other_shift",  # on no box now: its schedule's box holds another shift
    "box_unavailable",  # offline, busy or in error, from its status: nothing was sent
    "no_reply",  # sent, and no reply came in time
    "refused_by_box",  # the box replied with an error
    "weight_check",  # held back by the weight check (no override)
    "shift_waiting",  # a shift's mouse whose box (or own session) still runs
]

#: What a warning is about; its text names the mouse or box.
WarningKind = Literal["no_collector", "weight", "calibration", "clock"]


class RequestError(LabError):
    """A start or stop request that breaks one of its rules; ``problem`` says which."""

    def __init__(self, problem: Problem, key: str | None = None) -> None:
        super().__init__(problem)
        self.problem: Problem = problem
        #: With ``reserved_key``: the metadata key; ``setting`` when a task setting owns it.
        self.key = key
        self.setting = key is not None and key in SETTING_KEYS


@dataclass
class Outcome:
    """What became of one mouse's (or box's) command.

    ``reason`` says what went wrong; what a person can do about it is the caller's to
    add, by ``code``, in its own words."""

    mouse: str | None
    box: str | None
    ok: bool
    reason: str = ""
    session_id: str | None = None
    carry_over: bool = False
    code: OutcomeCode = "ok"


@dataclass(frozen=True)
class StartWarning:
    """Something a person should know about a start; the start went on."""

    kind: WarningKind
    text: str


@dataclass(frozen=True, kw_only=True)
class StartRequest:
    """A start: exactly one of ``mice``, ``cohort`` or ``every`` (or ``cohort`` and ``shift``).

    Built from what a person gave; the rules between its fields are checked here, so a
    broken one raises :class:`RequestError` before the database or the broker is asked.
    """

    mice: Sequence[str] = ()
    cohort: str | None = None
    every: bool = False
    shift: int | None = None
    config: TaskConfig = field(default_factory=TaskConfig)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    weight: float | None = None
    force: bool = False
    reason: str | None = None
    by: str
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.mice, str):
            raise TypeError("mice: a sequence of mouse ids, not one string")
        check_metadata(dict(self.metadata))  # ConfigError: a session could not store it
        try:
            check_not_reserved(dict(self.metadata))
        except ReservedKeyError as exc:
            raise RequestError("reserved_key", exc.key) from None
        if self.weight is not None and "weight" in self.metadata:
            raise RequestError("weight_twice")
        if self.weight is not None and len(dict.fromkeys(self.mice)) != 1:
            raise RequestError("weight_one_mouse")
        if self.shift is not None and (self.cohort is None or self.mice or self.every):
            raise RequestError("shift_needs_cohort")
        if self.force and not (self.reason or "").strip():
            raise RequestError("force_needs_reason")
        if self.shift is None and sum((bool(self.mice), self.cohort is not None, self.every)) != 1:
            raise RequestError("choose_mice")


@dataclass(frozen=True, kw_only=True)
class StopRequest:
    """A stop: exactly one of ``mice``, ``cohort`` (its mice), ``boxes`` or ``every``
    (every running session)."""

    mice: Sequence[str] = ()
    cohort: str | None = None
    boxes: Sequence[str] = ()
    every: bool = False
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.mice, str) or isinstance(self.boxes, str):
            raise TypeError("mice and boxes: sequences of ids, not one string")
        chosen = (bool(self.mice), self.cohort is not None, bool(self.boxes), self.every)
        if sum(chosen) != 1:
            raise RequestError("choose_stop")


@dataclass
class StartResult:
    """What a start did, in the order a person reads it."""

    outcomes: list[Outcome]
    #: Before the commands: no collector online, the weight check's findings.
    warnings: list[StartWarning] = field(default_factory=list)
    #: A shift put on its boxes: who went in which box, who was moved or taken off.
    placements: list[str] = field(default_factory=list)
    #: After the commands: stale or drifting calibrations of the boxes started on.
    box_warnings: list[StartWarning] = field(default_factory=list)
    #: Mice started despite the weight check, their override recorded.
    overridden: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def started(self) -> int:
        return sum(o.ok for o in self.outcomes)


@dataclass
class StopResult:
    """What a stop did; ``nothing_running`` for a stop of every session when none runs."""

    outcomes: list[Outcome]
    nothing_running: bool = False

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def stopped(self) -> int:
        return sum(o.ok for o in self.outcomes)


#: Opens the lab's link to the broker for one command (labctl's, or the dashboard's own).
LinkOpener = Callable[[], AbstractContextManager[BrokerLink]]


# ---------------------------------------------------------------- the two commands


def start(db: Database, open_link: LinkOpener, request: StartRequest) -> StartResult:
    """Start the request's mice, each on its box, all at the same moment.

    :class:`~controller.lab.LabError` (an unknown mouse, cohort or shift) before anything
    is sent; otherwise one outcome per mouse, refused ones included."""
    if request.shift is None:
        selected = select_mice(db, request.mice, request.cohort, request.every)
    else:
        assert request.cohort is not None  # the request's own rule
        with db.reader() as tx:
            shift_slots(tx, request.cohort, request.shift)  # no such shift: nothing sent
        selected = []
    result = StartResult(outcomes=[])
    waiting: dict[str, str] = {}
    with open_link() as link:
        if not link.online_collectors():
            result.warnings.append(StartWarning("no_collector", NO_COLLECTOR))
        if request.shift is not None and request.cohort is not None:
            placed = place_shift_mice(db, request.cohort, request.shift, link.statuses)
            selected, waiting, result.placements = placed.mice, placed.waiting, placed.notes
        plan = prepare_start(
            db, selected, weight=request.weight, force=request.force,
            reason=request.reason, by=request.by, weight_in_metadata="weight" in request.metadata,
        )  # fmt: skip
        result.warnings += [StartWarning("weight", line) for line in plan.warnings]
        result.outcomes = start_sessions(
            db, link, plan.allowed, request.config, dict(request.metadata),
            timeout=request.timeout, extra_metadata=plan.metadata_for,
        )  # fmt: skip
    # The box of a mouse held back is named in its row, as in the warning line above it.
    with db.reader() as tx:
        held_on = {mouse: box_of(tx, mouse) for mouse in plan.refused}
    result.outcomes += [
        Outcome(mouse, held_on[mouse], False, f"weight check: {why}", code="weight_check")
        for mouse, why in plan.refused.items()
    ]
    result.outcomes += [
        Outcome(mouse, None, False, why, code="shift_waiting") for mouse, why in waiting.items()
    ]
    started = {o.mouse: o.session_id for o in result.outcomes if o.ok and o.mouse}
    finish_start(plan, started)
    result.box_warnings = [StartWarning("calibration", line) for line in plan.box_warnings]
    started_boxes = sorted({o.box for o in result.outcomes if o.ok and o.box})
    result.box_warnings += [
        StartWarning("clock", line) for line in clock_warnings(db, started_boxes)
    ]
    result.overridden = [mouse for mouse in plan.forced if mouse in started]
    return result


def stop(db: Database, open_link: LinkOpener, request: StopRequest) -> StopResult:
    """Stop the request's sessions: a mouse where its session runs, else on its box.

    :class:`~controller.lab.LabError` (an unknown mouse, cohort or box) before anything
    is sent."""
    mice = request.mice
    if request.cohort is not None:
        mice = select_mice(db, (), request.cohort, False)
    plan = plan_stop(db, mice, request.boxes, request.every)
    with open_link() as link:
        targets = plan.targets(db, link)
        if request.every and not targets:
            return StopResult(outcomes=[], nothing_running=True)
        return StopResult(outcomes=stop_boxes(link, targets, timeout=request.timeout))


# ---------------------------------------------------------------- the steps


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


def select_mice(db: Database, mice: Sequence[str], cohort: str | None, every: bool) -> list[str]:
    """The mice a start names: ``mice``, a cohort's or every assigned one, each known.

    :class:`LabError` for a choice that names nothing or an unknown mouse, before anything
    is sent."""
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
            selected = list(dict.fromkeys(mice))
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
        """The (mouse, box) pairs to stop; every session with nothing running gives none.

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
                    get_box(tx, box_id, retired=True)  # an unknown box: one line
        return targets


def plan_stop(db: Database, mice: Sequence[str], boxes: Sequence[str], every: bool) -> StopPlan:
    """A stop of mice, boxes or every session, checked before the broker is asked.

    :class:`LabError` for an unknown mouse, :class:`~shared.errors.InvalidIdError` for a
    bad box id."""
    assigned: dict[str, str | None] = {}
    if mice:
        with db.reader() as tx:
            for mouse_id in dict.fromkeys(mice):
                get_mouse(tx, mouse_id)  # unknown ones end the command before the broker
                assigned[mouse_id] = box_of(tx, mouse_id)
    return StopPlan(assigned, [check_box_id(b) for b in boxes], every)


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
        scheduled = {e.mouse_id: e for e in current_entries(tx) if boxes.get(e.mouse_id) is None}
    for mouse in mice:
        box = boxes[mouse]
        if box is None and mouse in scheduled:
            entry = scheduled[mouse]
            outcomes[mouse] = Outcome(
                mouse, entry.box_id, False,
                f"not on its box now: it is in shift {entry.shift} of cohort "
                f"{entry.cohort_name} on box {entry.box_id}, which holds another shift; start "
                f"its shift: labctl start --cohort {entry.cohort_name} --shift {entry.shift}",
                code="other_shift",
            )  # fmt: skip
            continue
        if box is None:
            outcomes[mouse] = Outcome(mouse, None, False, "no box assigned", code="no_box")
            continue
        problem = box_problem(link.statuses.get(box), box)
        if problem is not None:
            outcomes[mouse] = Outcome(mouse, box, False, problem, code="box_unavailable")
            continue
        carry = carry_over_for(db, mouse, config.window)
        command = StartCommand(
            request_id=new_request_id(),
            session_id=new_session_id(box),
            mouse=mouse,
            config=config,
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
        if status is None or not box_online(status):
            outcome.reason = f"box {box} is offline"
            outcome.code = "box_unavailable"
            continue
        if status.session_id is None:
            outcome.reason = f"no session is running on box {box}"
            outcome.code = "refused_by_box"
            continue
        # The stop names the session its status shows, so a late one never ends the next.
        command = StopCommand(request_id=new_request_id(), session_id=status.session_id)
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
        outcome.ok, outcome.code = False, "no_reply"
        outcome.reason = f"no reply from box {outcome.box} within {timeout:g} s"
    elif reply.ok:
        outcome.ok = True
        already = bool(reply.data.get("already_running"))
        outcome.code = "already_running" if already else "ok"
        outcome.reason = "already running" if already else ""
    else:
        outcome.ok, outcome.code = False, "refused_by_box"
        outcome.reason = reply.error or reply.code or "refused"
