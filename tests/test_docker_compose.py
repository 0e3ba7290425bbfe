"""The compose file (docker/docker-compose.yml), read through YAML: services, health,
ports, volumes, and every credential agreeing with the broker's user list; the rigs'
environment is resolved by the agent's own settings code. No Docker engine is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import REPO
from .dockerstack import (
    ALERTS_USER,
    COLLECTOR_USER,
    COMPOSE_FILE,
    DOCKER,
    ENV_EXAMPLE,
    HEALTH_USER,
    MOSQUITTO_CONF,
    OPERATOR_USER,
    RIGS,
    SERVICES,
    command_of,
    compose,
    dockerfile_env,
    environment,
    mosquitto_settings,
    mosquitto_users,
    read_env_file,
    references,
    variable,
    volume_mounts,
    with_example_values,
)


def test_compose_defines_broker_database_controller_and_three_rigs() -> None:
    assert set(compose()["services"]) == SERVICES


def test_compose_refuses_to_start_without_passwords() -> None:
    # compose refuses to start when a ${NAME:?message} has no value, wherever it is used.
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    passwords = [name for name in read_env_file(ENV_EXAMPLE) if "PASSWORD" in name]
    assert passwords, "expected passwords in .env.example"
    for name in passwords:
        assert f"${{{name}:?" in text, f"{name} must be required (${{{name}:?...}})"


def test_every_compose_variable_is_in_env_example_and_no_secret_is_committed() -> None:
    example = read_env_file(ENV_EXAMPLE)
    used = set(references(COMPOSE_FILE.read_text("utf-8")))
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
    # [IP:]HOST:CONTAINER, the host ports set in docker/.env (examples: 8883, 1883, 5433).
    assert services["mosquitto"]["ports"] == [
        "${MQTTS_PORT:-8883}:8883",
        "127.0.0.1:${MQTT_PORT:-1883}:1883",
    ]
    assert services["postgres"]["ports"] == ["127.0.0.1:${POSTGRES_PORT:-5433}:5432"]
    example = read_env_file(ENV_EXAMPLE)
    assert (example["MQTTS_PORT"], example["MQTT_PORT"], example["POSTGRES_PORT"]) == (
        "8883", "1883", "5433",
    )  # fmt: skip
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
        f"postgresql+psycopg2://{pg['POSTGRES_USER']}:${{{variable(pg['POSTGRES_PASSWORD'])}}}"
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
    assert users[env["LABAGENT_MQTT_USERNAME"]] == variable(env["LABAGENT_MQTT_PASSWORD"])


def test_broker_users_are_one_per_collector_person_healthcheck_and_rig() -> None:
    stack = compose()
    users = mosquitto_users(stack)
    assert set(users) == {COLLECTOR_USER, OPERATOR_USER, HEALTH_USER, ALERTS_USER, *RIGS.values()}
    assert len(set(users.values())) == len(users), "every MQTT user has its own password"
    controller = environment(stack["services"]["controller"])
    assert controller["LABCTL_MQTT_USERNAME"] == COLLECTOR_USER
    assert users[COLLECTOR_USER] == variable(controller["LABCTL_MQTT_PASSWORD"])
    broker = environment(stack["services"]["mosquitto"])
    assert variable(broker["MOSQUITTO_HEALTHCHECK_PASSWORD"]) == users[HEALTH_USER]


@pytest.mark.parametrize("rig", sorted(RIGS))
def test_rig_environment_is_accepted_by_the_agent_settings(rig: str, tmp_path: Path) -> None:
    from agent.cli import build_parser
    from agent.settings import resolve

    env = {
        **dockerfile_env(DOCKER / "agent.Dockerfile"),
        **with_example_values(environment(compose()["services"][rig])),
    }
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
