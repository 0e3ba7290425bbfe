"""The husbandry side of a start: a session's ``weight`` is the mouse's weighing of the day.

The original library stored the day's weight with each session; ``labctl start``
without ``--weight`` takes the latest weighing of the day (``--weight`` and
``--meta weight=G`` still win), and a mouse not weighed today gets no ``weight``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes import FakeRig
from tests.labctl import Labctl, boxes, labctl  # noqa: F401  # fixtures


def _start_metadata(rig: FakeRig) -> dict[str, Any]:
    (start,) = [c for c in rig.commands if getattr(c, "command", None) == "start"]
    return dict(start.metadata)


@pytest.mark.broker
@pytest.mark.parametrize(
    ("extra", "weight"),
    [((), 24.5), (("--weight", "23"), 23), (("--meta", "weight=22"), 22)],
)
def test_a_session_stores_the_days_weighing_unless_a_weight_is_given(
    labctl: Labctl,  # noqa: F811
    boxes: dict[str, FakeRig],  # noqa: F811
    extra: tuple[str, ...],
    weight: float,
) -> None:
    labctl.ok("assign", "M1", "--box", "1")
    labctl.ok("weigh", "M1", "24")
    labctl.ok("weigh", "M1", "24.5")
    result = labctl("start", "M1", "--timeout", "2", *extra)
    assert result.exit_code in (0, 1), result.output
    assert _start_metadata(boxes["1"])["weight"] == weight


@pytest.mark.broker
def test_a_mouse_not_weighed_today_gets_no_weight(
    labctl: Labctl,  # noqa: F811
    boxes: dict[str, FakeRig],  # noqa: F811
) -> None:
    labctl.ok("assign", "M1", "--box", "1")
    labctl("start", "M1", "--timeout", "2")
    assert "weight" not in _start_metadata(boxes["1"])
