"""The stack's mosquitto config (docker/mosquitto/): no anonymous clients, a TLS listener,
client ids bound to user names, a size limit, and the files the entrypoint writes.

The broker's own tests on the wire are in tests/test_broker_security.py.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .dockerstack import (
    ACL_FILE,
    COMPOSE_FILE,
    HEALTH_USER,
    INIT_SCRIPT,
    MOSQUITTO_CONF,
    MOSQUITTO_DIR,
    compose,
    mosquitto_settings,
    volume_mounts,
)

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
    assert words[words.index("-t") + 1].startswith("$$SYS/")  # $$: compose's literal $
