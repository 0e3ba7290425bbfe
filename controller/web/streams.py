"""How many live streams the dashboard keeps open: in total and per client address.

Each open ``/api/stream`` holds a socket (an open file) for as long as its page stays
open. Unlimited, a few hundred of them from anywhere on the network exhaust the
process's open-file limit and the server stops answering anyone; so a stream over
either cap is refused at once with 503 and a ``Retry-After``, and the page tries again
later (with growing delays). A stream that ends, however it ends, frees its slot
(:class:`controller.web.app.HeldStream`). Needs nothing beyond the standard library,
so labctl reads the defaults without the web extra.
"""

from __future__ import annotations

import resource
import threading
from collections import Counter

#: Default cap on the open streams, all clients together (``labctl web --max-streams``).
MAX_STREAMS = 100
#: Default cap on the open streams of one client address (``--max-streams-per-client``).
MAX_STREAMS_PER_CLIENT = 8
#: Seconds a refused page is told to wait before trying again.
RETRY_AFTER_S = 10
#: Open files the server needs besides its streams: the database, the broker, the
#: listening socket, page and API requests, Python's own.
OTHER_FILES = 100


class StreamLimiter:
    """The open streams, counted per client address; thread-safe."""

    def __init__(self, total: int = MAX_STREAMS, per_client: int = MAX_STREAMS_PER_CLIENT) -> None:
        if total < 1 or per_client < 1:
            raise ValueError("the stream caps must be at least 1")
        self.total = total
        self.per_client = per_client
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, client: str) -> str | None:
        """Take a slot for ``client``; None when taken, else why it was refused."""
        with self._lock:
            if sum(self._open.values()) >= self.total:
                return f"the dashboard has {self.total} live streams open, its limit"
            if self._open[client] >= self.per_client:
                return f"{client} has {self.per_client} live streams open, its limit"
            self._open[client] += 1
        return None

    def release(self, client: str) -> None:
        with self._lock:
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]

    @property
    def open(self) -> int:
        with self._lock:
            return sum(self._open.values())


def refusal_line(reason: str) -> str:
    """What a refused stream is told (the 503's body)."""
    return (
        f"labctl: error: {reason}: try again in {RETRY_AFTER_S} s, or close other pages "
        "(labctl web --max-streams / --max-streams-per-client raise the limits)"
    )


def make_room(total: int) -> str | None:
    """Raise this process's open-file limit (up to its hard limit) to fit ``total``
    streams and the rest; None when they fit, else the line saying why they cannot."""
    needed = total + OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (
            f"--max-streams {total} needs about {needed} open files, but this process may "
            f"open only {hard} (ulimit -n): lower --max-streams or raise the limit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return None
