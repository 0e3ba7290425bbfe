"""The collector's core without a broker: documents in, rows and commands out.

:class:`~controller.collector.ingest.Ingest` is driven directly with raw messages, a
list for a command sink and a clock the test moves, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from controller.collector.assembly import SESSIONS
from controller.collector.ingest import Incoming, Ingest, IngestSettings, RigCommand
from controller.db import (
    Box,
    Database,
    DeadLetter,
    Mouse,
    StoredDocument,
    TrainingSession,
    Trial,
)
from controller.store import (
    TRIAL_COLUMNS,
    complete_session_texts,
    ensure_mouse,
    trial_row_tuples,
)
from shared.documents import Document, dump_document
from shared.protocol import (
    CommittedCommand,
    Reply,
    ResendCommand,
    Status,
    Topics,
    encode,
    status_or_none,
)
from tests.fakes import T0, session_dict, synthetic_session

TOPICS = Topics("lab")
SETTINGS = IngestSettings(
    heartbeat_timeout=30, gap_grace=1, resend_interval=5, tail_grace=5, commit_retry=30
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, RigCommand]] = []

    def send(self, box: str, command: RigCommand) -> None:
        self.sent.append((box, command))

    def of(self, kind: type[Any]) -> list[Any]:
        return [c for _, c in self.sent if isinstance(c, kind)]


class Harness:
    """An ingest on a database, with helpers to feed it what a box would send."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = Clock()
        self.sink = Sink()
        self.ingest = self.restart()

    def restart(self) -> Ingest:
        self.ingest = Ingest(self.db, self.sink, topics=TOPICS, settings=SETTINGS, clock=self.clock)
        return self.ingest

    def message(self, topic: str, payload: bytes | str, retained: bool = False) -> Incoming:
        data = payload.encode() if isinstance(payload, str) else payload
        return Incoming(topic, data, self.clock(), retained)

    def docs(self, docs: Sequence[Document], box: str = "1") -> list[Incoming]:
        return [self.message(TOPICS.events(box), dump_document(d)) for d in docs]

    def status(self, box: str = "1", retained: bool = False, **fields: Any) -> Incoming:
        fields.setdefault("state", "idle")
        return self.message(TOPICS.status(box), encode(Status(box=box, **fields)), retained)

    def reply(self, box: str, command: RigCommand, ok: bool = True, **fields: Any) -> Incoming:
        reply = Reply(request_id=command.request_id, command=command.command, ok=ok, **fields)
        return self.message(TOPICS.reply(box), encode(reply))

    def handle(self, *messages: Incoming | list[Incoming]) -> None:
        flat: list[Incoming] = []
        for m in messages:
            flat.extend(m if isinstance(m, list) else [m])
        self.ingest.handle(flat)

    def count(self, model: type[Any]) -> int:
        with self.db.reader() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    def session_row(self, session_id: str) -> TrainingSession:
        with self.db.reader() as session:
            row = session.scalar(
                select(TrainingSession).where(TrainingSession.session_id == session_id)
            )
            assert row is not None
            return row

    def box(self, name: str) -> Box:
        with self.db.reader() as session:
            box = session.get(Box, name)
            assert box is not None
            return box

    def exported(self, mouse: str) -> list[dict[str, Any]]:
        with self.db.reader_engine.connect() as conn:
            return [json.loads(t) for t in complete_session_texts(conn, mouse)]


@pytest.fixture
def lab(db: Database) -> Iterator[Harness]:
    yield Harness(db)


# ---------------------------------------------------------------- documents


def test_a_whole_session_is_rebuilt_exactly_as_the_box_builds_it(lab: Harness) -> None:
    docs = synthetic_session(mouse="M1", trials=25, seed=3)
    lab.handle(lab.status(state="running"), lab.docs(docs))
    assert lab.exported("M1") == [session_dict(docs)]
    row = lab.session_row(docs[0].session_id)
    assert row.complete and row.status == "complete" and row.last_seq == len(docs) - 1
    assert row.trial_count == 25 == lab.count(Trial)
    (committed,) = lab.sink.of(CommittedCommand)
    assert committed.session_id == docs[0].session_id
    assert committed.last_seq == len(docs) - 1


