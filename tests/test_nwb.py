"""NWB export (issue 19): files DANDI accepts, for recorded, aborted, imported and empty sessions.

Each file is checked the way DANDI checks an upload: nwbinspector with its DANDI
configuration (no CRITICAL, no BEST_PRACTICE_VIOLATION) and pynwb's validation; it
is read back with pynwb and its trials compared with the session's. Recorded
sessions are run by the real task engine on a simulated rig and stored through the
collector's ingest, as a box's documents are. The subject commands and the refusals
need no pynwb and always run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from agent.runtime import RigRuntime
from controller.collector.ingest import Incoming, Ingest, IngestSettings, RigCommand
from controller.db import Database, open_database
from controller.files import import_files
from controller.husbandry.calibration import record_calibration
from controller.lab import get_mouse
from controller.nwb.content import cue_seconds, session_content
from controller.nwb.subject import Subject, SubjectError, apply, checked, read_subjects
from controller.store import mouse_sessions
from shared.config import TaskConfig
from shared.documents import CueChanged, Document, SpoutsMoved, dump_document
from shared.protocol import Status, Topics, encode

from .fakes import synthetic_session
from .labctl import Labctl
from .test_legacy_files import (
    DROP,
    autumn_2019,
    september_2019,
    session,
    summer_2019,
    trial,
    write_like_the_original,
)

HAS_NWB = find_spec("pynwb") is not None and find_spec("nwbinspector") is not None
needs_nwb = pytest.mark.skipif(
    not HAS_NWB, reason="the nwb extra (pynwb, nwbinspector) is not installed"
)
TOPICS = Topics("reachlab")
START = 1_790_000_000.0  # 2026-09-21
SUBJECT = {"species": "Mus musculus", "sex": "F", "date_of_birth": "2026-06-01"}


class _NoCommands:
    def send(self, box: str, command: RigCommand) -> None:
        pass


def recorded_documents(
    *, seed: int = 3, duration: float = 900, abort_after: int | None = None
) -> list[Document]:
    """A session run by the task engine on a simulated rig: its documents."""
    runtime = RigRuntime.create(sim=True, time_scale=math.inf, seed=seed, start_time=START)
    docs: list[Document] = []
    try:
        engine = runtime.new_session(
            config=TaskConfig(duration=duration),
            mouse="M1",
            box="1",
            sink=docs.append,
            metadata={"trainer": "Doe, Jane", "weight": 24.1},
        )
        if abort_after is None:
            runtime.run_session(engine)
        else:
            engine.start()
            runtime.loop.run(
                until=lambda: engine.trial >= abort_after or engine.ended,
                idle_exit=runtime.loop.virtual,
            )
            engine.stop("aborted")
    finally:
        runtime.close()
    return docs


def store_recorded(db: Database, docs: list[Document], box: str = "1") -> None:
    """Store a box's documents as the collector does."""
    now = time.time()
    ingest = Ingest(
        db, _NoCommands(), topics=TOPICS, clock=lambda: now,
        settings=IngestSettings(heartbeat_timeout=30, gap_grace=1, resend_interval=5,
                                tail_grace=5, commit_retry=30),
    )  # fmt: skip
    messages = [Incoming(TOPICS.status(box), encode(Status(box=box, state="running")), now, False)]
    messages += [Incoming(TOPICS.events(box), dump_document(d).encode(), now, False) for d in docs]
    ingest.handle(messages)


def describe_mouse(db: Database, mouse: str, **values: str) -> None:
    with db.session() as tx:
        apply(get_mouse(tx, mouse), checked(values or dict(SUBJECT)))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        yield database
    finally:
        database.close()


def cli(tmp_path: Path) -> Labctl:
    return Labctl(f"sqlite:///{tmp_path / 'lab.db'}", "mqtt://127.0.0.1:1", "unused")


def dandi_problems(path: Path) -> list[str]:
    """What DANDI's checks hold against the file: nwbinspector's CRITICAL and
    BEST_PRACTICE_VIOLATION messages with the DANDI configuration, and pynwb's
    validation errors."""
    from nwbinspector import Importance, inspect_nwbfile, load_config
    from pynwb import validate

    serious = (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)
    found = [
        f"{m.importance.name} {m.check_function_name} {m.object_name}: {m.message}"
        for m in inspect_nwbfile(nwbfile_path=str(path), config=load_config("dandi"))
        if m.importance in serious
    ]
    return found + [str(e) for e in validate(path=str(path))]


