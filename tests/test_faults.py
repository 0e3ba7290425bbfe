"""Fault injection with real processes (issue 11): nothing is lost, nothing is stored twice.

Every scenario runs a small lab of real processes: ``labctl serve``, two
``labagent run --sim`` rigs at a time scale, and labctl's own commands. It
breaks one part while a cohort trains (the broker, the collector, a rig, the
database, the wire, a rig's clock), lets it recover, and then holds the lab to
three things, judged only through the commands a lab uses:

* every session is stored exactly once: ``labctl export`` has each session id once;
* the export equals the agents' own local copies, session for session;
* ``labctl status`` is true about every box (online, idle, nothing running).

Each scenario's recovery time (from the end of the fault until the export
equals the local copies) is printed as a ``RECOVERY`` line (``pytest -s``) and
kept in ``$REACHLAB_FAULTS_REPORT`` (default ``$TMPDIR/reachlab-faults.json``).

The tests only use commands and files (``labctl serve/status/export/start``,
``labagent run``, the per-mouse JSON files), so they hold whatever the
collector's insides look like. Run them alone with ``pytest -m faults``.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.documents import Document
from shared.protocol import encode
from tests.agentlab import RigClient
from tests.faultlab import BOXES, TIMEOUT, FaultLab, PrivatePostgres, private_broker
from tests.processes import Processes
from tests.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.broker]


# ---------------------------------------------------------------- the broker


@pytest.mark.parametrize("persistence", [True, False], ids=["persistent", "volatile"])
def test_a_broker_restarted_mid_cohort_loses_and_duplicates_nothing(
    tmp_path: Path, processes: Processes, persistence: bool
) -> None:
    broker = private_broker(tmp_path, persistence)
    broker.start()
    try:
        lab = FaultLab(tmp_path, broker.url, f"sqlite:///{tmp_path / 'lab.db'}", processes)
        lab.start_collector()
        for box in BOXES:
            lab.start_rig(box)
        lab.wait_ready()
        lab.start_cohort()
        lab.wait_trials(3)
        broker.stop()
        # The sessions run to their end without the broker, journalled on the rigs.
        lab.wait_sessions_ended(1)
        down = lab.status()  # what labctl says while the broker is away: the truth
        assert down["broker_reachable"] is False
        notes = {r["box"]: r["note"] for r in down["boxes"]}
        assert all("broker unreachable" in notes[b] for b in BOXES), notes
        broker.start()
        restarted = time.monotonic()
        lab.wait_recovered(
            f"broker restart ({'persistent' if persistence else 'volatile'})", restarted
        )
        lab.assert_lab_is_whole(sessions=1)
    finally:
        processes.stop_all()
        broker.close()


# ---------------------------------------------------------------- the collector


@pytest.mark.parametrize(
    "db_kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_collector_killed_mid_cohort_and_restarted_loses_and_duplicates_nothing(
    tmp_path: Path,
    processes: Processes,
    broker_url: str,
    db_kind: str,
    request: pytest.FixtureRequest,
) -> None:
    from .conftest import temporary_postgres

    with contextlib.ExitStack() as stack:
        if db_kind == "sqlite":
            db_url = f"sqlite:///{tmp_path / 'lab.db'}"
        else:
            server = request.getfixturevalue("postgres_server_url")
            db_url = stack.enter_context(contextlib.contextmanager(temporary_postgres)(server))
        lab = FaultLab(tmp_path, broker_url, db_url, processes)
        collector = lab.start_collector()
        for box in BOXES:
            lab.start_rig(box)
        lab.wait_ready()
        lab.start_cohort()
        lab.wait_trials(3)
        lab.kill(collector)
        # No collector, but the rigs are up and training: labctl says so (from the broker).
        rows = lab.boxes()
        assert all(rows[b]["online"] and rows[b]["state"] in ("running", "idle") for b in BOXES)
        lab.wait_sessions_ended(1)
        lab.start_collector()
        restarted = time.monotonic()
        lab.wait_recovered(f"collector SIGKILL ({db_kind})", restarted)
        lab.assert_lab_is_whole(sessions=1)
        processes.stop_all()


# ---------------------------------------------------------------- a rig


def test_a_rig_killed_mid_session_and_restarted_keeps_every_trial_of_its_aborted_session(
    tmp_path: Path, processes: Processes, broker_url: str
) -> None:
    lab = FaultLab(tmp_path, broker_url, f"sqlite:///{tmp_path / 'lab.db'}", processes)
    lab.start_collector()
    rig1 = lab.start_rig("1")
    lab.start_rig("2")
    lab.wait_ready()
    lab.start_cohort()
    trials = lab.wait_trials(3)
    lab.kill(rig1)
    # The broker publishes the dead rig's Last Will: labctl shows it offline at once.
    wait_until(
        lambda: lab.boxes()["1"]["online"] is False, TIMEOUT, "box 1 shown offline",
        alive=processes.check_alive, detail=processes.all_logs, interval=0.1,
    )  # fmt: skip
    assert lab.boxes()["1"]["state"] == "offline"
    lab.wait_sessions_ended(1, boxes=("2",))
    lab.start_rig("1")
    restarted = time.monotonic()
    lab.wait_recovered("agent SIGKILL mid-session", restarted)
    lab.assert_lab_is_whole(sessions=1)
    (aborted,) = lab.local_copy("1")
    assert aborted["status"] == "aborted"
    # Every trial the rig had reported before it died is in the stored session.
    assert len(aborted["trials"]) >= trials["1"] >= 3
    (complete,) = lab.local_copy("2")
    assert complete["status"] == "complete"
    processes.stop_all()


# ---------------------------------------------------------------- the database


def test_a_sqlite_database_locked_by_another_process_loses_nothing(
    tmp_path: Path, processes: Processes, broker_url: str
) -> None:
    db_file = tmp_path / "lab.db"
    lab = FaultLab(tmp_path, broker_url, f"sqlite:///{db_file}", processes)
    lab.start_collector()
    for box in BOXES:
        lab.start_rig(box)
    lab.wait_ready()
    lab.start_cohort()
    lab.wait_trials(3)
    # Another program (a backup, a curious student's sqlite3 shell) holds the write lock
    # until its stdin closes.
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
            "db.execute('ROLLBACK')\n",
            str(db_file),
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        lab.wait_sessions_ended(1)  # every document arrives while the database is locked
        with (
            contextlib.closing(sqlite3.connect(db_file, timeout=0.1)) as probe,
            pytest.raises(sqlite3.OperationalError, match="locked"),
        ):
            probe.execute("BEGIN IMMEDIATE")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    released = time.monotonic()
    lab.wait_recovered("sqlite locked by another process", released)
    lab.assert_lab_is_whole(sessions=1)
    processes.stop_all()


@pytest.mark.postgres
def test_a_postgresql_server_stopped_and_started_mid_cohort_loses_nothing(
    tmp_path: Path, processes: Processes, broker_url: str
) -> None:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        lab = FaultLab(tmp_path, broker_url, server.url, processes)
        lab.start_collector()
        for box in BOXES:
            lab.start_rig(box)
        lab.wait_ready()
        lab.start_cohort()
        lab.wait_trials(3)
        server.stop()
        lab.wait_sessions_ended(1)  # every document arrives while the database is down
        server.start()
        restarted = time.monotonic()
        lab.wait_recovered("postgresql stopped and started", restarted)
        lab.assert_lab_is_whole(sessions=1)
        processes.stop_all()
    finally:
        processes.stop_all()
        server.close()


# ---------------------------------------------------------------- the wire


def test_duplicated_reordered_and_replayed_documents_are_stored_once(
    tmp_path: Path, processes: Processes, broker_url: str
) -> None:
    lab = FaultLab(tmp_path, broker_url, f"sqlite:///{tmp_path / 'lab.db'}", processes)
    wire = RigClient(broker_url, lab.prefix, box="1")  # hears box 1's documents as sent
    try:
        lab.start_collector()
        lab.start_rig("1")
        lab.wait_ready(("1",))
        lab.start_cohort(("1",))
        lab.wait_sessions_ended(1, ("1",))
        wait_until(
            lambda: lab.export_matches(("1",)), TIMEOUT, "the first session stored",
            alive=processes.check_alive, detail=processes.all_logs, interval=0.1,
        )  # fmt: skip
        (first,) = lab.local_copy("1")
        sent = wire.wait_complete(first["session_id"])
        shuffle = random.Random(1)

        def publish(docs: list[Document]) -> None:
            for doc in docs:
                topic = wire.topics.events("1")
                wire.client.publish(topic, encode(doc), qos=1).wait_for_publish(10)

        # A replay of the whole stored session, every document twice and out of order.
        replay = sent * 2
        shuffle.shuffle(replay)
        publish(replay)

        # A second session; mid-way, what it sent so far arrives again, reversed and doubled,
        # in between its live documents (a resend racing the live stream).
        lab.start_cohort(("1",))
        lab.wait_trials(3, ("1",))
        second_id = lab.boxes()["1"]["session_id"]
        so_far = wire.session_docs(second_id)
        assert len(so_far) > 5
        publish(list(reversed(so_far)) * 2)
        lab.wait_sessions_ended(2, ("1",))
        lab.wait_recovered("documents: duplicated, reordered, replayed", time.monotonic(), ("1",))
        lab.assert_lab_is_whole(sessions=2, boxes=("1",))
        assert lab.local_copy("1")[0] == first
    finally:
        wire.close()
        processes.stop_all()


# ---------------------------------------------------------------- a rig's clock


def test_a_rig_whose_clock_is_days_off_keeps_its_times_and_labctl_shows_the_offset(
    tmp_path: Path, processes: Processes, broker_url: str
) -> None:
    offset = 3 * 86400.0
    lab = FaultLab(tmp_path, broker_url, f"sqlite:///{tmp_path / 'lab.db'}", processes)
    lab.start_collector()
    lab.start_rig("1")
    lab.start_rig("2", clock_offset=offset)
    lab.wait_ready()
    lab.start_cohort()
    lab.wait_sessions_ended(1)
    lab.wait_recovered("rig clock 3 days ahead", time.monotonic())
    lab.assert_lab_is_whole(sessions=1)
    now = time.time()
    (normal,) = lab.local_copy("1")
    (ahead,) = lab.local_copy("2")
    # The data keeps the rig's own times (the export equals the local copy, checked above).
    assert abs(normal["start_time"] - now) < 120
    assert abs(ahead["start_time"] - (now + offset)) < 120
    assert ahead["date"] == time.strftime("%Y-%m-%d", time.localtime(ahead["start_time"]))
    rows = lab.boxes()
    table = lab.labctl("status")
    processes.stop_all()
    # The offset is the rig's calendar, not its task clock: both rigs run at TIME_SCALE, whose
    # task clock is far ahead once a session has ended (600 s a second), and box 1 is not.
    assert abs(rows["2"]["clock_offset"] - offset) < 30, rows["2"]
    assert abs(rows["1"]["clock_offset"]) < 30, rows["1"]
    lines = {line.split()[1]: line for line in table.splitlines() if line[:1] in "│|"}
    assert "clock +3d 0h ahead" in lines["2"], table
    assert "clock" not in lines["1"] or abs(rows["1"]["clock_offset"]) > 2, table
