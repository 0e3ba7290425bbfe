"""A rig's clock offset: recorded by the collector at a live status, shown by ``labctl status``.

The collector stores, per box, the rig's calendar clock in its last live status minus
the time that status arrived; ``labctl status`` shows it once past a small tolerance.
The ingest is driven directly, as in ``test_collector_ingest``; the table is rendered
as the command prints it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from rich.console import Console

from controller.db import Box, Database
from controller.views import (
    CLOCK_TOLERANCE_S,
    BoxView,
    StoredBox,
    box_views,
    clock_note,
    status_table,
)
from shared.protocol import Status

from .test_collector_ingest import Harness

DAYS_3 = 3 * 86400.0


@pytest.fixture
def lab(db: Database) -> Iterator[Harness]:
    yield Harness(db)


def offset_of(lab: Harness, box: str = "1") -> float | None:
    with lab.db.reader() as session:
        row = session.get(Box, box)
        assert row is not None
        return row.clock_offset


def test_a_live_status_records_the_rig_s_calendar_clock_minus_the_arrival_time(
    lab: Harness,
) -> None:
    now = lab.clock()
    # A simulated rig at --time-scale 600 between sessions: its task clock is far ahead,
    # its calendar is three days ahead. The calendar is what is off.
    lab.handle(lab.status(clock=now + 10 * DAYS_3, wall_clock=now + DAYS_3 + 0.25))
    assert offset_of(lab) == pytest.approx(DAYS_3 + 0.25)
    lab.clock.advance(5)
    lab.handle(lab.status(clock=lab.clock() - 1.5))  # an agent without wall_clock: its clock
    assert offset_of(lab) == pytest.approx(-1.5)


def test_retained_and_offline_statuses_leave_the_offset_as_it_was(lab: Harness) -> None:
    now = lab.clock()
    lab.handle(lab.status(clock=now, wall_clock=now + 7.0))
    lab.clock.advance(3600)
    # The broker replays a retained status made an hour ago; the Last Will was made when the
    # agent connected: neither says how far the clock is off now.
    lab.handle(lab.status(retained=True, clock=now, wall_clock=now + 7.0))
    assert offset_of(lab) == pytest.approx(7.0)
    lab.handle(lab.status(state="offline", clock=now, wall_clock=now))
    assert offset_of(lab) == pytest.approx(7.0)


def _row(box: str, state: str, offset: float | None) -> StoredBox:
    return StoredBox(box, state, None, 100.0, None, None, offset)


def _render(views: list[BoxView]) -> dict[str, str]:
    out = io.StringIO()
    Console(file=out, width=200, soft_wrap=False).print(status_table(views))
    return {line.split()[1]: line for line in out.getvalue().splitlines() if line[:1] == "│"}


def test_labctl_status_shows_an_offset_past_the_tolerance_and_only_for_online_boxes() -> None:
    stored = {
        "1": _row("1", "idle", 0.4),
        "2": _row("2", "idle", DAYS_3 + 12),
        "3": _row("3", "idle", -(2 * 3600 + 5 * 60)),
        "4": _row("4", "offline", DAYS_3),
    }
    live = {box: Status(box=box, state="idle") for box in ("1", "2", "3")}
    live["4"] = Status(box="4", state="offline")
    views = box_views(stored, {}, live, now=200.0)
    by_box = {view.box: view for view in views}
    assert by_box["1"].clock_offset == 0.4
    assert by_box["2"].clock_offset == DAYS_3 + 12
    assert by_box["4"].clock_offset is None  # offline: its last offset says nothing now
    lines = _render(views)
    assert "clock" not in lines["1"]
    assert "clock +3d 0h ahead" in lines["2"]
    assert "clock -2h 5min behind" in lines["3"]
    assert "clock" not in lines["4"]


def test_clock_note_names_the_size_and_the_direction() -> None:
    assert clock_note(None) == ""
    assert clock_note(CLOCK_TOLERANCE_S) == ""
    assert clock_note(-CLOCK_TOLERANCE_S) == ""
    assert clock_note(2.5) == "clock +2.5 s ahead"
    assert clock_note(-75) == "clock -1min 15s behind"
    assert clock_note(DAYS_3 + 5 * 3600) == "clock +3d 5h ahead"
