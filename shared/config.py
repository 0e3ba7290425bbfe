"""Task configuration: every key of the reach task with its default, from `.ini` or Python.

:class:`TaskConfig` is the one model of a session's settings: read from a file,
sent in the start command (:class:`~shared.protocol.StartCommand`'s ``config``)
and recorded in the session's first document
(:class:`~shared.documents.SessionStart`'s ``settings``), so the controller that
sends a start and the agent that receives it validate the same model.

The file format is the original library's: a ``[Settings]`` section whose values
are JSON (``intertrial_interval = [4000, 6000]``); bare words such as ``random``
or ``auto`` are read as strings. Unknown keys, wrong types and out-of-range
values raise :class:`~shared.errors.ConfigError` naming every bad key.
"""

from __future__ import annotations

import configparser
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)

from shared.errors import ConfigError
from shared.sessionfile import SessionRecord

log = logging.getLogger(__name__)

SECTION = "Settings"
ShapingMode = Literal["off", "on", "auto"]

#: The longest session and the longest interval (ITI, timeout, cue) a config may ask for:
#: bounds far beyond any real protocol, so a typo (``duration = 1e308``) is refused by name.
MAX_DURATION_S = 24 * 3600
MAX_INTERVAL_MS = 3_600_000

#: Positions the spout actuator can reach, in mm from the mouse (the duty-cycle table's rows).
MIN_POSITION = 1
MAX_POSITION = 7


