"""The docker/ stack's files as Docker reads them: the compose file through a YAML parser,
the Dockerfiles and docker/.env.example by plain reading.

Nothing here substitutes variables the way ``docker compose`` does: a compose
value is either literal or one whole ``${NAME...}`` reference (:func:`variable`
names it), and the tests compare the names. Where a test must run what compose
would run, :func:`with_example_values` gives each whole reference its value from
docker/.env.example.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .conftest import REPO

DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
MOSQUITTO_DIR = DOCKER / "mosquitto"
MOSQUITTO_CONF = MOSQUITTO_DIR / "mosquitto.conf"
ACL_FILE = MOSQUITTO_DIR / "acl"
INIT_SCRIPT = MOSQUITTO_DIR / "init.sh"

RIGS = {"rig1": "1", "rig2": "2", "rig3": "3"}
SERVICES = {"mosquitto", "postgres", "controller", "alerts", *RIGS}
COLLECTOR_USER = "collector-a"
OPERATOR_USER = "labctl-operator"
HEALTH_USER = "viewer-health"
ALERTS_USER = "viewer-alerts"

#: A variable reference: ``${NAME}``, with ``:-``/``-`` a default or ``:?``/``?`` a message.
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")

# ---------------------------------------------------------------- compose, through YAML


def compose() -> dict[str, Any]:
    """The compose file as YAML reads it (anchors and merge keys resolved, no variables)."""
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "the compose file must be a YAML mapping"
    return data


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines, as compose reads a ``.env`` file (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path}:{number}: {raw!r}"
        values[key] = value
    return values


def references(text: str) -> list[str]:
    """The names of the ``${NAME...}`` references in ``text`` (``$$`` is compose's escape)."""
    return [m["name"] for m in _REFERENCE.finditer(text.replace("$$", ""))]


def variable(value: str) -> str:
    """The name of the variable a compose value is: it must be one whole ``${NAME...}``."""
    match = _REFERENCE.fullmatch(value)
    assert match is not None, f"{value!r} is not one ${{VARIABLE}} reference"
    return match["name"]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment``, given as a mapping or as a ``KEY=VALUE`` list."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def with_example_values(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` as the stack runs it with docker/.env.example: a value that is one whole
    ``${NAME...}`` takes NAME's example value, a value without ``$`` stays; a value that
    embeds a reference in other text (a URL) is left out, for the caller to set."""
    example = read_env_file(ENV_EXAMPLE)
    out: dict[str, str] = {}
    for key, value in env.items():
        if _REFERENCE.fullmatch(value):
            out[key] = example[variable(value)]
        elif "$" not in value:
            out[key] = value
    return out


def mosquitto_users(stack: Mapping[str, Any]) -> dict[str, str]:
    """User name -> the variable holding its password, from the broker's ``MOSQUITTO_USERS``."""
    text = environment(stack["services"]["mosquitto"])["MOSQUITTO_USERS"]
    pairs = re.findall(r"(\S+?):(\$\{[^}]*\})", text)
    assert re.sub(r"(\S+?):(\$\{[^}]*\})", "", text).strip() == "", (
        f"MOSQUITTO_USERS must be USER:${{PASSWORD_VARIABLE}} pairs: {text!r}"
    )
    users: dict[str, str] = {}
    for user, reference in pairs:
        assert user not in users, f"MQTT user {user!r} is listed twice"
        users[user] = variable(reference)
    return users


def stack_users() -> dict[str, str]:
    """The compose stack's MQTT users and their passwords from docker/.env.example."""
    example = read_env_file(ENV_EXAMPLE)
    return {user: example[name] for user, name in mosquitto_users(compose()).items()}


def volume_mounts(service: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume of a service."""
    mounts = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        parts = entry.split(":")
        mounts.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return mounts


# ---------------------------------------------------------------- mosquitto config


def mosquitto_settings(text: str) -> dict[str, list[str]]:
    """Option -> values (options may repeat) of a mosquitto config."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, value = line.strip().partition(" ")
        settings.setdefault(name, []).append(value.strip())
    return settings


# ---------------------------------------------------------------- Dockerfiles, read as lines


def dockerfile_lines(path: Path) -> list[str]:
    """A Dockerfile's lines, stripped, without blanks and comments."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def arguments(path: Path, instruction: str) -> list[str]:
    """What follows ``instruction`` on each line that starts with it (its first line only)."""
    prefix = f"{instruction} "
    return [line.removeprefix(prefix) for line in dockerfile_lines(path) if line.startswith(prefix)]


def exec_form(args: str, what: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), (
        f"{what} must be in exec form (a JSON list), got {args!r}"
    )
    return value


def command_of(path: Path) -> list[str]:
    """ENTRYPOINT + CMD of a Dockerfile, as the container would run them."""
    entrypoint = [exec_form(a, f"{path.name} ENTRYPOINT") for a in arguments(path, "ENTRYPOINT")]
    cmd = [exec_form(a, f"{path.name} CMD") for a in arguments(path, "CMD")]
    assert len(entrypoint) <= 1 and len(cmd) <= 1, f"{path.name}: one ENTRYPOINT and one CMD"
    return [*(entrypoint[0] if entrypoint else []), *(cmd[0] if cmd else [])]


def dockerfile_env(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a Dockerfile (its ENV lines and their continuations)."""
    text = path.read_text(encoding="utf-8")
    return dict(re.findall(r"^\s*(?:ENV\s+)?([A-Z][A-Z0-9_]*)=(\S*?)\s*\\?$", text, re.M))


def pip_install_targets(path: Path) -> list[str]:
    """What each ``RUN pip install`` line of a Dockerfile installs."""
    targets = []
    for args in arguments(path, "RUN"):
        words = shlex.split(args.removesuffix("\\"))
        if words[:2] == ["pip", "install"]:
            targets += [w for w in words[2:] if not w.startswith("-")]
    return targets
