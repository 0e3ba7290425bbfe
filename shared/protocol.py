"""The MQTT protocol between agents and the controller (DESIGN §5).

Topic strings are made only by :class:`Topics`. Every message is a pydantic
model carrying ``schema_version``; :func:`parse_command`, :func:`parse_reply`
and :func:`parse_status` validate at the edge and raise
:class:`~shared.errors.ProtocolError` with a reason a person can read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.carryover import CarryOver
from shared.config import TaskConfig, check_metadata, check_not_reserved
from shared.documents import SCHEMA_VERSION
from shared.errors import ConfigError, ProtocolError
from shared.ids import check_box_id, check_collector_id

DEFAULT_PREFIX = "reachlab"
TopicKind = Literal["status", "events", "cmd", "reply"]
QOS = 1


@dataclass(frozen=True)
class Topics:
    """Makes and parses every topic name: ``<prefix>/rigs/<box>/<kind>``, a collector's
    presence ``<prefix>/collectors/<client id>/status`` and a labctl command's own
    ``<prefix>/labctl/<client id>/sync``. No other code formats a topic."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "#+") or self.prefix.endswith("/"):
            raise ValueError(f"invalid topic prefix {self.prefix!r}")

    def rig(self, box: str, kind: TopicKind) -> str:
        """The topic of ``kind`` for ``box``."""
        return f"{self.prefix}/rigs/{check_box_id(box)}/{kind}"

    def status(self, box: str) -> str:
        return self.rig(box, "status")

    def events(self, box: str) -> str:
        return self.rig(box, "events")

    def cmd(self, box: str) -> str:
        return self.rig(box, "cmd")

    def reply(self, box: str) -> str:
        return self.rig(box, "reply")

    def all_rigs(self, kind: TopicKind) -> str:
        """Subscription filter for ``kind`` from every box."""
        return f"{self.prefix}/rigs/+/{kind}"

    @property
    def rigs_root(self) -> str:
        """What every topic of this lab's rigs starts with."""
        return f"{self.prefix}/rigs/"

    def is_rig_topic(self, topic: str) -> bool:
        """Whether ``topic`` is under this lab's rigs (not yet whether it is well formed)."""
        return topic.startswith(self.rigs_root)

    def collector_status(self, client_id: str) -> str:
        """Where a collector announces itself (retained; its Last Will says offline)."""
        return f"{self.prefix}/collectors/{check_collector_id(client_id)}/status"

    def all_collectors(self) -> str:
        """Subscription filter for every collector's presence."""
        return f"{self.prefix}/collectors/+/status"

    def is_collector_topic(self, topic: str) -> bool:
        return topic.startswith(f"{self.prefix}/collectors/")

    def labctl_sync(self, client_id: str) -> str:
        """A labctl command's own marker topic: when its echo comes back, every retained
        message sent before it has arrived."""
        return f"{self.prefix}/labctl/{client_id}/sync"

    def parse(self, topic: str) -> tuple[str, TopicKind]:
        """(box, kind) of a rig topic; ProtocolError if it is not one of ours."""
        parts = topic.split("/")
        head = self.prefix.split("/")
        if (
            len(parts) != len(head) + 3
            or parts[: len(head)] != head
            or parts[len(head)] != "rigs"
            or parts[-1] not in ("status", "events", "cmd", "reply")
        ):
            raise ProtocolError(f"not a reachlab rig topic: {topic!r}")
        box = parts[-2]
        try:
            check_box_id(box)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        kind: TopicKind = parts[-1]  # type: ignore[assignment]  # checked just above
        return box, kind


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION


# ---------------------------------------------------------------- commands


class _Command(_Message):
    request_id: str = Field(min_length=1, max_length=64)


