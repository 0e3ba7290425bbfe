"""The contract between the rig agent and the controller.

Everything both sides must agree on lives here and nowhere else: ids, task
configuration, the per-mouse session format, the session documents, the MQTT
protocol and the analysis of results. Nothing in this package touches
hardware, a broker or a database.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reachlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

SOFTWARE_VERSION = f"reachlab {__version__}"