def read_back(path: Path) -> dict[str, Any]:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), mode="r") as io:
        nwbfile = io.read()
        out: dict[str, Any] = {
            "path": path,
            "trials": None if nwbfile.trials is None else nwbfile.trials.to_dataframe(),
            "events": {name: table.to_dataframe() for name, table in nwbfile.events.items()},
            "subject": nwbfile.subject,
            "description": nwbfile.session_description,
            "start": nwbfile.session_start_time.timestamp(),
            "session_id": nwbfile.session_id,
            "experimenter": list(nwbfile.experimenter or []),
            "lab": nwbfile.lab,
            "institution": nwbfile.institution,
            "devices": {n: d.description for n, d in nwbfile.devices.items()},
            "behavior": {
                n: t.to_dataframe()
                for n, t in nwbfile.processing["behavior"].data_interfaces.items()
            },
        }
        out["subject"] = {
            "subject_id": nwbfile.subject.subject_id,
            "species": nwbfile.subject.species,
            "sex": nwbfile.subject.sex,
            "weight": nwbfile.subject.weight,
            "strain": nwbfile.subject.strain,
            "age": nwbfile.subject.age,
            "date_of_birth": nwbfile.subject.date_of_birth,
        }
    return out


def nwb_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.nwb"))


def assert_trials_equal(frame: Any, data: dict[str, Any]) -> None:
    """The file's trials table holds the session's trials, value for value."""
    start = data["start_time"]
    trials = data["trials"]
    assert list(frame["trial_number"]) == list(range(len(trials)))
    names = {0: "missed", 1: "correct", 2: "incorrect"}
    for (_, row), t in zip(frame.iterrows(), trials, strict=True):
        assert row["start_time"] == pytest.approx(t["start"] - start, abs=1e-6)
        assert row["stop_time"] == pytest.approx(t["end"] - start, abs=1e-6)
        assert row["outcome"] == names[t["outcome"]]
        assert row["target_spout"] == ("left", "right")[t["spout"]]
        assert row["cue_duration"] == pytest.approx(t["cue_duration"] / 1000)
        assert [row["spout_position_left"], row["spout_position_right"]] == t["spout_position"]
        assert bool(row["shaping"]) is t["shaping"]
        assert bool(row["reward_given"]) is (t["outcome"] == 1 or t["shaping"])
        if "lift_time" in t:
            assert row["lift_time"] == pytest.approx(t["lift_time"] - start, abs=1e-6)
            assert row["lift_paw"] == ("left", "right")[t["lift_paw"]]
        else:
            assert math.isnan(row["lift_time"]) and row["lift_paw"] == "none"
        if t["outcome"] in (1, 2):
            assert row["reaction_time"] == pytest.approx(t["end"] - t["start"], abs=1e-6)
        else:
            assert math.isnan(row["reaction_time"])


# ---------------------------------------------------------------- the four sessions DANDI gets


