"""The controller's database: schema from the migrations, SQLite settings, the lab's rules.

Also home of the database fixtures the other controller tests import:
``db_url`` runs a test on SQLite and on PostgreSQL (a fresh database of its
own, dropped afterwards; skipped only when no server is reachable).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from controller import db as db_module
from controller.db import (
    SCHEMA_REVISION,
    Assignment,
    Base,
    Database,
    DatabaseError,
    alembic_config,
    default_database_path,
    open_database,
)
from controller.lab import LabError, assign, assignment_history, unassign

from .conftest import REPO

# ---------------------------------------------------------------- schema


def test_the_schema_is_created_on_first_use_and_matches_the_models(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            SCHEMA_REVISION
        )
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_the_migration_history_is_one_clean_line_ending_at_the_expected_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())
    assert script.get_heads() == [SCHEMA_REVISION]
    assert [r.revision for r in revisions] == [
        "0012_report_index",
        "0011_report_speed",
        "0010_web",
        "0009_box_registry",
        "0008_lab_identity",
        "0007_session_figures",
        "0006_mouse_subject",
        "0005_alerts",
        "0004_box_clock",
        "0003_collector_core",
        "0002_husbandry",
        "0001",
    ]
    assert revisions[-1].down_revision is None


def test_a_database_upgraded_mid_collection_carries_on_where_the_old_collector_stopped(
    db_url: str,
) -> None:
    """0003_collector_core fills the streams from the documents already stored, so the new
    collector (which keeps nothing in memory) finishes a session the old one had begun."""
    from alembic import command

    from controller.collector.ingest import Ingest
    from controller.db import create_database_engine
    from controller.models import Stream
    from shared.documents import dump_document
    from shared.protocol import CommittedCommand, Topics
    from tests.fakes import session_dict, synthetic_session

    engine = create_database_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002_husbandry")
    docs = synthetic_session(mouse="M1", trials=6, seed=2)
    sid = docs[0].session_id
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO mice (id, created_at, notes) VALUES ('M1', 1, '')"))
        conn.execute(
            text(
                "INSERT INTO sessions (session_id, mouse_id, box, origin, complete, position, "
                "trial_count, reward_count, created_at) "
                "VALUES (:sid, 'M1', '1', 'recorded', false, 1, 0, 0, 1)"
            ),
            {"sid": sid},
        )
        for doc in docs[:-5]:
            conn.execute(
                text(
                    "INSERT INTO documents (session_id, seq, kind, box, t, received_at, body) "
                    "VALUES (:sid, :seq, :kind, '1', :t, :t, :body)"
                ),
                {"sid": sid, "seq": doc.seq, "kind": doc.kind, "t": doc.t,
                 "body": dump_document(doc)},
            )  # fmt: skip
    engine.dispose()
    db = open_database(db_url)  # upgraded to the head here
    with db.reader() as session:
        stream = session.get(Stream, sid)
        assert stream is not None
        assert (stream.box, stream.stored, stream.max_seq) == ("1", len(docs) - 5, len(docs) - 6)

    class Sink:
        sent: list[object] = []

        def send(self, box: str, command: object) -> None:
            self.sent.append(command)

    from controller.collector.ingest import Incoming

    topics = Topics()
    Ingest(db, Sink(), topics=topics).handle(
        [Incoming(topics.events("1"), dump_document(d).encode(), 2.0) for d in docs[-5:]]
    )
    with db.reader_engine.connect() as conn:
        from controller.store import mouse_sessions

        assert mouse_sessions(conn, "M1") == [session_dict(docs)]
    assert [type(c) for c in Sink.sent] == [CommittedCommand]
    db.close()


def test_opening_again_leaves_an_up_to_date_database_alone(db_url: str) -> None:
    open_database(db_url).close()
    again = open_database(db_url)
    with again.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    again.close()


def test_processes_racing_to_create_the_schema_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = f"from controller.db import open_database; open_database({url!r}).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    assert inspect(create_engine(url)).has_table("documents")


def _hold_exclusive_lock(path: Path) -> sqlite3.Connection:
    """Another process's view of the file: a connection that keeps every other one out."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("DELETE FROM dead_letters")
    holder.execute("COMMIT")  # exclusive locking mode keeps the lock after the commit
    return holder


