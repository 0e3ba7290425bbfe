"""The lab's central side: database, collector, per-mouse file export and the ``labctl`` CLI.

The controller never imports the agent; both speak through :mod:`shared`.
Importing this package is cheap: SQLAlchemy, paho and rich are imported by
the modules that need them.
"""
