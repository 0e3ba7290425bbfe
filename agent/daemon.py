"""``labagent run``: the rig agent; takes commands over MQTT, publishes every session document.

One :class:`Agent` per box. The task :class:`~agent.clock.EventLoop` runs on
the main thread and owns all state: the session, the journal, the outbox.
paho's network thread only hands incoming commands, connection changes and
PUBACKs over to that loop (see :mod:`agent.mqtt`). Each document the session
emits is committed to the journal first and published second, so a broker
outage, a controller outage or a killed process loses nothing (DESIGN §6).

``labagent status`` (:class:`StatusCommand`) prints what the journal still
holds: sessions the controller has not committed and documents not yet
acknowledged by the broker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from types import FrameType
from typing import Any

from agent.engine import Session
from agent.journal import CommitRefused, Journal, JournalEntry, JournalError, SessionNotFound
from agent.mqtt import MqttLink, Outbox
from agent.runtime import RigRuntime
from agent.settings import AgentSettings, add_config_file_argument, resolve, resolve_journal
from agent.settings import add_arguments as add_settings_arguments
from shared import SOFTWARE_VERSION
from shared.config import TaskConfig
from shared.documents import Document, TrialEnd
from shared.errors import ConfigError, HardwareError, InvalidIdError, ProtocolError, ReachlabError
from shared.ids import check_mouse_id
from shared.protocol import (
    COMMAND_NAMES,
    CommittedCommand,
    DispenseCommand,
    ErrorCode,
    MoveSpoutsCommand,
    PingCommand,
    ReadSensorsCommand,
    Reply,
    ResendCommand,
    RigState,
    SetLedsCommand,
    StartCommand,
    Status,
    StopCommand,
    Topics,
    encode,
    parse_command,
)
from shared.sessionfile import append_session, mouse_file_path

log = logging.getLogger("labagent")

OUTCOMES = {0: "missed", 1: "correct", 2: "incorrect"}
#: Wall seconds a shutdown waits for the broker to acknowledge the last documents;
#: whatever is still unacknowledged is replayed at the next start.
SHUTDOWN_GRACE_S = 3.0
#: Trial-by-trial status updates are retained messages: at most one per wall second.
STATUS_MIN_INTERVAL_S = 1.0
#: Pause between rewards of a ``dispense`` command, in task seconds (the calibration utility's).
DISPENSE_GAP_S = 0.2


class CommandError(ReachlabError):
    """A command cannot be carried out; becomes an error reply with ``code``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code


@contextlib.contextmanager
def _hardware(what: str) -> Iterator[None]:
    """Turn the rig's GPIO failures into a ``hardware`` error reply."""
    from gpiozero.exc import GPIOZeroError

    try:
        yield
    except (HardwareError, GPIOZeroError) as exc:
        raise CommandError("hardware", f"{what} failed: {exc}") from None