def test_a_backlogged_writer_leaves_whole_sessions_to_the_tick_a_few_at_a_time(
    lab: Harness,
) -> None:
    # The collector's writer, behind (its batch was full), stores documents first: the
    # batch does not rebuild the sessions it made whole, and a tick rebuilds as many as
    # it is given; nothing is committed to a box before its session is stored.
    one = synthetic_session(session_id="S1", mouse="M1", box="1", trials=6, seed=1)
    two = synthetic_session(session_id="S2", mouse="M2", box="2", trials=7, seed=2)
    lab.ingest.handle(lab.docs(one, box="1") + lab.docs(two, box="2"), behind=True)
    assert lab.count(StoredDocument) == len(one) + len(two)
    assert not lab.session_row("S1").complete and not lab.session_row("S2").complete
    assert lab.sink.of(CommittedCommand) == [] and lab.count(Trial) == 0
    lab.ingest.tick(completions=1)
    (first,) = lab.sink.of(CommittedCommand)
    assert [lab.session_row(sid).complete for sid in ("S1", "S2")].count(True) == 1
    assert lab.session_row(first.session_id).complete
    lab.ingest.tick()  # no longer behind: every whole session
    assert sorted(c.session_id for c in lab.sink.of(CommittedCommand)) == ["S1", "S2"]
    assert lab.exported("M1") == [session_dict(one)] and lab.exported("M2") == [session_dict(two)]
    assert lab.count(Trial) == 13
    pk = lab.session_row("S2").id
    columns = [Trial.__table__.c[name] for name in TRIAL_COLUMNS]
    with lab.db.reader_engine.connect() as conn:
        stored = conn.execute(select(*columns).where(columns[0] == pk).order_by(columns[1]))
        assert [tuple(row) for row in stored] == trial_row_tuples(pk, session_dict(two))


def test_duplicates_are_stored_once_and_change_nothing(lab: Harness) -> None:
    docs = synthetic_session(trials=8)
    lab.handle(lab.docs(docs[:10]))
    lab.handle(lab.docs(docs[:10] + docs[5:10]))  # replayed after a reconnect
    assert lab.count(StoredDocument) == 10
    lab.handle(lab.docs(docs))
    lab.handle(lab.docs(docs))
    assert lab.count(StoredDocument) == len(docs)
    assert lab.exported("M1") == [session_dict(docs)]
    assert lab.session_row(docs[0].session_id).trial_count == 8


def test_documents_in_any_order_make_the_same_session(lab: Harness) -> None:
    docs = synthetic_session(trials=20, seed=5)
    shuffled = docs[:]
    random.Random(1).shuffle(shuffled)
    for start in range(0, len(shuffled), 7):
        lab.handle(lab.docs(shuffled[start : start + 7]))
    assert lab.exported("M1") == [session_dict(docs)]
    assert len(lab.sink.of(CommittedCommand)) == 1
    assert lab.sink.of(ResendCommand) == []


def test_counts_of_a_running_session_are_written_at_the_next_tick(lab: Harness) -> None:
    docs = synthetic_session(trials=10, seed=2)
    trial_ends = [i for i, d in enumerate(docs) if d.kind == "trial_end"]
    upto = trial_ends[3] + 1
    lab.handle(lab.docs(docs[:upto]))
    lab.ingest.tick()
    row = lab.session_row(docs[0].session_id)
    assert (row.trial_count, row.complete) == (4, False)
    lab.restart()  # counts are rebuilt from the stored documents
    lab.handle(lab.docs(docs[upto : trial_ends[5] + 1]))
    lab.ingest.tick()
    assert lab.session_row(docs[0].session_id).trial_count == 6


# ---------------------------------------------------------------- gaps