class StartCommand(_Command):
    """Start a session on the box."""

    command: Literal["start"] = "start"
    session_id: str = Field(min_length=1, max_length=64)
    mouse: str
    config: TaskConfig = Field(
        default_factory=TaskConfig,
        description="the session's settings; keys left out take their defaults",
    )
    carry_over: CarryOver | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _storable_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Checked where the command is made, so a session never starts with metadata its
        # session_end (notes must be text) or the per-mouse JSON (no NaN) cannot hold.
        try:
            return check_not_reserved(check_metadata(value))
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("metadata: ")) from None


class StopCommand(_Command):
    """End the running session as ``stopped``, if it is the one named.

    The session is named so that a late, repeated or replayed stop never ends a later
    session on the same box (DESIGN §15)."""

    command: Literal["stop"] = "stop"
    session_id: str = Field(min_length=1, max_length=64)


class ResendCommand(_Command):
    """Publish again a session's documents from ``from_seq`` (to ``to_seq`` inclusive)."""

    command: Literal["resend"] = "resend"
    session_id: str
    from_seq: int = Field(0, ge=0)
    to_seq: int | None = Field(None, ge=0)


class CommittedCommand(_Command):
    """The controller has stored the whole session; the agent may prune it."""

    command: Literal["committed"] = "committed"
    session_id: str
    last_seq: int = Field(ge=0)
    digest: str | None = Field(
        None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="shared.digest.session_digest of the stored documents 0..last_seq; "
        "an agent prunes only when its journal gives the same",
    )


class PingCommand(_Command):
    command: Literal["ping"] = "ping"


#: The most valve-open time one ``dispense`` may ask for: a calibration run (100 x 70 ms
#: = 7 s) fits many times over; 1000 x 5 s (86 minutes of a busy box) does not.
MAX_DISPENSE_OPEN_MS = 60_000


class DispenseCommand(_Command):
    """Open a spout's solenoid ``count`` times for ``duration_ms`` each."""

    command: Literal["dispense"] = "dispense"
    spout: Literal[0, 1]
    count: int = Field(1, ge=1, le=1000)
    duration_ms: int = Field(70, ge=1, le=5000)

    @model_validator(mode="after")
    def _bounded_open_time(self) -> DispenseCommand:
        total = self.count * self.duration_ms
        if total > MAX_DISPENSE_OPEN_MS:
            raise ValueError(
                f"count x duration_ms = {total} ms of open valve; at most "
                f"{MAX_DISPENSE_OPEN_MS} ms per dispense command"
            )
        return self


class SetLedsCommand(_Command):
    """Switch the cue LEDs (index = spout)."""

    command: Literal["set_leds"] = "set_leds"
    on: tuple[bool, bool]


class MoveSpoutsCommand(_Command):
    """Move the actuators to [left, right] positions (1-7)."""

    command: Literal["move_spouts"] = "move_spouts"
    spout_position: tuple[Annotated[int, Field(ge=1, le=7)], Annotated[int, Field(ge=1, le=7)]]


class ReadSensorsCommand(_Command):
    """Report the current state of every input."""

    command: Literal["read_sensors"] = "read_sensors"


Command = Annotated[
    StartCommand
    | StopCommand
    | ResendCommand
    | CommittedCommand
    | PingCommand
    | DispenseCommand
    | SetLedsCommand
    | MoveSpoutsCommand
    | ReadSensorsCommand,
    Field(discriminator="command"),
]
CommandAdapter: TypeAdapter[Command] = TypeAdapter(Command)
COMMAND_NAMES = (
    "start", "stop", "resend", "committed", "ping",
    "dispense", "set_leds", "move_spouts", "read_sensors",
)  # fmt: skip


# ---------------------------------------------------------------- replies and status

ErrorCode = Literal[
    "busy", "invalid", "unknown_command", "hardware", "not_found", "idle", "retained"
]


class Reply(_Message):
    """Exactly one per command, echoing its ``request_id``."""

    request_id: str
    command: str
    ok: bool
    error: str | None = None
    code: ErrorCode | None = None
    data: dict[str, Any] = Field(default_factory=dict)


