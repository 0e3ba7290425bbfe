"""The agent's journal (DESIGN §6) on its own: SQLite files in a temp folder, no broker.

The outbox is tested here too, with a fake publisher standing in for paho:
what it publishes, in which order, and what it marks acknowledged.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.journal import CommitRefused, Journal, JournalError, SessionNotFound
from agent.mqtt import Outbox, Sent
from agent.runtime import RigRuntime
from shared.config import TaskConfig
from shared.digest import session_digest
from shared.documents import Document, SessionEnd, TrialEnd, build_session, parse_document

T0 = 1_700_000_000.0


def run_session(
    seed: int = 1, duration: float = 120, session_id: str = "s1", stop_after: int | None = None
) -> list[Document]:
    """The documents of a simulated session on virtual time; ``stop_after`` docs cuts it short."""
    runtime = RigRuntime.create(sim=True, time_scale=math.inf, seed=seed, start_time=T0)
    docs: list[Document] = []
    session = runtime.new_session(
        config=TaskConfig.from_dict({"duration": duration}),
        mouse="M1",
        box="1",
        session_id=session_id,
        metadata={"trainer": "test"},
        sink=docs.append,
    )
    if stop_after is not None:
        session.add_sink(lambda _doc: runtime.loop.stop() if len(docs) >= stop_after else None)
    session.start()
    runtime.loop.run(until=lambda: session.ended)
    runtime.close()
    return docs


@pytest.fixture(scope="module")
def session_docs() -> list[Document]:
    docs = run_session()
    assert isinstance(docs[-1], SessionEnd) and len(docs) > 20
    return docs


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    with Journal.open(tmp_path / "journal.sqlite3") as journal:
        yield journal


def test_a_new_journal_is_in_wal_mode_with_full_sync(journal: Journal) -> None:
    assert journal.journal_mode() == "wal"
    assert journal.synchronous() == 2  # FULL: a document survives a power cut
    raw = sqlite3.connect(journal.path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_appended_documents_are_on_disk_in_order_and_unacknowledged(
    journal: Journal, session_docs: list[Document]
) -> None:
    entries = [journal.append(doc) for doc in session_docs]
    assert [e.seq for e in entries] == list(range(len(session_docs)))
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    # Another connection (another process) sees them: they are committed.
    with Journal.open_readonly(journal.path) as reader:
        assert reader.pending_count() == len(session_docs)
        assert reader.load("s1") == session_docs
    info = journal.session("s1")
    assert info is not None
    assert (info.mouse, info.box, info.state, info.status) == ("M1", "1", "ended", "complete")
    assert info.last_seq == len(session_docs) - 1


def test_a_document_out_of_sequence_is_refused(
    journal: Journal, session_docs: list[Document]
) -> None:
    journal.append(session_docs[0])
    with pytest.raises(JournalError, match="expected 1"):
        journal.append(session_docs[2])
    journal.append(session_docs[1])
    with pytest.raises(JournalError, match="expected 2"):
        journal.append(session_docs[1])
    with pytest.raises(JournalError, match="already in the journal"):
        journal.append(session_docs[0])


def test_acknowledged_documents_leave_the_pending_list_and_the_rest_replay_in_order(
    journal: Journal, session_docs: list[Document]
) -> None:
    entries = [journal.append(doc) for doc in session_docs]
    acked = {entries[i].id for i in (0, 1, 2, 5, 9)}
    journal.mark_acked(acked)
    pending = journal.pending(after_id=0, limit=1000)
    assert [e.id for e in pending] == [e.id for e in entries if e.id not in acked]
    assert [e.seq for e in pending] == sorted(e.seq for e in pending)
    # Paging through with the cursor gives the same order.
    paged, cursor = [], 0
    while batch := journal.pending(after_id=cursor, limit=4):
        paged += batch
        cursor = batch[-1].id
    assert paged == pending


def test_resend_serves_any_range_of_a_session(
    journal: Journal, session_docs: list[Document]
) -> None:
    for doc in session_docs:
        journal.append(doc)
    assert [e.seq for e in journal.entries("s1", 3, 7)] == [3, 4, 5, 6, 7]
    assert [e.seq for e in journal.entries("s1", 10)] == list(range(10, len(session_docs)))
    with pytest.raises(SessionNotFound):
        journal.entries("nope")


def test_a_session_is_pruned_only_when_committed_after_its_end_with_matching_last_seq(
    journal: Journal, session_docs: list[Document]
) -> None:
    last = len(session_docs) - 1
    digest = session_digest(session_docs)  # what the controller would send
    for doc in session_docs[:-1]:
        journal.append(doc)
    with pytest.raises(CommitRefused, match="still running"):
        journal.commit("s1", last, digest, now=T0)
    journal.append(session_docs[-1])
    # Everything acknowledged is still no reason to prune: only "committed" is.
    journal.mark_acked(e.id for e in journal.entries("s1"))
    assert len(journal.entries("s1")) == len(session_docs)
    with pytest.raises(CommitRefused, match="does not match"):
        journal.commit("s1", last - 1, digest, now=T0)
    with pytest.raises(SessionNotFound):
        journal.commit("other", last, digest, now=T0)
    assert len(journal.entries("s1")) == len(session_docs)

    assert journal.commit("s1", last, digest, now=T0) is True
    assert journal.sessions() == []
    info = journal.session("s1")
    assert info is not None and info.state == "committed" and info.documents == 0
    assert journal.commit("s1", last, digest, now=T0) is False  # a repeated committed is harmless
    with pytest.raises(SessionNotFound, match="pruned"):
        journal.entries("s1")


def test_ids_never_go_backwards_after_a_prune(
    journal: Journal, session_docs: list[Document]
) -> None:
    entries = [journal.append(doc) for doc in session_docs]
    journal.commit("s1", len(session_docs) - 1, session_digest(session_docs), now=T0)
    other = run_session(seed=2, duration=30, session_id="s2")
    first = journal.append(other[0])
    assert first.id > entries[-1].id


def test_a_session_left_running_is_closed_as_aborted_when_the_journal_reopens(
    tmp_path: Path,
) -> None:
    docs = run_session(stop_after=25)
    assert not isinstance(docs[-1], SessionEnd)
    path = tmp_path / "journal.sqlite3"
    with Journal.open(path) as journal:
        for doc in docs:
            journal.append(doc)
    # The process died here. The next agent opens the same journal.
    with Journal.open(path) as journal:
        closed = journal.close_interrupted()
        assert len(closed) == 1
        end = closed[0]
        assert (end.status, end.seq, end.t) == ("aborted", docs[-1].seq + 1, docs[-1].t)
        assert end.duration == pytest.approx(docs[-1].t - docs[0].t)
        stored = journal.load("s1")
        assert stored == [*docs, end]
        session = build_session(stored)
        assert session["status"] == "aborted"
        assert end.counts["trials"] == len(session["trials"])
        info = journal.session("s1")
        assert info is not None and info.state == "ended" and info.last_seq == end.seq
        assert journal.uncopied()[0].session_id == "s1"
        assert journal.close_interrupted() == []  # only once


def test_a_second_writer_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal.open(path), pytest.raises(JournalError, match="already using"):
        Journal.open(path)
    Journal.open(path).close()  # released with the first


def test_a_file_that_is_not_a_journal_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not SQLite " * 100)
    with pytest.raises(JournalError, match="cannot use"):
        Journal.open(path)
    with pytest.raises(JournalError, match="no journal"):
        Journal.open_readonly(tmp_path / "missing.sqlite3")


def test_sqlite_write_failures_are_journal_errors_that_say_so(
    journal: Journal, session_docs: list[Document]
) -> None:
    entry = journal.append(session_docs[0])
    with Journal.open_readonly(journal.path) as reader:
        with pytest.raises(JournalError, match="cannot write to the journal"):
            reader.mark_acked([entry.id])
        with pytest.raises(JournalError, match="cannot write to the journal"):
            reader.append(session_docs[1])
    journal.append(session_docs[1])  # the writer is unaffected


def test_rebuild_gives_the_session_dict_the_engine_built(
    journal: Journal, session_docs: list[Document]
) -> None:
    for doc in session_docs:
        journal.append(doc)
    rebuilt = journal.rebuild("s1")
    assert rebuilt == build_session(session_docs)
    # Not only the same fold twice: the dict says what the documents say, read directly.
    ends = [d for d in session_docs if isinstance(d, TrialEnd)]
    assert [t["outcome"] for t in rebuilt["trials"]] == [d.outcome for d in ends]
    assert [t["end"] for t in rebuilt["trials"]] == [d.t for d in ends]
    last = session_docs[-1]
    assert isinstance(last, SessionEnd)
    assert (rebuilt["status"], rebuilt["end_time"]) == (last.status, last.end_time)
    assert len(rebuilt["trials"]) == last.counts["trials"] > 0
    assert rebuilt["trainer"] == "test"


# ---------------------------------------------------------------- the outbox


class FakeLink:
    """Records publishes like paho would, handing out message ids; can refuse (queue full)."""

    def __init__(self) -> None:
        self.published: list[tuple[int, str, bytes]] = []
        self.mid = 0
        self.refuse = False

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> Sent:
        self.mid += 1
        if self.refuse:
            return Sent(self.mid, queued=False)
        self.published.append((self.mid, topic, payload))
        return Sent(self.mid, queued=True)

    def seqs(self) -> list[int]:
        return [parse_document(p).seq for _, _, p in self.published]

    def mids(self) -> list[int]:
        return [m for m, _, _ in self.published]


def test_outbox_publishes_nothing_while_disconnected_and_everything_in_order_on_connect(
    journal: Journal, session_docs: list[Document]
) -> None:
    link = FakeLink()
    outbox = Outbox(journal, link, "t/events", window=5)
    for doc in session_docs[:12]:
        journal.append(doc)
        outbox.pump()
    assert link.published == []  # the journal is the queue
    outbox.connected()
    assert link.seqs() == [0, 1, 2, 3, 4]  # at most `window` awaiting PUBACK
    outbox.acked(link.mids()[:2])
    assert link.seqs() == [0, 1, 2, 3, 4, 5, 6]
    assert journal.pending_count() == 10
    while outbox.in_flight:
        outbox.acked(link.mids())
    assert link.seqs() == list(range(12))
    assert journal.pending_count() == 0


def test_outbox_replays_unacknowledged_documents_from_the_oldest_after_a_reconnect(
    journal: Journal, session_docs: list[Document]
) -> None:
    link = FakeLink()
    outbox = Outbox(journal, link, "t/events", window=100)
    outbox.connected()
    for doc in session_docs[:10]:
        journal.append(doc)
        outbox.pump()
    outbox.acked(link.mids()[:4])
    outbox.disconnected()
    for doc in session_docs[10:15]:
        journal.append(doc)
        outbox.pump()
    before = len(link.published)
    outbox.acked(link.mids()[4:6])  # a late PUBACK of the old connection counts for nothing
    assert journal.pending_count() == 11
    outbox.connected()
    assert link.seqs()[before:] == list(range(4, 15))


def test_outbox_serves_resend_requests_and_waits_when_paho_refuses(
    journal: Journal, session_docs: list[Document]
) -> None:
    link = FakeLink()
    outbox = Outbox(journal, link, "t/events", window=100)
    outbox.connected()
    for doc in session_docs[:6]:
        journal.append(doc)
        outbox.pump()
    outbox.acked(link.mids())
    outbox.resend(journal.entries("s1", 2, 3))
    assert link.seqs()[-2:] == [2, 3]
    link.refuse = True
    journal.append(session_docs[6])
    outbox.pump()
    assert link.seqs()[-1] == 3
    link.refuse = False
    outbox.acked([])  # any PUBACK pumps again
    assert link.seqs()[-1] == 6