def test_documents_are_stored_with_their_exact_times_and_text(lab: Harness) -> None:
    """On PostgreSQL a batch's documents go to the server as one JSON parameter: the times
    must come back to the last bit, the text unchanged, and an infinite ``t`` (which a
    payload may carry, and JSON cannot as a number) stored rather than refusing the batch."""
    docs = synthetic_session(trials=2, seed=5)
    odd = {1: 1 / 3 + 1_800_000_000, 3: 5e-324}
    docs = [d.model_copy(update={"t": odd.get(d.seq, d.t)}) for d in docs]
    texts = {d.seq: dump_document(d) for d in docs}
    texts[2] = texts[2].replace(f'"t":{docs[2].t!r}', '"t":Infinity')
    assert "Infinity" in texts[2]
    lab.clock.now = 1_800_000_000.123456789
    lab.handle(lab.status(), [lab.message(TOPICS.events("1"), text) for text in texts.values()])
    with lab.db.reader() as session:
        stored = {
            d.seq: (d.t, d.received_at, d.body)
            for d in session.scalars(select(StoredDocument)).all()
        }
    times = {d.seq: d.t for d in docs} | {2: float("inf")}
    assert stored == {seq: (times[seq], lab.clock.now, texts[seq]) for seq in texts}


def test_a_gap_is_asked_for_again_after_a_grace_period_and_at_most_every_interval(
    lab: Harness,
) -> None:
    docs = synthetic_session(trials=10)
    lab.handle(lab.status(state="running", session_id=docs[0].session_id))
    lab.handle(lab.docs(docs[:5] + docs[9:15]))  # 5..8 lost
    lab.ingest.tick()
    assert lab.sink.of(ResendCommand) == []  # might still be on its way
    lab.clock.advance(1.5)
    lab.ingest.tick()
    (resend,) = lab.sink.of(ResendCommand)
    assert (resend.session_id, resend.from_seq, resend.to_seq) == (docs[0].session_id, 5, 8)
    lab.clock.advance(1)
    lab.ingest.tick()
    assert len(lab.sink.of(ResendCommand)) == 1  # rate-limited
    lab.clock.advance(5)
    lab.ingest.tick()
    assert len(lab.sink.of(ResendCommand)) == 2
    lab.handle(lab.docs(docs[5:9]))  # the resend arrives
    lab.handle(lab.docs(docs[15:]))
    lab.clock.advance(10)
    lab.ingest.tick()
    assert len(lab.sink.of(ResendCommand)) == 2
    assert lab.exported("M1") == [session_dict(docs)]


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_the_tick_asks_for_gaps_without_waiting_on_a_stream_a_batch_holds(lab: Harness) -> None:
    """Two collectors of a group: one's batch holds session A's stream while the other's
    tick asks for gaps. The tick claimed its resends one by one, waiting on the batch's
    lock (a deadlock when that batch then waited on a stream the tick held, bench_load run
    D); it now skips the held stream this tick and asks for it on a later one."""
    held, free = synthetic_session(trials=6, seed=1), synthetic_session(trials=6, seed=2)
    lab.handle(lab.status(state="running", session_id="elsewhere"))
    lab.handle(lab.docs(held[:2] + held[4:]), lab.docs(free[:2] + free[4:]))  # 2-3 lost in both
    lab.clock.advance(2)
    other = lab.db.engine.connect()
    transaction = other.begin()
    other.execute(
        text("SELECT 1 FROM streams WHERE session_id = :sid FOR UPDATE"),
        {"sid": held[0].session_id},
    )
    tick = threading.Thread(target=lab.ingest.tick, daemon=True)
    try:
        tick.start()
        tick.join(10)
        waited = tick.is_alive()
    finally:
        transaction.rollback()  # the batch ends (and frees a tick that waited on it)
        other.close()
        tick.join(10)
    assert not waited, "the tick waited on the batch's lock"
    assert [r.session_id for r in lab.sink.of(ResendCommand)] == [free[0].session_id]
    lab.clock.advance(SETTINGS.resend_interval)
    lab.ingest.tick()
    asked = sorted(r.session_id for r in lab.sink.of(ResendCommand))
    assert asked == sorted([free[0].session_id, free[0].session_id, held[0].session_id])


