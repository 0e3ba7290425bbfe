"""``labctl dispense`` makes its request ids with the controller's one id factory.

:mod:`shared.ids` is the one place that gives a command its request id; the
dispense utility used to make its own. The link here is a recording stand-in
that answers as an idle simulated rig does, so the test sees every command sent.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import BaseModel

import controller.husbandry.dispense as dispense
from shared.protocol import DispenseCommand, ReadSensorsCommand, Reply, Status


class RecordingLink:
    """Answers read_sensors and dispense the way an idle rig does, counting openings."""

    def __init__(self) -> None:
        self.statuses = {"1": Status(box="1", state="idle")}
        self.sent: list[BaseModel] = []
        self.replies: dict[str, Reply] = {}
        self.openings = [0, 0]

    def send(self, box: str, command: BaseModel) -> None:
        self.sent.append(command)
        data: dict[str, Any] = {}
        if isinstance(command, ReadSensorsCommand):
            data = {"solenoid_openings": list(self.openings)}
            name = "read_sensors"
        elif isinstance(command, DispenseCommand):
            self.openings[command.spout] += command.count
            data = {"seconds": 0.0}
            name = "dispense"
        else:
            raise AssertionError(f"unexpected command {command!r}")
        rid = command.request_id
        self.replies[rid] = Reply(request_id=rid, command=name, ok=True, data=data)

    def wait_replies(self, request_ids: set[str], timeout: float) -> dict[str, Reply]:
        return {rid: self.replies[rid] for rid in request_ids if rid in self.replies}

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        return bool(predicate())


def test_dispense_takes_every_request_id_from_shared_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = (f"{n:016x}" for n in itertools.count(1))
    issued: list[str] = []

    def factory() -> str:
        issued.append(next(made))
        return issued[-1]

    # Fails where dispense.py has no new_request_id of shared.ids (it made its own).
    monkeypatch.setattr(dispense, "new_request_id", factory)
    link = RecordingLink()
    run = dispense.run_dispense(link, "1", 0, 5, 70)  # type: ignore[arg-type]
    assert run.openings_seen == 5
    sent_ids = [command.request_id for command in link.sent]  # type: ignore[attr-defined]
    assert sorted(sent_ids) == issued  # every id sent came from the factory, each once
    assert [type(c).__name__ for c in link.sent] == [
        "ReadSensorsCommand",
        "DispenseCommand",
        "ReadSensorsCommand",
    ]
