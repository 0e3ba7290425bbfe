"""labctl serve (controller.cli.serve): a real collector process, stopped by its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.db import open_database
from shared.broker_url import BrokerSettings
from shared.protocol import Topics
from tests.fakes import FakeRig, session_dict, synthetic_session

from .conftest import REPO
from .labctl import boxes, labctl
from .processes import check_running
from .waiting import wait_until

__all__ = ["boxes", "labctl"]  # fixtures, used by name


# ---------------------------------------------------------------- serve


def box_known(db_url: str, box: str) -> bool:
    from controller.db import Box

    check = open_database(db_url)
    try:
        with check.reader() as session:
            return session.get(Box, box) is not None
    finally:
        check.close()


@pytest.mark.broker
def test_serve_stores_a_session_and_stops_cleanly_on_sigterm(
    tmp_path: Path, broker_url: str, broker: BrokerSettings, topic_prefix: str
) -> None:
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    env = {
        **os.environ,
        "LABCTL_DB": db,
        "LABCTL_BROKER": broker_url,
        "LABCTL_PREFIX": topic_prefix,
    }
    open_database(db).close()  # schema first, so the test can look while serve runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "serve"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with FakeRig(broker, Topics(topic_prefix), "1") as rig:
            # The box's retained status reaching the database shows the collector has subscribed.
            wait_until(
                lambda: box_known(db, "1"), 30, "the collector to subscribe",
                alive=lambda: check_running(proc, "labctl serve"),
            )  # fmt: skip
            docs = synthetic_session(mouse="M1", box="1", trials=5)
            rig.publish(docs)
            assert rig.wait(lambda: docs[0].session_id in rig.committed, 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert "collector stopped" in output and "Traceback" not in output
    check = open_database(db)
    with check.reader_engine.connect() as conn:
        from controller.store import mouse_sessions

        assert mouse_sessions(conn, "M1") == [session_dict(docs)]
    check.close()
