"""Exporting over yesterday's per-mouse file: new sessions are added, nothing is dropped."""

from __future__ import annotations

import json
from pathlib import Path

from controller.db import Database
from controller.files import export_mice, import_sessions
from shared.sessionfile import read_sessions, write_sessions

from .conftest import SAMPLES

MOUSE = "later-float-times"


def _import(db: Database, sessions: list[dict[str, object]]) -> None:
    with db.engine.begin() as conn:
        import_sessions(conn, MOUSE, sessions)


def _later(session: dict[str, object], days: int) -> dict[str, object]:
    start = float(session["start_time"]) + days * 86400  # type: ignore[arg-type]
    return {**session, "start_time": start, "end_time": start + 1800, "notes": f"day +{days}"}


def test_a_new_session_is_added_to_the_file_of_the_last_export(
    db: Database, tmp_path: Path
) -> None:
    sessions = read_sessions(SAMPLES / f"{MOUSE}.json")
    _import(db, sessions)
    (first,) = export_mice(db, [MOUSE], tmp_path)
    assert first.written
    newer = _later(sessions[-1], 30)
    _import(db, [newer])
    (second,) = export_mice(db, [MOUSE], tmp_path)
    assert second.written and not second.failed and second.sessions == len(sessions) + 1
    text = (tmp_path / f"{MOUSE}.json").read_text(encoding="utf-8")
    assert json.loads(text) == [*sessions, newer]
    (third,) = export_mice(db, [MOUSE], tmp_path)
    assert not third.written and third.note == "unchanged"


def test_a_session_edited_in_the_file_is_not_overwritten_by_a_later_export(
    db: Database, tmp_path: Path
) -> None:
    sessions = read_sessions(SAMPLES / f"{MOUSE}.json")
    _import(db, sessions)
    export_mice(db, [MOUSE], tmp_path)
    target = tmp_path / f"{MOUSE}.json"
    edited = [{**sessions[0], "notes": "corrected by hand"}, *sessions[1:]]
    write_sessions(target, edited)
    before = target.read_bytes()
    _import(db, [_later(sessions[-1], 30)])  # the database also moved on
    (result,) = export_mice(db, [MOUSE], tmp_path)
    assert result.failed and "holds 1 session(s) the database does not have" in result.note
    assert target.read_bytes() == before


def test_a_file_that_is_not_a_session_list_is_never_replaced(db: Database, tmp_path: Path) -> None:
    _import(db, read_sessions(SAMPLES / f"{MOUSE}.json"))
    target = tmp_path / f"{MOUSE}.json"
    target.write_text('{"not": "a list"}', encoding="utf-8")
    (result,) = export_mice(db, [MOUSE], tmp_path)
    assert result.failed and "not a per-mouse file" in result.note
    assert target.read_text(encoding="utf-8") == '{"not": "a list"}'


def test_a_session_repeated_in_a_file_is_stored_as_often_and_imported_once(
    db: Database, tmp_path: Path
) -> None:
    sessions = read_sessions(SAMPLES / f"{MOUSE}.json")
    empty: dict[str, object] = {}
    repeated = [empty, *sessions, dict(empty), {"trainer": "alex"}, dict(empty)]
    with db.engine.begin() as conn:
        first = import_sessions(conn, MOUSE, repeated)
    with db.engine.begin() as conn:
        second = import_sessions(conn, MOUSE, repeated)
    assert (first.imported, first.present) == (len(repeated), 0)
    assert (second.imported, second.present) == (0, len(repeated))
    export_mice(db, [MOUSE], tmp_path)
    assert (tmp_path / f"{MOUSE}.json").read_text(encoding="utf-8") == json.dumps(repeated)


def test_a_hostile_file_in_the_way_of_an_export_is_named_and_kept(
    db: Database, tmp_path: Path
) -> None:
    _import(db, read_sessions(SAMPLES / f"{MOUSE}.json"))
    target = tmp_path / f"{MOUSE}.json"
    deep = "[" * 100_000 + "]" * 100_000
    target.write_text(deep, encoding="utf-8")
    (result,) = export_mice(db, [MOUSE], tmp_path)
    assert result.failed and "is not a per-mouse file" in result.note
    assert target.read_text(encoding="utf-8") == deep
