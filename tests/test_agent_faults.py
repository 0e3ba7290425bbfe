"""Nothing is lost (DESIGN §6), shown with real processes: a broker that goes away and comes
back mid-session, an agent killed with SIGKILL mid-session and started again, and
sessions that ran before the collector ever connected.

In the first two, a subscriber standing in for the collector must end up, after
de-duplication by ``(session_id, seq)``, with every document of the session
exactly once and in order, the same documents the journal holds, and the
journal must not have pruned anything before ``committed``.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.journal import Journal
from controller.demo.broker import MosquittoBroker
from shared.digest import session_digest
from shared.documents import Document, SessionEnd, TrialEnd, build_session, parse_document
from shared.sessionfile import read_sessions
from tests.agentlab import TIMEOUT, AgentProcess, RigClient, start_session
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]

#: Task seconds of the sessions here: about six wall seconds at the agents' time scale.
LONG = {"duration": 3600}
#: An upper bound, not a wait: after an outage the agent's reconnect back-off (1, 2, 4 s ...)
#: and a loaded CI machine can hold the replay back for several seconds.
REPLAY_TIMEOUT = 45.0


def journal_count(path: Path, session_id: str) -> int:
    try:
        with Journal.open_readonly(path) as journal:
            info = journal.session(session_id)
            return info.documents if info is not None else 0
    except Exception:  # the agent may be creating the file this very moment
        return 0


def journal_pending(path: Path) -> int:
    with Journal.open_readonly(path) as journal:
        return journal.pending_count()


def journal_docs(path: Path, session_id: str) -> list[Document]:
    with Journal.open_readonly(path) as journal:
        return [parse_document(e.body) for e in journal.entries(session_id)]


def assert_exactly_once_in_order(received: list[Document], journal: list[Document]) -> None:
    """``received`` is de-duplicated in arrival order: its seqs must count up from 0."""
    assert [d.seq for d in received] == list(range(len(received)))
    assert received == journal
    assert isinstance(received[-1], SessionEnd)


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private mosquitto that keeps its clients' sessions across a restart on the same port."""
    if not MosquittoBroker.available():
        pytest.skip("needs the mosquitto binary: this test stops and restarts the broker")
    store = tmp_path / "mosquitto-store"
    store.mkdir()
    # Started by root, mosquitto drops to its own user, which cannot write under pytest's
    # private tmp_path: the save at shutdown would fail and the subscriber's session (and
    # what was queued for it) would be gone after the restart. `user` only acts under root.
    broker = MosquittoBroker(
        extra_config=f"user root\npersistence true\npersistence_location {store}/\n"
    )
    broker.start()
    yield broker
    broker.close()


def test_a_broker_outage_mid_session_loses_nothing(
    persistent_broker: MosquittoBroker, tmp_path: Path
) -> None:
    prefix = f"fault-{uuid.uuid4().hex[:8]}"
    # A persistent session: the broker keeps queueing for this subscriber while it is away.
    collector = RigClient(
        persistent_broker.url, prefix, client_id=f"collector-{prefix}", persistent=True
    )
    try:
        with AgentProcess(tmp_path / "rig", persistent_broker.url, prefix) as agent:
            collector.wait_state("idle")
            session_id = start_session(collector, LONG)
            collector.wait(lambda: len(collector.session_docs(session_id)) >= 10, "documents")

            persistent_broker.stop()
            # The broker saved the collector's session: what it queued survives the restart.
            assert (tmp_path / "mosquitto-store" / "mosquitto.db").exists()
            at_stop = journal_count(agent.journal, session_id)
            # The session carries on without the broker, journalling as it goes.
            wait_until(
                lambda: journal_count(agent.journal, session_id) >= at_stop + 120,
                TIMEOUT,
                "the session to carry on while the broker is down",
            )
            assert journal_pending(agent.journal) >= 120  # journalled, waiting for the broker
            persistent_broker.start()

            docs = collector.wait_complete(session_id, REPLAY_TIMEOUT)
            journal = journal_docs(agent.journal, session_id)
            assert_exactly_once_in_order(docs, journal)
            assert docs[-1].status == "complete"  # type: ignore[union-attr]
            collector.wait_state("idle")  # published once the local copy is written
            assert read_sessions(agent.data_dir / "M1.json") == [build_session(docs)]
            # Everything arrived, and still nothing was pruned: that waits for "committed".
            assert journal_count(agent.journal, session_id) == len(docs)
            reply = collector.command(
                "committed",
                session_id=session_id,
                last_seq=docs[-1].seq,
                digest=session_digest(docs),
            )
            assert reply.ok and reply.data["pruned"] is True
            assert journal_count(agent.journal, session_id) == 0
            output = agent.output()
        assert "lost connection to broker" in output and output.count("connected to broker") >= 2
        # One log line per trial, through the outage as before it.
        trials = [d for d in docs if isinstance(d, TrialEnd)]
        assert len(trials) > 50
        for trial in trials:
            assert f"M1 trial {trial.trial + 1}: " in output
        assert output.count(" M1 trial ") == len(trials)
    finally:
        collector.close()


