"""The agent's layered settings (agent/settings.py): which layer wins, and mistakes as one line
naming the layer the bad value came from."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.settings import add_arguments, resolve
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
