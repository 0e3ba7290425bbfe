"""Two buildings joined by a Mosquitto bridge: cut it mid-session, and nothing is lost or doubled.

The rigs (``labagent run --sim``) are on building A's mosquitto; the collector
(``labctl serve``) and labctl are on the central one; the shipped bridge
configuration (``docker/mosquitto/bridge.conf``) joins them through a TCP relay
(:mod:`tests.tcp_relay`) that the test breaks twice in one session:

* **10 s stalled**: nothing passes, the connection stays open (a congested link);
* **2 minutes cut**: the connection is closed and refused (the link is down), so the
  bridge must reconnect.

Both outages are real wall time: a broker's bridge, its keepalive and its
reconnect back-off run on the wall clock, which no time scale reaches. Only the
rigs' task clock is scaled, so that one session spans both outages. Every session
must then be stored once and equal the rigs' own copies, judged through ``labctl
export`` as in the fault suite (:mod:`tests.faultlab`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.demo.broker import LOOPBACK, MosquittoBroker
from tests.faultlab import BOXES, TIMEOUT, FaultLab
from tests.processes import Processes
from tests.tcp_relay import Relay

from .conftest import REPO
from .waiting import wait_until

pytestmark = [pytest.mark.bridge, pytest.mark.slow, pytest.mark.broker]

SHIPPED = REPO / "docker" / "mosquitto" / "bridge.conf"
STALL_S = 10.0
CUT_S = 120.0
#: Seconds after the break for documents already past it (in the central broker's queue,
#: in the collector's batch) to be stored.
DRAIN_S = 3.0
#: The rigs' task clock: 4 task hours take 8 wall minutes, far more than the test needs,
#: and the session is stopped once both outages are over.
TIME_SCALE = 30
SESSION = 4 * 3600
#: The shipped lines that only make sense between real buildings: TLS and credentials.
NOT_ON_LOOPBACK = ("remote_username", "remote_password", "bridge_cafile", "bridge_tls_version")


def bridge_config(prefix: str, relay_port: int) -> str:
    """The shipped bridge section, pointed at the relay, for this test's topic prefix."""
    lines = []
    replaced = set()
    for line in SHIPPED.read_text(encoding="utf-8").splitlines():
        key = line.split(" ", 1)[0]
        if key in NOT_ON_LOOPBACK:
            replaced.add(key)
            continue
        if key == "address":
            replaced.add(key)
            line = f"address {LOOPBACK}:{relay_port}"
        elif key == "topic":
            line = line.replace(" reachlab/", f" {prefix}/", 1)
        lines.append(line)
    # The shipped file must still have the shape this test adapts.
    assert replaced == {"address", *NOT_ON_LOOPBACK}, replaced
    assert f"topic {prefix}/rigs/# both 1" in lines
    return "\n".join(lines) + "\n"


def until(lab: FaultLab, condition: Callable[[], bool], what: str) -> None:
    wait_until(
        condition, TIMEOUT, what, alive=lab.procs.check_alive, detail=lab.procs.all_logs,
        interval=0.1,
    )  # fmt: skip


def stored_documents(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])


def hold(lab: FaultLab, seconds: float, db: Path, what: str) -> None:
    """Keep the link broken for ``seconds`` of wall time with the rigs and the collector alive;
    once what was already past the link is stored (``DRAIN_S``), nothing more may arrive."""
    start = time.monotonic()
    frozen: list[int] = []

    def over() -> bool:
        now = time.monotonic()
        if now - start >= DRAIN_S:
            count = stored_documents(db)
            frozen.append(frozen[0] if frozen else count)
            assert count == frozen[0], f"documents crossed the {what}"
        return now - start >= seconds

    wait_until(over, seconds + 30, what, alive=lab.procs.check_alive, interval=0.5)


@pytest.mark.timeout(600)  # two real outages (130 s) and a lab's start and finish
def test_a_bridge_stalled_10_s_and_cut_2_min_mid_session_loses_and_doubles_nothing(
    tmp_path: Path, processes: Processes
) -> None:
    if not MosquittoBroker.available():
        pytest.skip("needs the mosquitto binary: the bridge is mosquitto's")
    central = MosquittoBroker()
    central.start()
    relay = Relay((LOOPBACK, central.port))
    db = tmp_path / "lab.db"
    lab = FaultLab(tmp_path, central.url, f"sqlite:///{db}", processes, time_scale=TIME_SCALE)
    building = MosquittoBroker(extra_config=bridge_config(lab.prefix, relay.port))
    try:
        building.start()
        lab.rig_broker_url = building.url
        until(lab, lambda: relay.connections >= 1, "the bridge to connect to the central broker")
        lab.start_collector()
        for box in BOXES:
            lab.start_rig(box)
        lab.wait_ready()  # the rigs' statuses crossed the bridge
        lab.start_cohort(duration=SESSION)  # the commands crossed it the other way
        lab.wait_trials(3)

        relay.stall()
        hold(lab, STALL_S, db, "stalled bridge")
        relay.resume()
        before = stored_documents(db)
        until(lab, lambda: stored_documents(db) > before, "documents to cross again")
        lab.wait_trials(6)

        links = relay.connections
        relay.cut()
        during = stored_documents(db)
        hold(lab, CUT_S, db, "cut bridge")
        # Mid-session: neither rig has ended its session (it writes its copy when it does).
        assert all(lab.local_copy(box) == [] for box in BOXES)
        relay.mend()
        mended = time.monotonic()
        until(lab, lambda: relay.connections > links, "the bridge to reconnect")
        until(lab, lambda: stored_documents(db) > during, "documents to cross again")
        lab.labctl("stop", *(lab.mouse(b) for b in BOXES), "--timeout", "30")
        lab.wait_sessions_ended(1)
        lab.wait_recovered(f"bridge cut {CUT_S:g} s", mended)
        lab.assert_lab_is_whole(1)
    finally:
        processes.stop_all()
        building.close()
        relay.close()
        central.close()
