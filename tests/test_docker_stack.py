"""The docker/ stack is valid and consistent, checked without a Docker engine.

No Docker engine runs on the team's machines, so nothing here builds an image
or starts a container. Instead the tests read what Docker would read and hold
it against the code:

* the compose file, interpolated the way ``docker compose`` does with
  ``docker/.env.example``: services, ports, volumes, health conditions, and
  every rig's box id, MQTT user name and password agreeing with the broker's
  user list; the rigs' environment is resolved by the agent's own settings code;
* the mosquitto config: no anonymous clients, a TLS listener, client ids bound to
  user names, a message size limit, and the files it names are the ones the
  entrypoint writes from the mounted repository files;
* the same config, entrypoint script and ACL run in a real ``mosquitto`` when
  one is installed (tests/test_broker_security.py proves every permission on the
  wire there), and (marked slow) the collector and three rigs started with the
  compose file's environment train a cohort through that broker, down to the
  pruned journals;
* the Dockerfiles: base image, extras and console scripts that exist in
  ``pyproject.toml``, and arguments the CLIs accept.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.protocol import DEFAULT_PREFIX, TopicKind, Topics
from tests.mosquitto_files import BrokerFiles, broker_files, needs_mosquitto, running, stack_users

from .processes import Processes
from .waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
MOSQUITTO_DIR = DOCKER / "mosquitto"
MOSQUITTO_CONF = MOSQUITTO_DIR / "mosquitto.conf"
ACL_FILE = MOSQUITTO_DIR / "acl"
INIT_SCRIPT = MOSQUITTO_DIR / "init.sh"

RIGS = {"rig1": "1", "rig2": "2", "rig3": "3"}
SERVICES = {"mosquitto", "postgres", "controller", *RIGS}
COLLECTOR_USER = "collector-a"
OPERATOR_USER = "labctl-operator"
HEALTH_USER = "viewer-health"
TOPICS = Topics(DEFAULT_PREFIX)
KINDS: tuple[TopicKind, ...] = ("status", "events", "cmd", "reply")
RIG_PUBLISHES: tuple[TopicKind, ...] = ("status", "events", "reply")


# ---------------------------------------------------------------- compose, as docker reads it

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?)(?P<arg>.*))?$")


class MissingVariable(LookupError):
    """A ``${VAR:?message}`` had no value, so compose would refuse to start."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's substitution: ``$$``, ``$VAR``, ``${VAR}``, ``:-``, ``-``, ``:?`` and ``?``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        spec = _BRACED.match(match["braced"])
        if spec is None:
            raise ValueError(f"invalid interpolation {match.group(0)!r}")
        name, op, arg = spec["name"], spec["op"], spec["arg"]
        value = env.get(name)
        unset = not value if op in (":-", ":?") else value is None
        if not unset:
            return str(value)
        if op in (":-", "-"):
            return interpolate(arg, env)
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return ""

    return _VARIABLE.sub(replace, text)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


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


def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "the compose file must be a YAML mapping"
    return data


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file with variables substituted from ``env`` (default: .env.example)."""
    stack: dict[str, Any] = _interpolate_tree(
        raw_compose(), read_env_file(ENV_EXAMPLE) if env is None else env
    )
    return stack


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment``, given as a mapping or as a ``KEY=VALUE`` list."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def mosquitto_users(stack: Mapping[str, Any]) -> dict[str, str]:
    """User name -> password, from the broker service's ``MOSQUITTO_USERS``."""
    text = environment(stack["services"]["mosquitto"])["MOSQUITTO_USERS"]
    users: dict[str, str] = {}
    for pair in text.split():
        user, sep, password = pair.partition(":")
        assert sep and user and password, f"MOSQUITTO_USERS entry {pair!r} is not USER:PASSWORD"
        assert user not in users, f"MQTT user {user!r} is listed twice"
        users[user] = password
    return users


