"""Every shape of per-mouse file the original single-rig library wrote reads, imports and
exports again with equal content (issue 8; docs/data-format.md lists the variants).

Each variant is a small file made here in that shape, written the way the original
wrote its files (``json.dump`` defaults). "Equal" is strict: the bytes written back
equal the bytes read, so key order, number types and unknown keys all survive.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.db import open_database
from controller.files import import_files
from controller.store import MICE, TRIALS, mouse_sessions
from shared.sessionfile import read_sessions, write_sessions

from .labctl import Labctl, labctl_on_terminal

T0 = 1_600_000_000.0  # a session start, Unix seconds
DROP: Any = object()  # as a change: leave the key out


def changed(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``changes`` applied; a key changed to DROP is left out."""
    for key, value in changes.items():
        if value is DROP:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def trial(n: int, **changes: Any) -> dict[str, Any]:
    """A complete trial as the original wrote them from 2021 on, with ``changes``."""
    start = T0 + 10 + 12 * n
    data: dict[str, Any] = {
        "start": start,
        "lift_time": start + 0.4,
        "lift_paw": n % 2,
        "end": start + 1.1,
        "spout": n % 2,
        "shaping": False,
        "cue_duration": 10000.0,
        "outcome": 1,
        "spout_position": [3, 2],
    }
    return changed(data, changes)


def session(trials: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    """A session in the shape of the original's later files, with ``changes``."""
    data: dict[str, Any] = {
        "trainer": "alex",
        "weight": 24.5,
        "training_box": 3,
        "duration": 1800,
        "timeout": 8000,
        "intertrial_interval": [4000, 6000],
        "trials": [trial(0), trial(1), trial(2)] if trials is None else trials,
        "resets": [[T0 + 5.5, 0]],
        "spontaneous_reaches": [[T0 + 7.25, 1]],
        "start_time": T0,
        "end_time": T0 + 1800,
        "date": "2020-09-13",
        "notes": "",
    }
    return changed(data, changes)


def september_2019() -> dict[str, Any]:
    """The Sept-2019 "timepoints" shape: no trial dicts, lists of times per kind."""
    return {
        "date": "2019-09-19",
        "start_time": "16:02:11",
        "end_time": "16:42:11",
        "duration": 2400,
        "shaping": True,
        "spout_count": 1,
        "iti": [4000, 6000],
        "cue_duration_ms": 10000,
        "reward_duration_ms": 100,
        "spont_reach_timepoints": [1568905340.12],
        "resets_timepoints": [[1568905335.5, 1568905345.1], [1568905338.0]],
        "cue_timepoints": [[1568905350.2, 1568905370.9]],
        "cued_lift_timepoints": [[1568905351.0], [1568905371.4]],
        "touch_timepoints": [[1568905352.3]],
        "notes": "first day",
    }


def autumn_2019() -> dict[str, Any]:
    """Nov 2019: 2019 session keys with trial dicts, a single actuator, cue in seconds."""
    trials = [
        trial(0, spout_position=1, cue_duration=10, shaping=True),
        trial(1, spout_position=2, cue_duration=9.0, outcome=0, end=DROP, lift_time=DROP),
        trial(2, spout_position=2, cue_duration=9.0, outcome=2),
    ]
    return session(
        trials,
        timeout=DROP,
        intertrial_interval=DROP,
        iti=[4000, 6000],
        spout_count=2,
        reward_duration_ms=[70, 90],
        cue_duration_ms=10000,
        cued_lift_timepoints=[[T0 + 10.4], [T0 + 22.4]],
        start_time="16:02:11",
        end_time="16:32:11",
    )


def summer_2019(day: int) -> dict[str, Any]:
    """Feb-Aug 2019 (main.py): metadata typed at prompts, counts and time lists per kind."""
    return {
        "day": day,
        "trainer": "matt",
        "weight": "?",
        "box": 1,
        "prewatering": "0",
        "date": f"2019-08-0{day}",
        "start_time": "14:05" if day == 1 else "14:05:31",
        "end_time": "14:45:31",
        "spout_count": 1,
        "duration": 2400,
        "cue_ms": 10000,
        "ITI_min_ms": 4000,
        "ITI_max_ms": 6000,
        "reward_ms": 220,
        "shaping": False,
        "trial_count": 2,
        "reward_count": 1,
        "missed_count": 1,
        "sponts_pins": [],
        "iti_break_count": 1,
        "resets_sides": ["l"],
        "resets_t": [1564751200.5],
        "cue_t": [1564751210.25, 1564751230.0],
        "touch_t": [1564751211.0],
        "notes": "",
    }


# name -> the sessions of a file in that shape (each variant beside a plain session)
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "trial-shaping-null": [session([trial(0, shaping=None), trial(1)])],
    "trial-shaping-missing": [session([trial(0, shaping=DROP), trial(1)])],
    "session-level-shaping": [session([trial(0, shaping=DROP)], shaping=True)],
    "spout-position-int": [session([trial(0, spout_position=4), trial(1, spout_position=5)])],
    "spout-position-half-steps": [session([trial(0, spout_position=3.5), trial(1)])],
    "missed-trial-without-end": [session([trial(0), trial(1, outcome=0, end=DROP)])],
    "cancelled-trial-outcome-3": [session([trial(0), trial(1, outcome=3)])],
    "last-trial-start-only": [session([trial(0), {"start": T0 + 30}])],
    "last-trial-lifted": [
        session([trial(0), {"start": T0 + 30, "lift_time": T0 + 31, "lift_paw": 1}])
    ],
    "last-trial-ended-no-outcome": [
        session([trial(0), {"start": T0 + 30, "lift_time": T0 + 31, "lift_paw": 0, "end": T0 + 32}])
    ],
    "empty-trial": [session([trial(0), {}, trial(1)])],
    "cue-duration-seconds": [session([trial(0, cue_duration=10), trial(1, cue_duration=9.7)])],
    "clock-string-times": [session(start_time="09:14:02", end_time="09:44:02")],
    "clock-minutes-times": [session(start_time="09:14", end_time="09:44")],
    "prompts-of-summer-2019": [summer_2019(1), summer_2019(2)],
    "unix-float-times": [session(start_time=T0 + 0.123456, end_time=T0 + 1800.5)],
    "weight-as-string": [session(weight="21.1")],
    "no-notes": [session(notes=DROP)],
    "no-date": [session(date=DROP), session(date=DROP, start_time=T0 + 86400)],
    "no-trials-no-times": [{"trainer": "alex", "weight": 22.0}, {}, {}, session()],
    "keys-of-2019": [autumn_2019()],
    "timepoints-sept-2019": [september_2019(), autumn_2019()],
    "unknown-keys": [
        session(extra={"nested": [1, 2.0, "three", None, True]}, rig_version="v2")
        | {"spout_ids": None, "camera": {"fps": 100, "exposure": -1.5e-05}}
    ],
}