def _peek(payload: bytes) -> tuple[str, str | None]:
    """The ``request_id`` and ``command`` of a payload, as far as they can be read."""
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "", None
    if not isinstance(data, dict):
        return "", None
    request_id = data.get("request_id")
    name = data.get("command")
    return (
        request_id if isinstance(request_id, str) else "",
        name if isinstance(name, str) else None,
    )


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
        self.session: Session | None = None
        self.state: RigState = "idle"
        self._utility: str | None = None
        self._shutting_down = False
        self._fatal: BaseException | None = None
        self._link_up = False
        self._correct = 0
        self._last_status = 0.0
        self._handlers: dict[type[Any], Callable[[Any], dict[str, Any]]] = {
            StartCommand: self._start,
            StopCommand: self._stop,
            ResendCommand: self._resend,
            CommittedCommand: self._committed,
            PingCommand: self._ping,
            DispenseCommand: self._dispense,
            SetLedsCommand: self._set_leds,
            MoveSpoutsCommand: self._move_spouts,
            ReadSensorsCommand: self._read_sensors,
        }
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
            self._recover()
            self.link.start()
            self._schedule_heartbeat()
            self.loop.run(idle_exit=False)
        finally:
            restore_signals()
            self._close()
        if self._fatal is not None:
            raise self._fatal
        return 0

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
            self._write_local_copy(info.session_id, info.mouse)
        pending = self.journal.pending_count()
        if pending:
            log.info("%d document(s) in the journal wait for the broker's acknowledgement", pending)

    def _shutdown(self, reason: str) -> None:
        if self._shutting_down:
            log.warning("%s again: stopping without waiting for the broker", reason)
            self.loop.stop()
            return
        self._shutting_down = True
        log.info("%s: shutting down", reason)
        if self.session is not None and not self.session.ended:
            self.session.stop("stopped")
        self.runtime.rig.all_off()
        self.state = "stopping"
        self._publish_status(force=True)
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

    def _fail(self, exc: BaseException) -> None:
        """A fault the agent cannot carry on after (the journal cannot be written)."""
        if self._fatal is None:
            self._fatal = exc
            log.error("%s: stopping the agent", exc)
        self.loop.stop()

    def _close(self) -> None:
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
        self._publish_status(force=True)
        self.outbox.connected()

    def link_disconnected(self, reason: str) -> None:
        self._link_up = False
        self.outbox.disconnected()
        if self._shutting_down:
            self.loop.stop()
            return
        log.warning(
            "lost connection to broker %s (%s); reconnecting%s",
            self.settings.broker.url,
            reason,
            ", the session carries on" if self.state == "running" else "",
        )

    def link_message(self, topic: str, payload: bytes) -> None:
        if topic != self.topics.cmd(self.box):
            # Only the cmd topic is subscribed, but a broker may still deliver others: the
            # amqtt broker (the tests' and the demo's last resort) hands a new subscriber
            # retained messages of unrelated topics. They are not commands to this box.
            log.debug("ignored a message on %s: not this box's command topic", topic)
            return
        self._handle_command(payload)

    def link_acked(self, mids: list[int]) -> None:
        try:
            self.outbox.acked(mids)
        except JournalError as exc:
            self._fail(exc)

    def _documents_acked(self, entries: list[JournalEntry]) -> None:
        if self._shutting_down and self.journal.pending_count() == 0:
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
            self._fail(exc)
            return
        if isinstance(doc, TrialEnd):
            self._correct += doc.outcome == 1
            mouse = self.session.mouse if self.session is not None else "?"
            log.info(
                "%s trial %d: %s (%d correct)",
                mouse,
                doc.trial + 1,
                OUTCOMES[doc.outcome],
                self._correct,
            )
            self._publish_status()

    def _session_ended(self, session: Session) -> None:
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
            self._write_local_copy(session.session_id, session.mouse)
        if not self._shutting_down:
            self.state = "idle"
            self._publish_status(force=True)

    def _write_local_copy(self, session_id: str, mouse: str) -> None:
        """Add the session, rebuilt from the journal, to ``DATA_DIR/<mouse>.json``."""
        try:
            data = self.journal.rebuild(session_id)
            path = append_session(mouse_file_path(self.settings.data_dir, mouse), data)
            self.journal.mark_copied(session_id)
        except (ReachlabError, OSError) as exc:
            log.error(
                "could not write the local copy of session %s: %s (retried at the next start)",
                session_id,
                exc,
            )
            return
        log.info("local copy of session %s saved in %s", session_id, path)

    # ------------------------------------------------------------------ status

    def _status(
        self, state: RigState | None = None, pending: int = 0, uncommitted: list[str] | None = None
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
            pending_documents=pending,
            uncommitted=uncommitted or [],
        )

    def _publish_status(self, force: bool = False) -> None:
        if not self._link_up:
            return  # a fresh status goes out on connect
        now = time.monotonic()
        if not force and now - self._last_status < STATUS_MIN_INTERVAL_S:
            return
        self._last_status = now
        status = self._status(
            pending=self.journal.pending_count(), uncommitted=self.journal.uncommitted()
        )
        self.link.publish(self.topics.status(self.box), encode(status), retain=True)

    def _schedule_heartbeat(self) -> None:
        # The loop's timers count task seconds; the heartbeat is in wall seconds.
        self.loop.call_later(self.settings.heartbeat * self.loop.time_scale, self._heartbeat)

    def _heartbeat(self) -> None:
        self._publish_status(force=True)
        self._schedule_heartbeat()

    # ------------------------------------------------------------------ commands

    def _handle_command(self, payload: bytes) -> None:
        """Exactly one reply per command, whatever the payload holds."""
        request_id, name = _peek(payload)
        try:
            command = parse_command(payload)
        except ProtocolError as exc:
            code: ErrorCode = (
                "unknown_command" if name is not None and name not in COMMAND_NAMES else "invalid"
            )
            log.warning("refused a command (request %r): %s", request_id, exc)
            self._reply(request_id, name or "", error=str(exc), code=code)
            return
        if not command.request_id:
            log.warning("command %s without a request_id", command.command)
        handler = self._handlers[type(command)]
        try:
            data = handler(command)
        except CommandError as exc:
            log.info("%s (request %s) refused: %s", command.command, command.request_id, exc)
            self._reply(command.request_id, command.command, error=str(exc), code=exc.code)
        except JournalError as exc:
            self._reply(command.request_id, command.command, error=str(exc))
            self._fail(exc)
        except Exception as exc:
            # The agent must outlive a bug in one command: report it and carry on.
            log.exception("%s (request %s) failed", command.command, command.request_id)
            self._reply(command.request_id, command.command, error=f"internal error: {exc}")
        else:
            self._reply(command.request_id, command.command, data=data)

    def _reply(
        self,
        request_id: str,
        command: str,
        *,
        data: dict[str, Any] | None = None,
        error: str | None = None,
        code: ErrorCode | None = None,
    ) -> None:
        reply = Reply(
            request_id=request_id,
            command=command,
            ok=error is None,
            error=error,
            code=code,
            data=data or {},
        )
        self.link.publish(self.topics.reply(self.box), encode(reply))

    def _running(self) -> Session | None:
        session = self.session
        return session if session is not None and not session.ended else None

    def _require_idle(self, what: str) -> None:
        if self._shutting_down:
            raise CommandError("busy", f"box {self.box} is shutting down")
        session = self._running()
        if session is not None:
            raise CommandError(
                "busy",
                f"box {self.box} is busy: session {session.session_id} of {session.mouse} "
                f"is running (trial {session.trial}); {what} must wait until it ends",
            )
        if self._utility is not None:
            raise CommandError("busy", f"box {self.box} is busy: {self._utility} in progress")

    def _start(self, cmd: StartCommand) -> dict[str, Any]:
        running = self._running()
        if running is not None and running.session_id == cmd.session_id:
            # The controller retried a start whose reply it missed: same session, still fine.
            return {"session_id": cmd.session_id, "mouse": running.mouse, "already_running": True}
        self._require_idle("a new session")
        try:
            mouse = check_mouse_id(cmd.mouse)
            config = TaskConfig.from_dict(cmd.config, source="config")
        except (InvalidIdError, ConfigError) as exc:
            raise CommandError("invalid", str(exc)) from None
        if self.journal.session(cmd.session_id) is not None:
            raise CommandError(
                "invalid", f"session id {cmd.session_id} was already used on box {self.box}"
            )
        session = self.runtime.new_session(
            config=config,
            mouse=mouse,
            box=self.box,
            session_id=cmd.session_id,
            metadata=cmd.metadata,
            carry_over=cmd.carry_over,
            sink=self._on_document,
        )
        session.on_end.append(self._session_ended)
        self.session = session
        self._correct = 0
        self.state = "running"
        try:
            with _hardware("starting the session"):
                session.start()
        except CommandError:
            session.stop("aborted")
            raise
        log.info(
            "session %s started: mouse %s, %g s%s",
            session.session_id,
            mouse,
            config.duration,
            " (with carry-over)" if cmd.carry_over is not None else "",
        )
        self._publish_status(force=True)
        return {"session_id": session.session_id, "mouse": mouse}

    def _stop(self, cmd: StopCommand) -> dict[str, Any]:
        session = self._running()
        if session is None:
            raise CommandError("idle", f"no session is running on box {self.box}")
        session.stop("stopped")
        return {"session_id": session.session_id, "status": "stopped", "last_seq": session.seq - 1}

    def _resend(self, cmd: ResendCommand) -> dict[str, Any]:
        if cmd.to_seq is not None and cmd.to_seq < cmd.from_seq:
            raise CommandError("invalid", f"to_seq {cmd.to_seq} is before from_seq {cmd.from_seq}")
        try:
            entries = self.journal.entries(cmd.session_id, cmd.from_seq, cmd.to_seq)
        except SessionNotFound as exc:
            raise CommandError("not_found", str(exc)) from None
        self.outbox.resend(entries)
        log.info(
            "resending %d document(s) of session %s from seq %d",
            len(entries),
            cmd.session_id,
            cmd.from_seq,
        )
        return {"session_id": cmd.session_id, "count": len(entries)}

    def _committed(self, cmd: CommittedCommand) -> dict[str, Any]:
        info = self.journal.session(cmd.session_id)
        if info is not None and info.state == "ended" and not info.copied:
            self._write_local_copy(info.session_id, info.mouse)  # last chance before pruning
        try:
            pruned = self.journal.commit(cmd.session_id, cmd.last_seq, now=time.time())
        except SessionNotFound as exc:
            raise CommandError("not_found", str(exc)) from None
        except CommitRefused as exc:
            raise CommandError("invalid", str(exc)) from None
        if pruned:
            log.info("session %s committed by the controller: pruned it", cmd.session_id)
            self._publish_status(force=True)  # its uncommitted list is shorter now
        return {"session_id": cmd.session_id, "pruned": pruned}

    def _ping(self, cmd: PingCommand) -> dict[str, Any]:
        status = self._status(
            pending=self.journal.pending_count(), uncommitted=self.journal.uncommitted()
        )
        return status.model_dump(exclude={"schema_version"})

    def _dispense(self, cmd: DispenseCommand) -> dict[str, Any]:
        self._require_idle("dispensing")
        rig = self.runtime.rig
        duration_s = cmd.duration_ms / 1000
        with _hardware(f"opening the solenoid of spout {cmd.spout}"):
            rig.open_solenoid(cmd.spout)  # the first one now, so a fault shows in the reply
        self._utility = f"dispensing {cmd.count} rewards"

        def close(remaining: int) -> None:
            try:
                rig.close_solenoid(cmd.spout)
                if remaining > 0 and not self._shutting_down:
                    self.loop.call_later(DISPENSE_GAP_S, open_again, remaining)
                    return
            except HardwareError as exc:
                log.error("dispensing stopped: %s", exc)
                rig.all_off()
            self._utility = None
            log.info("dispensed %d reward(s) of %d ms", cmd.count - remaining, cmd.duration_ms)

        def open_again(remaining: int) -> None:
            try:
                rig.open_solenoid(cmd.spout)
            except HardwareError as exc:
                log.error("dispensing stopped: %s", exc)
                rig.all_off()
                self._utility = None
                return
            self.loop.call_later(duration_s, close, remaining - 1)

        self.loop.call_later(duration_s, close, cmd.count - 1)
        seconds = cmd.count * duration_s + (cmd.count - 1) * DISPENSE_GAP_S
        log.info("dispensing %d x %d ms from spout %d", cmd.count, cmd.duration_ms, cmd.spout)
        return {"spout": cmd.spout, "count": cmd.count, "duration_ms": cmd.duration_ms,
                "seconds": round(seconds, 3)}  # fmt: skip

    def _set_leds(self, cmd: SetLedsCommand) -> dict[str, Any]:
        self._require_idle("setting the LEDs")
        with _hardware("setting the cue LEDs"):
            for spout, on in enumerate(cmd.on):
                self.runtime.rig.set_cue(spout, on)
        return {"on": list(cmd.on)}

    def _move_spouts(self, cmd: MoveSpoutsCommand) -> dict[str, Any]:
        self._require_idle("moving the spouts")
        with _hardware("moving the spouts"):
            for spout, position in enumerate(cmd.spout_position):
                self.runtime.rig.move_spout(spout, position)
        return {"spout_position": list(cmd.spout_position)}

    def _read_sensors(self, cmd: ReadSensorsCommand) -> dict[str, Any]:
        self._require_idle("reading the sensors")
        rig = self.runtime.rig
        with _hardware("reading the sensors"):
            data: dict[str, Any] = dict(rig.sensors())
        data["spout_position"] = list(rig.spout_position)
        return data


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


