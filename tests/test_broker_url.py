"""Broker settings: one URL parser and one :class:`BrokerSettings` type for agent and controller."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from agent.settings import BrokerSettings as AgentBroker
from agent.settings import add_arguments, resolve
from shared.broker_url import (
    BrokerSettings,
    broker_settings,
    broker_settings_from_environ,
    format_broker_url,
    parse_broker_url,
)
from shared.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://lab", "mqtt://lab:1883"),
        ("mqtts://u:secret@broker.lab", "mqtts://broker.lab:8883"),
        ("mqtt://[::1]:9000", "mqtt://[::1]:9000"),
    ],
)
def test_a_parsed_url_formats_back_without_its_credentials(url: str, shown: str) -> None:
    address = parse_broker_url(url)
    assert format_broker_url(address.host, address.port, address.tls) == shown
    assert broker_settings(url).url == shown
    agent = AgentBroker(host=address.host, port=address.port, tls=address.tls)
    assert agent.url == shown


def test_the_password_never_shows_in_a_repr() -> None:
    for settings in (
        parse_broker_url("mqtts://u:secret@lab"),
        broker_settings("mqtts://u:secret@lab"),
        AgentBroker(host="lab", port=1, username="u", password="secret"),
    ):
        assert "secret" not in repr(settings)


@pytest.mark.parametrize("bad", ["tcp://lab", "mqtt://", "mqtt://lab:0", "mqtt://lab/x"])
def test_agent_and_controller_refuse_the_same_urls(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid broker URL"):
        parse_broker_url(bad)
    for prefix in ("LABAGENT_", "LABCTL_"):
        with pytest.raises(ConfigError, match="invalid broker URL"):
            broker_settings_from_environ(bad, {}, prefix)


# ---------------------------------------------------------------- BrokerSettings, one type for both


def test_settings_take_credentials_from_the_environment_then_a_file_then_the_url(
    tmp_path: Path,
) -> None:
    creds = tmp_path / "mqtt.credentials"
    creds.write_text("# lab broker\nusername = rig7\npassword = from-file\n", encoding="utf-8")
    creds.chmod(0o600)
    url = "mqtts://urluser:urlpass@broker.lab"
    env = {"LABAGENT_MQTT_CREDENTIALS_FILE": str(creds)}
    settings = broker_settings_from_environ(url, env, "LABAGENT_")
    assert (settings.username, settings.password) == ("rig7", "from-file")
    env["LABAGENT_MQTT_PASSWORD"] = "from-env"
    settings = broker_settings_from_environ(url, env, "LABAGENT_")
    assert (settings.username, settings.password) == ("rig7", "from-env")
    # the other side's prefix is not read
    assert broker_settings_from_environ(url, env, "LABCTL_").password == "urlpass"
    assert "from-env" not in repr(settings) and "from-file" not in repr(settings)
    assert settings.url == "mqtts://broker.lab:8883"


def test_a_credentials_file_readable_by_others_is_used_and_warned_about_in_one_line(
    tmp_path: Path,
) -> None:
    creds = tmp_path / "creds"
    creds.write_text("username = person\npassword = hunter2\n", encoding="utf-8")
    creds.chmod(0o644)
    warnings: list[str] = []
    settings = broker_settings("mqtt://lab", credentials_file=creds, warn=warnings.append)
    assert settings.password == "hunter2"
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "readable by others" in warnings[0] and "chmod 600" in warnings[0]
    assert "hunter2" not in warnings[0]
    creds.chmod(0o600)
    warnings.clear()
    broker_settings("mqtt://lab", credentials_file=creds, warn=warnings.append)
    assert warnings == []


def test_a_bad_credentials_file_is_one_line_that_never_shows_the_secret(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text("username = a\nhunter2\n", encoding="utf-8")
    creds.chmod(0o600)
    with pytest.raises(ConfigError, match="line 2") as info:
        broker_settings("mqtt://lab", credentials_file=creds)
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        broker_settings("mqtt://lab", credentials_file=tmp_path / "missing")


def test_settings_refuse_certificates_without_tls_missing_files_and_a_lone_key(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here\n")
    with pytest.raises(ConfigError, match="need a TLS broker URL"):
        broker_settings("mqtt://lab", ca_file=ca)
    with pytest.raises(ConfigError, match=r"CA certificate file .* does not exist"):
        broker_settings("mqtts://lab", ca_file=tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match="needs a client certificate"):
        broker_settings("mqtts://lab", key_file=ca)
    with pytest.raises(ConfigError, match="password without a user name"):
        BrokerSettings(host="lab", port=1883, password="x")
    settings = broker_settings_from_environ(
        "mqtts://lab", {"LABCTL_MQTT_CA_FILE": str(ca)}, "LABCTL_"
    )
    assert settings.ca_file == ca and settings.tls


def test_the_agent_refuses_a_password_option_and_reads_a_credentials_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent import cli

    assert cli.main(["run", "--box", "1", "--password", "hunter2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("labagent: error: --password:") and "\n" not in err
    assert "hunter2" not in err
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    creds = tmp_path / "creds"
    creds.write_text("username = 9\npassword = pw9\n")
    creds.chmod(0o600)
    args = parser.parse_args(["--box", "9", "--credentials-file", str(creds)])
    settings = resolve(args, {"XDG_DATA_HOME": str(tmp_path)})
    assert isinstance(settings.broker, BrokerSettings)
    assert (settings.broker.username, settings.broker.password) == ("9", "pw9")


def test_labctl_says_when_its_credentials_file_is_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.cli import app

    from .cli_runner import CliRunner

    creds = tmp_path / "mqtt"
    creds.write_text("username = labctl-ada\npassword = hunter2\n")
    creds.chmod(0o644)
    port = socket.socket()
    port.bind(("127.0.0.1", 0))  # bound, never listening: nothing answers there
    try:
        env = {
            "LABCTL_BROKER": f"mqtt://127.0.0.1:{port.getsockname()[1]}",
            "LABCTL_MQTT_CREDENTIALS_FILE": str(creds),
            "LABCTL_DB": f"sqlite:///{tmp_path / 'lab.db'}",
        }
        result = CliRunner().invoke(app, ["status"], env=env)
    finally:
        port.close()
    lines = [line for line in result.output.splitlines() if "credentials file" in line]
    assert lines == [
        f"labctl: warning: credentials file {creds} is readable by others (mode 0644); "
        f"run: chmod 600 {creds}"
    ]
    assert "hunter2" not in result.output


def test_the_agent_warns_in_one_line_about_a_rig_file_with_a_password_others_can_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = tmp_path / "rig.ini"
    rig.write_text("[agent]\nbox = 3\nusername = 3\npassword = pw3\n")
    rig.chmod(0o644)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with caplog.at_level("WARNING"):
        settings = resolve(
            parser.parse_args(["--config-file", str(rig)]), {"XDG_DATA_HOME": str(tmp_path)}
        )
    assert settings.broker.password == "pw3"
    (record,) = [r for r in caplog.records if "readable by others" in r.getMessage()]
    assert "chmod 600" in record.getMessage() and "pw3" not in record.getMessage()
    rig.chmod(0o600)
    caplog.clear()
    resolve(parser.parse_args(["--config-file", str(rig)]), {"XDG_DATA_HOME": str(tmp_path)})
    assert not [r for r in caplog.records if "readable by others" in r.getMessage()]
