"""Task configuration (shared.config): the design's defaults, config files, and bad keys named."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shared.config import TaskConfig, format_config, generate_config, read_config
from shared.errors import ConfigError

from .trials import DESIGN_DEFAULTS


def test_defaults_are_those_of_the_design_in_its_order() -> None:
    settings = TaskConfig().settings()
    assert list(settings) == list(DESIGN_DEFAULTS)
    assert settings == DESIGN_DEFAULTS
    # Whole numbers stay ints so that files read like the original library's.
    assert type(settings["duration"]) is int
    assert type(settings["cue_duration"]) is int


def test_generated_config_reads_back_as_the_defaults(tmp_path: Path) -> None:
    path = generate_config(tmp_path / "conf" / "reach.ini")
    text = path.read_text()
    assert text.startswith("[Settings]\n")
    assert "window = 15\n" in text and "# trials per spout" in text
    assert read_config(path) == TaskConfig()


def test_edited_config_file_is_read_with_its_values(tmp_path: Path) -> None:
    path = tmp_path / "reach.ini"
    path.write_text(
        "[Settings]\n"
        "# hand edited\n"
        "window = 20\n"
        "shaping = auto\n"
        "initial_spout = 1\n"
        "intertrial_interval = [1000, 2000]\n"
        "advance_with_incorrects = True\n"
        "cue_decay = 0.99\n"
    )
    config = read_config(path)
    assert config.window == 20
    assert config.shaping == "auto"
    assert config.initial_spout == 1
    assert config.intertrial_interval == (1000, 2000)
    assert config.advance_with_incorrects is True
    assert config.cue_decay == 0.99
    assert config.timeout == 8000  # keys not in the file keep their defaults


def test_format_config_writes_changed_values() -> None:
    text = format_config(TaskConfig().replace(shaping="on", window=9))
    assert "shaping = on\n" in text and "window = 9\n" in text


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("spout_count = 2", "spout_count"),  # unknown (an old library key)
        ("window = many", "window"),  # wrong type
        ("intertrial_interval = 5000", "intertrial_interval"),  # wrong type
        ("shaping = sometimes", "shaping"),  # not one of the choices
        ("cue_decay = 1.5", "cue_decay"),  # out of range
        ("window = 0", "window"),  # out of range
        ("spout_positions = [0, 8]", "spout_positions"),  # out of range
        ("intertrial_interval = [6000, 4000]", "intertrial_interval"),  # low above high
        ("reward_duration_ms = [70, 0]", "reward_duration_ms"),  # out of range
        ("min_cue_duration = 20000", "min_cue_duration"),  # above cue_duration
    ],
)
def test_bad_config_key_is_a_config_error_naming_the_key(
    tmp_path: Path, line: str, key: str
) -> None:
    path = tmp_path / "reach.ini"
    path.write_text(f"[Settings]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        read_config(path)
    message = str(info.value)
    assert key in message
    assert str(path) in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_config_from_dict_names_the_bad_key() -> None:
    with pytest.raises(ConfigError, match="'timeout'"):
        TaskConfig.from_dict({"timeout": -1})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        TaskConfig.from_dict({"colour": "blue"})


def test_missing_config_file_gives_defaults_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "absent.ini"
    with caplog.at_level(logging.WARNING, logger="shared.config"):
        assert read_config(path) == TaskConfig()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert read_config(None) == TaskConfig()


def test_generate_config_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "reach.ini"
    path.write_text("[Settings]\nwindow = 3\n")
    with pytest.raises(ConfigError, match="already exists"):
        generate_config(path)
    assert read_config(path).window == 3
    generate_config(path, overwrite=True)
    assert read_config(path).window == 15


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[Other]\nwindow = 3\n", r"no \[Settings\] section"),
        ("window = 3\n", "not a valid config file"),
        ("", r"no \[Settings\] section"),
    ],
)
def test_config_without_settings_section_is_an_error(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "reach.ini"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason):
        read_config(path)
