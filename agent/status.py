"""``labagent status``: what the rig's journal still holds.

Sessions the controller has not yet committed (and so not yet pruned) and
documents the broker has not yet acknowledged, read from the journal through
a read-only connection, so it works while ``labagent run`` is writing.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from agent.journal import Journal
from agent.settings import add_config_file_argument, resolve_journal


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t is not None else "-"


class StatusCommand:
    """``labagent status``: the sessions and documents the journal still holds."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--journal", metavar="PATH", help="the journal (env LABAGENT_JOURNAL)")
        add_config_file_argument(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        path = resolve_journal(args)
        if not path.exists():
            if args.json:
                print(json.dumps({"journal": str(path), "sessions": [], "pending": 0}))
            else:
                print(f"no journal at {path}: this agent has recorded nothing yet")
            return 0
        with Journal.open_readonly(path) as journal:
            sessions = journal.sessions()
            pending = journal.pending_count()
        if args.json:
            rows = [vars(s) for s in sessions]
            print(json.dumps({"journal": str(path), "sessions": rows, "pending": pending}))
            return 0
        print(f"journal {path}")
        if not sessions:
            print("no sessions waiting for the controller; no documents pending")
            return 0
        print(
            f"{len(sessions)} session(s) not yet committed by the controller; "
            f"{pending} document(s) not yet acknowledged by the broker"
        )
        header = ("SESSION", "MOUSE", "BOX", "STATE", "STATUS", "STARTED", "DOCS", "PENDING")
        table = [header] + [
            (
                s.session_id,
                s.mouse,
                s.box,
                s.state,
                s.status or "-",
                _when(s.start_time),
                str(s.documents),
                str(s.pending),
            )
            for s in sessions
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        return 0
