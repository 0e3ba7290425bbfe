"""How the collector's transactions commit on PostgreSQL: batches asynchronously, completions
durably (controller.db's ingest engine and commit_durably), on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event
from sqlalchemy.exc import DBAPIError

from controller.collector.ingest import Incoming, Ingest, RigCommand
from controller.db import Database, commit_durably, open_database
from shared.documents import dump_document
from shared.protocol import CommittedCommand, Topics
from tests.conftest import temporary_postgres
from tests.fakes import synthetic_session

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres_server_url: str) -> Iterator[str]:
    yield from temporary_postgres(postgres_server_url)


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    db = open_database(pg_url)
    try:
        yield db
    finally:
        db.close()


def synchronous_commit(conn: Connection) -> str:
    return str(conn.exec_driver_sql("SHOW synchronous_commit").scalar())


def test_batches_commit_without_waiting_for_the_disk_and_everything_else_waits(
    pg: Database,
) -> None:
    assert pg.ingest_engine is not pg.engine
    with pg.ingest_engine.begin() as conn:
        assert synchronous_commit(conn) == "off"
    with pg.engine.begin() as conn:
        assert synchronous_commit(conn) == "on"  # the CLI, the web, imports: as the server says
    with pg.durable_engine.begin() as conn:
        commit_durably(conn)
        assert synchronous_commit(conn) == "on"
    with pg.durable_engine.begin() as conn:
        assert synchronous_commit(conn) == "off"  # only for the transaction that asked


def test_options_given_in_the_url_are_kept_beside_the_ingest_engines(pg_url: str) -> None:
    db = open_database(f"{pg_url}?options=-c%20statement_timeout%3D4321")
    try:
        with db.ingest_engine.begin() as conn:
            assert synchronous_commit(conn) == "off"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "4321ms"
        with db.engine.begin() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "4321ms"
    finally:
        db.close()


def test_a_connection_the_server_dropped_fails_one_batch_and_the_next_gets_a_fresh_one(
    pg: Database,
) -> None:
    # No ping before each batch: the collector retries the batch the error fails.
    with pg.ingest_engine.begin() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with pg.engine.begin() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})")
    with pytest.raises(DBAPIError) as failed, pg.ingest_engine.begin() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert failed.value.connection_invalidated
    with pg.ingest_engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, RigCommand]] = []

    def send(self, box: str, command: RigCommand) -> None:
        self.sent.append((box, command))


def test_a_session_is_committed_durably_before_its_box_is_told_and_its_documents_are_not(
    pg: Database,
) -> None:
    # What each write statement on the ingest engine ran under, read on its own connection.
    writes: list[tuple[str, str]] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        table = statement.split()[2] if statement.startswith("INSERT") else statement.split()[1]
        if statement.startswith(("INSERT", "UPDATE")):
            probe = cursor.connection.cursor()
            probe.execute("SHOW synchronous_commit")
            writes.append((table, str(probe.fetchone()[0])))

    event.listen(pg.ingest_engine, "before_cursor_execute", record)
    topics = Topics("lab")
    sink = Sink()
    docs = synthetic_session(mouse="M1", trials=5, seed=1)
    Ingest(pg, sink, topics=topics).handle(
        [Incoming(topics.events("1"), dump_document(d).encode(), 0.0) for d in docs]
    )
    assert [type(c) for _, c in sink.sent] == [CommittedCommand]
    assert ("documents", "off") in writes  # the batch
    assert ("trials", "on") in writes  # the completion, whose commit the committed follows
    assert ("documents", "on") not in writes and ("trials", "off") not in writes