def volume_mounts(service: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume of a service."""
    mounts = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        parts = entry.split(":")
        mounts.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return mounts


def published_ports(service: Mapping[str, Any]) -> list[tuple[str | None, int, int]]:
    """(host ip, host port, container port) of a service's short-syntax ports."""
    out = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        assert len(parts) in (2, 3), f"give ports as [IP:]HOST:CONTAINER, got {entry!r}"
        ip = parts[0] if len(parts) == 3 else None
        out.append((ip, int(parts[-2]), int(parts[-1])))
    return out


# ---------------------------------------------------------------- mosquitto config and ACL


def mosquitto_settings(text: str) -> dict[str, list[str]]:
    """Option -> values (options may repeat) of a mosquitto config."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, value = line.strip().partition(" ")
        settings.setdefault(name, []).append(value.strip())
    return settings


# ---------------------------------------------------------------- Dockerfiles


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    assert not pending, f"{path.name}: dangling line continuation"
    return out


def exec_form(args: str, what: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), (
        f"{what} must be in exec form (a JSON list), got {args!r}"
    )
    return value


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions(path):
        if instruction == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"{path.name}: write ENV as KEY=VALUE, got {item!r}"
                env[key] = value
    return env


def command_of(path: Path) -> list[str]:
    """ENTRYPOINT + CMD of a Dockerfile, as the container would run them."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for instruction, args in dockerfile_instructions(path):
        if instruction == "ENTRYPOINT":
            entrypoint = exec_form(args, f"{path.name} ENTRYPOINT")
        elif instruction == "CMD":
            cmd = exec_form(args, f"{path.name} CMD")
    return entrypoint + cmd


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def pip_install_targets(path: Path) -> list[str]:
    """What each ``pip install`` in a Dockerfile's RUN lines installs."""
    targets = []
    for instruction, args in dockerfile_instructions(path):
        if instruction == "RUN":
            for command in re.split(r"&&|;", args):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    targets += [w for w in words[2:] if not w.startswith("-")]
    return targets


# ================================================================ tests: compose


def test_compose_defines_broker_database_controller_and_three_rigs() -> None:
    assert set(compose()["services"]) == SERVICES


def test_compose_refuses_to_start_without_passwords() -> None:
    with pytest.raises(MissingVariable):
        compose({})
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name in read_env_file(ENV_EXAMPLE):
        if "PASSWORD" in name:
            assert f"${{{name}:?" in text, f"{name} must be required (${{{name}:?...}})"


def test_every_compose_variable_is_in_env_example_and_no_secret_is_committed() -> None:
    example = read_env_file(ENV_EXAMPLE)
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text("utf-8")))
    assert used, "expected variables in the compose file"
    assert used <= set(example), f"missing from .env.example: {sorted(used - set(example))}"
    assert set(example) <= used, f"unused in compose: {sorted(set(example) - used)}"
    for name, value in example.items():
        if "PASSWORD" in name:
            assert value.startswith("change-me"), f"{name} in .env.example must be a placeholder"
    ignored = (DOCKER / ".gitignore").read_text("utf-8").splitlines()
    assert ".env" in ignored, "docker/.env holds real passwords: git must ignore it"


def test_compose_file_is_structurally_valid() -> None:
    stack = compose()
    top_level = {"name", "services", "volumes", "networks", "secrets", "configs"}
    for key in stack:
        assert key in top_level or key.startswith("x-"), f"unknown top-level key {key!r}"
    known = {
        "image", "build", "entrypoint", "command", "environment", "volumes", "tmpfs",
        "ports", "healthcheck", "depends_on", "restart", "init", "stop_grace_period",
    }  # fmt: skip
    declared_volumes = set(stack.get("volumes") or {})
    used_volumes: set[str] = set()
    for name, service in stack["services"].items():
        assert set(service) <= known, f"{name}: unexpected keys {sorted(set(service) - known)}"
        assert "image" in service or "build" in service, f"{name}: needs an image or a build"
        if "build" in service:
            context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
            assert context == REPO, f"{name}: build from the repository root"
            assert (context / service["build"]["dockerfile"]).is_file()
        for key, value in environment(service).items():
            assert isinstance(value, str) and value != "", f"{name}: {key} is empty"
        for source, target, mode in volume_mounts(service):
            assert target.startswith("/"), f"{name}: mount target {target!r} is not absolute"
            assert mode in ("ro", "rw"), f"{name}: mount mode {mode!r}"
            if source.startswith("."):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} does not exist"
            else:
                used_volumes.add(source)
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in stack["services"], f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            assert condition in (
                "service_started", "service_healthy", "service_completed_successfully"
            ), f"{name}: unknown condition {condition!r}"  # fmt: skip
            if condition == "service_healthy":
                assert "healthcheck" in stack["services"][dependency], (
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck"
                )
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1
    assert used_volumes == declared_volumes, "named volumes used and declared must agree"


