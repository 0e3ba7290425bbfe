"""Error classes under one root; each leaf is also the builtin it most resembles.

Messages name the culprit (the key, the id, the file) so a CLI can print
``str(error)`` as its one line and exit non-zero.
"""


class ReachlabError(Exception):
    """Root of every error reachlab raises on purpose."""


class ConfigError(ReachlabError, ValueError):
    """A task configuration key is unknown, of the wrong type or out of range."""


class InvalidIdError(ReachlabError, ValueError):
    """A mouse or box id does not match its allowed pattern."""


class DataFileError(ReachlabError, ValueError):
    """A per-mouse JSON file cannot be read or does not hold sessions."""


class ProtocolError(ReachlabError, ValueError):
    """A message on the wire is not valid JSON or does not match its schema."""


class HardwareError(ReachlabError, RuntimeError):
    """The rig's GPIO could not be set up or driven."""