def test_a_session_end_promising_more_documents_than_stored_triggers_a_resend(
    lab: Harness,
) -> None:
    docs = synthetic_session(trials=6)
    lab.handle(lab.status(state="idle"))
    lab.handle(lab.docs(docs[:-3] + docs[-1:]))  # the two before the end are lost
    lab.clock.advance(2)
    lab.ingest.tick()
    (resend,) = lab.sink.of(ResendCommand)
    assert (resend.from_seq, resend.to_seq) == (len(docs) - 3, len(docs) - 2)


def test_a_lost_session_end_is_asked_for_once_the_box_has_moved_on(lab: Harness) -> None:
    docs = synthetic_session(trials=6)
    sid = docs[0].session_id
    lab.handle(lab.status(state="running", session_id=sid), lab.docs(docs[:-1]))
    lab.clock.advance(20)
    lab.handle(lab.status(state="running", session_id=sid))
    lab.ingest.tick()
    assert lab.sink.of(ResendCommand) == []  # still running: no end yet is normal
    lab.handle(lab.status(state="idle"))
    lab.clock.advance(6)
    lab.handle(lab.status(state="idle"))
    lab.ingest.tick()
    (resend,) = lab.sink.of(ResendCommand)
    assert (resend.from_seq, resend.to_seq) == (len(docs) - 1, None)


def test_no_resend_goes_to_a_box_that_is_offline(lab: Harness) -> None:
    docs = synthetic_session(trials=6)
    lab.handle(lab.status(state="offline"), lab.docs(docs[:3] + docs[5:]))
    lab.clock.advance(10)
    lab.ingest.tick()
    assert lab.sink.of(ResendCommand) == []


def test_a_box_that_no_longer_holds_a_session_stops_the_asking(lab: Harness) -> None:
    docs = synthetic_session(trials=6)
    lab.handle(lab.status(), lab.docs(docs[:3] + docs[5:]))
    lab.clock.advance(2)
    lab.ingest.tick()
    (resend,) = lab.sink.of(ResendCommand)
    lab.handle(lab.reply("1", resend, ok=False, code="not_found", error="not in the journal"))
    lab.clock.advance(60)
    lab.ingest.tick()
    assert len(lab.sink.of(ResendCommand)) == 1
    assert "no longer holds" in (lab.session_row(docs[0].session_id).problem or "")


# ---------------------------------------------------------------- committed


def test_committed_is_confirmed_by_the_reply_and_repeated_until_it_is(lab: Harness) -> None:
    docs = synthetic_session(trials=4)
    lab.handle(lab.status(), lab.docs(docs))
    (first,) = lab.sink.of(CommittedCommand)
    lab.clock.advance(31)
    lab.handle(lab.status())
    lab.ingest.tick()
    second = lab.sink.of(CommittedCommand)[-1]
    assert second.session_id == first.session_id and second.request_id != first.request_id
    lab.handle(lab.reply("1", second, data={"pruned": True}))
    assert lab.session_row(docs[0].session_id).committed_at == lab.clock.now
    lab.clock.advance(100)
    lab.handle(lab.status())
    lab.ingest.tick()
    assert len(lab.sink.of(CommittedCommand)) == 2


def test_a_box_replaying_a_stored_session_gets_committed_again(lab: Harness) -> None:
    docs = synthetic_session(trials=4)
    lab.handle(lab.status(), lab.docs(docs))
    lab.clock.advance(3)
    lab.handle(lab.docs(docs[-3:]))  # the box never heard our committed
    assert len(lab.sink.of(CommittedCommand)) == 2
    assert lab.count(StoredDocument) == len(docs)


