"""The contract between the rig agent and the controller.

Everything both sides must agree on lives here and nowhere else: ids, task
configuration, the per-mouse session format, the session documents, the MQTT
protocol and the analysis of results. Nothing in this package touches
hardware, a broker or a database.

Importing the package itself does nothing: the version is looked up on first
use, so that :mod:`shared.entry` (the commands' entry points) is in place within
a few milliseconds of a command's start (a Ctrl-C during start-up is quiet).
"""

from __future__ import annotations

from functools import cache


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reachlab")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"


def __getattr__(name: str) -> str:
    # ``__version__`` and ``SOFTWARE_VERSION`` (PEP 562: looked up when first asked for).
    if name == "__version__":
        return _version()
    if name == "SOFTWARE_VERSION":
        return f"reachlab {_version()}"
    raise AttributeError(f"module 'shared' has no attribute {name!r}")
