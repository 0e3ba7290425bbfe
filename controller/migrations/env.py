"""Alembic environment: runs the controller's migrations.

``labctl`` calls Alembic in code (:func:`controller.db.upgrade_schema`) and
hands over its own connection in ``config.attributes["connection"]``, so the
upgrade runs inside labctl's transaction and lock. Run by hand, Alembic uses
``sqlalchemy.url`` from ``-x url=...`` or the config instead. SQLite cannot
alter tables in place, so migrations there use Alembic's batch mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from controller.db import Base, create_database_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("alembic: give the database with -x url=... (any SQLAlchemy URL)")
    return url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_database_engine(_url())
    try:
        with engine.begin() as own:
            _run(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
