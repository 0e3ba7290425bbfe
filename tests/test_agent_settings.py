"""The agent's layered settings (agent/settings.py): which layer wins, and mistakes as one line
naming the layer the bad value came from."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from agent import cli
from agent.settings import add_arguments, read_rig_file, resolve
from shared.broker_url import parse_broker_url
from shared.errors import ConfigError


def run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def rig_file(tmp_path: Path) -> Path:
    rig = tmp_path / "rig.ini"
    rig.write_text("[agent]\nbox = 3\nheartbeat = 20\nkeepalive = 30\n", encoding="utf-8")
    return rig


def test_each_setting_comes_from_the_first_layer_that_gives_it(
    rig_file: Path, tmp_path: Path
) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path), "LABAGENT_CONFIG_FILE": str(rig_file)}
    from_file = resolve(run_args(), env)
    assert (from_file.box, from_file.heartbeat, from_file.broker.keepalive) == ("3", 20, 30)
    from_env = resolve(run_args(), {**env, "LABAGENT_HEARTBEAT": "15", "LABAGENT_BOX": "4"})
    assert (from_env.box, from_env.heartbeat, from_env.broker.keepalive) == ("4", 15, 30)
    from_options = resolve(
        run_args("--heartbeat", "5", "--box", "5"), {**env, "LABAGENT_HEARTBEAT": "15"}
    )
    assert (from_options.box, from_options.heartbeat) == ("5", 5)
    # An empty variable gives nothing: the next layer's value stands.
    assert resolve(run_args(), {**env, "LABAGENT_HEARTBEAT": ""}).heartbeat == 20
    defaults = resolve(run_args("--box", "1"), {"XDG_DATA_HOME": str(tmp_path)})
    assert defaults.heartbeat == 10 and defaults.seed is None and not defaults.sim
    assert defaults.journal == tmp_path / "reachlab-agent" / "journal.sqlite3"


@pytest.mark.parametrize(
    ("argv", "env", "line"),
    [
        (["--seed", "x"], {}, "--seed: expected a number, got 'x'"),
        ([], {"LABAGENT_SEED": "1.5"}, "LABAGENT_SEED: expected a number, got '1.5'"),
        (
            [],
            {"LABAGENT_HEARTBEAT": "inf"},
            "LABAGENT_HEARTBEAT: expected a finite number, got 'inf'",
        ),
        (["--keepalive", "soon"], {}, "--keepalive: expected a number, got 'soon'"),
        (
            [],
            {"LABAGENT_SIM": "maybe"},
            "LABAGENT_SIM: expected 1/0, true/false, yes/no; got 'maybe'",
        ),
        (["--heartbeat", "0"], {}, "heartbeat must be positive, got 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_where_it_came_from(
    argv: list[str], env: dict[str, str], line: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(run_args("--box", "1", *argv), {"XDG_DATA_HOME": str(tmp_path), **env})
    assert str(info.value) == line


def test_a_bad_value_in_the_rig_file_names_its_key(tmp_path: Path) -> None:
    rig = tmp_path / "rig.ini"
    rig.write_text("[agent]\nbox = a/b\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        resolve(run_args("--config-file", str(rig)), {"XDG_DATA_HOME": str(tmp_path)})
    assert str(info.value).startswith("rig config file key 'box': invalid box id 'a/b'")


def test_a_flag_takes_the_usual_spellings(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path), "LABAGENT_BOX": "1"}
    for text, sim in [("1", True), (" yes ", True), ("on", True), ("0", False), ("off", False)]:
        assert resolve(run_args(), {**env, "LABAGENT_SIM": text}).sim is sim


# ---------------------------------------------------------------- URLs, rig files, mistakes


def test_broker_urls_are_parsed_and_bad_ones_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_broker_url("mqtt://rig-host").port == 1883
    tls = parse_broker_url("mqtts://u%40lab:p@broker.lab:9999")
    assert (tls.host, tls.port, tls.tls, tls.username, tls.password) == (
        "broker.lab", 9999, True, "u@lab", "p",
    )  # fmt: skip
    for bad in ("http://x", "mqtt://", "mqtt://host:99999", "broker:1883", "mqtt://h/path"):
        with pytest.raises(ConfigError, match="invalid broker URL"):
            parse_broker_url(bad)
    assert cli.main(["run", "--box", "1", "--broker", "tcp://nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("labagent: error: invalid broker URL 'tcp://nowhere'")
    assert "\n" not in err and "Traceback" not in err


def _args(**values: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    from agent.daemon import add_arguments

    add_arguments(parser)
    return parser.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in values.items()])


def test_options_win_over_environment_which_wins_over_the_rig_file(tmp_path: Path) -> None:
    rig = tmp_path / "rig.ini"
    rig.write_text(
        "[agent]\nbox = 3\nbroker = mqtts://broker.lab\nusername = filer\npassword = secret\n"
        "journal = state/journal.db\nheartbeat = 20\n\n[pins]\nsync = 21\n",
        encoding="utf-8",
    )
    env = {"LABAGENT_CONFIG_FILE": str(rig), "LABAGENT_MQTT_USERNAME": "envuser",
           "XDG_DATA_HOME": str(tmp_path / "xdg")}  # fmt: skip
    settings = resolve(_args(), env)
    assert settings.box == "3" and settings.broker.tls and settings.broker.port == 8883
    assert (settings.broker.username, settings.broker.password) == ("envuser", "secret")
    assert settings.journal == tmp_path / "state" / "journal.db"  # relative to the rig file
    assert settings.data_dir == tmp_path / "xdg" / "reachlab-agent" / "sessions"
    assert settings.heartbeat == 20 and settings.pins is not None and settings.pins.sync == 21
    settings = resolve(_args(box="7", broker="mqtt://other:1884"), {**env, "LABAGENT_BOX": "5"})
    assert settings.box == "7" and settings.broker.url == "mqtt://other:1884"
    assert resolve(_args(), {**env, "LABAGENT_BOX": "5"}).box == "5"


def test_a_json_rig_file_works_and_mistakes_name_the_key(tmp_path: Path) -> None:
    good = tmp_path / "rig.json"
    good.write_text(json.dumps({"box": 4, "pins": {"sync": 26}}), encoding="utf-8")
    rig, base = read_rig_file(good)
    assert rig.box == "4" and base == tmp_path
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"box": "4", "brokr": "mqtt://x"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key 'brokr'"):
        read_rig_file(bad)
    ini = tmp_path / "bad.ini"
    ini.write_text("[agent]\nheartbeat = often\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="key 'heartbeat'"):
        read_rig_file(ini)
    with pytest.raises(ConfigError, match="does not exist"):
        read_rig_file(tmp_path / "missing.ini")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "no box id"),
        ({"box": "a/b"}, "invalid box id"),
        ({"box": "1", "time_scale": "60"}, "needs --sim"),
        ({"box": "1", "sim": True, "time_scale": "max"}, "finite time scale"),
        ({"box": "1", "ca_file": "/nonexistent/ca.pem"}, "does not exist"),
        ({"box": "1", "heartbeat": "-1"}, "heartbeat must be positive"),
    ],
)
def test_settings_mistakes_are_clear_errors(
    values: dict[str, Any], message: str, tmp_path: Path
) -> None:
    sim = values.pop("sim", False)
    args = _args(**values)
    args.sim = sim or None
    with pytest.raises(ConfigError, match=message):
        resolve(args, {"XDG_DATA_HOME": str(tmp_path)})


def test_certificate_files_need_an_mqtts_broker(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not really a certificate")
    with pytest.raises(ConfigError, match="mqtts://"):
        resolve(_args(box="1", ca_file=ca), {"XDG_DATA_HOME": str(tmp_path)})
