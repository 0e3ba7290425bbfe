"""The agent's commands (DESIGN §5, §8): one method per command, exactly one reply each.

:class:`Commands` turns a payload from the box's ``cmd`` topic into a
:class:`~shared.protocol.Reply`: it validates the command (a refusal names the
field), runs its method and reports the outcome or a clear error with a code.
What a command needs from the running agent (its session, journal, rig and
status) comes through the small :class:`RigAgent` protocol, so this module
does not import the daemon and the daemon only publishes what comes back.
Everything here runs on the task loop's thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from agent.engine import TaskEngine
from agent.journal import CommitRefused, Journal, JournalError, SessionNotFound
from agent.mqtt import Outbox
from agent.runtime import RigRuntime
from shared.carryover import CarryOver
from shared.config import TaskConfig
from shared.errors import HardwareError, InvalidIdError, ProtocolError, ReachlabError
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
    SetLedsCommand,
    StartCommand,
    Status,
    StopCommand,
    parse_command,
)

log = logging.getLogger("labagent")

#: Pause between rewards of a ``dispense`` command, in task seconds (the calibration utility's).
DISPENSE_GAP_S = 0.2


class CommandError(ReachlabError):
    """A command cannot be carried out; becomes an error reply with ``code``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code


class RigAgent(Protocol):
    """What the commands need from the agent that runs them."""

    box: str
    journal: Journal
    runtime: RigRuntime
    outbox: Outbox
    shutting_down: bool

    def running_session(self) -> TaskEngine | None: ...

    def begin_session(
        self,
        *,
        config: TaskConfig,
        mouse: str,
        session_id: str,
        metadata: dict[str, Any],
        carry_over: CarryOver | None,
    ) -> TaskEngine: ...

    def publish_status(self, force: bool = False) -> None: ...

    def current_status(self) -> Status: ...

    def write_local_copy(self, session_id: str, mouse: str) -> None: ...

    def fail(self, exc: BaseException) -> None: ...


@contextlib.contextmanager
def _hardware(what: str) -> Iterator[None]:
    """Turn the rig's GPIO failures into a ``hardware`` error reply."""
    from gpiozero.exc import GPIOZeroError

    try:
        yield
    except (HardwareError, GPIOZeroError) as exc:
        raise CommandError("hardware", f"{what} failed: {exc}") from None


def peek(payload: bytes) -> tuple[str, str | None]:
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