def test_a_restarted_collector_resumes_unconfirmed_commits(lab: Harness) -> None:
    docs = synthetic_session(trials=4)
    lab.handle(lab.status(), lab.docs(docs))
    lab.restart()
    lab.clock.advance(1)
    lab.handle(lab.status())  # a live status: the box is online
    lab.clock.advance(40)
    lab.handle(lab.status())
    lab.ingest.tick()
    assert len(lab.sink.of(CommittedCommand)) == 2


def test_a_session_the_broker_lost_entirely_is_asked_for_whole_from_the_box_s_status(
    lab: Harness,
) -> None:
    """Not one document of a session reached the collector (a broker restarted without
    persistence, or one that keeps nothing for offline clients); the box's status lists
    it as uncommitted, so the collector asks for all of it, once per resend interval."""
    lost = synthetic_session(mouse="M7", trials=5, seed=4)
    sid = lost[0].session_id
    lab.handle(lab.status(uncommitted=[sid]))
    lab.ingest.tick()
    assert lab.sink.of(ResendCommand) == []  # a box back online replays right after its status
    lab.clock.advance(SETTINGS.tail_grace)
    lab.ingest.tick()
    (resend,) = lab.sink.of(ResendCommand)
    assert (resend.session_id, resend.from_seq, resend.to_seq) == (sid, 0, None)
    lab.clock.advance(1)
    lab.handle(lab.status(uncommitted=[sid]))
    lab.ingest.tick()
    assert len(lab.sink.of(ResendCommand)) == 1  # not again within the resend interval
    lab.handle(lab.docs(lost))  # the box answers the resend
    assert lab.exported("M7") == [session_dict(lost)]
    (committed,) = lab.sink.of(CommittedCommand)
    assert committed.session_id == sid


def test_a_listed_session_whose_documents_follow_its_status_is_not_asked_for(
    lab: Harness,
) -> None:
    docs = synthetic_session(mouse="M9", trials=4, seed=6)
    lab.handle(lab.status(uncommitted=[docs[0].session_id]))  # back online: status first,
    lab.ingest.tick()
    lab.clock.advance(1)
    lab.handle(lab.docs(docs))  # then its journal's replay
    lab.clock.advance(SETTINGS.tail_grace)
    lab.handle(lab.status(uncommitted=[docs[0].session_id]))
    lab.ingest.tick()
    assert lab.sink.of(ResendCommand) == []
    assert lab.exported("M9") == [session_dict(docs)]


def test_a_listed_session_stored_before_a_restart_is_committed_not_asked_for(
    lab: Harness,
) -> None:
    docs = synthetic_session(mouse="M8", trials=4, seed=5)
    lab.handle(lab.status(), lab.docs(docs))
    assert len(lab.sink.of(CommittedCommand)) == 1  # the box never got it
    lab.restart()
    lab.clock.advance(40)
    lab.handle(lab.status(uncommitted=[docs[0].session_id]))
    lab.ingest.tick()
    assert lab.sink.of(ResendCommand) == []
    assert [c.session_id for c in lab.sink.of(CommittedCommand)][-1] == docs[0].session_id
    assert len(lab.sink.of(CommittedCommand)) == 2


def test_the_running_session_and_offline_boxes_are_not_asked_for(lab: Harness) -> None:
    lab.handle(lab.status(state="running", session_id="now", uncommitted=["now"]))
    lab.handle(lab.status(box="2", state="offline", uncommitted=["gone"]))
    lab.ingest.tick()
    assert lab.sink.of(ResendCommand) == []


# ---------------------------------------------------------------- boxes


def test_box_status_and_last_seen_are_kept(lab: Harness) -> None:
    lab.handle(lab.status("2", state="running", mouse="M1", trial=3))
    with lab.db.reader() as session:
        box = session.get(Box, "2")
        assert box is not None
        assert (box.state, box.last_seen) == ("running", lab.clock.now)
        assert json.loads(box.status or "")["trial"] == 3