def test_an_agent_killed_mid_session_and_restarted_loses_nothing(
    broker_url: str, tmp_path: Path
) -> None:
    prefix = f"fault-{uuid.uuid4().hex[:8]}"
    collector = RigClient(broker_url, prefix)
    folder = tmp_path / "rig"
    try:
        with AgentProcess(folder, broker_url, prefix) as first:
            collector.wait_state("idle")
            session_id = start_session(collector, LONG)
            collector.wait(lambda: len(collector.session_docs(session_id)) >= 20, "documents")
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        collector.wait_state("offline")  # the Last Will
        before = journal_docs(first.journal, session_id)
        assert not isinstance(before[-1], SessionEnd)

        with AgentProcess(folder, broker_url, prefix) as second:
            docs = collector.wait_complete(session_id, REPLAY_TIMEOUT)
            journal = journal_docs(second.journal, session_id)
            assert_exactly_once_in_order(docs, journal)
            end = docs[-1]
            assert isinstance(end, SessionEnd) and end.status == "aborted"
            assert docs[:-1] == before  # every document the dead process journalled
            assert end.seq == before[-1].seq + 1 and end.t == before[-1].t
            collector.wait_state("idle")
            copy = read_sessions(second.data_dir / "M1.json")
            assert copy == [build_session(docs)] and copy[0]["status"] == "aborted"
            assert journal_count(second.journal, session_id) == len(docs)  # not pruned yet
            reply = collector.command(
                "committed", session_id=session_id, last_seq=end.seq, digest=session_digest(docs)
            )
            assert reply.ok
            assert "closed it as aborted" in second.output()
    finally:
        collector.close()


def test_sessions_run_before_the_collector_ever_connected_are_collected_from_the_journal(
    broker_url: str, tmp_path: Path
) -> None:
    """A lab starts training before `labctl serve` first runs: the broker keeps nothing for
    a collector it has never seen, so every document of those sessions is gone from the
    wire. The rig's status lists them as uncommitted; the collector asks for them whole,
    stores them, commits them, and the rig prunes its journal."""
    from controller.collector.ingest import IngestSettings
    from controller.collector.service import Collector
    from controller.db import open_database
    from controller.files import export_mice
    from shared.broker_url import broker_settings as parse_url
    from shared.protocol import Topics

    prefix = f"fault-{uuid.uuid4().hex[:8]}"
    observer = RigClient(broker_url, prefix)
    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        with AgentProcess(tmp_path / "rig", broker_url, prefix) as agent:
            observer.wait_state("idle")
            session_id = start_session(observer, {"duration": 120})
            observer.wait_complete(session_id, REPLAY_TIMEOUT)
            observer.wait_state("idle")
            assert journal_count(agent.journal, session_id) > 0  # held: nobody committed it

            collector = Collector(
                db,
                parse_url(broker_url),
                topics=Topics(prefix),
                settings=IngestSettings(tail_grace=1.0, resend_interval=2.0, gap_grace=0.2),
                tick_interval=0.1,
            )
            collector.start()
            try:
                wait_until(
                    lambda: journal_count(agent.journal, session_id) == 0,
                    REPLAY_TIMEOUT,
                    "the session to be asked for, stored, committed and pruned",
                )
            finally:
                collector.stop()
            output = agent.output()
        out = tmp_path / "export"
        (result,) = export_mice(db, ["M1"], out)
        assert result.written and result.sessions == 1
        assert read_sessions(out / "M1.json") == read_sessions(agent.data_dir / "M1.json")
        assert "committed by the controller: pruned it" in output
    finally:
        db.close()
        observer.close()