def test_services_wait_for_a_healthy_broker_and_database() -> None:
    services = compose()["services"]
    controller_deps = services["controller"]["depends_on"]
    assert controller_deps["mosquitto"]["condition"] == "service_healthy"
    assert controller_deps["postgres"]["condition"] == "service_healthy"
    for rig in RIGS:
        assert services[rig]["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"


def test_ports_publish_tls_to_the_network_and_plain_mqtt_and_postgres_on_loopback() -> None:
    services = compose()["services"]
    listener = mosquitto_settings(MOSQUITTO_CONF.read_text("utf-8"))["listener"]
    assert listener == ["1883", "8883"], "plain MQTT on 1883 and TLS on 8883 in the container"
    assert published_ports(services["mosquitto"]) == [
        (None, 8883, 8883),
        ("127.0.0.1", 1883, 1883),
    ]
    assert published_ports(services["postgres"]) == [("127.0.0.1", 5433, 5432)]
    for name in ("controller", *RIGS):
        assert "ports" not in services[name], f"{name} listens on nothing and publishes nothing"


def test_every_client_reaches_the_broker_over_tls_trusting_the_lab_ca() -> None:
    services = compose()["services"]
    url = "mqtts://mosquitto:8883"
    controller = environment(services["controller"])
    assert (
        controller["LABCTL_BROKER"] == url and controller["LABCTL_MQTT_CA_FILE"] == "/certs/ca.pem"
    )
    for rig in RIGS:
        env = environment(services[rig])
        assert env["LABAGENT_BROKER"] == url and env["LABAGENT_CA_FILE"] == "/certs/ca.pem"
    for name in ("controller", *RIGS):
        mounts = {target: (source, mode) for source, target, mode in volume_mounts(services[name])}
        # Only the public half: the CA's and the broker's private keys stay with the broker.
        assert mounts["/certs"] == ("./certs/public", "ro"), name


def test_controller_database_url_matches_the_postgres_service() -> None:
    services = compose()["services"]
    pg = environment(services["postgres"])
    url = environment(services["controller"])["LABCTL_DB"]
    expected = (
        f"postgresql+psycopg2://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{pg['POSTGRES_DB']}"
    )
    assert url == expected


@pytest.mark.parametrize("rig", sorted(RIGS))
def test_each_rig_logs_in_with_its_box_id_as_user_name_and_its_own_password(rig: str) -> None:
    stack = compose()
    env = environment(stack["services"][rig])
    users = mosquitto_users(stack)
    assert env["LABAGENT_BOX"] == RIGS[rig]
    assert env["LABAGENT_MQTT_USERNAME"] == env["LABAGENT_BOX"], (
        "the ACL's %u patterns need the MQTT user name to be the box id"
    )
    assert users[env["LABAGENT_MQTT_USERNAME"]] == env["LABAGENT_MQTT_PASSWORD"]


def test_broker_users_are_one_per_collector_person_healthcheck_and_rig() -> None:
    stack = compose()
    users = mosquitto_users(stack)
    assert set(users) == {COLLECTOR_USER, OPERATOR_USER, HEALTH_USER, *RIGS.values()}
    assert len(set(users.values())) == len(users), "every MQTT user has its own password"
    controller = environment(stack["services"]["controller"])
    assert controller["LABCTL_MQTT_USERNAME"] == COLLECTOR_USER
    assert users[COLLECTOR_USER] == controller["LABCTL_MQTT_PASSWORD"]
    broker = environment(stack["services"]["mosquitto"])
    assert broker["MOSQUITTO_HEALTHCHECK_PASSWORD"] == users[HEALTH_USER]


@pytest.mark.parametrize("rig", sorted(RIGS))
def test_rig_environment_is_accepted_by_the_agent_settings(rig: str, tmp_path: Path) -> None:
    from agent.cli import build_parser
    from agent.settings import resolve

    env = {**dockerfile_env(DOCKER / "agent.Dockerfile"), **environment(compose()["services"][rig])}
    # The CA file the container mounts at /certs, here a real one (the settings check it).
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA certificate\n")
    assert env["LABAGENT_CA_FILE"] == "/certs/ca.pem"
    env["LABAGENT_CA_FILE"] = str(ca)
    argv = command_of(DOCKER / "agent.Dockerfile")
    args = build_parser().parse_args(argv[1:])
    settings = resolve(args, environ=env)
    assert settings.box == RIGS[rig]
    assert settings.sim
    assert settings.broker.url == "mqtts://mosquitto:8883" and settings.broker.ca_file == ca
    assert settings.broker.username == RIGS[rig]
    assert settings.journal == Path("/data/journal.sqlite3")
    assert settings.data_dir == Path("/data/sessions")
    mounts = {target: source for source, target, _ in volume_mounts(compose()["services"][rig])}
    assert mounts.get("/data") == f"{rig}-data", "the journal must outlive the container"


# ================================================================ tests: mosquitto config


def test_mosquitto_config_requires_passwords_an_acl_own_client_ids_and_a_size_limit() -> None:
    settings = mosquitto_settings(MOSQUITTO_CONF.read_text("utf-8"))
    assert settings["allow_anonymous"] == ["false"]
    assert settings["per_listener_settings"] == ["false"], "the same users on every listener"
    assert len(settings["password_file"]) == 1
    assert len(settings["acl_file"]) == 1
    # mosquitto reads it per listener: once in each listener block.
    assert settings["use_username_as_clientid"] == ["true"] * len(settings["listener"])
    assert 0 < int(settings["message_size_limit"][0]) <= 1024 * 1024
    assert settings["persistence"] == ["true"]
    assert settings["require_certificate"] == ["false"], "client certificates are optional"
    for option in ("cafile", "certfile", "keyfile"):
        assert len(settings[option]) == 1, option


def test_mosquitto_files_come_from_the_mounted_repository_folder() -> None:
    service = compose()["services"]["mosquitto"]
    mounts = {target: (source, mode) for source, target, mode in volume_mounts(service)}
    assert mounts["/mosquitto/config"] == ("./mosquitto", "ro")
    assert (COMPOSE_FILE.parent / "mosquitto").resolve() == MOSQUITTO_DIR
    # The entrypoint script, the config the command names and the ACL source are repository files.
    assert service["entrypoint"] == ["/bin/sh", "/mosquitto/config/init.sh"]
    assert INIT_SCRIPT.is_file()
    assert service["command"][-2:] == ["-c", "/mosquitto/config/mosquitto.conf"]
    script = INIT_SCRIPT.read_text("utf-8")
    assert "${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}" in script
    assert "${MOSQUITTO_ACL_SOURCE:-/mosquitto/config/acl}" in script
    assert ACL_FILE.is_file()
    # The files the broker reads are written by init.sh into the in-memory auth folder.
    settings = mosquitto_settings(MOSQUITTO_CONF.read_text("utf-8"))
    tmpfs = [entry.split(":")[0] for entry in service["tmpfs"]]
    assert mounts["/mosquitto/certs"] == ("./certs", "ro")
    for option in ("cafile", "certfile"):
        assert settings[option][0].startswith("/mosquitto/certs/public/"), option
    assert "${MOSQUITTO_KEY_SOURCE:-/mosquitto/certs/private/server.key}" in script
    for option in ("password_file", "acl_file", "keyfile"):
        path = settings[option][0]
        assert str(Path(path).parent) in tmpfs, f"{option} {path} must be in a tmpfs mount"
        assert not path.startswith("/mosquitto/config/"), (
            f"{option} must not be the read-only mount"
        )
    persistence = settings["persistence_location"][0].rstrip("/")
    assert mounts[persistence][0] == "mosquitto-data"


def test_mosquitto_healthcheck_logs_in_with_its_own_read_only_credential() -> None:
    test = compose()["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    words = shlex.split(test[1])
    assert words[0] == "mosquitto_sub"
    assert words[words.index("-u") + 1] == HEALTH_USER
    assert words[words.index("-p") + 1] == "1883"
    assert words[words.index("-t") + 1].startswith("$SYS/")


# ================================================================ tests: the stack, real mosquitto
# The broker's own tests (init.sh, every permission, TLS, client ids, the size limit) are in
# tests/test_broker_security.py, on the same shipped files; here the whole stack runs on them.


@pytest.fixture
def stack_broker() -> Iterator[BrokerFiles]:
    """The stack's mosquitto config, ACL and init.sh, in a real mosquitto on free ports."""
    # mosquitto started as root drops to the 'mosquitto' user: the folder must be traversable.
    with tempfile.TemporaryDirectory(prefix="reachlab-docker-test-") as name:
        os.chmod(name, 0o755)
        with running(broker_files(Path(name), stack_users())) as files:
            yield files


def _run(argv: list[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(
        argv, env=dict(env), capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, f"{argv[2:]} failed: {result.stderr or result.stdout}"
    return result.stdout


@needs_mosquitto
@pytest.mark.slow
def test_the_stack_s_services_train_a_cohort_through_its_broker_config(
    stack_broker: BrokerFiles,
) -> None:
    """The collector and three rigs, with the compose file's environment, through the
    stack's mosquitto config and ACL over TLS with the lab CA, and labctl with the
    operator's own credential: every session is stored, committed and pruned."""
    stack = compose()
    work = stack_broker.directory
    url = f"mqtts://127.0.0.1:{stack_broker.tls_port}"
    ca = str(stack_broker.ca)
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": str(work)}
    collector_env = {
        **base,
        **environment(stack["services"]["controller"]),
        "LABCTL_DB": f"sqlite:///{work / 'lab.db'}",
        "LABCTL_BROKER": url,
        "LABCTL_MQTT_CA_FILE": ca,
    }
    # A person's labctl: its own credential (sharing the collector's would knock the
    # collector off the broker: a client id is its user name).
    controller_env = {
        **collector_env,
        "LABCTL_MQTT_USERNAME": OPERATOR_USER,
        "LABCTL_MQTT_PASSWORD": stack_broker.users[OPERATOR_USER],
    }
    labctl = [sys.executable, "-m", "controller.cli"]
    processes = Processes(work / "logs")
    try:
        processes.start("collector", [*labctl, "serve"], collector_env)
        for rig in RIGS:
            rig_env = {
                **base,
                **dockerfile_env(DOCKER / "agent.Dockerfile"),
                **environment(stack["services"][rig]),
                "LABAGENT_BROKER": url,
                "LABAGENT_CA_FILE": ca,
                "LABAGENT_TIME_SCALE": "120",
                "LABAGENT_JOURNAL": str(work / rig / "journal.sqlite3"),
                "LABAGENT_DATA_DIR": str(work / rig / "sessions"),
            }
            argv = command_of(DOCKER / "agent.Dockerfile")
            processes.start(rig, [sys.executable, "-m", "agent.cli", *argv[1:]], rig_env)

        def states() -> dict[str, str]:
            text = _run([*labctl, "status", "--json"], controller_env)
            return {row["box"]: row["state"] for row in json.loads(text)["boxes"]}

        boxes = set(RIGS.values())
        wait_until(
            lambda: states() == dict.fromkeys(boxes, "idle"), 60, "every rig idle",
            alive=processes.check_alive, detail=processes.all_logs, interval=0.25,
        )  # fmt: skip
        mice = [f"Mouse{box}" for box in sorted(boxes)]
        for mouse, box in zip(mice, sorted(boxes), strict=True):
            _run([*labctl, "assign", mouse, "--box", box], controller_env)
        _run([*labctl, "cohort", "create", "C1", *mice], controller_env)
        _run([*labctl, "start", "--cohort", "C1", "--duration", "240"], controller_env)

        def pruned() -> bool:
            for rig in RIGS:
                text = _run(
                    [sys.executable, "-m", "agent.cli", "status", "--json",
                     "--journal", str(work / rig / "journal.sqlite3")],
                    base,
                )  # fmt: skip
                report = json.loads(text)
                if report["sessions"] or report["pending"]:
                    return False
            return True

        wait_until(
            pruned, 60, "the sessions to be committed and pruned",
            alive=processes.check_alive, detail=processes.all_logs, interval=0.25,
        )  # fmt: skip
        _run([*labctl, "export", "--all", "--out", str(work / "export")], controller_env)
        for mouse in mice:
            sessions = json.loads((work / "export" / f"{mouse}.json").read_text("utf-8"))
            assert [s["status"] for s in sessions] == ["complete"]
            assert sessions[0]["box"] == mouse.removeprefix("Mouse")
            assert sessions[0]["trials"], "a 4-minute session has trials"
    finally:
        processes.stop_all()


# ================================================================ tests: Dockerfiles


@pytest.mark.parametrize("name", ["controller.Dockerfile", "agent.Dockerfile"])
def test_dockerfile_uses_python_3_11_slim_and_copies_only_existing_files(name: str) -> None:
    path = DOCKER / name
    instructions = dockerfile_instructions(path)
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert pyproject()["project"]["requires-python"] == ">=3.11"
    ignore = (DOCKER / f"{name}.dockerignore").read_text("utf-8").splitlines()
    for instruction, args in instructions:
        if instruction == "COPY":
            *sources, _target = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), f"{name}: COPY {source}: not in the repository"
                assert f"!{source.rstrip('/')}" in ignore, f"{name}: {source} is ignored"
    assert any(i == "USER" and a != "root" for i, a in instructions), f"{name}: run as a user"


@pytest.mark.parametrize(
    ("name", "target"),
    [("controller.Dockerfile", ".[controller,postgres]"), ("agent.Dockerfile", ".")],
)
def test_dockerfile_installs_the_repository_with_existing_extras(name: str, target: str) -> None:
    assert pip_install_targets(DOCKER / name) == [target]
    extras = re.findall(r"\[(.*)\]", target)
    known = set(pyproject()["project"]["optional-dependencies"])
    for extra in extras[0].split(",") if extras else []:
        assert extra in known, f"{name}: unknown extra {extra!r}"


@pytest.mark.parametrize(
    ("name", "script"), [("controller.Dockerfile", "labctl"), ("agent.Dockerfile", "labagent")]
)
def test_dockerfile_runs_a_console_script_of_the_project(name: str, script: str) -> None:
    argv = command_of(DOCKER / name)
    assert argv[0] == script
    scripts = pyproject()["project"]["scripts"]
    assert script in scripts, f"{script} is not in [project.scripts]"
    module = scripts[script].split(":")[0]
    package = module.split(".")[0]
    copied = [shlex.split(a)[0] for i, a in dockerfile_instructions(DOCKER / name) if i == "COPY"]
    assert package in copied, f"{name}: {module} is not copied into the image"


def test_agent_image_runs_labagent_run_with_sim() -> None:
    from agent.cli import build_parser

    argv = command_of(DOCKER / "agent.Dockerfile")
    assert argv[:3] == ["labagent", "run", "--sim"]
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.sim is True


def test_agent_image_stays_light() -> None:
    copied = {
        source  # every source of a COPY: all its words but the destination
        for i, a in dockerfile_instructions(DOCKER / "agent.Dockerfile")
        if i == "COPY"
        for source in shlex.split(a)[:-1]
    }
    assert {"agent", "shared"} <= copied, copied  # what it needs is read as copied
    assert "controller" not in copied, "the agent image must not carry the controller"


def test_controller_image_runs_labctl_serve() -> None:
    argv = command_of(DOCKER / "controller.Dockerfile")
    assert argv == ["labctl", "serve"]
    import typer  # typer may vendor click: ask the command, not click

    from controller.cli import app

    commands = getattr(typer.main.get_command(app), "commands", {})
    assert "serve" in commands, "labctl has no serve command"


def test_controller_reads_the_environment_variables_compose_sets() -> None:
    env = environment(compose()["services"]["controller"])
    assert "LABCTL_DB" in env and "LABCTL_BROKER" in env, env  # the compose file was read
    sources = "\n".join(p.read_text("utf-8") for p in (REPO / "controller").rglob("*.py"))
    for name in env:
        assert name in sources, f"compose sets {name}, which no controller code reads"


def test_rig_environment_variables_are_ones_the_agent_reads() -> None:
    from agent.settings import SOURCES

    known = {env_name for env_name, _ in SOURCES.values()}
    for rig in RIGS:
        for name in environment(compose()["services"][rig]):
            assert name in known, f"{rig}: {name} is not a LABAGENT_ setting"
    for name in dockerfile_env(DOCKER / "agent.Dockerfile"):
        assert not name.startswith("LABAGENT_") or name in known, name
