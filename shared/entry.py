"""The commands' entry points: Ctrl-C at any moment exits 130 with one line, no traceback.

``labctl`` and ``labagent`` start here (pyproject's ``[project.scripts]`` names
:mod:`controller.entry` and :mod:`agent.cli`, which import this module first).
Importing it installs a SIGINT handler that leaves at once, so a Ctrl-C during the
seconds of start-up imports (SQLAlchemy, pydantic, typer) does not print a traceback
from the middle of some library. While the command runs, Ctrl-C is Python's own
KeyboardInterrupt (sessions end cleanly, prompts are left), and what escapes the
command becomes the line "PROG: interrupted" and exit 130. After the command, the
quiet handler is back for the interpreter's shutdown (threads being joined).

Before Python's own start-up has installed any handler, the process dies of the
signal itself (a shell shows 130 too); no Python code can run earlier than that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

#: The exit status of a command ended by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130

#: The command's name for its line before :func:`run` names it (the console script's own).
_prog = os.path.basename(sys.argv[0]).removesuffix(".exe") or "reachlab"


def _leave_now(_signum: int, _frame: FrameType | None) -> None:
    # Nothing is stored or sent before the command runs, and nothing after it: no
    # clean-up is owed, and unwinding through half-done imports is what printed tracebacks.
    _say_interrupted()
    os._exit(EXIT_INTERRUPTED)


def _say_interrupted() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        os.write(2, f"\n{_prog}: interrupted (Ctrl-C)\n".encode())


signal.signal(signal.SIGINT, _leave_now)


def run(prog: str, load: Callable[[], Callable[[], int | None]]) -> NoReturn:
    """Import the command with ``load`` (its imports under the quiet handler), run it with
    Python's own Ctrl-C handling, and exit with its status (130 when interrupted)."""
    global _prog
    _prog = prog
    command = load()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = command()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, _leave_now)
        _say_interrupted()
        status = EXIT_INTERRUPTED
    signal.signal(signal.SIGINT, _leave_now)
    sys.exit(status)
