"""``labctl calibrate`` against a running simulated rig, all real processes.

A ``labagent run --sim`` agent on a private mosquitto; ``labctl calibrate`` (its own
process) drives the agent's ``dispense`` utility and stores the result. That the
solenoid really opened the requested number of times is read off the agent's mock
pin history, which a simulated rig reports in its ``read_sensors`` reply. Every
process started here is stopped here, by pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.db import open_database
from controller.demo.broker import MosquittoBroker
from controller.husbandry.models import Calibration
from controller.mqtt import BrokerLink
from shared.broker_url import broker_settings as parse_broker_url
from shared.protocol import ReadSensorsCommand, Topics

from .conftest import REPO
from .processes import check_running, stop
from .waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]

TIMEOUT = 60.0


@pytest.fixture
def sim_agent(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115  # closed below, after the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--box", "1", "--broker", private_mosquitto.url,
         "--sim", "--time-scale", "20", "--journal", str(tmp_path / "journal.db"),
         "--data-dir", str(tmp_path / "data")],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        yield proc
    finally:
        stop(proc)
        log.close()


def pin_openings(link: BrokerLink) -> list[int]:
    """Each solenoid pin's openings, from the agent's mock pin history."""
    rid = uuid.uuid4().hex[:16]
    link.send("1", ReadSensorsCommand(request_id=rid))
    reply = link.wait_replies({rid}, 10)[rid]
    assert reply.ok, reply.error
    openings = reply.data["solenoid_openings"]
    assert isinstance(openings, list)
    return [int(n) for n in openings]


def test_calibrate_opens_the_sim_rig_s_solenoid_n_times_and_stores_ul_per_opening(
    private_mosquitto: MosquittoBroker, sim_agent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'lab.db'}"
    env = {**os.environ, "LABCTL_DB": db_url, "LABCTL_BROKER": private_mosquitto.url,
           "LABCTL_PREFIX": "reachlab", "LABCTL_USER": "tester"}  # fmt: skip

    def labctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controller.cli", *args], cwd=REPO, env=env, input=stdin,
            capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip

    with BrokerLink(parse_broker_url(private_mosquitto.url), Topics("reachlab")) as link:
        wait_until(
            lambda: link.wait_for(
                lambda: getattr(link.statuses.get("1"), "state", None) == "idle", 0.1
            ),
            TIMEOUT,
            "the agent online and idle",
            alive=lambda: check_running(sim_agent, "the agent"),
        )
        assert pin_openings(link) == [0, 0]
        for box in ("1", "9"):  # known to the lab (no collector runs here); 9 has no rig
            assert labctl("box", "add", box).returncode == 0
        started = time.monotonic()
        done = labctl(
            "calibrate", "--box", "1", "--spout", "right", "--count", "7",
            "--duration-ms", "50", "--total-mg", "35.7",
        )  # fmt: skip
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert "dispensed 7 x 50 ms (the box counted 7)" in done.stdout
        assert "5.100 ul per 50 ms opening" in done.stdout
        assert pin_openings(link) == [0, 7]  # the right pin, exactly seven times
        # Without a total given, it is asked for once the box is done.
        asked = labctl("calibrate", "--box", "1", "--spout", "left", "--count", "3",
                       "--duration-ms", "60", stdin="13.5\n")  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        assert "weighed total of the 3 openings in mg" in asked.stdout
        assert pin_openings(link) == [3, 7]
        offline = labctl("calibrate", "--box", "9", "--spout", "left", "--total-mg", "5")
    assert offline.returncode == 2 and offline.stderr.strip().splitlines() == [
        "labctl: error: box 9 is offline: it has never reported to the broker "
        "(is labagent running?)"
    ]
    db = open_database(db_url)
    with db.reader() as session:
        rows = [(c.box_id, c.spout, c.openings, c.duration_ms, c.total_ul, c.weighed_in,
                 round(c.ul_per_opening, 3), c.measured_by)
                for c in session.scalars(select(Calibration).order_by(Calibration.id))]  # fmt: skip
    db.close()
    assert rows == [
        ("1", 1, 7, 50, 35.7, "mg", 5.1, "tester"),
        ("1", 0, 3, 60, 13.5, "mg", 4.5, "tester"),
    ]
    print(f"labctl calibrate of 7 x 50 ms at time scale 20: {took:.2f} s")
