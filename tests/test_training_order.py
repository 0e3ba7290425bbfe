"""Training order does not rest on a rig's clock alone (issue 17 item 7).

A box two days behind records sessions dated before the mouse's latest: each new
session is still placed after that one (export, results, numbering, carry-over),
and ``labctl start`` names the box whose clock is off by more than a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.db import Box, Database
from controller.views import CLOCK_WARNING_S, clock_warnings
from tests.fakes import synthetic_session

from .test_collector_ingest import Harness

DAY = 86400.0


@pytest.fixture
def lab(db: Database) -> Iterator[Harness]:
    yield Harness(db)


def test_sessions_from_a_box_whose_clock_is_behind_follow_the_mouse_s_latest(
    lab: Harness,
) -> None:
    t0 = 1_750_000_000.0
    first = synthetic_session(mouse="M1", box="1", t0=t0, trials=3, seed=1)
    # Box 2's clock is two days behind: its two later sessions say they came first.
    second = synthetic_session(mouse="M1", box="2", t0=t0 + 3600 - 2 * DAY, trials=3, seed=2)
    third = synthetic_session(mouse="M1", box="2", t0=t0 + 7200 - 2 * DAY, trials=3, seed=3)
    for docs in (first, second, third):
        lab.handle(lab.docs(docs, box=docs[0].box))
    order = [s["session_id"] for s in lab.exported("M1")]
    assert order == [first[0].session_id, second[0].session_id, third[0].session_id]
    # The rig's own times are kept as it recorded them.
    assert lab.session_row(second[0].session_id).start_time == pytest.approx(second[0].t)


def test_a_start_names_a_box_whose_clock_is_over_a_minute_off(db: Database) -> None:
    with db.session() as tx:
        tx.add(Box(id="1", created_at=0.0, clock_offset=-2 * DAY))
        tx.add(Box(id="2", created_at=0.0, clock_offset=CLOCK_WARNING_S - 1))
        tx.add(Box(id="3", created_at=0.0, clock_offset=None))
    (line,) = clock_warnings(db, ["1", "2", "3"])
    assert line.startswith("box 1's clock is 2.0 days behind") and "NTP" in line
