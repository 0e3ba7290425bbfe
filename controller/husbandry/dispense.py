"""Driving a box's ``dispense`` utility for a calibration, through its agent.

The command goes out like any other (:class:`~controller.mqtt.BrokerLink`); the agent
answers at once and then opens the solenoid ``count`` times. The box refuses other
utilities while it dispenses, so :func:`run_dispense` asks it to ``read_sensors``
until it answers again: then the water is in the cup and can be weighed. A simulated
rig also reports each solenoid pin's openings in that reply; when it does, the
openings seen must be exactly those asked for, or the calibration would be wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from controller.control import box_problem
from controller.lab import LabError
from controller.mqtt import BrokerLink
from shared.ids import new_request_id
from shared.protocol import DispenseCommand, ReadSensorsCommand, Reply

#: Pause between asking a dispensing box whether it is done.
POLL_S = 0.1


@dataclass
class DispenseRun:
    box: str
    spout: int
    count: int
    duration_ms: int
    #: How long the box said it would take (task seconds).
    seconds: float
    #: Openings the box's pins recorded during the run (simulated rigs), else None.
    openings_seen: int | None


def _ask(link: BrokerLink, box: str, command: BaseModel, request_id: str, timeout: float) -> Reply:
    link.send(box, command)
    reply = link.wait_replies({request_id}, timeout).get(request_id)
    if reply is None:
        raise LabError(f"no reply from box {box} within {timeout:g} s")
    return reply


def _sensors(link: BrokerLink, box: str, timeout: float) -> Reply:
    rid = new_request_id()
    return _ask(link, box, ReadSensorsCommand(request_id=rid), rid, timeout)


def run_dispense(
    link: BrokerLink,
    box: str,
    spout: int,
    count: int,
    duration_ms: int,
    *,
    timeout: float = 10.0,
    on_send: Callable[[], None] | None = None,
) -> DispenseRun:
    """Open the spout's solenoid ``count`` times for ``duration_ms`` and wait until done.

    ``on_send`` runs once the box is known to be online and ready, right before the
    command goes out (a person is told "opening ..." only when it is true)."""
    problem = box_problem(link.statuses.get(box), box)
    if problem is not None:
        raise LabError(problem)
    rid = new_request_id()
    if spout not in (0, 1):
        raise LabError(f"invalid spout {spout!r}: expected 0 (left) or 1 (right)")
    try:
        command = DispenseCommand(
            request_id=rid, spout=0 if spout == 0 else 1, count=count, duration_ms=duration_ms
        )
    except ValidationError as exc:  # count or duration out of the box's range
        reason = exc.errors()[0]["msg"]
        raise LabError(f"cannot dispense {count} x {duration_ms} ms: {reason}") from None
    before = _sensors(link, box, timeout)
    if not before.ok:
        raise LabError(f"box {box}: {before.error}")
    if on_send is not None:
        on_send()
    reply = _ask(link, box, command, rid, timeout)
    if not reply.ok:
        raise LabError(f"box {box} did not dispense: {reply.error}")
    seconds = float(reply.data.get("seconds", count * (duration_ms / 1000 + 0.2)))
    deadline = time.monotonic() + seconds + timeout
    while True:
        after = _sensors(link, box, timeout)
        if after.ok:
            break
        if after.code != "busy":
            raise LabError(f"box {box}: {after.error}")
        if time.monotonic() > deadline:
            raise LabError(f"box {box} was still dispensing {seconds + timeout:g} s later")
        link.wait_for(lambda: False, POLL_S)  # a pause that Ctrl-C still interrupts
    seen = None
    first, last = before.data.get("solenoid_openings"), after.data.get("solenoid_openings")
    if isinstance(first, list) and isinstance(last, list):
        seen = int(last[spout]) - int(first[spout])
        if seen != count:
            raise LabError(
                f"box {box} opened the solenoid {seen} times, not {count}: nothing stored "
                "(calibrate again)"
            )
    return DispenseRun(box, spout, count, duration_ms, seconds, seen)
