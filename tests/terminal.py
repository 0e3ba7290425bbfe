"""A command on a pseudo-terminal, as a person runs it: the tests read its screen."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Terminal:
    """``python -m MODULE ARGS`` with its output on a pseudo-terminal.

    ``typing``: standard input is the terminal too (the process may ask questions);
    otherwise it reads nothing. ``split_stderr``: standard error goes to a pipe, read
    into :attr:`errors` by :meth:`close`, so the screen and the errors can be told apart.
    """

    def __init__(
        self,
        module: str,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        typing: bool = False,
        split_stderr: bool = False,
        sigint_ignored: bool = False,
    ) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=dict(env),
            stdin=slave if typing else subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE if split_stderr else slave,
            # As a shell leaves a background job: SIGINT ignored from the start.
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
        os.close(slave)
        self.screen = b""
        self.errors = ""

    def read(self, timeout: float) -> bytes:
        """What the process wrote next: waits up to ``timeout`` for the first bytes."""
        chunk = b""
        if select.select([self.master], [], [], timeout)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the process closed the terminal (it exited)
                chunk = b""
        self.screen += chunk
        return chunk

    def read_until(self, needle: bytes | re.Pattern[bytes], timeout: float = 30.0) -> None:
        """Read until ``needle`` (bytes or a pattern) is on the screen; fail if it exits."""
        deadline = time.monotonic() + timeout
        while not self._shows(needle):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} after {timeout:g} s: {self.screen!r}")
            if not self.read(left) and self.process.poll() is not None:
                raise AssertionError(f"exited before {needle!r}: {self.screen!r}")

    def _shows(self, needle: bytes | re.Pattern[bytes]) -> bool:
        if isinstance(needle, re.Pattern):
            return needle.search(self.screen) is not None
        return needle in self.screen

    def read_until_exit(self, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while self.read(0.1) or self.process.poll() is None:
            assert time.monotonic() < deadline, what

    def text(self) -> str:
        """The screen without colours and cursor moves."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.screen.decode(errors="replace"))

    def close(self) -> None:
        """Kill the process if it still runs (by its pid), collect stderr, free the pty."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=20)
        if self.process.stderr is not None:
            self.errors = self.process.stderr.read().decode()
            self.process.stderr.close()
        os.close(self.master)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
