"""Waiting for another process's effect: one helper for every test that must poll.

A test whose code runs in-process waits on an event or a condition variable;
only where another process must catch up (a file it writes, a row it stores,
a screen it draws) is there nothing to wait on, and then :func:`wait_until`
checks a predicate until it holds or the deadline passes. ``alive`` is
checked every round, so a test whose process died fails at once, with that
process's reason, instead of at the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Between two checks: short enough not to slow a test, long enough not to spin a core.
INTERVAL_S = 0.05


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    alive: Callable[[], object] | None = None,
    detail: Callable[[], str] | None = None,
    interval: float = INTERVAL_S,
) -> T:
    """Check ``predicate`` until it returns something true, and return that.

    AssertionError naming ``what`` after ``timeout`` seconds (with ``detail()``
    appended, e.g. a process's log). ``alive()`` runs before every check and
    raises if something the wait depends on has gone (a process exited).
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g} s waiting for {what}"
            raise AssertionError(f"{message}\n{detail()}" if detail is not None else message)
        time.sleep(interval)  # another process's state: there is no event to wait on
