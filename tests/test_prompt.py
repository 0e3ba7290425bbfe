"""A Ctrl-C at a prompt is never lost (shared.prompt): labctl calibrate's weighing prompt
waited forever in about 1 run in 5 under load when Ctrl-C came just as the prompt showed."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from .conftest import REPO

ASK = (
    "import sys\n"
    "from shared.prompt import read_line\n"
    "try:\n"
    "    read_line('answer: ')\n"
    "except KeyboardInterrupt:\n"
    "    sys.exit(130)\n"
)


def _ctrl_c_as_the_prompt_shows() -> int | None:
    """Runs a prompt on a terminal, sends SIGINT the moment ``answer:`` appears, and
    returns the exit status (None: still waiting 10 s later)."""
    master, slave = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", ASK], cwd=REPO, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    try:
        screen, deadline = b"", time.monotonic() + 30
        while b"answer: " not in screen and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                screen += os.read(master, 1024)
        child.send_signal(signal.SIGINT)
        try:
            return child.wait(10)
        except subprocess.TimeoutExpired:
            return None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)


def test_ctrl_c_the_moment_a_prompt_shows_always_ends_it() -> None:
    # The race is a few microseconds wide: many tries, each a bare interpreter (0.05 s).
    statuses = [_ctrl_c_as_the_prompt_shows() for _ in range(30)]
    assert statuses == [130] * 30
