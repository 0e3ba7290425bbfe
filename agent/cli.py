"""``labagent``: the rig's command line (argparse keeps the Pi install light).

Subcommands live in their own modules, each giving ``add_arguments(parser)``
and ``run(args) -> int``; this module only wires them up and turns
reachlab's errors into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

# isort: off
from shared import entry  # first: its SIGINT handler covers every import after it

# isort: on
import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn

from shared import __version__
from shared.errors import ReachlabError


def _subcommands() -> dict[str, tuple[str, ModuleType]]:
    from agent import daemon, status, train, utilities

    return {
        "train": ("run one session on this rig and save it to DIR/MOUSE.json", train),
        "config": ("write a config file with the default settings", train.ConfigCommand),
        "run": ("run the rig agent: take commands over MQTT, publish sessions", daemon),
        "status": ("show the local journal: sessions not yet committed", status.StatusCommand),
        **utilities.COMMANDS,
    }


class LabagentParser(argparse.ArgumentParser):
    """argparse, with a command-line mistake as one line (argparse adds the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = LabagentParser(
        prog="labagent", description="reachlab rig agent: run reach-task sessions on this box."
    )
    parser.add_argument("--version", action="version", version=f"labagent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, module) in _subcommands().items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ReachlabError as exc:
        print(f"labagent: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def console_script() -> NoReturn:
    """The ``labagent`` console script: :func:`main` under :mod:`shared.entry`'s Ctrl-C
    handling (this module's own imports are light; the subcommands' are made in main)."""
    entry.run("labagent", lambda: main)


if __name__ == "__main__":
    sys.exit(main())