@needs_nwb
def test_a_recorded_session_is_a_file_dandi_accepts_with_the_session_s_trials(
    db: Database, tmp_path: Path
) -> None:
    from controller.nwb.export import export_nwb

    docs = recorded_documents()
    store_recorded(db, docs)
    with db.session() as tx:
        record_calibration(tx, "1", 0, openings=100, duration_ms=70, total=500.0, unit="mg",
                           by="cal", at=START - 86400)  # fmt: skip
    describe_mouse(db, "M1", **SUBJECT, strain="C57BL/6J", genotype="wild type")
    (result,) = export_nwb(db, ["M1"], tmp_path / "out")
    assert result.path is not None and result.written
    assert result.path.relative_to(tmp_path / "out").parts == (
        "sub-M1", "sub-M1_ses-" + time.strftime("%Y%m%dT%H%M%S", time.localtime(START))
        + "_behavior.nwb",
    )  # fmt: skip
    assert dandi_problems(result.path) == []

    with db.reader_engine.connect() as conn:
        (data,) = mouse_sessions(conn, "M1")
    assert len(data["trials"]) > 20
    back = read_back(result.path)
    assert_trials_equal(back["trials"], data)
    assert back["start"] == pytest.approx(data["start_time"], abs=1e-3)
    assert back["session_id"] == data["session_id"]
    assert back["subject"]["subject_id"] == "M1"
    assert back["subject"]["weight"] == "24.1 g"
    assert back["subject"]["strain"] == "C57BL/6J"
    assert back["experimenter"] == ["Doe, Jane"]
    rig = back["devices"]["box_1"]
    assert "agent software reachlab" in rig and "solenoids 24, 25" in rig

    # Rewards are the rig's own record, each at the calibration in force for its spout.
    rewards = back["events"]["rewards"]
    given = [d for d in docs if type(d).__name__ == "Reward"]
    assert len(rewards) == len(given) > 0
    left = rewards[rewards["spout"] == "left"]
    assert list(left["volume"]) == pytest.approx([5.0] * len(left))
    assert not rewards[rewards["spout"] == "right"]["calibrated"].any()
    assert list(rewards["duration"]) == pytest.approx([0.07] * len(rewards))
    assert back["trials"]["reward_volume"].sum() == pytest.approx(rewards["volume"].sum())
    lifts = back["events"]["paw_lifts"]
    assert len(lifts) == sum("lift_time" in t for t in data["trials"])
    resets = back["events"]["paw_resets"]
    assert list(resets["timestamp"]) == pytest.approx([t - data["start_time"] for t, _ in
                                                       data["resets"]], abs=1e-6)  # fmt: skip
    settings = back["behavior"]["task_settings"]
    assert json.loads(settings.set_index("setting").loc["cue_decay", "value"]) == 0.997
    calibration = back["behavior"]["reward_calibration"]
    assert list(calibration["spout"]) == ["left"]


@needs_nwb
def test_an_aborted_session_and_one_without_trials_are_files_dandi_accepts(
    db: Database, tmp_path: Path
) -> None:
    from controller.nwb.export import export_nwb

    aborted = recorded_documents(seed=5, abort_after=4)
    assert aborted[-1].status == "aborted"  # type: ignore[union-attr]
    store_recorded(db, aborted)
    store_recorded(db, synthetic_session(mouse="M1", trials=0, t0=START + 86400))
    describe_mouse(db, "M1", species="Mus musculus", sex="M", age="P8W")
    results = export_nwb(db, ["M1"], tmp_path / "out")
    assert [r.written for r in results] == [True, True]
    files = nwb_files(tmp_path / "out")
    assert len(files) == 2
    for path in files:
        assert dandi_problems(path) == [], path
    first, empty = (read_back(p) for p in files)
    with db.reader_engine.connect() as conn:
        data, _ = mouse_sessions(conn, "M1")
    assert_trials_equal(first["trials"], data)
    assert "(aborted)" in first["description"]
    assert empty["trials"] is None  # an empty table is a best-practice violation: none
    assert "no trials" in empty["description"]
    assert first["subject"]["age"] is not None and first["subject"]["age"].startswith("P")


@needs_nwb
def test_the_rig_s_spout_moves_and_cue_changes_are_events_of_a_recorded_session(
    db: Database, tmp_path: Path
) -> None:
    from controller.nwb.export import export_nwb

    docs = synthetic_session(mouse="M1", trials=6, t0=START)
    *body, end = docs
    sid, t = end.session_id, end.t - 0.5
    moved = SpoutsMoved(session_id=sid, box="1", seq=len(body), t=t, spout_position=(2, 1))
    shorter = CueChanged(session_id=sid, box="1", seq=len(body) + 1, t=t, cue_duration=9970.0)
    store_recorded(db, [*body, moved, shorter, end.model_copy(update={"seq": len(body) + 2})])
    describe_mouse(db, "M1")
    (result,) = export_nwb(db, ["M1"], tmp_path / "out")
    assert result.path is not None
    assert dandi_problems(result.path) == []
    events = read_back(result.path)["events"]
    assert list(events["spout_moves"]["position_left"]) == [2]
    assert list(events["spout_moves"]["timestamp"]) == pytest.approx([t - START])
    assert list(events["cue_duration_changes"]["cue_duration"]) == pytest.approx([9.97])
    assert "were not recorded" not in read_back(result.path)["description"]


