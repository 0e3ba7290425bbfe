"""Hostile input at the collector (issue 11): what a rig's own credentials can send must not
crash it, forge another box's data, flood the rigs with commands or fill the database.

Each test was written against the collector as it was before the database decided
(and failed there); the ingest is driven directly, as in ``test_collector_ingest``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import event, select

from controller.collector.ingest import Ingest
from controller.db import Box as BoxRow
from controller.db import Database, DeadLetter, StoredDocument, Stream
from shared.digest import session_digest
from shared.documents import dump_document
from shared.protocol import (
    MAX_UNCOMMITTED,
    CommittedCommand,
    ResendCommand,
    Status,
    encode,
)
from tests.fakes import session_dict, synthetic_session

from .test_collector_ingest import SETTINGS, TOPICS, Harness


@pytest.fixture
def lab(db: Database) -> Iterator[Harness]:
    yield Harness(db)


def dead_reasons(lab: Harness) -> list[str]:
    with lab.db.reader() as session:
        return [letter.reason for letter in session.scalars(select(DeadLetter))]


def test_a_seq_of_ten_to_the_twelve_is_a_dead_letter_and_costs_nothing(lab: Harness) -> None:
    """One 120-byte event used to make the gap check build a list over every seq below it
    (2.4 GB, MemoryError, and again on every restart)."""
    docs = synthetic_session(trials=3)
    huge = docs[1].model_copy(update={"seq": 10**12})
    lab.handle(lab.status(state="running", session_id=docs[0].session_id), lab.docs(docs[:3]))
    lab.handle(lab.docs([huge]))
    lab.clock.advance(10)
    lab.ingest.tick()  # the gap check: nothing as large as the "gap" is built
    (reason,) = dead_reasons(lab)
    assert "seq 1000000000000" in reason and "not a seq its box can have sent" in reason
    assert lab.count(StoredDocument) == 3
    lab.handle(lab.docs(docs[3:]))
    assert lab.exported("M1") == [session_dict(docs)]


def test_a_seq_far_past_the_highest_stored_is_refused_but_a_real_gap_is_asked_for(
    lab: Harness,
) -> None:
    docs = synthetic_session(trials=6)
    lab.handle(lab.status(state="running", session_id=docs[0].session_id), lab.docs(docs[:2]))
    far = docs[2].model_copy(update={"seq": 10 + SETTINGS.seq_window})
    lab.handle(lab.docs([far, docs[5]]))
    assert len(dead_reasons(lab)) == 1
    lab.clock.advance(SETTINGS.gap_grace + 0.1)
    lab.ingest.tick()
    (resend,) = lab.sink.of(ResendCommand)
    assert (resend.from_seq, resend.to_seq) == (2, 4)  # the gap below seq 5, nothing more


def test_documents_for_another_box_s_session_are_dead_letters(lab: Harness) -> None:
    """Rig 1, on its own topic, with box 2's running session id: first writer used to win."""
    real = synthetic_session(mouse="M2", box="2", trials=5, seed=2)
    sid = real[0].session_id
    forged = synthetic_session(session_id=sid, mouse="M2", box="1", trials=5, seed=9)
    lab.handle(lab.status("2", state="running", session_id=sid), lab.docs(real[:1], box="2"))
    lab.handle(lab.docs(forged[1:8], box="1"))  # after box 2's start
    lab.handle(lab.docs(real[1:], box="2"))
    assert len(dead_reasons(lab)) == 7
    assert all("box 2's session_start opened it" in r for r in dead_reasons(lab))
    assert lab.exported("M2") == [session_dict(real)]


