"""Mouse.save_data_to_file (agent/savefile.py): the file gets what the mouse holds, nothing lost.

Issue 19: the save ignored a session a script deleted or merged. Now it
writes them, keeps the previous file beside the new one and says what it
removed; what another program added meanwhile is still kept.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

import agent.compat
from agent import Mouse
from agent.savefile import fingerprint

from .test_compat import later_session

DAYS = ["2020-02-10", "2020-02-11", "2020-02-12"]


def write_mouse(folder: Path, mouse_id: str = "M1") -> list[dict[str, Any]]:
    sessions = [
        later_session(day, 1581300000.0 + 86400 * n, [(0, 1), (1, n % 3)])
        for n, day in enumerate(DAYS)
    ]
    (folder / f"{mouse_id}.json").write_text(json.dumps(sessions))
    return sessions


def stored(folder: Path, mouse_id: str = "M1") -> list[dict[str, Any]]:
    sessions: list[dict[str, Any]] = json.loads((folder / f"{mouse_id}.json").read_text())
    return sessions


def test_a_deleted_session_is_saved_deleted_with_a_backup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = write_mouse(tmp_path)
    previous = (tmp_path / "M1.json").read_bytes()
    mouse = Mouse.init_from_file(tmp_path, "M1")
    del mouse.data[-1]  # the original's undo_last_session.py
    with caplog.at_level(logging.WARNING):
        report = mouse.save_data_to_file(tmp_path)
    assert stored(tmp_path) == sessions[:2]
    assert report.removed == ["session 3 (2020-02-12, 2 trials)"] and report.changed == []
    assert report.backup is not None and report.backup.parent == tmp_path
    assert report.backup.name.startswith("M1.json.") and report.backup.suffix == ".bak"
    assert report.backup.read_bytes() == previous
    assert "removed from the file: session 3 (2020-02-12, 2 trials)" in caplog.text
    assert str(report.backup) in caplog.text


def test_two_merged_sessions_are_saved_merged(tmp_path: Path) -> None:
    sessions = write_mouse(tmp_path)
    mouse = agent.compat.Mouse.init_from_file(tmp_path, "M1")
    first, second = mouse[1], mouse[2]  # the original's merge_last_two_sessions.py
    first.data["trials"].extend(second.data["trials"])
    first.data["resets"].extend(second.data["resets"])
    del mouse.data[2]
    report = mouse.save_data_to_file(tmp_path)
    saved = stored(tmp_path)
    assert len(saved) == 2 and saved[0] == sessions[0]
    assert len(saved[1]["trials"]) == 4 and len(saved[1]["resets"]) == 4
    assert report.changed == ["session 2 (2020-02-11, 4 trials)"]
    assert report.removed == ["session 3 (2020-02-12, 2 trials)"]
    assert report.backup is not None and json.loads(report.backup.read_text()) == sessions


def test_adding_sessions_keeps_no_backup_and_removes_nothing(tmp_path: Path) -> None:
    write_mouse(tmp_path)
    mouse = Mouse.init_from_file(tmp_path, "M1")
    mouse.train(config={"duration": 60}, sim=True, time_scale=float("inf"), seed=1)
    report = mouse.save_data_to_file(tmp_path)
    assert (report.sessions, report.removed, report.changed, report.backup) == (4, [], [], None)
    assert report.lines() == [f"saved 4 sessions to {tmp_path / 'M1.json'}"]
    assert not list(tmp_path.glob("*.bak"))


def test_what_another_program_added_meanwhile_is_kept_beside_a_deletion(tmp_path: Path) -> None:
    sessions = write_mouse(tmp_path)
    mouse = Mouse.init_from_file(tmp_path, "M1")
    other = Mouse.init_from_file(tmp_path, "M1")
    other.train(config={"duration": 60}, sim=True, time_scale=float("inf"), seed=2)
    other.save_data_to_file(tmp_path)
    del mouse.data[0]
    mouse.train(config={"duration": 60}, sim=True, time_scale=float("inf"), seed=3)
    report = mouse.save_data_to_file(tmp_path)
    saved = stored(tmp_path)
    assert saved[:2] == sessions[1:]
    assert saved[2]["session_id"] == other[-1].data["session_id"]
    assert saved[3]["session_id"] == mouse[-1].data["session_id"]
    assert report.kept_from_others == 1 and report.removed == ["session 1 (2020-02-10, 2 trials)"]


def test_saving_again_compares_with_what_was_saved(tmp_path: Path) -> None:
    write_mouse(tmp_path)
    mouse = Mouse.init_from_file(tmp_path, "M1")
    del mouse.data[-1]
    first = mouse.save_data_to_file(tmp_path)
    again = mouse.save_data_to_file(tmp_path)
    assert first.removed and again.removed == [] and again.backup is None
    mouse.data[0].data["notes"] = "re-scored"
    third = mouse.save_data_to_file(tmp_path)
    assert third.changed == ["session 1 (2020-02-10, 2 trials)"] and third.removed == []
    assert third.backup is not None and third.backup != first.backup
    assert len(list(tmp_path.glob("M1.json.*.bak"))) == 2


def test_a_file_the_mouse_did_not_read_gets_what_it_holds(tmp_path: Path) -> None:
    sessions = write_mouse(tmp_path)
    extra = later_session("2020-02-20", 1582200000.0, [(1, 1)])
    report = Mouse("M1", [extra]).save_data_to_file(tmp_path)
    assert stored(tmp_path) == [extra] and report.kept_from_others == 0
    assert len(report.removed) == 3 and report.backup is not None
    assert json.loads(report.backup.read_text()) == sessions
    other = tmp_path / "elsewhere"
    other.mkdir()
    mouse = Mouse.init_from_file(tmp_path, "M1")
    assert mouse.save_data_to_file(other).backup is None and stored(other) == [extra]


def test_fingerprint_ignores_key_order_and_tuples() -> None:
    assert fingerprint({"a": 1, "r": [(1.0, 0)]}) == fingerprint({"r": [[1.0, 0]], "a": 1})


def test_a_hook_saving_the_running_session_after_every_trial_keeps_no_backups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .test_compat import FakeTime, ScriptedBackend

    fake = FakeTime()
    monkeypatch.setattr(time, "time", fake.time)
    monkeypatch.setattr(time, "sleep", fake.sleep)
    sessions = write_mouse(tmp_path)
    mouse = agent.compat.Mouse.init_from_file(tmp_path, "M1")
    saves: list[Any] = []
    # The original's run_session.py: hook=functools.partial(mouse.save_data_to_file, '/tmp')
    hook = functools.partial(lambda d: saves.append(mouse.save_data_to_file(d)), tmp_path)
    mouse.train(
        ScriptedBackend(["correct"] * 5), duration=1, intertrial_interval=(300, 300), hook=hook
    )
    mouse[-1].add_data({"notes": "done"})
    last = mouse.save_data_to_file(tmp_path)
    assert len(saves) == 4 and all(not s.removed and not s.changed for s in [*saves, last])
    assert not list(tmp_path.glob("*.bak"))
    saved = stored(tmp_path)
    assert saved[:3] == sessions and saved[3]["notes"] == "done" and len(saved[3]["trials"]) == 4