def test_a_silent_box_is_marked_offline_without_a_last_will(lab: Harness) -> None:
    lab.handle(lab.status("1", state="running"))
    lab.clock.advance(29)
    lab.ingest.tick()
    assert lab.box("1").state == "running"
    lab.clock.advance(2)
    lab.ingest.tick()
    with lab.db.reader() as session:
        box = session.get(Box, "1")
        assert box is not None
        assert box.state == "offline"
        assert "no message for 30 s" in (box.offline_reason or "")
    lab.handle(lab.docs(synthetic_session(trials=1)[:1]))  # it speaks again
    with lab.db.reader() as session:
        box = session.get(Box, "1")
        assert box is not None and (box.state, box.offline_reason) == ("running", None)


def test_a_retained_status_is_not_taken_as_a_sign_of_life(lab: Harness) -> None:
    lab.handle(lab.status("1", state="idle", retained=True))
    lab.clock.advance(31)
    lab.ingest.tick()
    assert lab.box("1").state == "offline"


def test_the_last_will_marks_a_box_offline(lab: Harness) -> None:
    lab.handle(lab.status("1", state="idle"))
    lab.handle(lab.status("1", state="offline"))
    with lab.db.reader() as session:
        box = session.get(Box, "1")
        assert box is not None and box.state == "offline"
        assert "Last Will" in (box.offline_reason or "")


def test_a_collector_behind_its_queue_times_no_box_out_and_a_will_still_counts(
    lab: Harness,
) -> None:
    """A thousand rigs on one collector: behind its queue, it read each box's status late, so
    every box looked silent for 30 s and was marked offline and back (docs/operations.md)."""
    lab.handle(lab.status("1", state="running"), lab.status("2", state="idle"))
    for _ in range(6):  # 60 s behind: batch after full batch of other boxes' messages
        lab.clock.advance(10)
        lab.ingest.handle([lab.status("3", state="idle")], behind=True)
        lab.ingest.tick()
    assert (lab.box("1").state, lab.box("2").state) == ("running", "idle")
    lab.ingest.handle([lab.status("2", state="offline")], behind=True)  # its Last Will
    will = lab.box("2")
    assert will.state == "offline" and "Last Will" in (will.offline_reason or "")
    # Box 1's late status comes in the batch that catches up: it was alive all along.
    lab.handle(lab.status("1", state="running"))
    lab.clock.advance(31)
    lab.ingest.tick()
    assert lab.box("1").state == "offline"  # silent since the collector caught up: it is


def test_a_box_silent_through_a_backlog_is_timed_out_a_full_timeout_after_it(
    lab: Harness,
) -> None:
    lab.handle(lab.status("1", state="running"), lab.status("2", state="running"))
    lab.clock.advance(40)
    lab.ingest.handle([lab.status("3", state="idle")], behind=True)
    lab.ingest.tick()
    lab.clock.advance(1)
    lab.handle(lab.status("1", state="running"))  # caught up: box 2 said nothing since
    for _ in range(3):
        lab.clock.advance(10)
        lab.ingest.tick()
        assert lab.box("2").state == "running"  # 30 s from the catching up, not yet over
        lab.handle(lab.status("1", state="running"))
    lab.clock.advance(1)
    lab.ingest.tick()
    silent = lab.box("2")
    assert silent.state == "offline" and "no message for 30 s" in (silent.offline_reason or "")
    assert lab.box("1").state == "running"


def test_a_box_is_not_timed_out_while_the_database_refuses_batches(lab: Harness) -> None:
    lab.handle(lab.status("1", state="running"))
    with lab.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE documents RENAME TO documents_away"))
    lab.clock.advance(40)
    with pytest.raises(Exception):  # noqa: B017  (whatever the database raises)
        lab.handle(lab.docs(synthetic_session(trials=1)[:2]))
    lab.ingest.tick()  # the boxes table still answers: the tick alone must not judge
    assert lab.box("1").state == "running"
    with lab.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE documents_away RENAME TO documents"))
    lab.handle(lab.docs(synthetic_session(trials=1)[:2]))
    assert lab.box("1").state == "running"


