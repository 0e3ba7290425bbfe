"""agent/fleet.py: many real agents on one task loop, each its own box on the wire."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.fleet import Fleet
from agent.journal import JournalEntry
from agent.settings import AgentSettings
from controller.demo.broker import MosquittoBroker
from shared.broker_url import broker_settings
from shared.documents import SessionEnd, SessionStart
from shared.errors import ConfigError
from shared.sessionfile import read_sessions
from tests.agentlab import RigClient, start_session

pytestmark = pytest.mark.broker

#: A few real seconds: the fleet runs at the calendar's pace.
QUICK = {"duration": 3, "intertrial_interval": [300, 600], "timeout": 300}
BOXES = ("1", "2", "3")


def settings(folder: Path, broker_url: str, prefix: str, box: str) -> AgentSettings:
    return AgentSettings(
        box=box,
        broker=broker_settings(broker_url),
        journal=folder / f"rig{box}" / "journal.db",
        data_dir=folder / f"rig{box}" / "data",
        prefix=prefix,
        sim=True,
        seed=int(box),
        heartbeat=1.0,
    )


@pytest.fixture
def clients(
    private_mosquitto: MosquittoBroker, topic_prefix: str
) -> Iterator[dict[str, RigClient]]:
    made = {box: RigClient(private_mosquitto.url, topic_prefix, box) for box in BOXES}
    try:
        yield made
    finally:
        for client in made.values():
            client.close()


def test_a_fleet_refuses_a_real_rig_or_a_scaled_clock(tmp_path: Path) -> None:
    url = "mqtt://127.0.0.1:1"
    with pytest.raises(ConfigError, match="box 2: a fleet runs simulated rigs at time scale 1"):
        Fleet(
            [
                settings(tmp_path, url, "p", "1"),
                replace(settings(tmp_path, url, "p", "2"), time_scale=20),
            ]
        )
    with pytest.raises(ConfigError, match="box 1"):
        Fleet([replace(settings(tmp_path, url, "p", "1"), sim=False)])
    assert not (tmp_path / "rig1").exists()  # refused before any journal was made


def test_rigs_of_one_fleet_run_their_sessions_at_once_each_on_its_own_journal_and_topics(
    tmp_path: Path,
    private_mosquitto: MosquittoBroker,
    topic_prefix: str,
    clients: dict[str, RigClient],
) -> None:
    sent: list[tuple[str, JournalEntry]] = []
    fleet = Fleet(
        [settings(tmp_path, private_mosquitto.url, topic_prefix, box) for box in BOXES],
        on_sent=lambda box, entry: sent.append((box, entry)),
    )
    runner = threading.Thread(target=fleet.run, name="fleet")
    runner.start()
    try:
        for client in clients.values():
            client.wait_state("idle")
        ids = {box: start_session(clients[box], QUICK) for box in ("1", "2")}
        docs = {box: clients[box].wait_complete(ids[box]) for box in ids}
    finally:
        fleet.stop()
        runner.join(30)
    assert not runner.is_alive()
    for box, session_docs in docs.items():
        start, end = session_docs[0], session_docs[-1]
        assert isinstance(start, SessionStart) and isinstance(end, SessionEnd)
        assert end.status == "complete" and [d.seq for d in session_docs] == list(
            range(end.seq + 1)
        )
        # Its own local copy, in its own folder, of its own session only.
        copy = read_sessions(tmp_path / f"rig{box}" / "data" / "M1.json")
        assert [s["session_id"] for s in copy] == [ids[box]]
        assert {(e.session_id, e.seq) for b, e in sent if b == box} == {
            (ids[box], d.seq) for d in session_docs
        }
    # One loop, two sessions at the same time: each started before the other ended.
    one, two = docs["1"], docs["2"]
    assert one[0].t < two[-1].t and two[0].t < one[-1].t
    assert not clients["3"].events  # the idle rig published no document
    for client in clients.values():  # each rig said goodbye on its own status topic
        client.wait_state("offline")