@needs_nwb
def test_an_imported_session_of_the_original_s_oldest_shape_leaves_out_what_it_lacks(
    db: Database, tmp_path: Path
) -> None:
    from controller.nwb.export import export_nwb

    path = tmp_path / "in" / "Old1.json"
    write_like_the_original(path, [summer_2019(1), summer_2019(2)])
    (imported,) = import_files(db, [path])
    assert imported.imported == 2
    describe_mouse(db, "Old1")
    results = export_nwb(db, ["Old1"], tmp_path / "out")
    assert [r.written for r in results] == [True, True]
    for file in nwb_files(tmp_path / "out"):
        assert dandi_problems(file) == [], file
        back = read_back(file)
        assert back["trials"] is None
        assert "Left out, not made up" in back["description"]
        assert "no trials" in back["description"]
        assert "imported" in back["description"]
        # The 2019 time lists are the events they were: a reset of the left paw, two cues,
        # one touch; nothing else (no rewards or spout moves were recorded).
        events = back["events"]
        assert set(events) == {"paw_resets", "cue_onsets", "spout_touches"}
        assert list(events["paw_resets"]["paw"]) == ["left"]
        assert len(events["cue_onsets"]) == 2
        assert back["subject"]["weight"] is None  # the prompt's "?" is not a weight


@needs_nwb
def test_the_september_2019_time_lists_and_a_2019_single_actuator_session_are_files_dandi_accepts(
    db: Database, tmp_path: Path
) -> None:
    from controller.nwb.export import export_nwb

    path = tmp_path / "in" / "Sept1.json"
    write_like_the_original(path, [september_2019(), autumn_2019()])
    import_files(db, [path])
    describe_mouse(db, "Sept1")
    results = export_nwb(db, ["Sept1"], tmp_path / "out")
    assert [r.written for r in results] == [True, True]
    september, autumn = (read_back(p) for p in nwb_files(tmp_path / "out"))
    for back in (september, autumn):
        assert dandi_problems(back["path"]) == []
    events = september["events"]
    assert list(events["paw_resets"]["paw"]) == ["left", "right", "left"]
    assert list(events["spontaneous_reaches"]["spout"]) == ["unknown"]
    assert list(events["spout_touches"]["outcome"]) == ["unknown"]
    assert len(events["paw_lifts"]) == 2 and len(events["cue_onsets"]) == 2
    frame = autumn["trials"]
    assert list(frame["cue_duration"]) == pytest.approx([10.0, 9.0, 9.0])  # in seconds then
    assert list(frame["spout_position_left"]) == list(frame["spout_position_right"]) == [1, 2, 2]


@needs_nwb
def test_an_imported_later_session_keeps_its_trials_and_says_what_it_never_recorded(
    db: Database, tmp_path: Path
) -> None:
    from controller.nwb.export import export_nwb

    sessions = [session([trial(0), trial(1, outcome=0, end=None), trial(2, outcome=2)])]
    sessions[0]["trials"][1].pop("end")
    path = tmp_path / "in" / "Later1.json"
    write_like_the_original(path, sessions)
    import_files(db, [path])
    describe_mouse(db, "Later1")
    (result,) = export_nwb(db, ["Later1"], tmp_path / "out")
    assert result.path is not None
    assert dandi_problems(result.path) == []
    back = read_back(result.path)
    frame = back["trials"]
    assert list(frame["outcome"]) == ["correct", "missed", "incorrect"]
    # A missed trial without an end ends when its cue did (10 s after its start).
    assert frame["stop_time"][1] - frame["start_time"][1] == pytest.approx(10.0)
    assert "spout moves and cue duration changes were not recorded" in back["description"]
    assert back["experimenter"] == ["alex"]
    assert back["subject"]["weight"] == "24.5 g"
    assert "spout_moves" not in back["events"]
    assert len(back["events"]["rewards"]) == 1  # the one correct trial, by the task's rule


# ---------------------------------------------------------------- the command line


