"""The Dockerfiles (docker/*.Dockerfile), read as lines: base image, extras and console
scripts that exist in ``pyproject.toml``, and arguments the CLIs accept.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from typing import Any

import pytest

from .conftest import REPO
from .dockerstack import (
    DOCKER,
    arguments,
    command_of,
    dockerfile_lines,
    pip_install_targets,
)


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


# ================================================================ tests: Dockerfiles


@pytest.mark.parametrize("name", ["controller.Dockerfile", "agent.Dockerfile"])
def test_dockerfile_uses_python_3_11_slim_and_copies_only_existing_files(name: str) -> None:
    path = DOCKER / name
    assert dockerfile_lines(path)[0] == "FROM python:3.11-slim"
    assert pyproject()["project"]["requires-python"] == ">=3.11"
    ignore = (DOCKER / f"{name}.dockerignore").read_text("utf-8").splitlines()
    for args in arguments(path, "COPY"):
        *sources, _target = shlex.split(args)
        for source in sources:
            assert (REPO / source).exists(), f"{name}: COPY {source}: not in the repository"
            assert f"!{source.rstrip('/')}" in ignore, f"{name}: {source} is ignored"
    assert any(user != "root" for user in arguments(path, "USER")), f"{name}: run as a user"


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
    copied = [shlex.split(a)[0] for a in arguments(DOCKER / name, "COPY")]
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
        for a in arguments(DOCKER / "agent.Dockerfile", "COPY")
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
