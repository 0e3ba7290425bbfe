"""Many simulated rigs in one process: real agents that share one task loop, for load and soak.

Each rig is a whole :class:`agent.daemon.Agent` (its own journal, outbox, command
handler, Last Will and MQTT client, a simulated mouse on mock pins), exactly what
``labagent run --sim`` runs. What the rigs share is the task loop's thread: one
:class:`~agent.clock.EventLoop` at the calendar's pace (time scale 1, real session
timing) serves every rig's timers, pin edges and link events, so a process holds a
hundred rigs without a hundred task threads. Each rig's paho client keeps its own
network thread (a Last Will is per connection, so clients cannot be shared).

A shared loop is never rebased (see :meth:`agent.runtime.RigRuntime.create`), which
is why a fleet runs at time scale 1 only.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from agent.clock import EventLoop
from agent.daemon import Agent
from agent.journal import JournalEntry
from agent.runtime import RigRuntime
from agent.settings import AgentSettings
from shared.errors import ConfigError

log = logging.getLogger("labagent.fleet")

SentHook = Callable[[str, JournalEntry], None]
"""``on_sent(box, entry)``: a document handed to the broker link (first send and resends)."""


class Fleet:
    """Rigs served by one task loop in this process; :meth:`run` serves them until :meth:`stop`."""

    def __init__(self, settings: Sequence[AgentSettings], *, on_sent: SentHook | None = None):
        for item in settings:
            if not item.sim or item.time_scale != 1.0:
                raise ConfigError(
                    f"box {item.box}: a fleet runs simulated rigs at time scale 1 (real timing)"
                )
        self.loop = EventLoop(time_scale=1.0)
        self.agents: list[Agent] = []
        try:
            for item in settings:
                runtime = RigRuntime.create(
                    sim=True, seed=item.seed, profile=item.sim_mouse, loop=self.loop
                )
                agent = Agent(replace(item), runtime=runtime)
                if on_sent is not None:
                    agent.outbox.on_sent = lambda entry, box=item.box: on_sent(box, entry)
                self.agents.append(agent)
        except BaseException:
            self._close()
            raise

    def run(self) -> None:
        """Open every rig (journal recovery, connect) and serve them on this thread."""
        try:
            for agent in self.agents:
                agent.open()
            self.loop.run(idle_exit=False)
        finally:
            self._close()

    def stop(self) -> None:
        """Make :meth:`run` return; safe from any thread. Running sessions stop where they
        are: their documents stay in the journals, as after a power cut."""
        self.loop.stop()

    def _close(self) -> None:
        for agent in self.agents:
            try:
                agent.close()
            except Exception as exc:  # one rig's failure to close must not keep the others open
                log.error("box %s did not close cleanly: %s", agent.box, exc)


def serve(settings: Sequence[AgentSettings], *, on_sent: SentHook | None = None) -> None:
    """Run a fleet on this (main) thread until SIGTERM or SIGINT."""
    fleet = Fleet(settings, on_sent=on_sent)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: fleet.stop())
    fleet.run()