def test_a_batch_writes_its_boxes_in_one_statement_in_box_order(lab: Harness) -> None:
    """One UPDATE per status was half a 1000-rig collector's busy time, and statuses then
    times in two passes deadlocked two collectors of a group (box 5 then 3 against 3 then 5).
    """
    updates: list[list[str | None]] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE BOXES"):
            context = args[1]
            updates.append([row.get("box_id") for row in context.compiled_parameters])

    lab.handle(lab.status("5", state="idle"), lab.status("3", state="idle"))  # the boxes are new
    lab.clock.advance(5)
    event.listen(lab.db.ingest_engine, "before_cursor_execute", record)
    try:
        lab.handle(
            lab.docs(synthetic_session(trials=1)[:2], box="5"),
            lab.status("3", state="running"),
            lab.status("5", state="running"),
            lab.docs(synthetic_session(trials=1)[:2], box="3"),
        )
    finally:
        event.remove(lab.db.ingest_engine, "before_cursor_execute", record)
    assert updates == [["3", "5"]]
    assert lab.box("3").state == lab.box("5").state == "running"
    assert lab.box("5").last_seen == lab.clock.now


def test_a_cohort_starting_together_is_stored_in_three_statements(lab: Harness) -> None:
    """A cohort's sessions start in one batch: three statements each, one after the other,
    were up to a third of a batch's time on PostgreSQL (more with two writers)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        words = statement.split()
        if words[:3] == ["INSERT", "INTO", "mice"] or words[:3] == ["INSERT", "INTO", "sessions"]:
            statements.append(" ".join(words[:3]))
        elif "max(sessions.position)" in statement:
            statements.append("SELECT max(position)")

    with lab.db.engine.begin() as conn:  # a mouse already known, with a later session
        ensure_mouse(conn, "M0", lab.clock())
        conn.execute(
            SESSIONS.insert(),
            [{"session_id": "old", "mouse_id": "M0", "box": "9", "origin": "recorded",
              "complete": True, "position": T0 + 50, "start_time": T0 + 50,
              "trial_count": 0, "reward_count": 0, "created_at": lab.clock()}],
        )  # fmt: skip
    # Eight boxes, two of them training M0, whose sessions go after the stored one.
    sessions = [
        synthetic_session(mouse="M0" if n < 2 else f"M{n}", box=str(n), trials=1, seed=n)
        for n in range(8)
    ]
    event.listen(lab.db.ingest_engine, "before_cursor_execute", record)
    try:
        lab.handle(*[lab.docs(docs[:2], box=str(n)) for n, docs in enumerate(sessions)])
    finally:
        event.remove(lab.db.ingest_engine, "before_cursor_execute", record)
    assert sorted(statements) == [
        "INSERT INTO mice",
        "INSERT INTO sessions",
        "SELECT max(position)",
    ]
    rows = [lab.session_row(docs[0].session_id) for docs in sessions]
    assert [row.mouse_id for row in rows] == ["M0", "M0"] + [f"M{n}" for n in range(2, 8)]
    assert all(row.position == T0 for row in rows[2:])
    ordered = sorted(rows[:2], key=lambda row: str(row.session_id))
    assert T0 + 50 <= ordered[0].position <= ordered[1].position
    with lab.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Mouse)) == 7  # M0 and M2-M7


def test_the_tick_parses_a_box_s_status_only_when_it_changed(
    lab: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every tick reads every box's status: parsing 1000 of them twice a second was a fifth
    of a 1000-rig collector's time."""
    import controller.collector.presence as presence

    parsed: list[str] = []

    def counting(text: str | None) -> Status | None:
        status = status_or_none(text)
        parsed.append(status.box if status is not None else "")
        return status

    monkeypatch.setattr(presence, "status_or_none", counting)
    lab.handle(lab.status("1", state="running", trial=1), lab.status("2", state="idle"))
    lab.ingest.tick()
    lab.ingest.tick()
    assert sorted(parsed) == ["1", "2"]
    lab.handle(lab.status("1", state="running", trial=2))
    lab.ingest.tick()
    assert sorted(parsed) == ["1", "1", "2"]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("lab/rigs/1/events", b"{not json", "not valid JSON|Invalid JSON"),
        ("lab/rigs/1/events", b"\xff\xfe", "Invalid JSON|UTF-8|utf-8"),
        ("lab/rigs/1/events", b'{"kind": "trial_end", "seq": 1}', "invalid session document"),
        ("lab/rigs/1/status", b'{"box": "1", "state": "dancing"}', "invalid status"),
        ("lab/rigs/1/reply", b"[]", "invalid reply"),
        ("lab/rigs/bad box!/events", b"{}", "invalid box id|not a reachlab"),
        ("lab/rigs/1/cmd", b"{}", "does not take 'cmd' messages"),
        ("lab/rigs/1/events/extra", b"{}", "not a reachlab rig topic"),
    ],
)
def test_a_bad_message_becomes_a_dead_letter_with_its_reason(
    lab: Harness, topic: str, payload: bytes, reason: str
) -> None:
    docs = synthetic_session(trials=3)
    lab.handle(lab.docs(docs[:4]), lab.message(topic, payload), lab.docs(docs[4:]))
    with lab.db.reader() as session:
        (letter,) = session.scalars(select(DeadLetter)).all()
    assert letter.topic == topic and letter.payload == payload
    assert pytest.approx(letter.received_at) == lab.clock.now
    import re

    assert re.search(reason, letter.reason), letter.reason
    assert lab.exported("M1") == [session_dict(docs)]  # the valid traffic went on