def test_opening_waits_out_sqlite_s_immediate_database_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite refuses at once, without busy_timeout, while another process opens, recovers
    or closes a WAL database: labctl beside a starting collector retries instead of failing."""
    path = tmp_path / "lab.db"
    open_database(f"sqlite:///{path}").close()
    holder = _hold_exclusive_lock(path)
    # busy_timeout 0 turns the lock into SQLite's immediate refusal.
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 0)
    waits: list[int] = []

    def other_process_lets_go() -> None:
        waits.append(1)
        if len(waits) == 2:
            holder.close()

    monkeypatch.setattr(db_module, "_wait_before_retry", other_process_lets_go)
    db = open_database(f"sqlite:///{path}")
    with db.reader() as session:
        assert session.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            SCHEMA_REVISION
        )
    db.close()
    assert len(waits) == 2  # refused twice, then opened once the lock was gone


def test_a_database_locked_for_good_is_still_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lab.db"
    open_database(f"sqlite:///{path}").close()
    holder = _hold_exclusive_lock(path)
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 0)
    monkeypatch.setattr(db_module, "OPEN_RETRY_S", 0.0)
    try:
        with pytest.raises(DatabaseError, match=r"cannot open database .*database is locked"):
            open_database(f"sqlite:///{path}")
    finally:
        holder.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_enforced(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(Assignment(mouse_id="nobody", box_id="nowhere", started_at=0.0))
    db.close()


def test_the_default_database_lives_in_the_user_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_database_path() == tmp_path / "data" / "reachlab" / "reachlab.db"
    db = open_database(None)
    db.close()
    assert (tmp_path / "data" / "reachlab" / "reachlab.db").exists()


def test_a_database_from_a_newer_labctl_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    open_database(url).close()
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(DatabaseError, match=r"revision 9999.*newer labctl"):
        open_database(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "invalid database URL"),
        ("nosuchdb://host/x", "unknown database kind"),
        ("postgresql+psycopg2://nobody@127.0.0.1:1/x", "cannot open database .*127.0.0.1:1"),
        ("sqlite:////nonexistent-dir/deeper/lab.db", "cannot open database sqlite:////nonexist"),
    ],
)
def test_a_bad_or_unreachable_database_is_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(DatabaseError, match=message) as info:
        open_database(url)
    assert "\n" not in str(info.value)


def test_a_password_in_the_url_never_shows_in_errors() -> None:
    with pytest.raises(DatabaseError) as info:
        open_database("postgresql+psycopg2://user:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(info.value)


# ---------------------------------------------------------------- assignments


def _add_boxes(db: Database, *boxes: str) -> None:
    from controller.husbandry.boxes import add_box

    with db.session() as session:
        for box in boxes:
            add_box(session, box, by="test")


def test_a_mouse_is_on_one_box_at_a_time_and_moving_it_is_explicit(db: Database) -> None:
    _add_boxes(db, "1", "2")
    with db.session() as session:
        first = assign(session, "M1", "1")
        assert first.created_mouse
    with pytest.raises(LabError, match="M1 is on box 1; pass --move"), db.session() as session:
        assign(session, "M1", "2")
    with db.session() as session:
        moved = assign(session, "M1", "2", move=True)
        assert moved.moved_from == "1"
        history = assignment_history(session, "M1")
    assert [(a.box_id, a.ended_at is None) for a in history] == [("1", False), ("2", True)]


def test_a_box_holds_one_mouse_and_replacing_it_is_explicit(db: Database) -> None:
    _add_boxes(db, "1")
    with db.session() as session:
        assign(session, "M1", "1")
    with pytest.raises(LabError, match="box 1 already has mouse M1"), db.session() as session:
        assign(session, "M2", "1")
    with db.session() as session:
        assert assign(session, "M2", "1", replace=True).replaced == "M1"
        assert unassign(session, "M2", statuses={}) == "1"


def test_the_database_itself_refuses_two_open_assignments_of_one_mouse(db: Database) -> None:
    _add_boxes(db, "1", "2")
    with db.session() as session:
        assign(session, "M1", "1")
        assign(session, "M2", "2")
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(Assignment(mouse_id="M1", box_id="2", started_at=1.0))
        session.flush()


def test_the_collector_checkpoints_the_wal_on_a_thread_of_its_own(tmp_path: Path) -> None:
    from controller.db import Checkpointer

    path = tmp_path / "lab.db"
    db = open_database(f"sqlite:///{path}")
    checkpointer = Checkpointer(db, interval=0.05)
    checkpointer.start()
    try:
        with db.engine.begin() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
            conn.exec_driver_sql("INSERT INTO mice (id, created_at, notes) VALUES ('M1', 0, '')")
    finally:
        checkpointer.stop()
    assert Path(f"{path}-wal").stat().st_size == 0  # the final checkpoint emptied the WAL
    db.close()


def test_a_durable_transaction_commits_with_full_sync_and_others_do_not(tmp_path: Path) -> None:
    from sqlalchemy import event

    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    with db.durable_engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with db.engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    assert "PRAGMA synchronous = FULL" in seen
    db.close()


def test_the_quick_way_to_trial_rows_gives_what_the_careful_way_gives() -> None:
    import json as jsonlib

    from controller.store import trial_row_tuples, trial_rows
    from tests.fakes import session_dict, synthetic_session

    samples = REPO / "tests" / "data"
    sessions = [session_dict(synthetic_session(trials=40, seed=3))]
    for sample in sorted(samples.glob("*.json")):
        sessions.extend(jsonlib.loads(sample.read_text()))
    odd = {"trials": [{"start": 5, "end": "6", "spout": True, "outcome": 1}]}
    for session in [*sessions, odd]:
        careful = [tuple(row.values()) for row in trial_rows(7, session)]
        assert trial_row_tuples(7, session) == careful