RigState = Literal["offline", "idle", "running", "stopping", "error"]
#: The most session ids a status may list as uncommitted. An agent lists at most 50
#: (agent/journal.py); the room above that is for a future agent, and the bound makes a
#: hostile retained status of thousands of ids a dead letter, not thousands of resends.
MAX_UNCOMMITTED = 200


class Status(_Message):
    """Retained per-box status; the Last Will publishes it with ``state='offline'``."""

    box: str
    state: RigState
    mouse: str | None = None
    session_id: str | None = None
    trial: int = 0
    rewards: int = 0
    session_started: float | None = None
    session_duration: float | None = None
    software_version: str = ""
    clock: float = Field(0.0, description="agent's task clock when sent, Unix seconds")
    wall_clock: float | None = Field(
        None,
        description="the rig's own calendar clock (time.time()) when sent, Unix seconds: "
        "the task clock of a simulated rig at --time-scale above 1 runs ahead of it between "
        "sessions by design; None from an agent that does not send it",
    )
    pending_documents: int = Field(0, description="journalled documents not yet acknowledged")
    uncommitted: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=MAX_UNCOMMITTED,
        description="ended sessions the journal still holds because no 'committed' came for "
        "them, oldest first (an agent lists at most 50): the collector asks for any it does "
        f"not have; a status listing more than {MAX_UNCOMMITTED} is refused",
    )
    journal_free_mb: float | None = Field(
        None,
        ge=0,
        description="free space on the disk that holds the rig's journal, MB (the alerts "
        "warn before it fills); None from an agent that does not send it",
    )
    uncopied: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=MAX_UNCOMMITTED,
        description="ended sessions whose local copy (<mouse>.json on the rig) could not be "
        "written (a full disk, a corrupt file): the journal keeps them, whatever the "
        "controller commits, until it is",
    )

    @property
    def calendar_time(self) -> float:
        """What the rig's calendar said when it sent this: its wall clock, else (an agent that
        does not send it) its task clock, which is the same on a rig at time scale 1."""
        return self.clock if self.wall_clock is None else self.wall_clock


_T = TypeVar("_T", bound=BaseModel)


def _loads(payload: bytes | str) -> Any:
    try:
        return json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"payload is not valid JSON: {exc}") from None


def _first_error(exc: ValidationError, what: str) -> ProtocolError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or what
    message = err["msg"].removeprefix("Value error, ")
    return ProtocolError(f"invalid {what}: {where}: {message}")


def parse_command(payload: bytes | str) -> Command:
    """Validate a command; the error says which field or which unknown command."""
    data = _loads(payload)
    if not isinstance(data, dict):
        raise ProtocolError("invalid command: payload must be a JSON object")
    name = data.get("command")
    if name is not None and name not in COMMAND_NAMES:
        raise ProtocolError(f"unknown command {name!r}")
    try:
        return CommandAdapter.validate_python(data)
    except ValidationError as exc:
        raise _first_error(exc, "command") from None


def _parse_model(model: type[_T], payload: bytes | str, what: str) -> _T:
    try:
        return model.model_validate(_loads(payload))
    except ValidationError as exc:
        raise _first_error(exc, what) from None


def parse_reply(payload: bytes | str) -> Reply:
    return _parse_model(Reply, payload, "reply")


def parse_status(payload: bytes | str) -> Status:
    return _parse_model(Status, payload, "status")


def status_or_none(text: bytes | str | None) -> Status | None:
    """A status kept as received (a box row's, a retained copy), or None when there is none
    or it cannot be read: an unreadable status tells nothing."""
    if not text:
        return None
    try:
        return parse_status(text)
    except ProtocolError:
        return None


#: The state a box's Last Will (and a collector that timed it out) gives it.
OFFLINE: RigState = "offline"


def box_online(status: Status | None) -> bool:
    """Whether a box is online by its last status: it has reported, and not ``offline``."""
    return status is not None and status.state != OFFLINE


def encode(message: BaseModel) -> bytes:
    """A message as the UTF-8 JSON that goes on the wire."""
    return message.model_dump_json().encode()
