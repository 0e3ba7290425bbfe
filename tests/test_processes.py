"""The tests' process helper: children stopped by pid and waited for; a failure names the child."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .processes import Processes, check_running
from .waiting import wait_until

#: A child that shuts down slowly on SIGTERM (exit 0), as ``labagent run`` does; a second
#: SIGTERM once its handler has run would kill it (the default action).
SLOW_SHUTDOWN = """
import signal, sys, time
def first(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print("shutting down", flush=True)
    time.sleep(0.5)
    sys.exit(0)
signal.signal(signal.SIGTERM, first)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def test_stop_all_lets_each_child_shut_down_and_returns_its_exit_code(tmp_path: Path) -> None:
    processes = Processes(tmp_path / "logs")
    try:
        for name in ("rig1", "collector"):
            processes.start(name, [sys.executable, "-c", SLOW_SHUTDOWN], os.environ)
        wait_until(
            lambda: all("ready" in processes.log(n) for n in ("rig1", "collector")),
            30, "both children to be ready", alive=processes.check_alive,
        )  # fmt: skip
        assert processes.stop_all() == {"rig1": 0, "collector": 0}
        assert "shutting down" in processes.log("rig1")
    finally:
        processes.stop_all()


def test_check_alive_names_the_child_that_exited_with_its_log(tmp_path: Path) -> None:
    processes = Processes(tmp_path / "logs")
    child = processes.start("rig2", [sys.executable, "-c", "print('no broker'); exit(3)"], {})
    child.wait(timeout=30)
    with pytest.raises(AssertionError, match=r"rig2 exited with 3:\nno broker"):
        processes.check_alive()
    with pytest.raises(AssertionError, match="the agent exited with 3"):
        check_running(child, "the agent")
    assert processes.stop("rig2") == 3
    assert processes.children == {}
