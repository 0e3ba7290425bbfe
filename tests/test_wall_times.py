"""Times shown to a person are wall-clock times, never a simulated task clock ahead of now.

A session run at ``--time-scale 30`` ends 10 s after it started yet stamps its end 5
minutes on; ``labctl status`` and the monitor show when the lab learned of the end.
"""

from __future__ import annotations

import time
from datetime import datetime

from controller.last_session import SessionMemory, wall_time
from controller.views import StoredBox, box_views, status_table
from shared.documents import SessionEnd
from shared.protocol import Status
from tests.fakes import synthetic_session
from tests.test_last_session import render


def test_a_time_is_never_later_than_when_the_lab_learned_it() -> None:
    assert wall_time(1300.0, 1010.0) == 1010.0
    assert wall_time(1000.0, 1010.0) == 1000.0  # a real-time session: its own end
    assert wall_time(None, None) is None
    assert wall_time(1000.0, None) == 1000.0


def test_status_shows_a_sped_up_sessions_end_at_wall_time_not_in_the_future() -> None:
    now = time.time()
    (end,) = [d for d in synthetic_session(session_id="s1", trials=3) if isinstance(d, SessionEnd)]
    ahead = end.model_copy(update={"end_time": now + 3600})  # the task clock, an hour ahead
    memory = SessionMemory()
    idle = {"1": Status(box="1", state="idle")}
    memory.update(idle, [(now, "1", ahead)])
    last = memory.merged({})["1"]
    assert last.ended_at == now
    views = box_views(
        {"1": StoredBox("1", "idle", None, None, None, None)}, {}, idle, last=memory.merged({})
    )
    text = render(status_table(views))
    assert f"last session complete {datetime.fromtimestamp(now).strftime('%H:%M')}" in text
    assert datetime.fromtimestamp(now + 3600).strftime("%H:%M") not in text