def test_a_message_outside_the_lab_s_topics_is_ignored_not_kept(lab: Harness) -> None:
    """The collector subscribes only to its prefix's rig topics; what a broker delivers
    from elsewhere (amqtt replays other topics' retained messages) is not this lab's."""
    docs = synthetic_session(trials=3)
    lab.handle(
        lab.docs(docs[:4]),
        lab.message("other-lab/rigs/1/status", b'{"box": "1", "state": "offline"}'),
        lab.message("elsewhere/x", b"{}"),
        lab.docs(docs[4:]),
    )
    with lab.db.reader() as session:
        assert session.scalars(select(DeadLetter)).all() == []
        assert session.scalar(select(func.count()).select_from(Box)) == 1  # only lab's box 1
    assert lab.ingest.stored_documents == len(docs)


def test_a_document_on_another_box_topic_is_a_dead_letter(lab: Harness) -> None:
    (doc,) = synthetic_session(box="1", trials=0)[:1]
    lab.handle(lab.message(TOPICS.events("2"), dump_document(doc)))
    with lab.db.reader() as session:
        (letter,) = session.scalars(select(DeadLetter)).all()
    assert "box '1' on the topic of box '2'" in letter.reason
    assert lab.count(StoredDocument) == 0


def test_a_session_that_cannot_be_rebuilt_is_kept_with_its_problem(lab: Harness) -> None:
    docs = synthetic_session(trials=3)
    # A stream whose trial_end has no trial_start: schema-valid documents, broken session.
    broken = [d for d in docs if d.kind != "trial_start"]
    broken = [d.model_copy(update={"seq": i}) for i, d in enumerate(broken)]
    lab.handle(lab.docs(broken))
    row = lab.session_row(docs[0].session_id)
    assert not row.complete and "cannot rebuild" in (row.problem or "")
    assert lab.sink.of(CommittedCommand) == []  # the box keeps its journal
    assert lab.count(StoredDocument) == len(broken)


def test_a_failed_transaction_stores_nothing_and_the_batch_can_be_retried(
    lab: Harness, db_url: str
) -> None:
    docs = synthetic_session(trials=5)
    lab.handle(lab.docs(docs[:4]))
    with lab.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE documents RENAME TO documents_away"))
    with pytest.raises(Exception):  # noqa: B017  (whatever the database raises)
        lab.handle(lab.docs(docs[4:]))
    with lab.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE documents_away RENAME TO documents"))
    lab.handle(lab.docs(docs[4:]))
    assert lab.exported("M1") == [session_dict(docs)]