# ---------------------------------------------------------------- labagent status


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t is not None else "-"


class StatusCommand:
    """``labagent status``: the sessions and documents the journal still holds."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--journal", metavar="PATH", help="the journal (env LABAGENT_JOURNAL)")
        add_config_file_argument(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        path = resolve_journal(args)
        if not path.exists():
            if args.json:
                print(json.dumps({"journal": str(path), "sessions": [], "pending": 0}))
            else:
                print(f"no journal at {path}: this agent has recorded nothing yet")
            return 0
        with Journal.open_readonly(path) as journal:
            sessions = journal.sessions()
            pending = journal.pending_count()
        if args.json:
            rows = [vars(s) for s in sessions]
            print(json.dumps({"journal": str(path), "sessions": rows, "pending": pending}))
            return 0
        print(f"journal {path}")
        if not sessions:
            print("no sessions waiting for the controller; no documents pending")
            return 0
        print(
            f"{len(sessions)} session(s) not yet committed by the controller; "
            f"{pending} document(s) not yet acknowledged by the broker"
        )
        header = ("SESSION", "MOUSE", "BOX", "STATE", "STATUS", "STARTED", "DOCS", "PENDING")
        table = [header] + [
            (
                s.session_id,
                s.mouse,
                s.box,
                s.state,
                s.status or "-",
                _when(s.start_time),
                str(s.documents),
                str(s.pending),
            )
            for s in sessions
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agent.daemon ...`` is ``labagent run ...``."""
    from agent.cli import main as cli_main

    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
