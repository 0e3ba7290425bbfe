"""The session builder (shared.documents): a session's documents into the per-mouse file's
session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.config import TaskConfig
from shared.documents import (
    CueChanged,
    Document,
    Lift,
    Reset,
    Reward,
    SessionBuilder,
    SessionEnd,
    SessionStart,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
    TrialStart,
    build_session,
)
from shared.errors import ProtocolError
from shared.sessionfile import (
    append_session,
    read_sessions,
)

from .trials import DESIGN_DEFAULTS

# ================================================================ session builder

SID = "20240501-M1-a1b2"
T0 = 1_714_550_400.0


def stream() -> list[Document]:
    """A short session: one correct trial with a lift, one missed trial without."""
    common: dict[str, Any] = {"session_id": SID, "box": "box1"}
    return [
        SessionStart(
            **common, seq=0, t=T0, mouse="M1", settings=TaskConfig().settings(),
            metadata={"trainer": "alex", "weight": "21.1", "training_box": 3},
            software_version="reachlab 0.1.0",
        ),
        Reset(**common, seq=1, t=T0 + 2, paw=1),
        TrialStart(
            **common, seq=2, t=T0 + 5, trial=0, spout=1, cue_duration=10000.0,
            spout_position=(3, 2), shaping=False,
        ),
        Lift(**common, seq=3, t=T0 + 5.5, trial=0, paw=0),
        TrialEnd(**common, seq=4, t=T0 + 6, trial=0, outcome=1),
        Reward(**common, seq=5, t=T0 + 6, spout=1, duration_ms=70),
        SpontaneousReach(**common, seq=6, t=T0 + 8, spout=0),
        SpoutsMoved(**common, seq=7, t=T0 + 9, spout_position=(4, 2)),
        CueChanged(**common, seq=8, t=T0 + 9, cue_duration=9970.0),
        TrialStart(
            **common, seq=9, t=T0 + 10, trial=1, spout=0, cue_duration=9970.0,
            spout_position=(4, 2), shaping=True,
        ),
        TrialEnd(**common, seq=10, t=T0 + 19.97, trial=1, outcome=0),
        SessionEnd(
            **common, seq=11, t=T0 + 30, status="stopped", end_time=T0 + 30,
            duration=30.0, date="2024-05-01", notes="stopped by hand",
        ),
    ]  # fmt: skip


def test_builder_puts_metadata_first_then_settings_then_data() -> None:
    data = build_session(stream())
    assert list(data) == [
        "trainer", "weight", "training_box",
        *DESIGN_DEFAULTS,
        "trials", "resets", "spontaneous_reaches", "start_time",
        "end_time", "date", "notes", "session_id", "box", "status", "software_version",
    ]  # fmt: skip
    assert data["weight"] == "21.1"
    assert data["duration"] == 30.0  # the actual length replaces the setting, in its place
    assert data["window"] == 15
    assert (data["start_time"], data["end_time"]) == (T0, T0 + 30)
    assert (data["date"], data["notes"], data["status"]) == (
        "2024-05-01",
        "stopped by hand",
        "stopped",
    )
    assert (data["session_id"], data["box"], data["software_version"]) == (
        SID,
        "box1",
        "reachlab 0.1.0",
    )
    assert data["resets"] == [[T0 + 2, 1]]
    assert data["spontaneous_reaches"] == [[T0 + 8, 0]]


def test_builder_writes_trials_in_the_original_key_order() -> None:
    first, second = build_session(stream())["trials"]
    assert list(first) == [
        "start", "lift_time", "lift_paw", "end", "spout",
        "shaping", "cue_duration", "outcome", "spout_position",
    ]  # fmt: skip
    assert first == {
        "start": T0 + 5,
        "lift_time": T0 + 5.5,
        "lift_paw": 0,
        "end": T0 + 6,
        "spout": 1,
        "shaping": False,
        "cue_duration": 10000.0,
        "outcome": 1,
        "spout_position": [3, 2],
    }
    # No lift: the lift keys are absent, as in the original library's files.
    assert list(second) == [
        "start", "end", "spout", "shaping", "cue_duration", "outcome", "spout_position",
    ]  # fmt: skip
    assert (second["end"], second["outcome"], second["shaping"]) == (T0 + 19.97, 0, True)


def test_built_session_is_a_valid_file_session_that_round_trips(tmp_path: Path) -> None:
    data = build_session(stream())
    path = append_session(tmp_path / "M1.json", data)
    assert read_sessions(path) == [data]
    assert path.read_text() == json.dumps([data])


def test_builder_counts_rewards_and_knows_when_complete() -> None:
    builder = SessionBuilder()
    docs = stream()
    for doc in docs[:-1]:
        builder.add(doc)
    assert not builder.complete
    builder.add(docs[-1])
    assert builder.complete
    assert builder.rewards == 1


def test_builder_rejects_a_seq_gap() -> None:
    builder = SessionBuilder()
    docs = stream()
    builder.add(docs[0])
    builder.add(docs[1])
    with pytest.raises(ProtocolError, match="expected seq 2, got 3"):
        builder.add(docs[3])


def test_builder_rejects_documents_after_session_end() -> None:
    builder = SessionBuilder()
    for doc in stream():
        builder.add(doc)
    late = Reset(session_id=SID, box="box1", seq=12, t=T0 + 40, paw=0)
    with pytest.raises(ProtocolError, match="after session_end"):
        builder.add(late)
    assert builder.data["resets"] == [[T0 + 2, 1]]


def test_builder_requires_session_start_first() -> None:
    with pytest.raises(ProtocolError, match="must begin with session_start"):
        SessionBuilder().add(stream()[1].model_copy(update={"seq": 0}))
