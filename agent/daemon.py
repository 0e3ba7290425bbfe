"""``labagent run``: the rig agent; takes commands over MQTT, publishes every session document.

One :class:`Agent` per box. The task :class:`~agent.clock.EventLoop` runs on
the main thread and owns all state: the session, the journal, the outbox.
paho's network thread only hands incoming commands, connection changes and
PUBACKs over to that loop (see :mod:`agent.mqtt`). Each document the session
emits is committed to the journal first and published second, so a broker
outage, a controller outage or a killed process loses nothing (DESIGN §6).

The commands themselves are :class:`agent.commands.Commands`, one method
each; ``labagent status`` is :mod:`agent.status`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any

from agent.commands import Commands
from agent.engine import TaskEngine
from agent.journal import Journal, JournalEntry, JournalError
from agent.mqtt import MqttLink, Outbox
from agent.runtime import RigRuntime
from agent.settings import AgentSettings, resolve
from agent.settings import add_arguments as add_settings_arguments
from shared import SOFTWARE_VERSION
from shared.carryover import CarryOver
from shared.config import TaskConfig
from shared.documents import Document, TrialEnd
from shared.errors import ReachlabError
from shared.outcomes import outcome_name
from shared.protocol import RigState, Status, Topics, encode
from shared.sessionfile import append_session, mouse_file_path

log = logging.getLogger("labagent")

#: Wall seconds a shutdown waits for the broker to acknowledge the last documents;
#: whatever is still unacknowledged is replayed at the next start.
SHUTDOWN_GRACE_S = 3.0
#: Trial-by-trial status updates are retained messages: at most one per wall second.
STATUS_MIN_INTERVAL_S = 1.0


class Agent:
    """One box's agent: the rig, its journal and its link to the broker.

    Build it, then call :meth:`run` on the thread that should run the task loop
    (the main thread in ``labagent run``, so SIGTERM and SIGINT stop it cleanly).
    :meth:`request_stop` may be called from any thread.
    """

    def __init__(self, settings: AgentSettings, *, runtime: RigRuntime | None = None) -> None:
        self.settings = settings
        self.box = settings.box
        self.topics = Topics(settings.prefix)
        self.runtime = runtime or RigRuntime.create(
            sim=settings.sim,
            time_scale=settings.time_scale,
            pins=settings.pins,
            seed=settings.seed,
            profile=settings.sim_mouse,
        )
        self.loop = self.runtime.loop
        try:
            self.journal = Journal.open(settings.journal)
        except BaseException:
            self.runtime.close()
            raise
        self.session: TaskEngine | None = None
        self.state: RigState = "idle"
        self.shutting_down = False
        self._fatal: BaseException | None = None
        self._link_up = False
        self._last_status = 0.0
        self.commands = Commands(self)
        try:
            self.link = MqttLink(
                settings.broker,
                # Unique per process: a second agent started by mistake for the same box
                # must not knock this one off the broker in an endless takeover loop.
                client_id=f"labagent-{self.box}-{uuid.uuid4().hex[:6]}",
                will=(self.topics.status(self.box), encode(self._status("offline"))),
                subscriptions=[self.topics.cmd(self.box)],
                dispatch=self.loop.call_soon_threadsafe,
                listener=self,
            )
        except BaseException:
            self.journal.close()
            self.runtime.close()
            raise
        self.outbox = Outbox(
            self.journal,
            self.link,
            self.topics.events(self.box),
            on_acked=self._documents_acked,
        )

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Recover the journal, connect, and serve until stopped; returns the exit code."""
        restore_signals = self._install_signal_handlers()
        try:
            self.open()
            self.loop.run(idle_exit=False)
        finally:
            restore_signals()
            self.close()
        if self._fatal is not None:
            raise self._fatal
        return 0

    def open(self) -> None:
        """Recover the journal, connect and start the heartbeat; the loop's runner serves it.

        :meth:`run` does this for an agent on a loop of its own; :class:`agent.fleet.Fleet`
        opens many agents that share one loop.
        """
        self._recover()
        self.link.start()
        self._schedule_heartbeat()

    def request_stop(self, reason: str = "stop requested") -> None:
        """End the session as ``stopped`` and shut down; safe from any thread."""
        self.loop.call_soon_threadsafe(self._shutdown, reason)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Runs on the main thread between bytecodes; only hand over to the loop.
            self.request_stop(signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _recover(self) -> None:
        """Close sessions a dead process left running; write local copies still missing."""
        for end in self.journal.close_interrupted():
            log.warning(
                "session %s was still running when the agent last stopped: "
                "closed it as aborted (last_seq %d, %d trials)",
                end.session_id,
                end.seq,
                end.counts.get("trials", 0),
            )
        for info in self.journal.uncopied():
            self.write_local_copy(info.session_id, info.mouse)
        pending = self.journal.pending_count()
        if pending:
            log.info("%d document(s) in the journal wait for the broker's acknowledgement", pending)

    def _shutdown(self, reason: str) -> None:
        if self.shutting_down:
            log.warning("%s again: stopping without waiting for the broker", reason)
            self.loop.stop()
            return
        self.shutting_down = True
        log.info("%s: shutting down", reason)
        if self.session is not None and not self.session.ended:
            self.session.stop("stopped")
        self.runtime.rig.all_off()
        self.state = "stopping"
        self.publish_status(force=True)
        pending = self.journal.pending_count()
        if self._link_up and pending:
            log.info(
                "waiting up to %g s for the broker to acknowledge %d document(s)",
                SHUTDOWN_GRACE_S,
                pending,
            )
            self.loop.call_later(SHUTDOWN_GRACE_S * self.loop.time_scale, self.loop.stop)
        else:
            self.loop.stop()

    def fail(self, exc: BaseException) -> None:
        """A fault the agent cannot carry on after (the journal cannot be written)."""
        if self._fatal is None:
            self._fatal = exc
            log.error("%s: stopping the agent", exc)
        self.loop.stop()

    def close(self) -> None:
        """Outputs off, a last offline status, the link and the journal closed."""
        self.runtime.close()  # outputs off, pins released
        pending = self.journal.pending_count() if self._fatal is None else -1
        self.link.close(final=(self.topics.status(self.box), encode(self._status("offline"))))
        self.journal.close()
        if pending > 0:
            log.info("%d document(s) stay in the journal for the next start", pending)
        log.info("agent for box %s stopped", self.box)

    # ------------------------------------------------------------------ link events (loop thread)

    def link_connected(self) -> None:
        self._link_up = True
        log.info("connected to broker %s as box %s", self.settings.broker.url, self.box)
        self.publish_status(force=True)
        self.outbox.connected()

    def link_disconnected(self, reason: str) -> None:
        self._link_up = False
        self.outbox.disconnected()
        if self.shutting_down:
            self.loop.stop()
            return
        log.warning(
            "lost connection to broker %s (%s); reconnecting%s",
            self.settings.broker.url,
            reason,
            ", the session carries on" if self.state == "running" else "",
        )

    def link_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        if topic != self.topics.cmd(self.box):
            # Only the cmd topic is subscribed, but a broker may still deliver others: the
            # amqtt broker (the tests' and the demo's last resort) hands a new subscriber
            # retained messages of unrelated topics. They are not commands to this box.
            log.debug("ignored a message on %s: not this box's command topic", topic)
            return
        if not payload:
            # An empty message is how a retained one is cleared (labctl does it): not a command.
            log.debug("ignored an empty message on %s", topic)
            return
        if retained:
            reply = self.commands.refuse_retained(payload)
            self.link.publish(self.topics.reply(self.box), encode(reply))
            return
        self._handle_command(payload)

    def link_acked(self, mids: list[int]) -> None:
        try:
            self.outbox.acked(mids)
        except JournalError as exc:
            self.fail(exc)

    def _documents_acked(self, entries: list[JournalEntry]) -> None:
        if self.shutting_down and self.journal.pending_count() == 0:
            self.loop.stop()

    # ------------------------------------------------------------------ documents

    def _on_document(self, doc: Document) -> None:
        """The session's sink: journal first (on disk), publish second."""
        if self._fatal is not None:
            return
        try:
            self.journal.append(doc)
            self.outbox.pump()
        except JournalError as exc:
            self.fail(exc)
            return
        if isinstance(doc, TrialEnd):
            if self.session is not None:
                # The engine folds each document before handing it here: its count has it.
                log.info(
                    "%s trial %d: %s (%d correct)",
                    self.session.mouse,
                    doc.trial + 1,
                    outcome_name(doc.outcome),
                    self.session.builder.counts.as_dict()["correct"],
                )
            self.publish_status()

    def _session_ended(self, session: TaskEngine) -> None:
        end = session.builder.end
        counts = end.counts if end is not None else {}
        log.info(
            "session %s of %s ended: %s, %d trials, %d correct, %d rewards",
            session.session_id,
            session.mouse,
            end.status if end is not None else "?",
            counts.get("trials", 0),
            counts.get("correct", 0),
            counts.get("rewards", 0),
        )
        if self._fatal is None:
            self.write_local_copy(session.session_id, session.mouse)
        if not self.shutting_down:
            self.state = "idle"
            self.publish_status(force=True)

    def write_local_copy(self, session_id: str, mouse: str) -> None:
        """Add the session, rebuilt from the journal, to ``DATA_DIR/<mouse>.json``."""
        try:
            data = self.journal.rebuild(session_id)
            path = append_session(mouse_file_path(self.settings.data_dir, mouse), data)
            self.journal.mark_copied(session_id)
        except (ReachlabError, OSError) as exc:
            log.error(
                "could not write the local copy of session %s: %s (the journal keeps the "
                "session; retried before pruning and at the next start)",
                session_id,
                exc,
            )
            return
        log.info("local copy of session %s saved in %s", session_id, path)

    # ------------------------------------------------------------------ status

    def _status(
        self,
        state: RigState | None = None,
        pending: int = 0,
        uncommitted: list[str] | None = None,
        uncopied: list[str] | None = None,
    ) -> Status:
        session = self.session
        running = session is not None and not session.ended
        return Status(
            box=self.box,
            state=state or self.state,
            mouse=session.mouse if running and session else None,
            session_id=session.session_id if running and session else None,
            trial=session.trial if running and session else 0,
            rewards=session.rewards if running and session else 0,
            session_started=session.start_time if running and session else None,
            session_duration=session.config.duration if running and session else None,
            software_version=SOFTWARE_VERSION,
            clock=self.loop.now(),
            wall_clock=time.time(),  # the calendar, which a scaled task clock runs ahead of
            pending_documents=pending,
            uncommitted=uncommitted or [],
            journal_free_mb=self._journal_free_mb(),
            uncopied=uncopied or [],
        )

    def _journal_free_mb(self) -> float | None:
        """Free space on the journal's disk: a full disk stops the rig recording (an alert)."""
        try:
            usage = shutil.disk_usage(self.settings.journal.parent)
        except OSError:
            return None
        return round(usage.free / 1e6, 1)

    def publish_status(self, force: bool = False) -> None:
        if not self._link_up:
            return  # a fresh status goes out on connect
        now = time.monotonic()
        if not force and now - self._last_status < STATUS_MIN_INTERVAL_S:
            return
        self._last_status = now
        status = self._status(
            pending=self.journal.pending_count(),
            uncommitted=self.journal.uncommitted(),
            uncopied=[info.session_id for info in self.journal.uncopied()[:50]],
        )
        self.link.publish(self.topics.status(self.box), encode(status), retain=True)

    def _schedule_heartbeat(self) -> None:
        # The loop's timers count task seconds; the heartbeat is in wall seconds.
        self.loop.call_later(self.settings.heartbeat * self.loop.time_scale, self._heartbeat)

    def _heartbeat(self) -> None:
        self.publish_status(force=True)
        self._schedule_heartbeat()

    # ------------------------------------------------------------------ what commands use

    def running_session(self) -> TaskEngine | None:
        session = self.session
        return session if session is not None and not session.ended else None

    def begin_session(
        self,
        *,
        config: TaskConfig,
        mouse: str,
        session_id: str,
        metadata: dict[str, Any],
        carry_over: CarryOver | None,
    ) -> TaskEngine:
        """A new session on this rig, journalled and published as it runs; not started yet."""
        session = self.runtime.new_session(
            config=config,
            mouse=mouse,
            box=self.box,
            session_id=session_id,
            metadata=metadata,
            carry_over=carry_over,
            sink=self._on_document,
        )
        session.on_end.append(self._session_ended)
        self.session = session
        self.state = "running"
        return session

    def current_status(self) -> Status:
        return self._status(
            pending=self.journal.pending_count(),
            uncommitted=self.journal.uncommitted(),
            uncopied=[info.session_id for info in self.journal.uncopied()[:50]],
        )

    def _handle_command(self, payload: bytes) -> None:
        reply = self.commands.handle(payload)
        self.link.publish(self.topics.reply(self.box), encode(reply))


# ---------------------------------------------------------------- labagent run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``labagent run``."""
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """``labagent run``: serve this box until SIGTERM or Ctrl-C."""
    settings = resolve(args)
    agent = Agent(settings)
    log.info(
        "labagent (%s) for box %s%s: broker %s, journal %s, local copies in %s",
        SOFTWARE_VERSION,
        settings.box,
        f" (simulated, time x{settings.time_scale:g})" if settings.sim else "",
        settings.broker.url,
        settings.journal,
        settings.data_dir,
    )
    return agent.run()