@needs_nwb
def test_labctl_exports_every_mouse_in_dandi_s_layout_with_the_lab_s_names(
    tmp_path: Path,
) -> None:
    labctl = cli(tmp_path)
    write_like_the_original(tmp_path / "in" / "A1.json", [session()])
    write_like_the_original(tmp_path / "in" / "B_2.json", [session(start_time=START, trainer=DROP)])
    labctl.ok("import", str(tmp_path / "in"))
    for mouse in ("A1", "B_2"):
        labctl.ok("mouse", "set", mouse, "--species", "Mus musculus", "--sex", "F",
                  "--dob", "2026-01-05", "--strain", "C57BL/6J")  # fmt: skip
    labctl.ok("lab", "set", "lab", "Reach Lab")
    labctl.ok("lab", "set", "institution", "University of Somewhere")
    labctl.ok("lab", "set", "experimenter", "Doe, Jane")  # for sessions naming no trainer
    out = labctl.ok("export", "--all", "--format", "nwb", "--out", str(tmp_path / "out"))
    assert "A1: 1 session(s)" in out and "B_2: 1 session(s)" in out
    files = [p.relative_to(tmp_path / "out").parts[0] for p in nwb_files(tmp_path / "out")]
    assert files == ["sub-A1", "sub-B-2"]  # DANDI's labels have no "_"
    back = read_back(nwb_files(tmp_path / "out")[1])
    assert back["subject"]["subject_id"] == "B_2"
    assert (back["lab"], back["institution"]) == ("Reach Lab", "University of Somewhere")
    assert back["experimenter"] == ["Doe, Jane"]
    assert read_back(nwb_files(tmp_path / "out")[0])["experimenter"] == ["alex"]


def test_export_refuses_in_one_line_naming_what_the_subject_lacks(tmp_path: Path) -> None:
    labctl = cli(tmp_path)
    write_like_the_original(tmp_path / "in" / "M1.json", [session()])
    write_like_the_original(tmp_path / "in" / "M2.json", [session()])
    labctl.ok("import", str(tmp_path / "in"))
    labctl.ok("mouse", "set", "M2", "--species", "Mus musculus")
    line = labctl.error("export", "M1", "M2", "--format", "nwb", "--out", str(tmp_path / "o"))
    assert "M1 lacks --species, --sex, --dob or --age" in line
    assert "M2 lacks --sex, --dob or --age" in line
    assert "labctl mouse set" in line
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    assert "expected json or nwb" in labctl.error("export", "M1", "--format", "csv")


def test_mouse_set_checks_each_field_and_mouse_show_gives_them(tmp_path: Path) -> None:
    labctl = cli(tmp_path)
    labctl.ok("mouse", "add", "M1")
    for args, expected in [
        (["--species", "mouse"], "invalid species 'mouse'"),
        (["--sex", "X"], "invalid sex 'X'"),
        (["--dob", "01/09/2026"], "invalid date of birth '01/09/2026'"),
        (["--dob", "2999-01-01"], "it is in the future"),
        (["--age", "2 months"], "invalid age '2 months'"),
        (["--age", "P8W", "--dob", "2026-01-01"], "not both"),
        ([], "nothing to set"),
    ]:
        assert expected in labctl.error("mouse", "set", "M1", *args)
    assert "unknown mouse 'M9'" in labctl.error("mouse", "set", "M9", "--sex", "F")
    shown = json.loads(labctl.ok("mouse", "show", "M1", "--json"))["subject"]
    assert set(shown.values()) == {None}  # nothing stored by a refused command
    out = labctl.ok("mouse", "set", "M1", "--species", "Mus  musculus", "--sex", "female",
                    "--age", "p8w", "--genotype", "Vglut2-Cre/wt")  # fmt: skip
    assert "M1: set species, sex, age" in out
    shown = json.loads(labctl.ok("mouse", "show", "M1", "--json"))["subject"]
    assert shown["species"] == "Mus musculus" and shown["sex"] == "F"
    assert shown["age"] == "P8W" and shown["age_on"] == time.strftime("%Y-%m-%d")
    assert shown["genotype"] == "Vglut2-Cre/wt"
    labctl.ok("mouse", "set", "M1", "--dob", "2026-01-05")  # a date of birth replaces the age
    shown = json.loads(labctl.ok("mouse", "show", "M1", "--json"))["subject"]
    assert (shown["date_of_birth"], shown["age"]) == ("2026-01-05", None)