def test_documents_sent_before_the_real_start_are_taken_out_when_it_comes(lab: Harness) -> None:
    real = synthetic_session(mouse="M2", box="2", trials=5, seed=2)
    sid = real[0].session_id
    forged = synthetic_session(session_id=sid, mouse="M2", box="1", trials=5, seed=9)
    lab.handle(lab.docs(forged[1:8], box="1"))  # before box 2's session_start arrives
    lab.handle(lab.status("2", state="running", session_id=sid), lab.docs(real, box="2"))
    lab.clock.advance(SETTINGS.gap_grace + 0.1)
    lab.ingest.tick()  # what the forgeries held back is asked for again
    for resend in lab.sink.of(ResendCommand):
        top = resend.to_seq if resend.to_seq is not None else len(real) - 1
        lab.handle(lab.docs(real[resend.from_seq : top + 1], box="2"))
    assert lab.exported("M2") == [session_dict(real)]
    assert len(dead_reasons(lab)) == 7
    (committed,) = lab.sink.of(CommittedCommand)
    assert committed.session_id == sid


def test_a_start_on_another_box_reusing_a_session_id_is_a_dead_letter(lab: Harness) -> None:
    """A start on box 4 reusing box 2's session id used to make box 4's documents vanish."""
    two = synthetic_session(mouse="M2", box="2", trials=4, seed=2)
    sid = two[0].session_id
    four = synthetic_session(session_id=sid, mouse="M4", box="4", trials=4, seed=3)
    lab.handle(lab.status("2", state="running", session_id=sid), lab.docs(two[:3], box="2"))
    lab.handle(lab.docs(four, box="4"))
    lab.handle(lab.docs(two[3:], box="2"))
    reasons = dead_reasons(lab)
    assert len(reasons) == len(four)
    assert any("a session_start reusing the id" in r for r in reasons)
    assert lab.exported("M2") == [session_dict(two)] and lab.exported("M4") == []


def test_committed_carries_the_last_seq_and_the_digest_of_what_is_stored(lab: Harness) -> None:
    docs = synthetic_session(trials=7, seed=4)
    lab.handle(lab.status(), lab.docs(docs))
    (committed,) = lab.sink.of(CommittedCommand)
    assert committed.last_seq == len(docs) - 1
    assert committed.digest == session_digest(docs)


def test_not_found_to_committed_is_no_confirmation_and_the_session_is_not_exported(
    lab: Harness,
) -> None:
    """A session invented on box 1's topic used to be exported as one of M1's sessions."""
    invented = synthetic_session(mouse="M1", box="1", trials=3, seed=7)
    lab.handle(lab.status(), lab.docs(invented))
    (committed,) = lab.sink.of(CommittedCommand)
    lab.handle(lab.reply("1", committed, ok=False, code="not_found", error="no such session"))
    row = lab.session_row(invented[0].session_id)
    assert row.committed_at is None and not row.complete
    assert "not_found" in (row.problem or "")
    assert lab.exported("M1") == []
    assert lab.count(StoredDocument) == len(invented)  # kept, with its problem


def test_a_status_listing_the_most_sessions_allowed_sends_a_bounded_number_of_resends(
    lab: Harness,
) -> None:
    """40,000 listed ids used to make the collector send 80,000 resend commands in 31 s.
    A status may list at most MAX_UNCOMMITTED (more is a dead letter, below); of those the
    collector looks at max_listed."""
    listed = [f"forged-{n:05d}" for n in range(MAX_UNCOMMITTED)]
    assert SETTINGS.max_listed < MAX_UNCOMMITTED
    lab.handle(lab.status(uncommitted=listed))
    for _ in range(13):  # 32 s; the box sends its status every few seconds
        lab.clock.advance(2.5)
        lab.handle(lab.status(uncommitted=listed))
        lab.ingest.tick()
    sent = lab.sink.of(ResendCommand)
    assert 0 < len(sent) <= SETTINGS.max_listed * 7  # each at most once per resend interval
    assert len({c.session_id for c in sent}) <= SETTINGS.max_listed
    with lab.db.reader() as session:
        assert len(session.scalars(select(Stream)).all()) == SETTINGS.max_listed


