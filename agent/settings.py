"""The agent's settings, read at the edge: options, ``LABAGENT_*`` variables, a rig config file.

Each setting is taken from the first place that gives it:

1. the command line (``labagent run --box 3``);
2. the environment (``LABAGENT_BOX=3``), handy for a systemd ``EnvironmentFile``;
3. the rig config file (``--config-file`` or ``LABAGENT_CONFIG_FILE``), INI or JSON;
4. the defaults (journal and data under ``$XDG_DATA_HOME/reachlab-agent``).

Each of the three places is one pydantic-settings source (:class:`Layer`) and
pydantic-settings merges them, first wins, into :class:`GivenSettings`, typed.
Everything is validated here and turned into one frozen :class:`AgentSettings`;
nothing deeper in the agent reads options or the environment. Mistakes raise
:class:`~shared.errors.ConfigError` naming the value and where it came from.
"""

from __future__ import annotations

import argparse
import configparser
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.hardware import PinMap
from agent.sim import MouseProfile
from shared.broker_url import (
    DEFAULT_KEEPALIVE_S,
    broker_settings,
    read_settings_text,
    refuse_password_in_option,
    warn_if_readable_by_others,
)
from shared.broker_url import BrokerSettings as BrokerSettings  # one type, shared with labctl
from shared.errors import ConfigError, InvalidIdError
from shared.ids import check_box_id
from shared.protocol import DEFAULT_PREFIX, Topics

ENV_PREFIX = "LABAGENT_"
DEFAULT_BROKER = "mqtt://localhost:1883"
DEFAULT_HEARTBEAT_S = 10.0
APP_DIR = "reachlab-agent"


def default_data_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/reachlab-agent``, else ``~/.local/share/reachlab-agent``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / APP_DIR


# ---------------------------------------------------------------- the rig config file


