"""``labagent train`` and ``labagent config init``: one session on one rig, no broker needed.

On a real rig it waits for Enter before starting and asks for notes at the end,
as the original library did; with ``--sim`` or without a terminal it does neither.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from agent.api import Mouse
from agent.hardware import PinMap
from agent.sim import MouseProfile
from shared.analysis import format_table, session_results
from shared.config import (
    ReservedKeyError,
    check_not_reserved,
    generate_config,
    parse_meta,
    read_config,
)
from shared.documents import (
    CueChanged,
    Document,
    DocumentRouter,
    Lift,
    Reset,
    Reward,
    SessionCounts,
    SessionEnd,
    SessionStart,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
    TrialStart,
)
from shared.errors import ConfigError
from shared.ids import check_mouse_id
from shared.outcomes import outcome_name
from shared.prompt import read_line
from shared.sessionfile import mouse_file_path

log = logging.getLogger("labagent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mouse", metavar="MOUSE", help="mouse id; data goes to DIR/MOUSE.json")
    parser.add_argument("--data-dir", required=True, metavar="DIR", help="per-mouse JSON folder")
    parser.add_argument(
        "--config", metavar="FILE", help="task settings (.ini); without it, the default settings"
    )
    parser.add_argument(
        "--meta", action="append", metavar="KEY=VALUE", help="metadata to store, repeatable"
    )
    parser.add_argument("--notes", help="notes to store (otherwise asked for at the end on a rig)")
    parser.add_argument("--sim", action="store_true", help="mock pins and a simulated mouse")
    parser.add_argument(
        "--time-scale",
        default="1",
        metavar="X",
        help="task seconds per wall second with --sim; 'max' runs as fast as possible",
    )
    parser.add_argument("--seed", type=int, help="seed the simulated mouse and the task")
    parser.add_argument(
        "--sim-mouse",
        action="append",
        metavar="KEY=VALUE",
        help="with --sim: how the simulated mouse behaves, e.g. hit_probability=0.5 "
        "(repeatable; keys in docs/agent.md)",
    )
    parser.add_argument("--pins", metavar="FILE", help="JSON file of BCM pin numbers")
    parser.add_argument("--box", default="local", help="box id stored with the session")


def run(args: argparse.Namespace) -> int:
    from agent.runtime import parse_time_scale

    mouse_id = check_mouse_id(args.mouse)
    data_dir = Path(args.data_dir).expanduser()
    time_scale = parse_time_scale(args.time_scale)
    metadata = parse_meta(args.meta)
    try:
        check_not_reserved(metadata)
    except ReservedKeyError as exc:
        raise ConfigError(_reserved_words(exc)) from None
    if args.notes is not None:
        metadata["notes"] = args.notes
    pins = PinMap.load(args.pins) if args.pins else None
    profile = MouseProfile.from_items(args.sim_mouse) if args.sim_mouse else None
    if profile is not None and not args.sim:
        raise ConfigError("--sim-mouse needs --sim: a real rig has a real mouse")
    # Checked before the person is asked to press Enter: a bad file fails now, not later;
    # a missing one too (a typo must not run a whole session on the default settings).
    if args.config and not Path(args.config).expanduser().is_file():
        raise ConfigError(f"--config: no such file {args.config} (labagent config init writes one)")
    config = read_config(Path(args.config).expanduser() if args.config else None)
    interactive = sys.stdin.isatty() and not args.sim

    mouse = Mouse.init_from_file(mouse_id=mouse_id, json_path=data_dir)
    print(f"{mouse_id}: {len(mouse)} previous session(s) in {mouse_file_path(data_dir, mouse_id)}")
    if interactive:
        try:
            input("Press Enter to start the session (Ctrl-C ends it early)... ")
        except EOFError:
            print("\nno session started: standard input was closed")
            return 1

    session = mouse.train(
        config=config,
        data=metadata,
        sim=args.sim,
        time_scale=time_scale,
        seed=args.seed,
        pins=pins,
        box=args.box,
        on_document=TrialLogger(mouse_id, quiet=math.isinf(time_scale)),
        mouse_profile=profile,
    )
    if args.notes is None and interactive:
        session.data["notes"] = ask_notes()
    saved = mouse.save_data_to_file(data_dir)
    print(f"session {session.data.get('status')}: saved to {saved.path}")
    print(format_table([session_results(session.data).as_dict() | {"mouse": mouse_id}]))
    return 0


def _reserved_words(exc: ReservedKeyError) -> str:
    """A reserved ``--meta`` key in labagent's words: the option that sets it."""
    if exc.key == "box":
        how = "give the box with --box BOX"
    elif exc.setting:
        how = "it is a task setting: set it in a config file, --config FILE (labagent config init)"
    else:
        how = "reachlab records it itself: store yours under another name"
    return f"--meta {exc.key}=...: {exc.key!r} is the session's own key; {how}"


def ask_notes() -> str:
    """The session's notes from the person at the rig; Ctrl-C or Ctrl-D here means none.

    The session is over and not yet saved: leaving the prompt must never lose it.
    """
    try:
        return read_line("Notes for this session: ")
    except (EOFError, KeyboardInterrupt):
        print("\nno notes; saving the session")
        return ""


class TrialLogger(DocumentRouter[None]):
    """Prints a line when the session starts and one per finished trial while it runs."""

    def __init__(self, mouse_id: str, quiet: bool) -> None:
        self.mouse_id = mouse_id
        self.quiet = quiet
        self.counts = SessionCounts()

    def __call__(self, doc: Document) -> None:
        self.counts(doc)  # first: a trial's line tells the count with that trial in it
        super().__call__(doc)

    def session_start(self, doc: SessionStart) -> None:
        log.info("%s: session %s started (Ctrl-C ends it)", self.mouse_id, doc.session_id)

    def trial_end(self, doc: TrialEnd) -> None:
        if not self.quiet:
            log.info(
                "%s trial %d: %s (%d correct)",
                self.mouse_id,
                doc.trial + 1,
                outcome_name(doc.outcome),
                self.counts.as_dict()["correct"],
            )

    # The rest of the session is in its summary at the end.
    def trial_start(self, doc: TrialStart) -> None:
        pass

    def lift(self, doc: Lift) -> None:
        pass

    def reward(self, doc: Reward) -> None:
        pass

    def reset(self, doc: Reset) -> None:
        pass

    def spontaneous_reach(self, doc: SpontaneousReach) -> None:
        pass

    def spouts_moved(self, doc: SpoutsMoved) -> None:
        pass

    def cue_changed(self, doc: CueChanged) -> None:
        pass

    def session_end(self, doc: SessionEnd) -> None:
        pass


class ConfigCommand:
    """``labagent config init PATH``."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
        init = sub.add_parser("init", help="write a config file with the default settings")
        init.add_argument("path", metavar="PATH")
        init.add_argument("--force", action="store_true", help="replace an existing file")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        path = generate_config(args.path, overwrite=args.force)
        print(f"wrote the default settings to {path}")
        return 0
