"""Shared fixtures: real brokers and databases, found or started as DESIGN §9 says.

Broker, in order: ``REACHLAB_TEST_BROKER`` (an ``mqtt://`` URL, or ``amqtt`` for the
embedded broker as on a machine with neither mosquitto nor Docker); a ``mosquitto``
binary started on a free port; a testcontainers Mosquitto when a Docker engine
answers; the in-process ``amqtt`` broker. PostgreSQL: ``REACHLAB_TEST_POSTGRES``
(an SQLAlchemy URL); a server on 127.0.0.1:5432; testcontainers; else skip.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from controller.db import Database, open_database
from controller.demo.broker import AmqttBroker, MosquittoBroker, find_free_port
from shared.broker_url import BrokerSettings, broker_settings
from shared.protocol import Topics

if TYPE_CHECKING:
    from .processes import Processes

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "tests" / "data"

#: Markers of the tests that wait longest on real processes, longest first. They are run
#: first so that in ``./lab test``'s parallel workers a long test never starts last,
#: alone, while the other workers have nothing left (longest first packs best).
LONG_FIRST = ("bridge", "slow", "faults", "scale", "alerts", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Orders the long real-process tests first (:data:`LONG_FIRST`), the rest as
    collected; the sort is stable, so every xdist worker collects the same order."""

    def rank(item: pytest.Item) -> int:
        marks = {m.name for m in item.iter_markers()}
        return next((i for i, name in enumerate(LONG_FIRST) if name in marks), len(LONG_FIRST))

    items.sort(key=rank)


def docker_available() -> bool:
    """True only when a Docker engine answers within a couple of seconds."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()  # type: ignore[attr-defined]  # untyped package
    except Exception:  # any failure means "no usable engine": step aside
        return False
    return True


@contextlib.contextmanager
def _container_broker() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer

    container = DockerContainer("eclipse-mosquitto:2").with_exposed_ports(1883)
    container = container.with_command("mosquitto -c /mosquitto-no-auth.conf")
    with container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(1883)
        yield f"mqtt://{host}:{port}"


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """URL of a running MQTT broker for the whole test session."""
    explicit = os.environ.get("REACHLAB_TEST_BROKER") or None
    if explicit and explicit != "amqtt":
        yield explicit
        return
    if explicit is None and MosquittoBroker.available():
        broker = MosquittoBroker()
        broker.start()
        try:
            yield broker.url
        finally:
            broker.close()
        return
    if explicit is None and docker_available():
        with _container_broker() as url:
            yield url
        return
    amqtt = AmqttBroker()
    amqtt.start()
    try:
        yield amqtt.url
    finally:
        amqtt.stop()


@pytest.fixture
def broker(broker_url: str) -> BrokerSettings:
    """The session broker's settings, as labctl and the collector take them."""
    return broker_settings(broker_url)


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    """The topics under this test's own prefix."""
    return Topics(topic_prefix)


@pytest.fixture
def private_mosquitto() -> Iterator[MosquittoBroker]:
    """A mosquitto of the test's own (fresh state, its own port), stopped after the test;
    the test is skipped without the mosquitto binary."""
    if not MosquittoBroker.available():
        pytest.skip("needs the mosquitto binary for a broker of this test's own")
    broker = MosquittoBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def broker_keeps_offline_messages(broker_url: str) -> bool:
    """Whether the test broker queues QoS 1 messages for a persistent session while its
    client is away (mosquitto does; the amqtt fallback does not). Asked of the broker once:
    a client subscribes, leaves, a message is published, the client comes back."""
    import queue

    from .mqttclient import MqttClient

    topic = f"probe-{uuid.uuid4().hex}/queued"
    client_id = f"probe-{uuid.uuid4().hex[:12]}"

    def arrived(client: MqttClient) -> bool:
        # amqtt hands a new subscriber retained messages of other topics: skip those.
        try:
            while client.received.get(timeout=5)[0] != topic:
                pass
        except queue.Empty:
            return False
        return True

    with MqttClient.at(broker_url, client_id=client_id, clean_session=False) as first:
        kept = all(first.subscribe(topic))
    with MqttClient.at(broker_url, client_id=f"{client_id}-pub") as publisher:
        publisher.publish(topic, b"1")
    with MqttClient.at(broker_url, client_id=client_id, clean_session=False) as again:
        kept = kept and arrived(again)
    # A clean session drops what the probe left on the broker.
    MqttClient.at(broker_url, client_id=client_id).close()
    return kept


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix of this test's own, so tests sharing a broker never see each other."""
    return f"test-{uuid.uuid4().hex[:12]}"


