"""shared/ids.py: one shape of session id for labctl, labagent train and the Python API."""

from __future__ import annotations

import re
import time

from agent.clock import EventLoop
from agent.engine import TaskEngine
from agent.hardware import PinMap, Rig, mock_pin_factory
from shared.config import TaskConfig
from shared.documents import SessionStart
from shared.ids import new_request_id, new_session_id

SESSION_ID = re.compile(r"^\d{8}T\d{6}-[A-Za-z0-9_-]{1,32}-[0-9a-f]{8}$")


def test_a_session_id_names_its_local_start_time_and_box() -> None:
    t = time.mktime((2025, 6, 15, 9, 30, 0, 0, 0, -1))
    sid = new_session_id("1", t)
    assert sid.startswith("20250615T093000-1-")
    assert SESSION_ID.fullmatch(sid)
    assert new_session_id("1", t) != sid


def test_a_box_name_that_is_no_box_id_still_makes_a_valid_session_id() -> None:
    sid = new_session_id("the big box / left" * 5)
    assert SESSION_ID.fullmatch(sid)
    # what a session document accepts
    SessionStart(
        session_id=sid, box="x", seq=0, t=0.0, mouse="M1", settings={}, software_version=""
    )


def test_a_request_id_is_16_hex_digits() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", new_request_id())


def test_the_engine_makes_its_own_session_id_in_the_same_shape() -> None:
    """The engine without a given id (labagent train, the Python API): the shape labctl
    gives, no longer 32 hex digits."""
    loop = EventLoop(float("inf"), start_time=1_000_000.0)
    engine = TaskEngine(
        config=TaskConfig.from_dict({}),
        clock=loop,
        rig=Rig(PinMap(), mock_pin_factory(), loop),
        box="local",
    )
    assert SESSION_ID.fullmatch(engine.session_id)
    assert "-local-" in engine.session_id
