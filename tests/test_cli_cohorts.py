"""The labctl cohort group (controller.cli.cohorts): groups of mice started together."""

from __future__ import annotations

import json
import os
import sys

import pytest

from .labctl import Labctl, boxes, labctl
from .terminal import Terminal

__all__ = ["boxes", "labctl"]  # fixtures, used by name


def test_a_cohort_of_unknown_mice_is_refused_naming_them_unless_create_is_given(
    labctl: Labctl,
) -> None:
    labctl.ok("mouse", "add", "M1")
    line = labctl.error("cohort", "create", "C1", "M1", "M2", "Mx3")
    assert "unknown mice M2, Mx3" in line and "--create" in line, line
    # Nothing was created: neither the cohort nor any mouse.
    assert json.loads(labctl.ok("cohort", "list", "--json")) == []
    assert [m["mouse"] for m in json.loads(labctl.ok("mouse", "list", "--json"))] == ["M1"]
    labctl.ok("cohort", "create", "C1", "M1")
    assert "unknown mouse M4" in labctl.error("cohort", "add", "C1", "M4")
    assert labctl.ok("cohort", "list").strip() == "C1: M1"
    out = labctl.ok("cohort", "add", "C1", "M4", "--create")
    assert "created mouse M4" in out
    assert labctl.ok("cohort", "list").strip() == "C1: M1 M4"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize(("answer", "created"), [(b"y", True), (b"", False)])
def test_on_a_terminal_cohort_create_asks_before_creating_unknown_mice(
    labctl: Labctl, answer: bytes, created: bool
) -> None:
    env = {k: v for k, v in {**os.environ, **labctl.env}.items() if v is not None}
    term = Terminal("controller.cli", ["cohort", "create", "C1", "M7"], env, typing=True)
    try:
        term.read_until(b"M7 not in the lab yet: create them? [y/N]:")
        os.write(term.master, answer + b"\n")
        term.read_until_exit(30, "labctl cohort create did not finish")
    finally:
        term.close()
    mice = [m["mouse"] for m in json.loads(labctl.ok("mouse", "list", "--json"))]
    if created:
        assert term.process.returncode == 0, term.text()
        assert "created mouse M7" in term.text() and mice == ["M7"]
    else:
        assert term.process.returncode == 2, term.text()
        assert "unknown mouse M7" in term.text() and mice == []