def test_a_retained_status_listing_forty_thousand_sessions_is_a_dead_letter(
    lab: Harness,
) -> None:
    """The list itself is bounded by the protocol, whatever the payload limit: a retained
    status of 40,000 ids (here under a raised size limit) asks for nothing, and the box
    keeps the state its last valid status gave."""
    lab.ingest = Ingest(
        lab.db,
        lab.sink,
        topics=TOPICS,
        settings=replace(SETTINGS, max_payload=2**20),
        clock=lab.clock,
    )
    lab.handle(lab.status(state="idle"))
    body = json.loads(encode(Status(box="1", state="running")))
    body["uncommitted"] = [f"forged-{n:05d}" for n in range(40_000)]
    hostile = lab.message(TOPICS.status("1"), json.dumps(body), retained=True)
    assert SETTINGS.max_payload < len(hostile.payload) < 2**20
    for _ in range(13):
        lab.handle(hostile)
        lab.clock.advance(2.5)
        lab.ingest.tick()
    reasons = dead_reasons(lab)
    assert len(reasons) == 13
    assert all("uncommitted" in r and f"at most {MAX_UNCOMMITTED} items" in r for r in reasons)
    assert lab.sink.of(ResendCommand) == []
    with lab.db.reader() as session:
        assert session.scalars(select(Stream)).all() == []
        (box,) = session.scalars(select(BoxRow)).all()
    assert box.status is not None and json.loads(box.status)["state"] == "idle"


def test_an_oversized_payload_is_kept_as_a_short_prefix_with_its_reason(lab: Harness) -> None:
    big = b'{"kind": "session_start", "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    docs = synthetic_session(trials=2)
    lab.handle(lab.docs(docs[:2]), lab.message(TOPICS.events("1"), big), lab.docs(docs[2:]))
    with lab.db.reader() as session:
        (letter,) = session.scalars(select(DeadLetter)).all()
    assert "over the limit" in letter.reason and str(len(big)) in letter.reason
    assert len(letter.payload) <= 1024 and big.startswith(letter.payload)
    assert lab.exported("M1") == [session_dict(docs)]


def test_replays_of_old_seqs_change_nothing(lab: Harness) -> None:
    docs = synthetic_session(trials=4)
    lab.handle(lab.status(), lab.docs(docs))
    before = lab.exported("M1")
    altered = [d.model_copy(update={"t": d.t + 100}) for d in docs[1:5]]
    lab.handle(lab.docs(altered))
    assert lab.exported("M1") == before and lab.count(StoredDocument) == len(docs)


def test_a_database_locked_for_45_s_does_not_mark_every_box_offline(
    lab: Harness, db_url: str
) -> None:
    """What arrived while the database was locked is stored after it; the heartbeat timeout
    used to run before it was, and took every box for silent."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the lock is taken on the SQLite file")

    @event.listens_for(lab.db.engine, "connect")
    def short_wait(dbapi_connection: sqlite3.Connection, record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 50")  # fail fast, not after 30 s

    lab.db.engine.dispose()
    lab.handle(lab.status("1", state="running"), lab.status("2", state="idle"))
    lab.clock.advance(5)
    backlog = [lab.status("1", state="running"), lab.status("2", state="idle")]
    holder = sqlite3.connect(lab.db.engine.url.database or "", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        with pytest.raises(Exception):  # noqa: B017  (the database's "locked")
            lab.handle(backlog)
        lab.clock.advance(41)  # locked for 45 s in all
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    lab.handle(backlog)  # the first batch of the backlog, received 41 s ago
    lab.ingest.tick()
    assert (lab.box("1").state, lab.box("2").state) == ("running", "idle")
    lab.clock.advance(SETTINGS.heartbeat_timeout + 1)
    lab.ingest.tick()  # silent for real now
    assert (lab.box("1").state, lab.box("2").state) == ("offline", "offline")


def test_a_document_claiming_another_box_on_its_own_topic_is_a_dead_letter(lab: Harness) -> None:
    (doc,) = synthetic_session(box="2", trials=0)[:1]
    lab.handle(lab.message(TOPICS.events("1"), dump_document(doc)))
    assert dead_reasons(lab) == ["document of box '2' on the topic of box '1'"]
