"""labctl export and import (controller.cli.files): the canonical per-mouse JSON files."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.db import open_database
from controller.files import import_files
from shared.protocol import Topics
from shared.sessionfile import dumps_sessions, read_sessions, write_sessions
from tests.fakes import session_dict, synthetic_session

from .conftest import SAMPLES
from .labctl import Labctl, boxes, labctl, labctl_on_terminal

__all__ = ["boxes", "labctl"]  # fixtures, used by name


def test_importing_an_unusable_file_imports_nothing_of_it(labctl: Labctl, tmp_path: Path) -> None:
    broken = tmp_path / "Broken.json"
    broken.write_text('[{"trials": [}]')
    assert "Broken.json: not valid JSON" in labctl.error("import", str(broken))
    misnamed = tmp_path / "bad name!.json"
    misnamed.write_text("[]")
    assert "file name must be <mouse id>.json" in labctl.error("import", str(misnamed))
    assert "no such file" in labctl.error("import", str(tmp_path / "absent.json"))
    assert "no mice yet" in labctl.ok("mouse", "list")
    # With a good file beside it: the good one is imported, the bad one still refused (exit 1).
    good = tmp_path / "Good.json"
    shutil.copy(SAMPLES / "later-float-times.json", good)
    result = labctl("import", str(good), str(broken))
    assert result.exit_code == 1, result.output
    assert (
        result.stderr.strip()
        == f"labctl: error: {broken}: not valid JSON: Expecting value (line 1, column 14)"
    )
    assert (
        "1 session(s) imported, 0 already stored, from 1 file(s); 1 file(s) refused"
        in result.stdout
    )
    assert [m["mouse"] for m in json.loads(labctl.ok("mouse", "list", "--json"))] == ["Good"]


# ---------------------------------------------------------------- files


def test_import_then_export_returns_the_sample_files_byte_for_byte(
    db_url: str, tmp_path: Path, broker_url: str
) -> None:
    labctl = Labctl(db_url, broker_url, "unused")
    samples = sorted(SAMPLES.glob("*.json"))
    assert samples
    labctl.ok("import", *map(str, samples))
    out = labctl.ok("import", *map(str, samples))  # twice: nothing changes
    assert "0 session(s) imported, 3 already stored, from 2 file(s)" in out
    labctl.ok("export", "--all", "--out", str(tmp_path / "out"))
    for sample in samples:
        assert (tmp_path / "out" / sample.name).read_bytes() == sample.read_bytes()
    assert "unchanged" in labctl.ok("export", "--all", "--out", str(tmp_path / "out"))


def test_import_keeps_the_file_order_even_when_the_times_disagree(
    labctl: Labctl, tmp_path: Path
) -> None:
    sessions = read_sessions(SAMPLES / "legacy-clock-times.json")
    later, earlier = sessions[1], sessions[0]
    odd = [later, earlier, {**earlier, "notes": "no times at all", "date": None}]
    odd[2].pop("start_time")
    write_sessions(tmp_path / "Odd.json", odd)
    labctl.ok("import", str(tmp_path / "Odd.json"))
    labctl.ok("export", "Odd", "--out", str(tmp_path / "out"))
    assert (tmp_path / "out" / "Odd.json").read_text() == dumps_sessions(odd)


def test_recorded_sessions_and_imported_ones_export_in_training_order(
    labctl: Labctl, tmp_path: Path
) -> None:
    old = read_sessions(SAMPLES / "later-float-times.json")  # 2022
    write_sessions(tmp_path / "M1.json", old)
    recorded = synthetic_session(mouse="M1", trials=5)  # 2023
    db = open_database(labctl.env["LABCTL_DB"])
    from controller.collector.ingest import Incoming, Ingest
    from shared.documents import dump_document

    class Sink:
        def send(self, box: str, command: Any) -> None:
            pass

    Ingest(db, Sink()).handle(
        [Incoming(Topics().events("1"), dump_document(d).encode(), 0.0) for d in recorded]
    )
    import_files(db, [tmp_path / "M1.json"])  # imported after, but older
    db.close()
    labctl.ok("export", "M1", "--out", str(tmp_path / "out"))
    assert read_sessions(tmp_path / "out" / "M1.json") == [*old, session_dict(recorded)]


def test_export_never_drops_sessions_a_file_already_holds(labctl: Labctl, tmp_path: Path) -> None:
    out = tmp_path / "out"
    labctl.ok("import", str(SAMPLES / "later-float-times.json"))
    labctl.ok("export", "later-float-times", "--out", str(out))
    target = out / "later-float-times.json"
    extra = {**read_sessions(target)[0], "notes": "written by hand on the rig"}
    write_sessions(target, [*read_sessions(target), extra])
    before = target.read_bytes()
    result = labctl("export", "later-float-times", "--out", str(out))
    assert result.exit_code == 1
    assert "holds 1 session(s) the database does not have" in result.stderr
    assert target.read_bytes() == before
    labctl.ok("export", "later-float-times", "--out", str(out), "--force")
    assert target.read_bytes() == (SAMPLES / "later-float-times.json").read_bytes()


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_exporting_many_mice_on_a_terminal_shows_a_progress_bar(
    labctl: Labctl, tmp_path: Path
) -> None:
    sessions = read_sessions(SAMPLES / "later-float-times.json")
    files = []
    for number in range(5):
        path = tmp_path / "in" / f"Mouse{number}.json"
        write_sessions(path, sessions)
        files.append(str(path))
    labctl.ok("import", *files)
    term = labctl_on_terminal(labctl, "export", "--all", "--out", str(tmp_path / "out"))
    try:
        term.read_until_exit(60, "labctl export did not finish")
    finally:
        term.close()
    assert term.process.returncode == 0, term.errors
    text = term.text()
    assert re.search(r"exporting ━+ 5/5 Mouse4", text), text  # the bar, counting the mice
    for number in range(5):
        assert f"Mouse{number}: 1 session(s) ->" in text
        assert read_sessions(tmp_path / "out" / f"Mouse{number}.json") == sessions
    # Not a terminal: no bar, only the lines (as in every other test here).
    plain = labctl.ok("export", "--all", "--out", str(tmp_path / "out"))
    assert "/5" not in plain and plain.count("unchanged") == 5