class RigFile(BaseModel):
    """The rig config file's keys; every one is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    box: str | None = None
    broker: str | None = None
    prefix: str | None = None
    username: str | None = None
    password: str | None = None
    credentials_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    journal: str | None = None
    data_dir: str | None = None
    heartbeat: float | None = Field(None, gt=0)
    keepalive: int | None = Field(None, ge=5, le=3600)
    pins: str | dict[str, Any] | None = Field(None, description="a pins JSON file, or the pins")


AGENT_SECTION = "agent"
PINS_SECTION = "pins"


def _ini_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw.strip()


def read_rig_file(path: str | os.PathLike[str]) -> tuple[RigFile, Path]:
    """Read a rig config file (``.json``, else INI); return it and the folder paths are relative to.

    INI: an ``[agent]`` section (``box = 3``, ``broker = mqtts://...``) and an
    optional ``[pins]`` section (``paw_sensors = [17, 18]``). JSON: one object
    with the same keys, ``pins`` being an object or a file name.
    """
    file = Path(path).expanduser()
    text = read_settings_text(file, "rig config file")
    values: dict[str, Any]
    if file.suffix.lower() == ".json":
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"rig config file {file}: not valid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"rig config file {file}: expected a JSON object")
        values = loaded
    else:
        parser = configparser.RawConfigParser()
        try:
            parser.read_string(text, source=str(file))
        except configparser.Error as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"rig config file {file}: not a valid INI file ({first})") from None
        unknown = [s for s in parser.sections() if s not in (AGENT_SECTION, PINS_SECTION)]
        if unknown:
            raise ConfigError(
                f"rig config file {file}: unknown section [{unknown[0]}]"
                f" (use [{AGENT_SECTION}] and [{PINS_SECTION}])"
            )
        values = dict(parser.items(AGENT_SECTION)) if parser.has_section(AGENT_SECTION) else {}
        if parser.has_section(PINS_SECTION):
            if "pins" in values:
                raise ConfigError(
                    f"rig config file {file}: give pins either as 'pins = FILE' or a [pins] section"
                )
            values["pins"] = {k: _ini_value(v) for k, v in parser.items(PINS_SECTION)}
    try:
        return RigFile.model_validate(values), file.parent
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "(file)"
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"rig config file {file}: unknown key {key!r}") from None
        raise ConfigError(
            f"rig config file {file}: key {key!r}: {err['msg']} (got {err.get('input')!r})"
        ) from None


# ---------------------------------------------------------------- all settings


@dataclass(frozen=True)
class AgentSettings:
    """Everything ``labagent run`` needs, validated."""

    box: str
    broker: BrokerSettings
    journal: Path
    data_dir: Path
    prefix: str = DEFAULT_PREFIX
    sim: bool = False
    time_scale: float = 1.0
    seed: int | None = None
    pins: PinMap | None = None
    heartbeat: float = DEFAULT_HEARTBEAT_S
    #: How the simulated mouse behaves (``--sim`` only); None: the default mouse.
    sim_mouse: MouseProfile | None = None


#: option name -> (environment variable, rig file key)
SOURCES: dict[str, tuple[str, str | None]] = {
    "box": ("LABAGENT_BOX", "box"),
    "broker": ("LABAGENT_BROKER", "broker"),
    "prefix": ("LABAGENT_PREFIX", "prefix"),
    "username": ("LABAGENT_MQTT_USERNAME", "username"),
    "password": ("LABAGENT_MQTT_PASSWORD", "password"),
    "credentials_file": ("LABAGENT_MQTT_CREDENTIALS_FILE", "credentials_file"),
    "ca_file": ("LABAGENT_CA_FILE", "ca_file"),
    "cert_file": ("LABAGENT_CERT_FILE", "cert_file"),
    "key_file": ("LABAGENT_KEY_FILE", "key_file"),
    "journal": ("LABAGENT_JOURNAL", "journal"),
    "data_dir": ("LABAGENT_DATA_DIR", "data_dir"),
    "pins": ("LABAGENT_PINS", "pins"),
    "heartbeat": ("LABAGENT_HEARTBEAT", "heartbeat"),
    "keepalive": ("LABAGENT_KEEPALIVE", "keepalive"),
    "sim": ("LABAGENT_SIM", None),
    "time_scale": ("LABAGENT_TIME_SCALE", None),
    "seed": ("LABAGENT_SEED", None),
    "sim_mouse": ("LABAGENT_SIM_MOUSE", None),
}
PATH_KEYS = ("credentials_file", "ca_file", "cert_file", "key_file", "journal", "data_dir", "pins")


def add_config_file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-file",
        metavar="FILE",
        help="rig config file (INI or .json): box, broker, credentials, pins "
        "(env LABAGENT_CONFIG_FILE)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``labagent run``; each defaults to None so unset ones fall through."""
    parser.add_argument("--box", help="this box's id (env LABAGENT_BOX)")
    parser.add_argument(
        "--broker",
        metavar="URL",
        help=f"mqtt://HOST[:PORT] or mqtts://... (env LABAGENT_BROKER; default {DEFAULT_BROKER})",
    )
    parser.add_argument(
        "--sim",
        action="store_const",
        const=True,
        default=None,
        help="gpiozero mock pins and a simulated mouse (env LABAGENT_SIM=1)",
    )
    parser.add_argument(
        "--time-scale",
        metavar="X",
        help="task seconds per wall second, with --sim only (env LABAGENT_TIME_SCALE)",
    )
    parser.add_argument("--seed", help="seed the simulated mouse and the task (env LABAGENT_SEED)")
    parser.add_argument(
        "--sim-mouse",
        action="append",
        metavar="KEY=VALUE",
        help="with --sim: how the simulated mouse behaves, e.g. hit_probability=0.5 "
        "(repeatable; env LABAGENT_SIM_MOUSE=KEY=VALUE,KEY=VALUE)",
    )
    parser.add_argument(
        "--journal", metavar="PATH", help="the SQLite journal (env LABAGENT_JOURNAL)"
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder of the local per-mouse JSON copies (env LABAGENT_DATA_DIR)",
    )
    parser.add_argument("--pins", metavar="FILE", help="JSON file of BCM pins (env LABAGENT_PINS)")
    add_config_file_argument(parser)
    parser.add_argument("--username", help="broker user name (env LABAGENT_MQTT_USERNAME)")
    # Refused with a clear line in resolve(): a password on a command line shows in `ps`.
    parser.add_argument("--password", help=argparse.SUPPRESS)
    parser.add_argument(
        "--credentials-file",
        metavar="FILE",
        help="mode 0600 file of 'username = ...' and 'password = ...' lines "
        "(env LABAGENT_MQTT_CREDENTIALS_FILE; or LABAGENT_MQTT_PASSWORD)",
    )
    parser.add_argument("--ca-file", metavar="FILE", help="CA certificate for mqtts:// brokers")
    parser.add_argument("--cert-file", metavar="FILE", help="client certificate (mqtts://)")
    parser.add_argument("--key-file", metavar="FILE", help="client certificate's key (mqtts://)")
    parser.add_argument(
        "--heartbeat",
        metavar="S",
        help=f"status heartbeat period in wall seconds (default {DEFAULT_HEARTBEAT_S:g})",
    )
    parser.add_argument(
        "--keepalive", metavar="S", help=argparse.SUPPRESS
    )  # MQTT keepalive; rarely worth changing
    parser.add_argument(
        "--prefix", help=f"topic prefix (env LABAGENT_PREFIX; default {DEFAULT_PREFIX})"
    )


class Layer(PydanticBaseSettingsSource):
    """One place settings come from (the command line, the environment, the rig file):
    the values it gives, and what an error calls each (``--box``, ``LABAGENT_BOX``)."""

    def __init__(
        self, settings_cls: type[BaseSettings], values: dict[str, Any], names: dict[str, str]
    ) -> None:
        super().__init__(settings_cls)
        self.values = values
        self.names = names

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


LayerData = tuple[dict[str, Any], dict[str, str]]


def command_line_layer(args: argparse.Namespace) -> LayerData:
    values = {n: getattr(args, n) for n in SOURCES if getattr(args, n, None) is not None}
    return values, {n: f"--{n.replace('_', '-')}" for n in values}


def environment_layer(environ: Mapping[str, str]) -> LayerData:
    given = {n: env for n, (env, _) in SOURCES.items() if environ.get(env) not in (None, "")}
    return {n: environ[env] for n, env in given.items()}, given


def rig_file_layer(rig: RigFile, base: Path) -> LayerData:
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name, (_, key) in SOURCES.items():
        value = None if key is None else getattr(rig, key)
        if value is None:
            continue
        if name in PATH_KEYS and isinstance(value, str):
            # Paths in a rig file are relative to the file, not to where labagent runs.
            value = str(base / Path(value).expanduser())
        values[name], names[name] = value, f"rig config file key {key!r}"
    return values, names


class GivenSettings(BaseSettings):
    """Each setting as the first layer that gives it has it, typed; None where none does."""

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False
    )

    box: str | None = None
    broker: str | None = None
    prefix: str | None = None
    username: str | None = None
    password: str | None = None
    credentials_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    journal: str | None = None
    data_dir: str | None = None
    pins: str | dict[str, Any] | None = None
    heartbeat: float | None = None
    keepalive: int | None = None
    sim: bool | None = None
    time_scale: str | None = None
    seed: int | None = None
    sim_mouse: list[str] | str | None = None

    @field_validator("sim", mode="before")
    @classmethod
    def _flag_text(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value


def given_settings(layers: list[LayerData]) -> tuple[GivenSettings, dict[str, str]]:
    """The layers merged, first wins, by pydantic-settings; and where each value came from.

    Mistakes raise :class:`ConfigError` naming the place the value came from.
    """
    where: dict[str, str] = {}
    for _, names in reversed(layers):
        where.update(names)

    class ThisCall(GivenSettings):
        # pydantic-settings takes its sources from the class; these are this call's layers.
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return tuple(Layer(settings_cls, values, names) for values, names in layers)

    try:
        return ThisCall(), where
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0])
        place, value = where.get(name, name), err.get("input")
        if err["type"] == "bool_parsing":
            message = f"expected 1/0, true/false, yes/no; got {value!r}"
        elif err["type"] == "finite_number":
            message = f"expected a finite number, got {value!r}"
        elif name in ("heartbeat", "keepalive", "seed"):
            message = f"expected a number, got {value!r}"
        else:
            message = f"{err['msg']} (got {value!r})"
        raise ConfigError(f"{place}: {message}") from None


