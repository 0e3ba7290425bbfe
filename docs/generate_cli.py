"""The CLI reference (docs/cli.md), generated from the typer and argparse apps themselves.

``python docs/generate_cli.py`` rewrites the file; a test fails when the
committed file differs from what the code would generate, so it cannot drift.
It lives outside both packages because it imports both: the agent and the
controller never import each other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import typer

DOC = Path(__file__).resolve().parent / "cli.md"
WIDTH = 100


def _heading(path: list[str]) -> str:
    return f"{'#' * min(len(path) + 1, 4)} `{' '.join(path)}`"


def _click_sections(command: Any, path: list[str]) -> list[str]:
    # typer ships its own copy of click, so the command's own context class is used.
    ctx = command.context_class(
        command, info_name=" ".join(path), terminal_width=WIDTH, max_content_width=WIDTH
    )
    text = command.get_help(ctx)
    out = [_heading(path), "", "```text", text.rstrip(), "```", ""]
    if hasattr(command, "list_commands"):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                out += _click_sections(sub, [*path, name])
    return out


def _argparse_sections(parser: argparse.ArgumentParser, path: list[str]) -> list[str]:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
    out = [_heading(path), "", "```text"]
    out += [parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:  # argparse has no public API for subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _argparse_sections(sub, [*path, name])
    return out


def generate() -> str:
    """The whole reference as Markdown."""
    from agent.cli import build_parser
    from controller.cli import app

    lines = [
        "# CLI reference",
        "",
        "Generated from the code by `python docs/generate_cli.py`; do not edit by hand.",
        "",
    ]
    lines += _click_sections(typer.main.get_command(app), ["labctl"])
    parser = build_parser()
    parser.prog = "labagent"
    lines += _argparse_sections(parser, ["labagent"])
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    sys.path.insert(0, str(DOC.parent.parent))  # the repository, when reachlab is not installed
    DOC.write_text(generate(), encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
