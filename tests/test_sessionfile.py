"""The per-mouse file (shared.sessionfile): byte-identical round trips, strict and lenient
reading, atomic writes, and every mistake named.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shared.errors import DataFileError, InvalidIdError
from shared.sessionfile import (
    append_session,
    dumps_sessions,
    mouse_file_path,
    read_sessions,
    validate_sessions,
    write_sessions,
)

from .conftest import SAMPLES
from .trials import spout_trial as trial

SAMPLE_NAMES = ["legacy-clock-times.json", "later-float-times.json"]


def session(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"trainer": "alex", "trials": [trial(0, 1)], "date": "2024-05-01"}
    data.update(extra)
    return data


def leftover_temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ================================================================ per-mouse files


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_file_reads_and_writes_back_byte_identical(name: str, tmp_path: Path) -> None:
    original = (SAMPLES / name).read_bytes()
    assert not original.endswith(b"\n")  # json.dumps defaults: no trailing newline
    sessions = read_sessions(SAMPLES / name)
    assert sessions and all(isinstance(s, dict) for s in sessions)

    written = write_sessions(tmp_path / name, sessions)
    assert written.read_bytes() == original
    assert dumps_sessions(sessions).encode() == original


def test_sample_file_keeps_old_value_types_and_key_order() -> None:
    first = read_sessions(SAMPLES / "legacy-clock-times.json")[0]
    assert first["start_time"] == "16:45:18"
    assert first["weight"] == "21.1"
    assert isinstance(first["duration"], float)
    assert list(first)[:3] == ["trainer", "weight", "training_box"]
    later = read_sessions(SAMPLES / "later-float-times.json")[0]
    assert isinstance(later["duration"], int) and later["duration"] == 1800


def test_missing_file_is_an_empty_history(tmp_path: Path) -> None:
    assert read_sessions(tmp_path / "nobody.json") == []


def test_file_that_is_not_a_list_is_a_one_line_data_file_error(tmp_path: Path) -> None:
    path = tmp_path / "M1.json"
    path.write_text(json.dumps({"trials": []}))
    with pytest.raises(DataFileError) as info:
        read_sessions(path)
    message = str(info.value)
    assert "expected a JSON list of sessions" in message
    assert str(path) in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_strict_validation_names_a_bad_trial_outcome_in_one_line() -> None:
    bad = session(trials=[trial(0, 1), trial(1, 7)])
    with pytest.raises(DataFileError) as info:
        validate_sessions([session(), bad], "M1.json")
    message = str(info.value)
    assert "session 1.trials.1.outcome" in message
    assert "0, 1 or 2" in message
    assert message.startswith("M1.json: ")
    assert "\n" not in message


def test_reading_keeps_sessions_strict_validation_would_refuse(tmp_path: Path) -> None:
    # Reading is lenient: odd shapes of the original's files come back as they are.
    odd = [
        {"trials": [{"start": 1.0}, {}, trial(1, 3)], "weight": "21.1"},
        {"status": "exploded", "resets": [[1.0, "left"]], "spout_position": 3.5},
        {},
    ]
    path = tmp_path / "M1.json"
    path.write_text(json.dumps(odd))
    assert read_sessions(path) == odd
    with pytest.raises(DataFileError):
        validate_sessions(odd, "M1.json")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        ("  \n", "the file is empty"),
        ('[{"trials": [{"start": 1.5, "end"', "truncated"),
        ('[{"trials": [{"start": 1.5}], "notes": "cut', "truncated"),
        ('[{"shaping": tru', "truncated"),
        ('[{"trials": [{"end": 2.', "truncated"),
        ('[{"trials": [{"end": -', "truncated"),
        ('[{"trials": []}] trailing', "not valid JSON: Extra data (line 1, column 18)"),
        ('{"trials": []}', "expected a JSON list of sessions, found a JSON object"),
        ("3", "expected a JSON list of sessions, found a number"),
        ('[{"trials": []}, [1, 2]]', "session 1 is a JSON list, not a session"),
        ("[null]", "session 0 is null, not a session"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_a_file_that_is_not_a_list_of_sessions_is_one_line_naming_file_and_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "M1.json"
    path.write_text(text)
    with pytest.raises(DataFileError) as info:
        read_sessions(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_a_key_named_twice_is_read_as_json_reads_it_unless_refused(tmp_path: Path) -> None:
    path = tmp_path / "M1.json"
    path.write_text('[{"weight": "21.1", "notes": "a", "weight": 21.5}]')
    assert read_sessions(path) == [{"weight": 21.5, "notes": "a"}]  # the agent's appends
    with pytest.raises(DataFileError, match=f"{path}: the key 'weight' appears twice"):
        read_sessions(path, refuse_duplicate_keys=True)


def test_a_byte_order_mark_does_not_stop_a_file_being_read(tmp_path: Path) -> None:
    path = tmp_path / "M1.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([session()]).encode())
    assert read_sessions(path) == [session()]


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "M1.json"
    path.write_bytes(b'[{"trainer": "\xe9"}]')
    with pytest.raises(DataFileError, match=f"{path}: not UTF-8 text"):
        read_sessions(path)


@pytest.mark.parametrize(
    ("sessions", "named"),
    [
        ([["not", "a", "session"]], "session 0"),
        ([{"trials": [{"spout": 0}]}], "session 0.trials.0.start"),
        ([{"resets": [[1.0, "left"]]}], "session 0.resets.0.1"),
        ([{"status": "exploded"}], "session 0.status"),
    ],
)
def test_validation_errors_name_the_offending_place(sessions: Any, named: str) -> None:
    with pytest.raises(DataFileError, match=named) as info:
        validate_sessions(sessions, "M1.json")
    assert str(info.value).startswith("M1.json: ")


def test_invalid_json_is_a_data_file_error(tmp_path: Path) -> None:
    path = tmp_path / "M1.json"
    path.write_text('[{"trials": [}')
    with pytest.raises(DataFileError, match="not valid JSON"):
        read_sessions(path)


def test_atomic_write_leaves_only_the_file(tmp_path: Path) -> None:
    path = write_sessions(tmp_path / "data" / "M1.json", [session()])
    assert sorted(p.name for p in path.parent.iterdir()) == ["M1.json"]
    assert json.loads(path.read_text()) == [session()]


def test_failed_rename_keeps_the_old_file_and_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_sessions(tmp_path / "M1.json", [session()])
    before = path.read_bytes()

    def refuse(src: Any, dst: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk on fire"):
        write_sessions(path, [session(), session(notes="new")])
    assert path.read_bytes() == before
    assert leftover_temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["M1.json"]


def test_permission_denied_names_the_target_file_not_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel's refusal to create a file in a folder we may not write to (tests run as
    # root here, so chmod would not refuse): mkstemp's os.open fails naming its temp file.
    folder = tmp_path / "locked"
    folder.mkdir()
    real_open = os.open

    def refuse_in_folder(file: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if Path(file).parent == folder:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, mode, **kw)

    monkeypatch.setattr(os, "open", refuse_in_folder)
    with pytest.raises(PermissionError) as info:
        write_sessions(folder / "M1.json", [session()])
    assert info.value.filename == str(folder / "M1.json")
    assert ".tmp" not in str(info.value)
    assert str(info.value) == f"[Errno 13] Permission denied: '{folder / 'M1.json'}'"


def test_a_failed_rename_names_the_target_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError(13, "Permission denied", str(src), str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError) as info:
        write_sessions(tmp_path / "M1.json", [session()])
    assert ".tmp" not in str(info.value)
    assert info.value.filename == str(tmp_path / "M1.json")
    assert leftover_temp_files(tmp_path) == []


def test_unserialisable_session_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    path = write_sessions(tmp_path / "M1.json", [session()])
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_sessions(path, [session(), session(notes={1, 2})])
    assert path.read_bytes() == before
    assert leftover_temp_files(tmp_path) == []


def test_append_session_keeps_earlier_sessions(tmp_path: Path) -> None:
    path = tmp_path / "M1.json"
    earlier = [session(date="2024-05-01", weight="21.1"), session(date="2024-05-02")]
    write_sessions(path, earlier)
    new = session(date="2024-05-03", session_id="s3", status="complete")
    append_session(path, new)
    assert read_sessions(path) == [*earlier, new]


def test_append_session_does_not_add_the_same_session_id_twice(tmp_path: Path) -> None:
    path = tmp_path / "M1.json"
    first = session(session_id="s1")
    append_session(path, first)  # creates the file
    after_first = path.read_bytes()
    append_session(path, session(session_id="s1", notes="resent"))
    assert path.read_bytes() == after_first
    append_session(path, session(session_id="s2"))
    assert [s["session_id"] for s in read_sessions(path)] == ["s1", "s2"]


def test_mouse_file_path_names_the_file_after_the_mouse(tmp_path: Path) -> None:
    assert mouse_file_path(tmp_path, "CAG-12.b_3") == tmp_path / "CAG-12.b_3.json"


@pytest.mark.parametrize("bad", ["../x", "", "a b", "x/y", ".hidden", "a" * 65])
def test_mouse_file_path_rejects_bad_mouse_ids(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        mouse_file_path(tmp_path, bad)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, ValueError)
