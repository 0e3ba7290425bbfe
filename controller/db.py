"""The controller's database: opening it (engine, SQLite settings), WAL checkpoints, upgrades.

Any SQLAlchemy URL works; the default is a SQLite file in the user data
directory (``$XDG_DATA_HOME/reachlab/reachlab.db``). :func:`open_database`
brings the schema to the newest Alembic revision on first use, so nobody has
to run a migration by hand.

The tables themselves are in :mod:`controller.models` (re-exported here).

SQLite: WAL, foreign keys on, and write transactions begin with ``BEGIN
IMMEDIATE``. pysqlite's default deferred ``BEGIN`` lets a transaction that
read first fail with "database is locked" when it later writes while the
collector has committed in between; taking the write lock up front turns
that into a plain wait (``busy_timeout``). Read-only work uses
:meth:`Database.reader`, which begins deferred and never blocks the collector.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from controller.models import (
    NAMING,
    Assignment,
    Base,
    BigId,
    Box,
    Cohort,
    CohortMember,
    CollectorLease,
    DeadLetter,
    Mouse,
    StoredDocument,
    Stream,
    TrainingSession,
    Trial,
)
from shared.broker_url import redact_url
from shared.errors import ReachlabError

# The tables are defined in controller.models and named here too, where most code imports
# them from.
__all__ = [
    "APP_NAME",
    "DB_FILE",
    "NAMING",
    "OPEN_RETRY_PAUSE_S",
    "OPEN_RETRY_S",
    "SCHEMA_REVISION",
    "SQLITE_BUSY_TIMEOUT_MS",
    "Assignment",
    "Base",
    "BigId",
    "Box",
    "Checkpointer",
    "Cohort",
    "CohortMember",
    "CollectorLease",
    "Database",
    "DatabaseError",
    "DeadLetter",
    "Mouse",
    "StoredDocument",
    "Stream",
    "TrainingSession",
    "Transaction",
    "Trial",
    "alembic_config",
    "commit_durably",
    "create_database_engine",
    "default_database_path",
    "default_database_url",
    "display_url",
    "open_database",
    "parse_database_url",
    "upgrade_schema",
]

log = logging.getLogger("labctl.db")

#: The database transaction every controller function that reads or writes rows takes, as
#: ``tx``: one SQLAlchemy ORM session, committed or rolled back as a whole.
Transaction = Session

#: The Alembic head this code expects; a test checks it against the migrations.
SCHEMA_REVISION = "0012_report_index"
APP_NAME = "reachlab"
DB_FILE = "reachlab.db"
#: How long a SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How long opening a SQLite database retries SQLite's immediate "database is locked".
OPEN_RETRY_S = 30.0
OPEN_RETRY_PAUSE_S = 0.05
#: Any constant: the PostgreSQL advisory lock that serialises concurrent schema upgrades.
_UPGRADE_LOCK_KEY = 0x7265616368


class DatabaseError(ReachlabError, RuntimeError):
    """The database cannot be opened, reached or upgraded; the message names which one."""


# ---------------------------------------------------------------- URLs


def default_database_path() -> Path:
    """``reachlab.db`` in the user data directory (``$XDG_DATA_HOME/reachlab`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / DB_FILE


def default_database_url() -> str:
    return f"sqlite:///{default_database_path()}"


def parse_database_url(url: str) -> URL:
    """The URL as SQLAlchemy reads it; DatabaseError naming it if it is not one."""
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise DatabaseError(
            f"invalid database URL {redact_url(url)!r}: expected an SQLAlchemy URL such as "
            "sqlite:///path/to/lab.db or postgresql+psycopg2://user@host/db"
        ) from None
    return parsed


def display_url(url: URL | str) -> str:
    """The URL with its password hidden, for messages and logs."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


# ---------------------------------------------------------------- the database


class Database:
    """An engine plus session factories; build it with :func:`open_database`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = display_url(engine.url)
        self.dialect = engine.dialect.name
        self._writer = sessionmaker(engine, expire_on_commit=False)
        reader_engine = engine.execution_options(sqlite_begin="DEFERRED")
        self._reader = sessionmaker(reader_engine, expire_on_commit=False)
        self.reader_engine = reader_engine
        #: For transactions that must survive a power cut once committed (on SQLite every
        #: commit otherwise waits for the next checkpoint to reach the disk): a session is
        #: stored this way before its box is told it may prune it. Such a transaction calls
        #: :func:`commit_durably` once it knows it will write.
        self.durable_engine: Engine = engine.execution_options(sqlite_synchronous="FULL")
        #: The collector's batches and ticks. On PostgreSQL a pool of its own, with commits
        #: that do not wait for the WAL to reach the disk (``synchronous_commit = off``, as
        #: SQLite's ``synchronous = NORMAL`` above: a power cut or a crash of the server loses
        #: at most the last fraction of a second of commits, never half of one, and those
        #: documents are still in their boxes' journals, since a box prunes a session only
        #: after the durable commit of its completion, which flushes everything before it),
        #: and no ping before each transaction (a connection the server dropped fails the
        #: batch, which the collector retries on a fresh one). Profiled at full rate, the
        #: ping and waiting for the commit's flush were a sixth of the writer's time.
        self.ingest_engine = (
            create_database_engine(engine.url, collector=True)
            if self.dialect == "postgresql"
            else engine
        )
        if self.dialect == "postgresql":
            # The collector's completions on the ingest engine too (no ping before each of
            # its frequent probes); :func:`commit_durably` turns the wait for the disk back on.
            self.durable_engine = self.ingest_engine

    @contextlib.contextmanager
    def session(self) -> Iterator[Transaction]:
        """A write transaction: committed at the end of the block, rolled back on error."""
        with self._writer.begin() as tx:
            yield tx

    @contextlib.contextmanager
    def reader(self) -> Iterator[Transaction]:
        """A read-only session that does not take SQLite's write lock."""
        # Closing (not committing) ends the read; loaded objects stay readable, detached.
        with self._reader() as session:
            yield session

    def close(self) -> None:
        if self.ingest_engine is not self.engine:
            self.ingest_engine.dispose()
        self.engine.dispose()


def commit_durably(conn: Connection) -> None:
    """Make this transaction's commit wait until it is on disk, on a connection of
    :attr:`Database.durable_engine`: on PostgreSQL ``synchronous_commit`` back on (the ingest
    engine's connections have it off) until the transaction ends; on SQLite the engine's
    ``synchronous = FULL`` has done it. Its flush takes every earlier commit to the disk."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit = on")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below); pysqlite must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if engine.url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode = WAL")
                # WAL + NORMAL: a commit survives a crash of the process; only a power
                # cut can lose the last commits, which the agents' journals still hold.
                cursor.execute("PRAGMA synchronous = NORMAL")
                record.info["synchronous"] = "NORMAL"
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        # synchronous can only change outside a transaction, so it is set just before BEGIN
        # (and only when it differs from what the connection has).
        synchronous = options.get("sqlite_synchronous", "NORMAL")
        info = connection.connection.info
        if info.get("synchronous") != synchronous:
            connection.exec_driver_sql(f"PRAGMA synchronous = {synchronous}")
            info["synchronous"] = synchronous
        mode = options.get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def create_database_engine(url: str | URL, *, collector: bool = False) -> Engine:
    """An engine for ``url`` with reachlab's SQLite settings; nothing is connected yet.

    ``collector``: for :attr:`Database.ingest_engine` on PostgreSQL (asynchronous commits,
    no ping before each checkout)."""
    parsed = parse_database_url(url) if isinstance(url, str) else url
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # One shared connection, or every connection would see its own empty database.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = not collector
        if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
            # The collector's per-batch UPDATEs of many rows: pages of statements per round
            # trip (psycopg2's execute_batch) instead of one round trip per row.
            kwargs["executemany_mode"] = "values_plus_batch"
        if collector and parsed.get_backend_name() == "postgresql":
            # libpq's startup options: set as the connection opens, no round trip of its own.
            given = parsed.query.get("options")
            given = given[-1] if isinstance(given, tuple) else given
            options = " ".join(filter(None, [given, "-c synchronous_commit=off"]))
            kwargs["connect_args"] = {"options": options}
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise DatabaseError(
            f"invalid database URL {display_url(parsed)}: unknown database kind "
            f"{parsed.drivername!r} (sqlite:///FILE or postgresql+psycopg2://...)"
        ) from None
    except ImportError as exc:
        raise DatabaseError(_missing_driver(parsed, exc)) from None
    except ArgumentError as exc:
        raise DatabaseError(f"cannot use database {display_url(parsed)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _missing_driver(parsed: URL, exc: ImportError) -> str:
    """Which URL form and install to use when the URL's database driver is not installed."""
    module = exc.name or str(exc)
    where = display_url(parsed)
    missing = f"cannot use database {where}: its driver {module!r} is not installed"
    if parsed.drivername == "postgresql+psycopg2":
        return f"{missing}: `pip install 'reachlab[postgres]'`"
    if parsed.get_backend_name() == "postgresql":
        # A bare postgresql:// means SQLAlchemy's default driver (psycopg 3 since 2.1),
        # while reachlab's extra installs psycopg2.
        suggested = display_url(parsed.set(drivername="postgresql+psycopg2"))
        return f"{missing}; use {suggested} and `pip install 'reachlab[postgres]'`"
    return f"{missing}: install the Python package that provides it"


def open_database(url: str | None = None, *, upgrade: bool = True) -> Database:
    """Connect to ``url`` (the default SQLite file when None) and bring its schema up to date."""
    if url is None:
        path = default_database_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    engine = create_database_engine(url)
    db = Database(engine)
    deadline = time.monotonic() + OPEN_RETRY_S
    while True:
        try:
            if upgrade:
                upgrade_schema(engine)
            else:
                with engine.connect():
                    pass
            return db
        except DatabaseError:
            engine.dispose()
            raise
        except (SQLAlchemyError, OSError) as exc:
            if _sqlite_busy(engine, exc) and time.monotonic() < deadline:
                # SQLite answers "database is locked" at once, without waiting out
                # busy_timeout, while another process opens, recovers or closes the
                # last connection to a WAL database (https://sqlite.org/wal.html,
                # "Sometimes Queries Return SQLITE_BUSY In WAL Mode"): labctl started
                # beside a starting or stopping collector must wait, not fail.
                engine.dispose()
                _wait_before_retry()
                continue
            engine.dispose()
            raise DatabaseError(f"cannot open database {db.url}: {_first_line(exc)}") from None


def _wait_before_retry() -> None:
    time.sleep(OPEN_RETRY_PAUSE_S)


def _sqlite_busy(engine: Engine, exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's transient "database is locked"/"busy" answer."""
    if engine.dialect.name != "sqlite":
        return False
    message = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in message or "database is busy" in message


# ---------------------------------------------------------------- WAL checkpoints


class Checkpointer:
    """Moves SQLite's WAL checkpoints off the writer's path, onto a thread of their own.

    By default the commit that fills the WAL (every 1000 pages) copies it into the
    database and fsyncs, stalling that commit for tens of milliseconds. The
    collector's connections turn automatic checkpoints off; this thread runs a
    passive checkpoint (which never blocks a writer) every ``interval`` seconds
    and a full one when it stops. SQLite works without the GIL, so on a second
    core the checkpoint costs the collector nothing.
    """

    def __init__(self, db: Database, interval: float = 1.0) -> None:
        self.db = db
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        path = db.engine.url.database
        self.path = path if db.dialect == "sqlite" and path not in (None, "", ":memory:") else None

    @property
    def active(self) -> bool:
        return self.path is not None

    def start(self) -> None:
        if self.path is None:
            return

        @event.listens_for(self.db.engine, "connect")
        def no_auto_checkpoints(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")

        import sqlite3

        # Opened before the pool is emptied, so this process never closes its last
        # connection to the database: closing the last one makes SQLite clean up the
        # WAL under an exclusive lock, and another process opening it then is refused.
        conn = sqlite3.connect(
            self.path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        self.db.engine.dispose()  # every connection from now on is one without
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="wal-checkpoints", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _run(self, conn: Any) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._checkpoint(conn, "PASSIVE")
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    def _checkpoint(self, conn: Any, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except Exception as exc:  # sqlite3.Error; a failed checkpoint is retried next time
            log.warning("WAL checkpoint of %s failed: %s", self.path, exc)


# ---------------------------------------------------------------- schema


def _current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic Config for the migrations inside this package (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_schema(engine: Engine) -> None:
    """Create or upgrade the schema to :data:`SCHEMA_REVISION`; safe when processes race."""
    with engine.execution_options(sqlite_begin="DEFERRED").connect() as connection:
        current = _current_revision(connection)
    if current == SCHEMA_REVISION:
        return  # the common case: no Alembic import, no write lock
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _UPGRADE_LOCK_KEY})
        # Another process may have upgraded while this one waited for the lock.
        current = _current_revision(connection)
        if current == SCHEMA_REVISION:
            return
        # Alembic logs a dozen INFO lines of its own as it loads and runs; the one
        # "upgrading database" line below says what a lab needs to know.
        if logging.getLogger("alembic").level == logging.NOTSET:
            logging.getLogger("alembic").setLevel(logging.WARNING)
        from alembic import command
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        config = alembic_config(connection)
        known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
        if current is not None and current not in known:
            raise DatabaseError(
                f"database {display_url(engine.url)} has schema revision {current}, which this "
                "version of reachlab does not know: it was made by a newer labctl"
            )
        log.info(
            "upgrading database %s from %s to schema %s",
            display_url(engine.url),
            current or "empty",
            SCHEMA_REVISION,
        )
        try:
            command.upgrade(config, "head")
        except CommandError as exc:
            raise DatabaseError(
                f"cannot upgrade database {display_url(engine.url)}: {exc}"
            ) from None


# The husbandry and alerts tables share this metadata (the schema check and Alembic see
# them); imported last because their modules build on Base above.
import controller.alerts.models  # noqa: E402
import controller.husbandry.models  # noqa: E402, F401
