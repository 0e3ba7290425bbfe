"""Child processes of one test: each started with its output in a log, each stopped by its pid.

Every real-process test (the end-to-end run, the fault lab, the scale run, the
dashboard's lab, the docker stack's services) starts its children through one
:class:`Processes` and stops them through it, so a test that fails or times
out still leaves nothing running. ``check_alive`` and ``all_logs`` are what
:func:`tests.waiting.wait_until` takes as ``alive`` and ``detail``: a wait
fails at once when a child has died, and a timeout shows every child's log.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from .conftest import REPO

#: How long a child has to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 20.0

#: How much of a log a failure quotes: the end, where the reason is.
LOG_TAIL = 3000


class Processes:
    """Children of one test, by name, each with its output in ``<logs>/<name>.log``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` as child ``name`` (stdin closed, stdout and stderr to its log)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "wb") as log:
            child = subprocess.Popen(
                argv, cwd=REPO, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.children[name] = child
        return child

    def check_alive(self) -> None:
        """AssertionError naming the first child that has exited, with its log."""
        for name, child in self.children.items():
            if child.poll() is not None:
                raise AssertionError(f"{name} exited with {child.returncode}:\n{self.log(name)}")

    def log(self, name: str) -> str:
        """The end of child ``name``'s log."""
        return (self.logs / f"{name}.log").read_text(errors="replace")[-LOG_TAIL:]

    def all_logs(self) -> str:
        """Every child's log, headed by its name: the detail of a failed wait."""
        return "\n".join(f"--- {name}\n{self.log(name)}" for name in self.children)

    def stop(self, name: str) -> int:
        """Stop child ``name`` by its pid (SIGTERM, then SIGKILL) and forget it; its exit code."""
        return stop(self.children.pop(name))

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every child still running, then wait for each (SIGKILL after
        :data:`STOP_TIMEOUT_S`); their exit codes by name. Rigs are signalled before the
        collector, so their last documents still find it."""
        order = sorted(self.children, key=lambda name: name.startswith("collector"))
        for name in order:
            if self.children[name].poll() is None:
                self.children[name].send_signal(signal.SIGTERM)
        # No second SIGTERM: an agent that is shutting down dies of one (the default action).
        return {name: reap(self.children[name]) for name in order}


def stop(child: subprocess.Popen[bytes] | subprocess.Popen[str]) -> int:
    """Stop one child by its pid: SIGTERM (unless it has exited already), then :func:`reap`."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    return reap(child)


def reap(child: subprocess.Popen[bytes] | subprocess.Popen[str]) -> int:
    """Wait for a child that was told to stop; SIGKILL if it is still there after
    :data:`STOP_TIMEOUT_S`. Its exit code."""
    try:
        return child.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait(timeout=5)


def check_running(child: subprocess.Popen[bytes] | subprocess.Popen[str], name: str) -> None:
    """AssertionError when one child started outside :class:`Processes` has exited: the
    ``alive`` of a wait on it."""
    if child.poll() is not None:
        raise AssertionError(f"{name} exited with {child.returncode}")