def _layers(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[list[LayerData], Path | None]:
    """The command line's, the environment's and the rig file's values, in that order."""
    layers = [command_line_layer(args), environment_layer(environ)]
    path = getattr(args, "config_file", None) or environ.get("LABAGENT_CONFIG_FILE") or None
    if path is None:
        return layers, None
    rig, base = read_rig_file(path)
    return [*layers, rig_file_layer(rig, base)], Path(path).expanduser()


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value).expanduser()


def resolve_journal(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Path:
    """The journal path alone, for ``labagent status``."""
    env = os.environ if environ is None else environ
    given, _ = given_settings(_layers(args, env)[0])
    return _path(given.journal) or default_data_home(env) / "journal.sqlite3"


def resolve(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> AgentSettings:
    """Merge the command line, the environment and the rig file into :class:`AgentSettings`."""
    from agent.runtime import parse_time_scale

    env = os.environ if environ is None else environ
    layers, rig_file = _layers(args, env)
    given, where = given_settings(layers)

    if given.box is None:
        raise ConfigError("no box id: give --box, set LABAGENT_BOX, or put box in the rig file")
    try:
        box = check_box_id(given.box)
    except InvalidIdError as exc:
        raise ConfigError(f"{where['box']}: {exc}") from None

    prefix = given.prefix if given.prefix is not None else DEFAULT_PREFIX
    try:
        Topics(prefix)
    except ValueError as exc:
        raise ConfigError(f"{where['prefix']}: {exc}") from None

    broker = _broker(args, given, where, rig_file)

    sim = bool(given.sim)
    time_scale = 1.0
    if given.time_scale is not None:
        time_scale = parse_time_scale(given.time_scale)
        if math.isinf(time_scale):
            raise ConfigError(
                f"{where['time_scale']}: labagent run needs a finite time scale (it talks to "
                "the world in real time); 'max' is only for labagent train"
            )
    if time_scale != 1.0 and not sim:
        raise ConfigError("--time-scale needs --sim: a real rig runs in real time")

    sim_mouse: MouseProfile | None = None
    if given.sim_mouse is not None:
        if isinstance(given.sim_mouse, list):
            sim_mouse = MouseProfile.from_items(given.sim_mouse)
        else:
            sim_mouse = MouseProfile.from_text(given.sim_mouse)
        if not sim:
            raise ConfigError(f"{where['sim_mouse']}: a simulated mouse needs --sim")
    if given.heartbeat is not None and given.heartbeat <= 0:
        raise ConfigError(f"heartbeat must be positive, got {given.heartbeat:g}")

    pins: PinMap | None = None
    if isinstance(given.pins, dict):
        try:
            pins = PinMap.model_validate(given.pins)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"rig config file pins: key {key!r}: {err['msg']}") from None
    elif given.pins is not None:
        pins = PinMap.load(given.pins)

    home = default_data_home(env)
    return AgentSettings(
        box=box,
        broker=broker,
        journal=_path(given.journal) or home / "journal.sqlite3",
        data_dir=_path(given.data_dir) or home / "sessions",
        prefix=prefix,
        sim=sim,
        time_scale=time_scale,
        seed=given.seed,
        pins=pins,
        heartbeat=given.heartbeat if given.heartbeat is not None else DEFAULT_HEARTBEAT_S,
        sim_mouse=sim_mouse,
    )


def _broker(
    args: argparse.Namespace, given: GivenSettings, where: dict[str, str], rig_file: Path | None
) -> BrokerSettings:
    fix = "set LABAGENT_MQTT_PASSWORD, a credentials file (--credentials-file) or the rig file"
    if getattr(args, "password", None) is not None:
        raise ConfigError(f"--password: a password on the command line shows in `ps`; {fix}")
    if given.broker is not None and where.get("broker") == "--broker":
        refuse_password_in_option(given.broker, "--broker", f"give the URL without it and {fix}")
    if rig_file is not None and where.get("password", "").startswith("rig config"):
        warn_if_readable_by_others(rig_file, "rig config file (it holds a password)")
    return broker_settings(
        given.broker if given.broker is not None else DEFAULT_BROKER,
        username=given.username,
        password=given.password,
        credentials_file=_path(given.credentials_file),
        ca_file=_path(given.ca_file),
        cert_file=_path(given.cert_file),
        key_file=_path(given.key_file),
        keepalive=given.keepalive if given.keepalive is not None else DEFAULT_KEEPALIVE_S,
    )
