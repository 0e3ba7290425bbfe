"""The labctl config group (controller.cli.config): task configuration files."""

from __future__ import annotations

from pathlib import Path

from shared.config import TaskConfig

from .labctl import Labctl, boxes, labctl

__all__ = ["boxes", "labctl"]  # fixtures, used by name


def test_config_init_writes_the_defaults_and_never_overwrites_silently(
    labctl: Labctl, tmp_path: Path
) -> None:
    path = tmp_path / "reach.ini"
    assert str(path) in labctl.ok("config", "init", str(path))
    from shared.config import read_config

    assert read_config(path) == TaskConfig()
    assert "already exists" in labctl.error("config", "init", str(path))
    labctl.ok("config", "init", str(path), "--force")


def test_config_show_reports_every_bad_key_in_one_line(labctl: Labctl, tmp_path: Path) -> None:
    path = tmp_path / "reach.ini"
    path.write_text(
        "[Settings]\nwindow = 0\ncue_duraton = 5000\ntimeout = true\nshaping = sometimes\n"
    )
    line = labctl.error("config", "show", str(path))
    assert str(path) in line
    for problem in ("key 'window'", "unknown key 'cue_duraton'", "key 'timeout'", "key 'shaping'"):
        assert problem in line, line
