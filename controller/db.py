"""The controller's database: typed SQLAlchemy models, the engine, and schema upgrades.

Any SQLAlchemy URL works; the default is a SQLite file in the user data
directory (``$XDG_DATA_HOME/reachlab/reachlab.db``). :func:`open_database`
brings the schema to the newest Alembic revision on first use, so nobody has
to run a migration by hand.

Times are Unix seconds (floats), as everywhere else in reachlab. A session's
dict is stored as the exact JSON text that is exported (``sessions.data``),
so key order, number types and unknown keys of imported files survive, and
an export is a concatenation of stored texts. Raw session documents are kept
as received (``documents.body``), unique per ``(session_id, seq)``.

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
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from shared.errors import ReachlabError

log = logging.getLogger("labctl.db")

#: The Alembic head this code expects; a test checks it against the migrations.
SCHEMA_REVISION = "0002_husbandry"
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


# ---------------------------------------------------------------- models

# Explicit constraint names, so migrations (and SQLite's batch mode) can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: An auto-incrementing 64-bit key; SQLite only auto-increments an INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Mouse(Base):
    """A mouse in training; its id is also its per-mouse file name."""

    __tablename__ = "mice"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    notes: Mapped[str] = mapped_column(Text, default="")


class Box(Base):
    """A training box (one rig): its last status as the collector saw it."""

    __tablename__ = "boxes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="offline")
    #: The last status message, as received (JSON text).
    status: Mapped[str | None] = mapped_column(Text)
    #: Wall time of the last live message from the box (status, document or reply).
    last_seen: Mapped[float | None] = mapped_column(Float)
    #: Wall time of the last session document from the box.
    last_event_at: Mapped[float | None] = mapped_column(Float)
    #: Why the box is offline: its Last Will, or no message within the heartbeat timeout.
    offline_reason: Mapped[str | None] = mapped_column(String(200))


class Assignment(Base):
    """Mouse on box from ``started_at`` until ``ended_at`` (open while None).

    At most one open assignment per mouse and per box (partial unique indexes).
    """

    __tablename__ = "assignments"
    __table_args__ = (
        Index(
            "uq_assignments_open_mouse",
            "mouse_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index(
            "uq_assignments_open_box",
            "box_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"), index=True)
    box_id: Mapped[str] = mapped_column(ForeignKey("boxes.id"), index=True)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)


class Cohort(Base):
    """A named group of mice that are started together."""

    __tablename__ = "cohorts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)


class CohortMember(Base):
    __tablename__ = "cohort_members"

    cohort_name: Mapped[str] = mapped_column(
        ForeignKey("cohorts.name", ondelete="CASCADE"), primary_key=True
    )
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"), primary_key=True, index=True)
    #: Order the mice were given in; listings keep it.
    position: Mapped[int] = mapped_column(Integer)


class TrainingSession(Base):
    """One session of one mouse: recorded by a box, or imported from a per-mouse file.

    ``data`` is the session dict as exported, set once the session is complete
    (recorded: every document ``0..last_seq`` stored; imported: always).
    Sessions are exported in ``(position, id)`` order: the session's start time
    in Unix seconds, or the order of the file it was imported from.
    """

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_mouse_order", "mouse_id", "position", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: None only for imported sessions of files written before session ids existed.
    session_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    mouse_id: Mapped[str] = mapped_column(ForeignKey("mice.id"))
    box: Mapped[str | None] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(16))  # "recorded" or "imported"
    status: Mapped[str | None] = mapped_column(String(16))
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[float] = mapped_column(Float)
    start_time: Mapped[float | None] = mapped_column(Float)
    end_time: Mapped[float | None] = mapped_column(Float)
    date: Mapped[str | None] = mapped_column(String(32))
    last_seq: Mapped[int | None] = mapped_column(Integer)
    trial_count: Mapped[int] = mapped_column(Integer, default=0)
    reward_count: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[str | None] = mapped_column(Text)
    #: sha256 of ``data``: finds an already imported session without reading every text.
    digest: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    completed_at: Mapped[float | None] = mapped_column(Float)
    #: When the box confirmed ``committed`` (it may then prune its journal).
    committed_at: Mapped[float | None] = mapped_column(Float)
    #: Why a recorded session cannot be completed, if it cannot.
    problem: Mapped[str | None] = mapped_column(Text)


class Document(Base):
    """A session document exactly as it arrived (``body``), unique per session and seq."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    box: Mapped[str] = mapped_column(String(32))
    t: Mapped[float] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float)
    body: Mapped[str] = mapped_column(Text)


class Trial(Base):
    """One trial of a complete session, for queries; the session's ``data`` stays the truth."""

    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("session_pk", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_pk: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 0-based place in the session
    start: Mapped[float | None] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float)
    lift_time: Mapped[float | None] = mapped_column(Float)
    lift_paw: Mapped[int | None] = mapped_column(Integer)
    spout: Mapped[int | None] = mapped_column(Integer)
    cue_duration: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[int | None] = mapped_column(Integer)
    shaping: Mapped[bool | None] = mapped_column(Boolean)
    position_left: Mapped[int | None] = mapped_column(Integer)
    position_right: Mapped[int | None] = mapped_column(Integer)


class DeadLetter(Base):
    """A message the collector could not use, kept with the reason."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[float] = mapped_column(Float, index=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)


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
    except ArgumentError:
        raise DatabaseError(
            f"invalid database URL {url!r}: expected an SQLAlchemy URL such as "
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
        #: stored this way before its box is told it may prune it.
        self.durable_engine = engine.execution_options(sqlite_synchronous="FULL")

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed at the end of the block, rolled back on error."""
        with self._writer.begin() as session:
            yield session

    @contextlib.contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session that does not take SQLite's write lock."""
        # Closing (not committing) ends the read; loaded objects stay readable, detached.
        with self._reader() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


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


def create_database_engine(url: str | URL) -> Engine:
    """An engine for ``url`` with reachlab's SQLite settings; nothing is connected yet."""
    parsed = parse_database_url(url) if isinstance(url, str) else url
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # One shared connection, or every connection would see its own empty database.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
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


# The husbandry tables share this metadata (the schema check and Alembic see them); imported
# last because their module builds on Base above.
import controller.husbandry.models  # noqa: E402, F401