def _local_postgres_url() -> str | None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), timeout=1):
        for user in ("postgres", os.environ.get("USER", "root"), "root"):
            url = f"postgresql+psycopg2://{user}@127.0.0.1:5432/test"
            try:
                import psycopg2

                psycopg2.connect(
                    host="127.0.0.1", port=5432, user=user, dbname="test", connect_timeout=3
                ).close()
            except Exception:  # wrong role or database: try the next
                continue
            return url
    return None


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """An SQLAlchemy URL of a reachable PostgreSQL database, or skip."""
    explicit = os.environ.get("REACHLAB_TEST_POSTGRES")
    if explicit:
        yield explicit
        return
    local = _local_postgres_url()
    if local:
        yield local
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine") as pg:
            yield pg.get_connection_url()
        return
    pytest.skip("no PostgreSQL server reachable and no Docker engine")


@pytest.fixture
def free_port() -> int:
    return find_free_port()


# ---------------------------------------------------------------- databases


def temporary_postgres(server_url: str, template: str | None = None) -> Iterator[str]:
    """A fresh database on the server for one test, a copy of ``template`` when given;
    dropped afterwards."""
    server = make_url(server_url)
    name = f"reachlab_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            copy = f' TEMPLATE "{template}"' if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


#: Run a test on SQLite, then on PostgreSQL (skipped only when no server is reachable).
DB_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest schema, made once per worker (see :func:`database_url`)."""
    path = tmp_path_factory.mktemp("template") / "lab.db"
    open_database(f"sqlite:///{path}").close()
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_server_url: str) -> Iterator[str]:
    """The name of a PostgreSQL database at the newest schema, made once per worker and
    dropped at its end (see :func:`database_url`)."""
    with contextlib.contextmanager(temporary_postgres)(postgres_server_url) as url:
        open_database(url).close()  # no connection may stay: CREATE DATABASE … TEMPLATE
        name = make_url(url).database
        assert name is not None
        yield name


def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The body of the ``db_url`` fixture, parametrized with :data:`DB_KINDS`.

    A test that takes the ``db`` fixture gets its database at the newest schema at once, a
    copy of this worker's template, instead of an empty one that ``db`` would upgrade
    through every migration (a second or more a test on PostgreSQL, for some 200 tests).
    Tests of migrations and of first use take ``db_url`` alone and get an empty database.
    """
    migrated = "db" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "lab.db"
        if migrated:
            template = request.getfixturevalue("sqlite_template")
            for suffix in ("", "-wal"):  # closed cleanly, it has no WAL; copied if it had
                if Path(f"{template}{suffix}").exists():
                    shutil.copyfile(f"{template}{suffix}", f"{path}{suffix}")
            _new_identity(f"sqlite:///{path}")
        yield f"sqlite:///{path}"
        return
    template_name = request.getfixturevalue("postgres_template") if migrated else None
    for url in temporary_postgres(request.getfixturevalue("postgres_server_url"), template_name):
        if migrated:
            _new_identity(url)
        yield url


def _new_identity(url: str) -> None:
    """Gives a copy of the template the identity of its own that migration 0008 gives every
    new database (tests/test_lab_identity tells two databases apart by it)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE lab SET id = :id, created_at = :at"),
                {"id": uuid.uuid4().hex, "at": time.time()},
            )
    finally:
        engine.dispose()


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL of this test's own: a SQLite file, then a PostgreSQL database."""
    yield from database_url(request, tmp_path)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """The test's child processes: whatever is still running at the end is stopped by pid."""
    from .processes import Processes  # it reads REPO from here

    procs = Processes(tmp_path / "logs")
    try:
        yield procs
    finally:
        procs.stop_all()
