"""End to end with real processes: three ``labagent run --sim`` rigs, ``labctl serve``, labctl.

Three mice are assigned to three boxes, the cohort is started twice (the
second session carries over from the first), and once the collector has
committed every session the exported per-mouse files must equal, session for
session and byte for byte, each agent's own local copy in its ``--data-dir``;
the agents' journals must then be pruned. Every process is started here and
stopped here, by pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from controller.cli import app
from controller.db import TrainingSession, open_database
from shared.sessionfile import read_sessions

from .cli_runner import CliRunner
from .conftest import REPO
from .processes import Processes
from .waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]

BOXES = ("1", "2", "3")
TIME_SCALE = 600  # a 10-minute session in one wall second
DURATION = 600
TIMEOUT = 90.0


def test_a_cohort_on_three_real_rigs_exports_exactly_the_agents_own_copies(
    tmp_path: Path, broker_url: str, topic_prefix: str, processes: Processes
) -> None:
    db_url = f"sqlite:///{tmp_path / 'lab.db'}"
    env = {
        **os.environ,
        "LABCTL_DB": db_url,
        "LABCTL_BROKER": broker_url,
        "LABCTL_PREFIX": topic_prefix,
        "PYTHONUNBUFFERED": "1",
    }
    open_database(db_url).close()
    processes.start("collector", [sys.executable, "-m", "controller.cli", "serve"], env)
    for box in BOXES:
        rig = tmp_path / f"rig{box}"
        processes.start(
            f"rig{box}",
            [
                sys.executable, "-m", "agent.cli", "run", "--box", box, "--broker", broker_url,
                "--prefix", topic_prefix, "--sim", "--time-scale", str(TIME_SCALE),
                "--seed", box, "--journal", str(rig / "journal.db"),
                "--data-dir", str(rig / "data"),
            ],
            env,
        )  # fmt: skip

    runner = CliRunner()
    cli_env = {k: env[k] for k in ("LABCTL_DB", "LABCTL_BROKER", "LABCTL_PREFIX")}

    def labctl(*args: str, expect: int = 0) -> str:
        result = runner.invoke(app, list(args), env=cli_env)
        assert result.exit_code == expect, result.output
        return result.stdout

    def box_states() -> dict[str, Any]:
        rows = json.loads(labctl("status", "--json"))["boxes"]
        return {r["box"]: r for r in rows}

    # The collector has subscribed once the rigs' statuses reach its database.
    wait_until(
        lambda: all(
            r.get("state") == "idle" and r.get("last_seen_age") is not None
            for r in (box_states().get(b, {}) for b in BOXES)
        ),
        TIMEOUT,
        "every rig online and seen by the collector",
        alive=processes.check_alive,
        detail=processes.all_logs,
        interval=0.1,
    )
    mice = [f"E2EMouse{box}" for box in BOXES]
    for box, mouse in zip(BOXES, mice, strict=True):
        assert "created mouse" in labctl("assign", mouse, "--box", box)
    labctl("cohort", "create", "C1", *mice)

    db = open_database(db_url)

    def committed_sessions() -> int:
        with db.reader() as session:
            return int(
                session.scalar(
                    select(func.count()).where(
                        TrainingSession.complete.is_(True),
                        TrainingSession.committed_at.is_not(None),
                    )
                )
                or 0
            )

    for round_number in (1, 2):
        wait_until(
            lambda: all(box_states()[b]["state"] == "idle" for b in BOXES),
            TIMEOUT,
            "every rig idle before the start",
            alive=processes.check_alive,
            detail=processes.all_logs,
            interval=0.1,
        )
        out = labctl(
            "start", "--cohort", "C1", "--duration", str(DURATION), "--meta", "trainer=e2e"
        )
        assert "3 of 3 session(s) started" in out
        expected = 3 * round_number

        def all_committed(expected: int = expected) -> bool:
            return committed_sessions() == expected

        wait_until(
            all_committed,
            TIMEOUT,
            f"round {round_number}: every session stored and committed",
            alive=processes.check_alive,
            detail=processes.all_logs,
            interval=0.1,
        )
    db.close()

    out_dir = tmp_path / "export"
    labctl("export", "--all", "--out", str(out_dir))
    for box, mouse in zip(BOXES, mice, strict=True):
        exported = out_dir / f"{mouse}.json"
        agent_copy = tmp_path / f"rig{box}" / "data" / f"{mouse}.json"
        ours, theirs = read_sessions(exported), read_sessions(agent_copy)
        assert len(ours) == len(theirs) == 2
        for session_ours, session_theirs in zip(ours, theirs, strict=True):
            assert session_ours == session_theirs
        assert exported.read_bytes() == agent_copy.read_bytes()
        first, second = ours
        assert first["status"] == second["status"] == "complete"
        assert first["trainer"] == "e2e" and first["box"] == box
        assert len(first["trials"]) > 3
        # The second session carried over where the first left the spouts (adaptation only
        # moves them further, so without the carry-over they would be back at the start).
        left_at = first["trials"][-1]["spout_position"]
        restarted_at = second["trials"][0]["spout_position"]
        assert all(b >= a for a, b in zip(left_at, restarted_at, strict=True))

    # Committed sessions are pruned from each rig's journal.
    for box in BOXES:
        status = subprocess.run(
            [sys.executable, "-m", "agent.cli", "status", "--json",
             "--journal", str(tmp_path / f"rig{box}" / "journal.db")],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert json.loads(status.stdout)["sessions"] == []

    codes = processes.stop_all()
    assert codes == dict.fromkeys(processes.children, 0), {
        n: processes.log(n) for n in processes.children
    }
