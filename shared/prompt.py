"""The prompt a person answers at a terminal, for ``labagent train`` and ``labctl``.

A Ctrl-C at it is never lost (see :func:`read_line`); what the Ctrl-C then means is the
command's business (:mod:`shared.entry` makes it "PROG: interrupted" and exit 130).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading


def read_line(prompt: str) -> str:
    """``input(prompt)`` that a Ctrl-C always interrupts (KeyboardInterrupt).

    ``input()`` can miss a Ctrl-C: Python's SIGINT handler only sets a flag and the
    KeyboardInterrupt is raised once the blocking read returns, so a signal that lands
    after the prompt is written but before the read starts leaves it waiting for a line
    that never comes. With :func:`signal.set_wakeup_fd` the signal also writes a byte to
    a pipe that ``select`` watches next to standard input, so it wakes up whenever the
    signal came, and the pending handler raises KeyboardInterrupt right after. Whatever
    SIGINT's disposition was (a parent may have left it ignored), Ctrl-C at the prompt
    interrupts it. A standard input that is no file (a test's) is read by ``input``.
    """
    if threading.current_thread() is not threading.main_thread() or not _selectable(sys.stdin):
        return input(prompt)  # signals are only delivered to the main thread anyway
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        while True:
            # A timeout, so that a signal whose wake-up byte went to another thread's
            # select is still noticed: the pending handler runs between bytecodes.
            ready, _, _ = select.select([sys.stdin, wake_read], [], [], 0.2)
            if wake_read in ready:
                os.read(wake_read, 64)  # the handler of the signal runs before the next line
            if sys.stdin in ready:
                line = sys.stdin.readline()
                if not line:
                    raise EOFError
                return line.rstrip("\n")
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        signal.set_wakeup_fd(previous)
        os.close(wake_read)
        os.close(wake_write)


def _selectable(stream: object) -> bool:
    try:
        return isinstance(stream.fileno(), int)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False