def write_like_the_original(path: Path, sessions: list[dict[str, Any]]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fd:
        json.dump(sessions, fd)  # exactly how the original saved a mouse's data
    return path.read_bytes()


def test_the_variants_really_differ_from_the_plain_shape() -> None:
    plain = json.dumps(session())
    assert all(any(json.dumps(s) != plain for s in sessions) for sessions in VARIANTS.values())
    assert VARIANTS["trial-shaping-missing"][0]["trials"][0].get("shaping", "gone") == "gone"
    assert "trials" not in september_2019()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_variant_reads_unchanged_and_writes_back_byte_for_byte(name: str, tmp_path: Path) -> None:
    sessions = copy.deepcopy(VARIANTS[name])
    original = write_like_the_original(tmp_path / "in" / f"{name}.json", sessions)
    read = read_sessions(tmp_path / "in" / f"{name}.json")
    assert read == sessions
    assert [list(s) for s in read] == [list(s) for s in sessions]  # key order too
    written = write_sessions(tmp_path / "out" / f"{name}.json", read)
    assert written.read_bytes() == original


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_variant_imports_and_exports_with_equal_content(
    name: str, tmp_path: Path, db_url: str
) -> None:
    labctl = Labctl(db_url, "mqtt://127.0.0.1:1", "unused")  # import/export need no broker
    original = write_like_the_original(tmp_path / "in" / f"{name}.json", VARIANTS[name])

    out = labctl.ok("import", str(tmp_path / "in"))
    assert f"{len(VARIANTS[name])} session(s) imported" in out
    again = labctl.ok("import", str(tmp_path / "in" / f"{name}.json"))  # nothing twice
    assert f"0 session(s) imported, {len(VARIANTS[name])} already stored" in again

    labctl.ok("export", name, "--out", str(tmp_path / "out"))
    assert (tmp_path / "out" / f"{name}.json").read_bytes() == original
    assert "unchanged" in labctl.ok("export", name, "--out", str(tmp_path / "out"))
    # What the lab looks at does not refuse the file either.
    labctl.ok("results", name, "--json")
    labctl.ok("mouse", "show", name)


def test_a_pretty_printed_file_of_summer_2019_comes_back_with_equal_content(
    labctl: Labctl, tmp_path: Path
) -> None:
    # main.py wrote json.dump(..., indent=4); every file since is compact. Content, key
    # order and number types survive; the layout becomes the compact one.
    sessions = [summer_2019(1), summer_2019(2)]
    path = tmp_path / "in" / "M1.json"
    path.parent.mkdir()
    path.write_text(json.dumps(sessions, indent=4))
    read = read_sessions(path)
    assert json.dumps(read) == json.dumps(sessions)
    labctl.ok("import", str(path))
    assert "0 session(s) imported, 2 already stored" in labctl.ok("import", str(path))
    labctl.ok("export", "M1", "--out", str(tmp_path / "out"))
    assert (tmp_path / "out" / "M1.json").read_text() == json.dumps(sessions)
    labctl.ok("results", "M1", "--json")


def test_trial_rows_of_odd_trials_keep_what_can_be_counted(tmp_path: Path) -> None:
    sessions = [
        session(
            [
                trial(0, spout_position=4, shaping=None),
                {},
                {"start": T0 + 30, "lift_time": T0 + 31, "lift_paw": 1},
                trial(3, outcome=3),
            ]
        ),
        september_2019(),
    ]
    write_like_the_original(tmp_path / "M1.json", sessions)
    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        (result,) = import_files(db, [tmp_path / "M1.json"])
        assert (result.imported, result.refused) == (2, "")
        with db.engine.connect() as conn:
            rows = conn.execute(
                TRIALS.select().order_by(TRIALS.c.session_pk, TRIALS.c.number)
            ).mappings()
            got = [
                (r["number"], r["start"], r["outcome"], r["position_left"], r["shaping"])
                for r in rows
            ]
            assert mouse_sessions(conn, "M1") == sessions
    finally:
        db.engine.dispose()
    # Values of an odd shape are NULL in the trials table; the session's JSON keeps them.
    assert got == [
        (0, T0 + 10, 1, None, None),
        (1, None, None, None, None),
        (2, T0 + 30, None, None, None),
        (3, T0 + 46, None, 3, False),
    ]


# ---------------------------------------------------------------- labctl import of a lab's folder


@pytest.fixture
def labctl(tmp_path: Path) -> Labctl:
    return Labctl(f"sqlite:///{tmp_path / 'lab.db'}", "mqtt://127.0.0.1:1", "unused")


def stored_mice(labctl: Labctl) -> list[str]:
    return [m["mouse"] for m in json.loads(labctl.ok("mouse", "list", "--json"))]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply to be a per-mouse file"),
        ('[{"trials": [{"start": 1.5, "end": 2.', "truncated: the JSON ends before it is complete"),
        ('{"trials": []}', "expected a JSON list of sessions, found a JSON object"),
        ('[{"trials": []}, "notes"]', "session 1 is a string, not a session"),
        (
            '[{"notes": "", "trials": [{"start": 1.5, "start": 2.5}]}]',
            "the key 'start' appears twice in one object; only one value would be kept",
        ),
    ],
)
def test_an_unusable_file_is_one_line_naming_it_and_creates_no_mouse(
    labctl: Labctl, tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "M1.json"
    path.write_text(text)
    line = labctl.error("import", str(path))
    assert line.startswith(f"labctl: error: {path}: {problem}")
    assert stored_mice(labctl) == []


def test_a_refused_file_leaves_what_is_stored_for_its_mouse_unchanged(
    labctl: Labctl, tmp_path: Path
) -> None:
    sessions = [session(), session(start_time=T0 + 86400, notes="day 2")]
    original = write_like_the_original(tmp_path / "lab" / "M1.json", sessions)
    labctl.ok("import", str(tmp_path / "lab" / "M1.json"))
    # A copy of the same mouse's file, cut short by a full disk: refused, nothing changes.
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "M1.json").write_bytes(original[: len(original) // 2])
    labctl.error("import", str(tmp_path / "copy"))
    labctl.ok("export", "M1", "--out", str(tmp_path / "out"))
    assert (tmp_path / "out" / "M1.json").read_bytes() == original


def test_a_file_failing_midway_is_rolled_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.store import session_text as real

    write_like_the_original(tmp_path / "M1.json", [session(), session(notes="too deep")])

    def deep_second(data: dict[str, Any]) -> str:
        if data.get("notes") == "too deep":
            raise RecursionError("maximum recursion depth exceeded while encoding")
        return real(data)

    monkeypatch.setattr("controller.files.session_text", deep_second)
    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        (result,) = import_files(db, [tmp_path / "M1.json"])
        assert result.refused == "session 1 is nested too deeply"
        with db.engine.connect() as conn:
            assert mouse_sessions(conn, "M1") == []
            assert conn.execute(MICE.select()).all() == []
    finally:
        db.engine.dispose()


def test_a_folder_imports_its_good_files_and_reports_the_refused_ones(
    labctl: Labctl, tmp_path: Path
) -> None:
    lab = tmp_path / "training_data"
    write_like_the_original(lab / "A1.json", [session(), session(notes="two")])
    write_like_the_original(lab / "B2.json", VARIANTS["timepoints-sept-2019"])
    (lab / "Broken.json").write_text("[{")
    (lab / "notes.txt").write_text("not a mouse file: not looked at")
    (lab / "._A1.json").write_bytes(b"\x00\x05\x16\x07")  # a Mac's copy of A1's metadata
    result = labctl("import", str(lab))
    assert result.exit_code == 1, result.output  # ran, but not every file was imported
    assert result.stderr.strip() == (
        f"labctl: error: {lab / 'Broken.json'}: truncated: the JSON ends before it is complete "
        "(line 1, column 3)"
    )
    table = {
        line.split()[0]: line.split()[1:]
        for line in result.stdout.splitlines()
        if line.startswith(str(lab))
    }
    assert table[str(lab / "A1.json")] == ["2", "0"]
    assert table[str(lab / "B2.json")] == ["2", "0"]
    assert table[str(lab / "Broken.json")][:3] == ["0", "0", "truncated:"]
    assert len(table) == 3
    assert "4 session(s) imported, 0 already stored, from 2 file(s); 1 file(s) refused" in (
        result.stdout
    )
    assert stored_mice(labctl) == ["A1", "B2"]

    (lab / "Broken.json").unlink()
    again = labctl.ok("import", str(lab), str(lab / "A1.json"))  # a file named twice: once
    assert "0 session(s) imported, 4 already stored, from 2 file(s); 0 file(s) refused" in again


def test_an_empty_folder_or_a_missing_path_is_refused(labctl: Labctl, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    line = labctl.error("import", str(tmp_path / "empty"))
    assert line == f"labctl: error: {tmp_path / 'empty'}: a folder with no *.json files in it"
    line = labctl.error("import", str(tmp_path / "nowhere"))
    assert line == f"labctl: error: {tmp_path / 'nowhere'}: no such file"


def test_export_to_a_path_that_is_a_file_says_it_is_not_a_folder(
    labctl: Labctl, tmp_path: Path
) -> None:
    write_like_the_original(tmp_path / "M1.json", [session()])
    labctl.ok("import", str(tmp_path / "M1.json"))
    target = tmp_path / "export.json"
    target.write_text("keep me")
    line = labctl.error("export", "--all", "--out", str(target))
    assert (
        line
        == f"labctl: error: {target} is a file, not a folder: --out names the folder to write to"
    )
    assert target.read_text() == "keep me"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_importing_a_folder_on_a_terminal_shows_a_progress_bar(
    labctl: Labctl, tmp_path: Path
) -> None:
    for number in range(5):
        write_like_the_original(tmp_path / "lab" / f"Mouse{number}.json", [session()])
    term = labctl_on_terminal(labctl, "import", str(tmp_path / "lab"))
    try:
        term.read_until_exit(60, "labctl import did not finish")
    finally:
        term.close()
    assert term.process.returncode == 0, term.errors
    text = term.text()
    assert re.search(r"importing ━+ 5/5 Mouse4\.json", text), text  # the bar, counting files
    assert "5 session(s) imported, 0 already stored, from 5 file(s); 0 file(s) refused" in text
    assert stored_mice(labctl) == [f"Mouse{number}" for number in range(5)]