def test_an_age_given_once_is_counted_on_to_each_session_s_day() -> None:
    from datetime import date

    subject = Subject("M1", age="P8W", age_on="2026-09-01")
    assert subject.age_at(date(2026, 9, 1)) == "P56D"
    assert subject.age_at(date(2026, 9, 11)) == "P66D"
    assert Subject("M1", date_of_birth="2026-01-01", age="P8W").age_at(date(2026, 9, 1)) is None


def test_import_takes_the_mice_s_subject_fields_from_a_sheet(tmp_path: Path) -> None:
    labctl = cli(tmp_path)
    write_like_the_original(tmp_path / "in" / "M1.json", [session()])
    sheet = tmp_path / "mice.csv"
    sheet.write_text("mouse,species,sex,dob,strain\nM1,Mus musculus,F,2026-01-05,C57BL/6J\n"
                     "M7,Mus musculus,M,,\n")  # fmt: skip
    out = labctl("import", str(tmp_path / "in"), "--subjects", str(sheet))
    assert out.exit_code == 0, out.output
    assert "M1: subject" in out.stdout and "M7" in out.stderr  # M7 has no sessions here
    shown = json.loads(labctl.ok("mouse", "show", "M1", "--json"))["subject"]
    assert (shown["sex"], shown["date_of_birth"], shown["strain"]) == ("F", "2026-01-05",
                                                                      "C57BL/6J")  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"M2": {"sex": "Q"}}))
    write_like_the_original(tmp_path / "in2" / "M2.json", [session()])
    line = labctl.error("import", str(tmp_path / "in2"), "--subjects", str(bad))
    assert "bad.json: mouse M2: invalid sex 'Q'" in line
    assert "unknown mouse 'M2'" in labctl.error("mouse", "show", "M2")  # nothing imported


def test_a_subjects_sheet_is_refused_whole_naming_the_line_or_mouse(tmp_path: Path) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_text("mouse,sex\n,F\n")
    with pytest.raises(SubjectError, match="line 2 names no mouse"):
        read_subjects(sheet)
    sheet.write_text("mouse,sex\nbad id!,F\n")
    with pytest.raises(SubjectError, match="mouse bad id!"):
        read_subjects(sheet)
    (tmp_path / "s.json").write_text("[1, 2]")
    with pytest.raises(SubjectError, match="expected an object"):
        read_subjects(tmp_path / "s.json")


# ---------------------------------------------------------------- content, without pynwb


def test_cue_durations_in_seconds_of_the_2019_files_are_read_as_seconds() -> None:
    assert cue_seconds(10000.0) == 10.0
    assert cue_seconds(9.7) == 9.7
    assert math.isnan(cue_seconds(None))


def test_trials_without_a_start_or_cut_short_are_left_out_and_said_so() -> None:
    data = session([trial(0), {}, {"start": 1_600_000_040.0, "lift_time": 1_600_000_041.0}])
    content = session_content(data, data["start_time"], lambda s, t, d: (6.0, False))
    assert content.trial_count == 1
    assert any("1 trial(s) without a start time" in g for g in content.gaps)
    assert any("1 trial(s) cut short" in g for g in content.gaps)
    numbers = next(c for c in content.trial_columns if c.name == "trial_number")
    assert numbers.values == [0]


def test_a_correction_trial_is_one_repeating_a_missed_or_incorrect_target() -> None:
    data = session(
        [trial(0, spout=0, outcome=2), trial(1, spout=0, outcome=0), trial(2, spout=0),
         trial(3, spout=1)]
    )  # fmt: skip
    content = session_content(data, data["start_time"], lambda s, t, d: (6.0, False))
    column = next(c for c in content.trial_columns if c.name == "correction_trial")
    assert column.values == [False, True, True, False]
    described = [c for c in content.trial_columns if c.name not in ("start_time", "stop_time")]
    assert all(c.description for c in described)


def test_nested_settings_are_flattened_so_no_table_cell_holds_a_dict() -> None:
    from controller.nwb.content import build_settings

    rows = dict(build_settings(session(camera={"fps": 100, "lens": {"mm": 8}})))
    assert rows["camera.fps"] == "100" and rows["camera.lens.mm"] == "8"
    assert "trials" not in rows and "weight" not in rows