class Commands:
    """The box's command handlers; :meth:`handle` gives the one reply to a payload."""

    def __init__(self, agent: RigAgent) -> None:
        self.agent = agent
        #: What a hardware utility (``dispense``) is doing now; None when none runs.
        self.utility: str | None = None
        self._methods: dict[type[Any], Callable[[Any], dict[str, Any]]] = {
            StartCommand: self.start,
            StopCommand: self.stop,
            ResendCommand: self.resend,
            CommittedCommand: self.committed,
            PingCommand: self.ping,
            DispenseCommand: self.dispense,
            SetLedsCommand: self.set_leds,
            MoveSpoutsCommand: self.move_spouts,
            ReadSensorsCommand: self.read_sensors,
        }

    def handle(self, payload: bytes) -> Reply:
        """Exactly one reply per command, whatever the payload holds."""
        request_id, name = peek(payload)
        try:
            command = parse_command(payload)
        except ProtocolError as exc:
            code: ErrorCode = (
                "unknown_command" if name is not None and name not in COMMAND_NAMES else "invalid"
            )
            log.warning("refused a command (request %r): %s", request_id, exc)
            return _reply(request_id, name or "", error=str(exc), code=code)
        if not command.request_id:
            log.warning("command %s without a request_id", command.command)
        method = self._methods[type(command)]
        try:
            data = method(command)
        except CommandError as exc:
            log.info("%s (request %s) refused: %s", command.command, command.request_id, exc)
            return _reply(command.request_id, command.command, error=str(exc), code=exc.code)
        except JournalError as exc:
            self.agent.fail(exc)
            return _reply(command.request_id, command.command, error=str(exc))
        except Exception as exc:
            # The agent must outlive a bug in one command: report it and carry on.
            log.exception("%s (request %s) failed", command.command, command.request_id)
            return _reply(command.request_id, command.command, error=f"internal error: {exc}")
        return _reply(command.request_id, command.command, data=data)

    def refuse_retained(self, payload: bytes) -> Reply:
        """The reply to a retained message on the cmd topic: never obeyed, whatever it says.

        A retained command is replayed by the broker at every (re)connect, so obeying it
        would run a ``dispense`` again after every restart (DESIGN §15)."""
        request_id, name = peek(payload)
        log.warning(
            "ignored a retained %s command (request %r) on box %s's command topic: commands "
            "must not be retained; `labctl status` clears it",
            name or "unreadable",
            request_id,
            self.agent.box,
        )
        return _reply(
            request_id,
            name or "",
            error=f"box {self.agent.box} ignores retained commands: publish commands without "
            "the retain flag (`labctl status` clears a retained one)",
            code="retained",
        )

    def _require_idle(self, what: str) -> None:
        agent = self.agent
        if agent.shutting_down:
            raise CommandError("busy", f"box {agent.box} is shutting down")
        session = agent.running_session()
        if session is not None:
            raise CommandError(
                "busy",
                f"box {agent.box} is busy: session {session.session_id} of {session.mouse} "
                f"is running (trial {session.trial}); {what} must wait until it ends",
            )
        if self.utility is not None:
            raise CommandError("busy", f"box {agent.box} is busy: {self.utility} in progress")

    # ------------------------------------------------------------------ sessions

    def start(self, cmd: StartCommand) -> dict[str, Any]:
        agent = self.agent
        running = agent.running_session()
        if running is not None and running.session_id == cmd.session_id:
            # The controller retried a start whose reply it missed: same session, still fine.
            return {"session_id": cmd.session_id, "mouse": running.mouse, "already_running": True}
        self._require_idle("a new session")
        try:
            mouse = check_mouse_id(cmd.mouse)
        except InvalidIdError as exc:
            raise CommandError("invalid", str(exc)) from None
        config = cmd.config  # validated with the command (shared.config.TaskConfig)
        if agent.journal.session(cmd.session_id) is not None:
            raise CommandError(
                "invalid", f"session id {cmd.session_id} was already used on box {agent.box}"
            )
        session = agent.begin_session(
            config=config,
            mouse=mouse,
            session_id=cmd.session_id,
            metadata=cmd.metadata,
            carry_over=cmd.carry_over,
        )
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
        agent.publish_status(force=True)
        return {"session_id": session.session_id, "mouse": mouse}

    def stop(self, cmd: StopCommand) -> dict[str, Any]:
        session = self.agent.running_session()
        if session is None:
            raise CommandError(
                "idle",
                f"no session is running on box {self.agent.box} "
                f"(session {cmd.session_id} is not running)",
            )
        if session.session_id != cmd.session_id:
            # A late, repeated or replayed stop: the session it meant has already ended.
            raise CommandError(
                "not_found",
                f"session {cmd.session_id} is not running on box {self.agent.box} (session "
                f"{session.session_id} of {session.mouse} is); nothing was stopped",
            )
        session.stop("stopped")
        return {"session_id": session.session_id, "status": "stopped", "last_seq": session.seq - 1}

    def resend(self, cmd: ResendCommand) -> dict[str, Any]:
        if cmd.to_seq is not None and cmd.to_seq < cmd.from_seq:
            raise CommandError("invalid", f"to_seq {cmd.to_seq} is before from_seq {cmd.from_seq}")
        try:
            entries = self.agent.journal.entries(cmd.session_id, cmd.from_seq, cmd.to_seq)
        except SessionNotFound as exc:
            raise CommandError("not_found", str(exc)) from None
        self.agent.outbox.resend(entries)
        log.info(
            "resending %d document(s) of session %s from seq %d",
            len(entries),
            cmd.session_id,
            cmd.from_seq,
        )
        return {"session_id": cmd.session_id, "count": len(entries)}

    def committed(self, cmd: CommittedCommand) -> dict[str, Any]:
        """Prune a session, only if the controller proves it stored what the journal holds."""
        journal = self.agent.journal
        info = journal.session(cmd.session_id)
        if info is not None and info.state == "ended" and not info.copied:
            self.agent.write_local_copy(info.session_id, info.mouse)  # last chance before pruning
            copied = journal.session(cmd.session_id)
            if copied is None or not copied.copied:
                # The journal is the only copy on the Pi until <mouse>.json holds it.
                raise CommandError(
                    "busy",
                    f"session {cmd.session_id}: the local copy ({info.mouse}.json in the "
                    "rig's data directory) could not be written; the journal keeps the "
                    "session until it is (check the Pi's disk and that file)",
                )
        try:
            pruned = journal.commit(cmd.session_id, cmd.last_seq, cmd.digest, now=time.time())
        except SessionNotFound as exc:
            raise CommandError("not_found", str(exc)) from None
        except CommitRefused as exc:
            log.warning("refused a committed (request %s): %s", cmd.request_id, exc)
            raise CommandError("invalid", str(exc)) from None
        if pruned:
            log.info("session %s committed by the controller: pruned it", cmd.session_id)
            self.agent.publish_status(force=True)  # its uncommitted list is shorter now
        return {"session_id": cmd.session_id, "pruned": pruned}

    def ping(self, cmd: PingCommand) -> dict[str, Any]:
        return self.agent.current_status().model_dump(exclude={"schema_version"})

    # ------------------------------------------------------------------ hardware utilities

    def dispense(self, cmd: DispenseCommand) -> dict[str, Any]:
        self._require_idle("dispensing")
        agent = self.agent
        rig, loop = agent.runtime.rig, agent.runtime.loop
        duration_s = cmd.duration_ms / 1000
        with _hardware(f"opening the solenoid of spout {cmd.spout}"):
            rig.open_solenoid(cmd.spout)  # the first one now, so a fault shows in the reply
        self.utility = f"dispensing {cmd.count} rewards"

        def close(remaining: int) -> None:
            try:
                rig.close_solenoid(cmd.spout)
                if remaining > 0 and not agent.shutting_down:
                    loop.call_later(DISPENSE_GAP_S, open_again, remaining)
                    return
            except HardwareError as exc:
                log.error("dispensing stopped: %s", exc)
                rig.all_off()
            self.utility = None
            log.info("dispensed %d reward(s) of %d ms", cmd.count - remaining, cmd.duration_ms)

        def open_again(remaining: int) -> None:
            try:
                rig.open_solenoid(cmd.spout)
            except HardwareError as exc:
                log.error("dispensing stopped: %s", exc)
                rig.all_off()
                self.utility = None
                return
            loop.call_later(duration_s, close, remaining - 1)

        loop.call_later(duration_s, close, cmd.count - 1)
        seconds = cmd.count * duration_s + (cmd.count - 1) * DISPENSE_GAP_S
        log.info("dispensing %d x %d ms from spout %d", cmd.count, cmd.duration_ms, cmd.spout)
        return {"spout": cmd.spout, "count": cmd.count, "duration_ms": cmd.duration_ms,
                "seconds": round(seconds, 3)}  # fmt: skip

    def set_leds(self, cmd: SetLedsCommand) -> dict[str, Any]:
        self._require_idle("setting the LEDs")
        with _hardware("setting the cue LEDs"):
            for spout, on in enumerate(cmd.on):
                self.agent.runtime.rig.set_cue(spout, on)
        return {"on": list(cmd.on)}

    def move_spouts(self, cmd: MoveSpoutsCommand) -> dict[str, Any]:
        self._require_idle("moving the spouts")
        with _hardware("moving the spouts"):
            for spout, position in enumerate(cmd.spout_position):
                self.agent.runtime.rig.move_spout(spout, position)
        return {"spout_position": list(cmd.spout_position)}

    def read_sensors(self, cmd: ReadSensorsCommand) -> dict[str, Any]:
        self._require_idle("reading the sensors")
        rig = self.agent.runtime.rig
        with _hardware("reading the sensors"):
            data: dict[str, Any] = dict(rig.sensors())
        data["spout_position"] = list(rig.spout_position)
        openings = rig.solenoid_openings()
        if openings is not None:  # simulated rigs: lets `labctl calibrate` check its dispense
            data["solenoid_openings"] = openings
        return data


def _reply(
    request_id: str,
    command: str,
    *,
    data: dict[str, Any] | None = None,
    error: str | None = None,
    code: ErrorCode | None = None,
) -> Reply:
    return Reply(
        request_id=request_id,
        command=command,
        ok=error is None,
        error=error,
        code=code,
        data=data or {},
    )
