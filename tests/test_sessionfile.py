"""The per-mouse file, task configuration, carry-over and the session builder (shared/*)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from shared.carryover import CarryOver, carry_over_from, last_carry_over
from shared.config import TaskConfig, format_config, generate_config, read_config
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
from shared.errors import ConfigError, DataFileError, InvalidIdError, ProtocolError
from shared.sessionfile import (
    append_session,
    dumps_sessions,
    mouse_file_path,
    read_sessions,
    validate_sessions,
    write_sessions,
)

REPO = Path(__file__).resolve().parents[1]
# The legacy sample files of DESIGN §4, as the original library wrote them.
SAMPLES = REPO / "tests" / "data"
SAMPLE_NAMES = ["legacy-clock-times.json", "later-float-times.json"]


def trial(
    spout: int, outcome: int, cue: float = 10000.0, position: list[int] | None = None
) -> dict[str, Any]:
    return {
        "start": 1.0,
        "end": 2.0,
        "spout": spout,
        "shaping": False,
        "cue_duration": cue,
        "outcome": outcome,
        "spout_position": position or [1, 1],
    }


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


# ================================================================ task configuration

DESIGN_DEFAULTS: dict[str, Any] = {
    "duration": 1800,
    "intertrial_interval": [4000, 6000],
    "timeout": 8000,
    "cue_duration": 10000,
    "min_cue_duration": 2000,
    "cue_decay": 0.997,
    "window": 15,
    "advance_threshold": 0.90,
    "advance_delay": 5,
    "advance_with_incorrects": False,
    "spout_positions": [1, 2, 3, 4, 5, 6, 7],
    "reward_duration_ms": [70, 70],
    "reward_volume_ul": 6,
    "initial_spout": "random",
    "shaping": "off",
}


def test_defaults_are_those_of_the_design_in_its_order() -> None:
    settings = TaskConfig().settings()
    assert list(settings) == list(DESIGN_DEFAULTS)
    assert settings == DESIGN_DEFAULTS
    # Whole numbers stay ints so that files read like the original library's.
    assert type(settings["duration"]) is int
    assert type(settings["cue_duration"]) is int


def test_generated_config_reads_back_as_the_defaults(tmp_path: Path) -> None:
    path = generate_config(tmp_path / "conf" / "reach.ini")
    text = path.read_text()
    assert text.startswith("[Settings]\n")
    assert "window = 15\n" in text and "# trials per spout" in text
    assert read_config(path) == TaskConfig()


def test_edited_config_file_is_read_with_its_values(tmp_path: Path) -> None:
    path = tmp_path / "reach.ini"
    path.write_text(
        "[Settings]\n"
        "# hand edited\n"
        "window = 20\n"
        "shaping = auto\n"
        "initial_spout = 1\n"
        "intertrial_interval = [1000, 2000]\n"
        "advance_with_incorrects = True\n"
        "cue_decay = 0.99\n"
    )
    config = read_config(path)
    assert config.window == 20
    assert config.shaping == "auto"
    assert config.initial_spout == 1
    assert config.intertrial_interval == (1000, 2000)
    assert config.advance_with_incorrects is True
    assert config.cue_decay == 0.99
    assert config.timeout == 8000  # keys not in the file keep their defaults


def test_format_config_writes_changed_values() -> None:
    text = format_config(TaskConfig().replace(shaping="on", window=9))
    assert "shaping = on\n" in text and "window = 9\n" in text


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("spout_count = 2", "spout_count"),  # unknown (an old library key)
        ("window = many", "window"),  # wrong type
        ("intertrial_interval = 5000", "intertrial_interval"),  # wrong type
        ("shaping = sometimes", "shaping"),  # not one of the choices
        ("cue_decay = 1.5", "cue_decay"),  # out of range
        ("window = 0", "window"),  # out of range
        ("spout_positions = [0, 8]", "spout_positions"),  # out of range
        ("intertrial_interval = [6000, 4000]", "intertrial_interval"),  # low above high
        ("reward_duration_ms = [70, 0]", "reward_duration_ms"),  # out of range
        ("min_cue_duration = 20000", "min_cue_duration"),  # above cue_duration
    ],
)
def test_bad_config_key_is_a_config_error_naming_the_key(
    tmp_path: Path, line: str, key: str
) -> None:
    path = tmp_path / "reach.ini"
    path.write_text(f"[Settings]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        read_config(path)
    message = str(info.value)
    assert key in message
    assert str(path) in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_config_from_dict_names_the_bad_key() -> None:
    with pytest.raises(ConfigError, match="'timeout'"):
        TaskConfig.from_dict({"timeout": -1})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        TaskConfig.from_dict({"colour": "blue"})


def test_missing_config_file_gives_defaults_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "absent.ini"
    with caplog.at_level(logging.WARNING, logger="shared.config"):
        assert read_config(path) == TaskConfig()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert read_config(None) == TaskConfig()


def test_generate_config_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "reach.ini"
    path.write_text("[Settings]\nwindow = 3\n")
    with pytest.raises(ConfigError, match="already exists"):
        generate_config(path)
    assert read_config(path).window == 3
    generate_config(path, overwrite=True)
    assert read_config(path).window == 15


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[Other]\nwindow = 3\n", r"no \[Settings\] section"),
        ("window = 3\n", "not a valid config file"),
        ("", r"no \[Settings\] section"),
    ],
)
def test_config_without_settings_section_is_an_error(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "reach.ini"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason):
        read_config(path)


# ================================================================ carry-over


def test_no_carry_over_without_trials() -> None:
    assert carry_over_from(None, 15) is None
    assert carry_over_from({}, 15) is None
    assert carry_over_from({"trials": []}, 15) is None


def test_carry_over_takes_last_position_shortest_last_cue_and_windows() -> None:
    previous = {
        "trials": [
            trial(0, 1, cue=7000.0, position=[2, 1]),
            trial(1, 0, cue=9000.0, position=[2, 1]),
            trial(0, 2, cue=8000.0, position=[3, 1]),
            trial(0, 1, cue=8000.0, position=[3, 1]),
            trial(1, 1, cue=8500.0, position=[3, 2]),
            trial(0, 0, cue=8000.0, position=[3, 2]),
        ]
    }
    carry = carry_over_from(previous, window=2)
    assert carry == CarryOver(
        spout_position=(3, 2),  # the last trial's
        cue_duration=8000.0,  # min(last on spout 0 = 8000, last on spout 1 = 8500), not 7000
        windows=((1, 0), (0, 1)),  # last 2 outcomes per spout, oldest first
    )
    whole = carry_over_from(previous, window=15)
    assert whole is not None
    assert whole.windows == ((1, 2, 1, 0), (0, 1))


def test_carry_over_from_an_old_file_uses_the_trials_it_can_and_never_fails() -> None:
    # The original's files: a last trial cut short by Ctrl-C, an empty or cancelled trial,
    # a single actuator's int position; before, the cut trial hid the whole session.
    previous = {
        "trials": [
            trial(0, 1, cue=7000.0, position=[2, 1]),
            trial(1, 2, cue=6500.0, position=[2, 3]),
            {**trial(1, 1), "spout_position": 4},
            {**trial(0, 3), "outcome": 3},
            {**trial(0, 1), "cue_duration": None},
            {},
            {"start": 1.0, "lift_time": 1.5, "lift_paw": 0},
        ]
    }
    carry = carry_over_from(previous, window=15)
    assert carry == CarryOver(spout_position=(2, 3), cue_duration=6500.0, windows=((1,), (2,)))
    odd: list[dict[str, Any]] = [
        {"trials": None},
        {"trials": {"0": trial(0, 1)}},
        {"trials": [{}, None, 3]},
    ]
    for session_dict in odd:
        assert carry_over_from(session_dict, 15) is None


def test_last_carry_over_skips_sessions_without_trials() -> None:
    sessions: list[dict[str, Any]] = [
        {"trials": [trial(1, 1, cue=6000.0, position=[5, 4])]},
        {"trials": []},
        {"notes": "aborted before the first trial"},
    ]
    carry = last_carry_over(sessions, window=15)
    assert carry is not None
    assert (carry.spout_position, carry.cue_duration, carry.windows) == ((5, 4), 6000.0, ((), (1,)))
    assert last_carry_over([], window=15) is None


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
