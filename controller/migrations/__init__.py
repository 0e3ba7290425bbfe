"""Alembic migrations of the controller's database, run by :func:`controller.db.upgrade_schema`."""