class TaskConfig(BaseModel):
    """Settings of one training session; field names are the `.ini` keys and JSON keys."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )

    duration: float = Field(
        1800, gt=0, le=MAX_DURATION_S, description="session length in s; checked between trials"
    )
    intertrial_interval: tuple[int, int] = Field(
        (4000, 6000), description="ITI range in ms; each ITI is drawn uniformly from it"
    )
    timeout: int = Field(
        8000,
        ge=0,
        le=MAX_INTERVAL_MS,
        description="penalty wait in ms (incorrect reach, broken ITI)",
    )
    cue_duration: float = Field(
        10000, gt=0, le=MAX_INTERVAL_MS, description="initial cue duration in ms"
    )
    min_cue_duration: float = Field(
        2000, gt=0, le=MAX_INTERVAL_MS, description="floor of the adaptive cue in ms"
    )
    cue_decay: float = Field(0.997, gt=0, le=1, description="factor applied when the cue shortens")
    window: int = Field(15, ge=1, le=1000, description="trials per spout in the performance window")
    advance_threshold: float = Field(0.90, gt=0, le=1, description="window hit rate to advance")
    advance_delay: int = Field(5, ge=0, description="trials to wait after an advance")
    advance_with_incorrects: bool = Field(False, description="count any touch toward advancing")
    spout_positions: tuple[int, ...] = Field(
        (1, 2, 3, 4, 5, 6, 7), description="actuator positions in mm, in training order"
    )
    reward_duration_ms: tuple[int, int] = Field(
        (70, 70), description="solenoid open time per spout"
    )
    reward_volume_ul: float = Field(6, ge=0, description="nominal water per reward in µl")
    initial_spout: Literal["random", 0, 1] = Field(
        "random", description="first target: 0 = left, 1 = right, or random"
    )
    shaping: ShapingMode = Field("off", description="water at cue onset: off, on or auto")

    @model_validator(mode="wrap")
    @classmethod
    def _every_key_in_one_line(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # One line naming every bad key, also where the config is part of a message (the
        # start command, the session's first document): a config with three mistakes is
        # put right in one pass, wherever it is refused.
        try:
            return handler(data)
        except ValidationError as exc:
            raise ValueError(describe_problems(exc)) from None

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1; for a number key (or initial_spout) that is a mistake.
        # Checked per key (not across the dict) so that every bad key is reported at once.
        key = info.field_name
        field = cls.model_fields.get(key) if key else None
        if field is None or field.annotation is bool or key == "shaping":
            return value
        items = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(item, bool) for item in items):
            raise ValueError("takes a number, not true or false")
        return value

    @field_validator("intertrial_interval")
    @classmethod
    def _ordered_iti(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] < 0 or value[1] < value[0]:
            raise ValueError("must be [low, high] with 0 <= low <= high")
        if value[1] > MAX_INTERVAL_MS:
            raise ValueError(f"must be at most {MAX_INTERVAL_MS} ms")
        return value

    @field_validator("reward_duration_ms")
    @classmethod
    def _reward_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(0 < ms <= 5000 for ms in value):
            raise ValueError("each reward duration must be between 1 and 5000 ms")
        return value

    @field_validator("spout_positions")
    @classmethod
    def _positions(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("needs at least one position")
        if any(not MIN_POSITION <= p <= MAX_POSITION for p in value):
            raise ValueError(f"positions must be between {MIN_POSITION} and {MAX_POSITION}")
        if list(value) != sorted(set(value)):
            raise ValueError("positions must be strictly increasing")
        return value

    @field_validator("shaping", mode="before")
    @classmethod
    def _legacy_shaping(cls, value: Any) -> Any:
        # The original library stored shaping as a bool; keep reading those files.
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    @field_serializer("duration", "cue_duration", "min_cue_duration", "reward_volume_ul")
    def _whole_numbers_as_ints(self, value: float) -> float | int:
        # Whole numbers stay ints so that files and the wire read like the original's
        # (1800, not 1800.0).
        return int(value) if float(value).is_integer() else value

    @model_validator(mode="after")
    def _cue_floor(self) -> TaskConfig:
        if self.min_cue_duration > self.cue_duration:
            raise ValueError("min_cue_duration must not exceed cue_duration")
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TaskConfig:
        """Validate ``values``; raise :class:`ConfigError` naming every bad key."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, source)) from None

    def settings(self) -> dict[str, Any]:
        """The settings as JSON-ready values, in the order they are stored in a session."""
        return self.model_dump(mode="json")

    def replace(self, **changes: Any) -> TaskConfig:
        """A copy with ``changes`` applied and validated."""
        return TaskConfig.from_dict({**self.model_dump(), **changes})


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line naming every offending key (a file with three mistakes needs one pass)."""
    return f"{source}: {describe_problems(exc)}"


def describe_problems(exc: ValidationError) -> str:
    """Every offending key of ``exc`` and what is wrong with it, ``; ``-separated."""
    problems: list[str] = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a check across keys: its message names them
            problems.append(message)
            continue
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key {key!r}")
        else:
            problems.append(f"key {key!r}: {message} (got {err.get('input')!r})")
    return "; ".join(dict.fromkeys(problems))


def _parse_ini_value(raw: str) -> Any:
    text = raw.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # Python-style booleans were common in hand-edited files; other bare words
        # ("random", "auto", "on") stay strings for the model to judge.
        return {"True": True, "False": False}.get(text, text)


def read_config(path: str | os.PathLike[str] | None) -> TaskConfig:
    """Read a config file; ``None`` or a missing file gives the defaults (and logs which)."""
    if path is None:
        return TaskConfig()
    file = Path(path).expanduser()
    if not file.exists():
        log.warning("config file %s does not exist: using the default settings", file)
        return TaskConfig()
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read(file, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{file}: not a valid config file ({first})") from None
    if not parser.has_section(SECTION):
        raise ConfigError(f"{file}: no [{SECTION}] section")
    values = {key: _parse_ini_value(raw) for key, raw in parser.items(SECTION)}
    return TaskConfig.from_dict(values, source=str(file))


def format_config(config: TaskConfig | None = None) -> str:
    """The `.ini` text for ``config`` (defaults when None), with each key's meaning."""
    config = config or TaskConfig()
    lines = [f"[{SECTION}]"]
    for key, value in config.settings().items():
        description = TaskConfig.model_fields[key].description
        lines.append(f"# {description}")
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def generate_config(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write a config file with the default settings; refuse to replace one unless asked."""
    file = Path(path).expanduser()
    if file.exists() and not overwrite:
        raise ConfigError(
            f"{file} already exists; not overwriting it: --force (overwrite=True in Python) "
            "replaces it"
        )
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(format_config(), encoding="utf-8")
    return file


class ReservedKeyError(ConfigError):
    """Metadata names a key the session dict owns; ``setting`` when it is a task setting.

    Each caller words the fix in its own terms (labctl's ``--duration``, labagent's
    ``--config FILE``); the message here is the generic one."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.setting = key in SETTING_KEYS
        how = "set it in the config file" if self.setting else "reachlab records it itself"
        super().__init__(f"metadata key {key!r} is reserved: {how}")


#: The task settings' keys (the config file's keys).
SETTING_KEYS: frozenset[str] = frozenset(TaskConfig.model_fields)

#: Every key a session dict owns: the task settings and what the session records.
#: Metadata is stored first in the session dict and the settings and records are written
#: over it, so metadata under one of these names would be silently replaced
#: (``duration=60`` still ran 1800 s). ``notes`` is metadata on purpose: given at start.
RESERVED_METADATA_KEYS: frozenset[str] = SETTING_KEYS | (
    frozenset(SessionRecord.model_fields) - {"notes"}
)


def check_not_reserved(metadata: dict[str, Any]) -> dict[str, Any]:
    """Return ``metadata`` unless a key is the session's own; else :class:`ReservedKeyError`."""
    for key in metadata:
        if key in RESERVED_METADATA_KEYS:
            raise ReservedKeyError(key)
    return metadata


def check_metadata(metadata: dict[str, Any], where: str = "metadata") -> dict[str, Any]:
    """Return ``metadata`` if a session can store it, else raise :class:`ConfigError`.

    ``notes`` is the session's free text (it becomes the session end's ``notes``),
    so it must be a string; numbers anywhere must be finite, since JSON (the
    per-mouse files, the wire) has no NaN or infinity and would store them as null.
    """
    notes = metadata.get("notes")
    if notes is not None and not isinstance(notes, str):
        raise ConfigError(f"{where}: 'notes' must be text, got {notes!r}")
    for key, value in metadata.items():
        if not _finite(value):
            raise ConfigError(
                f"{where}: {key!r}: not a finite number (NaN and infinity cannot be stored)"
            )
    return metadata


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_finite(item) for item in value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    return True


def parse_meta(items: list[str] | None) -> dict[str, Any]:
    """``--meta k=v`` options as a dict; values are JSON when they parse (``weight=24.5``).

    ``notes`` is always the text typed (``notes=42`` is the note "42"); NaN and
    infinite numbers are refused with one line naming the key.
    """
    meta: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--meta {item!r}: expected KEY=VALUE")
        value: Any = raw
        if key != "notes":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        meta[key] = value
        check_metadata({key: value}, where=f"--meta {item!r}")
    return meta
