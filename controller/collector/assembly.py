"""Session assembly: each task session's documents stored once, owned by one box, gaps asked for.

For every session a batch touches, its :class:`~controller.models.Stream` row
is created if new and locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
has one writer at a time), so what it says about the session is the truth
while this transaction decides:

* **whose it is**: the box whose ``session_start`` opened it. A document of it
  from any other box, a ``session_start`` on another box reusing its id, is a
  dead letter; documents another box sent before the start came are taken
  out to dead letters when it comes.
* **which seqs can be real**: nothing past the ``session_end``'s seq, nothing
  more than ``seq_window`` past the highest stored one.
* **what is new**: ``INSERT ... ON CONFLICT (session_id, seq) DO NOTHING``; only
  what was inserted is counted, so duplicates from any collector change nothing.

What is missing is asked for by :mod:`controller.collector.resend`.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from controller.collector.decode import IngestSettings, dead_letter
from controller.models import StoredDocument, Stream, TrainingSession
from controller.store import MICE, insert_ignore
from shared.documents import (
    Document,
    Reward,
    SessionEnd,
    SessionStart,
    TrialEnd,
    count_session,
    kind_of,
)
from shared.errors import InvalidIdError
from shared.ids import check_mouse_id
from shared.protocol import Topics

log = logging.getLogger("labctl.collector")

DOCUMENTS: Table = StoredDocument.__table__  # type: ignore[assignment]
STREAMS: Table = Stream.__table__  # type: ignore[assignment]
SESSIONS: Table = TrainingSession.__table__  # type: ignore[assignment]
#: The seq column is a 32-bit integer on PostgreSQL.
MAX_SEQ = 2**31 - 1

_SQLITE_INSERT_DOCUMENT = (
    "INSERT INTO documents (session_id, seq, kind, box, t, received_at, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, seq) DO NOTHING"
)
_DOCUMENT_COLUMNS = ("session_id", "seq", "kind", "box", "t", "received_at", "body")


_STREAM_COLUMNS = tuple(column.name for column in STREAMS.columns)
_STREAM_SELECT = ", ".join(_STREAM_COLUMNS)
_STREAM_COUNTS = (
    "session_id", "box", "asked_box", "stored", "max_seq", "last_seq", "status",
    "trials", "rewards", "last_doc_at", "problem", "resends",
)  # fmt: skip
_SQLITE_UPDATE_STREAM = (
    f"UPDATE streams SET {', '.join(f'{key} = ?' for key in _STREAM_COUNTS[1:])} "
    "WHERE session_id = ?"
)
_SESSION_COUNTS = ("session_id", "trials", "rewards", "last_seq", "status", "problem")
_PG_STREAM_ROW = f"({', '.join(['%s'] * len(_STREAM_COUNTS))})"
#: One UPDATE for all of a batch's streams (executemany would run one statement per row
#: on the server); each value cast to its column, as a VALUES column of NULLs is text.
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
_PG_UPDATE_STREAM = (
    "UPDATE streams SET "
    + ", ".join(
        f"{key} = CAST(v.{key} AS {STREAMS.c[key].type.compile(dialect=_PG)})"
        for key in _STREAM_COUNTS[1:]
    )
    + " FROM (VALUES {rows}) AS v("
    + ", ".join(_STREAM_COUNTS)
    + ") WHERE streams.session_id = v.session_id"
)
#: A batch's documents as one JSON parameter that the server unpacks: psycopg2 quotes each
#: parameter on the client, and 3,500 of them (500 rows of 7) cost more client CPU than the
#: server's work (8.7 against 3.6 ms a batch, 18.5 against 9.5 ms in all, measured). The
#: floats go as text (Python's repr, read back exactly) since JSON has no infinity or NaN,
#: which a document's ``t`` may be.
_PG_INSERT_DOCUMENTS = (
    f"INSERT INTO documents ({', '.join(_DOCUMENT_COLUMNS)}) "
    "SELECT session_id, seq, kind, box, CAST(t AS DOUBLE PRECISION), "
    "CAST(received_at AS DOUBLE PRECISION), body FROM json_to_recordset(%s) AS x("
    "session_id TEXT, seq INTEGER, kind TEXT, box TEXT, t TEXT, received_at TEXT, body TEXT) "
    "ON CONFLICT (session_id, seq) DO NOTHING RETURNING session_id, seq"
)
_UPDATE_SESSION = (
    update(SESSIONS)
    .where(SESSIONS.c.session_id == bindparam("p_session_id"), SESSIONS.c.complete.is_(False))
    .values(
        trial_count=bindparam("p_trials"),
        reward_count=bindparam("p_rewards"),
        last_seq=bindparam("p_last_seq"),
        status=bindparam("p_status"),
        problem=bindparam("p_problem"),
    )
)


def lock_streams(
    conn: Connection, session_ids: Iterable[str], skip_locked: bool = False
) -> dict[str, dict[str, Any]]:
    """The stream rows of ``session_ids``, locked for this transaction, in a fixed order (no
    two collectors can then wait on each other); with ``skip_locked``, only those no other
    transaction holds (on PostgreSQL: SQLite's writer holds the whole file anyway)."""
    wanted = sorted(session_ids)
    if not wanted:
        return {}
    # Plain SQL on the driver: SQLAlchemy's expanding IN and row mappings cost more per
    # batch than the query (once a batch, for every session in it).
    lock = ""
    if conn.dialect.name == "postgresql":
        lock = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    query = (
        f"SELECT {_STREAM_SELECT} FROM streams WHERE session_id IN "
        f"({', '.join([marker] * len(wanted))}) ORDER BY session_id{lock}"
    )
    return {
        row[0]: dict(zip(_STREAM_COLUMNS, row, strict=True))
        for row in conn.exec_driver_sql(query, tuple(wanted))
    }


class Assembly:
    """Stores documents into streams and asks boxes for what is missing."""

    def __init__(self, topics: Topics, settings: IngestSettings) -> None:
        self.topics = topics
        self.settings = settings

    # ------------------------------------------------------------ storing

    def store(
        self,
        conn: Connection,
        documents: list[tuple[Document, str, float]],
        now: float,
        dead: list[dict[str, Any]],
    ) -> tuple[int, set[str], bool]:
        """Store a batch's documents; returns how many were new, the sessions already
        complete that got documents again (their box missed ``committed``), and whether a
        session is now whole (every seq of it stored)."""
        if not documents:
            return 0, set(), False
        by_session: dict[str, list[tuple[Document, str, float]]] = defaultdict(list)
        for item in documents:
            by_session[item[0].session_id].append(item)
        streams = lock_streams(conn, by_session)
        new_streams = sorted(set(by_session) - set(streams))
        if new_streams:
            # (Locked after the others: two collectors opening the same session at once may
            # deadlock, which the database breaks and the batch's retry gets over.)
            insert_ignore(
                conn,
                STREAMS,
                [
                    {
                        "session_id": sid,
                        "asked_box": by_session[sid][0][0].box,
                        "stored": 0,
                        "max_seq": -1,
                        "trials": 0,
                        "rewards": 0,
                        "resends": 0,
                        "created_at": now,
                    }
                    for sid in new_streams
                ],
                index_elements=["session_id"],
            )
            streams.update(lock_streams(conn, new_streams))
        accepted: list[tuple[Document, str, float]] = []
        replayed: set[str] = set()
        opened: set[str] = set()
        starting: list[SessionStart] = []
        for sid in sorted(by_session):
            stream = streams[sid]
            top = stream["max_seq"]
            for doc, body, received_at in sorted(by_session[sid], key=lambda item: item[0].seq):
                reason = self._refuse(stream, doc, top)
                if reason == "replay":
                    replayed.add(sid)
                    continue
                if reason is not None:
                    dead.append(
                        dead_letter(self.topics.events(doc.box), body.encode(), received_at, reason)
                    )
                    continue
                if isinstance(doc, SessionStart) and stream["box"] is None:
                    if self._open(conn, stream, doc, dead):
                        starting.append(doc)
                    opened.add(sid)
                top = max(top, doc.seq)
                accepted.append((doc, body, received_at))
        self._start(conn, starting, now)
        new = self._insert(conn, accepted)
        self._count(conn, streams, new, opened, now)
        whole = any(
            st["last_seq"] is not None
            and st["stored"] == st["last_seq"] + 1
            and st["completed_at"] is None
            and not st["problem"]
            for st in streams.values()
        )
        return len(new), replayed, whole

    def _refuse(self, stream: dict[str, Any], doc: Document, top: int) -> str | None:
        """Why ``doc`` cannot be stored into ``stream`` (``"replay"``: it is stored already)."""
        sid = stream["session_id"]
        if stream["box"] is not None and doc.box != stream["box"]:
            what = (
                "a session_start reusing the id" if isinstance(doc, SessionStart) else "a document"
            )
            return (
                f"{what} of session {sid} from box {doc.box}, but box {stream['box']}'s "
                "session_start opened it"
            )
        if stream["completed_at"] is not None:
            return "replay"
        if doc.seq > MAX_SEQ or doc.seq > max(top, 0) + self.settings.seq_window:
            return (
                f"seq {doc.seq} of session {sid} is more than {self.settings.seq_window} past "
                f"the highest stored ({top}): not a seq its box can have sent"
            )
        if stream["last_seq"] is not None and doc.seq > stream["last_seq"]:
            end = stream["last_seq"]
            return f"seq {doc.seq} of session {sid} is after its session_end (seq {end})"
        return None

    def _open(
        self,
        conn: Connection,
        stream: dict[str, Any],
        doc: SessionStart,
        dead: list[dict[str, Any]],
    ) -> bool:
        """The session_start binds the session to its box: documents of others go out.
        True if its session row is to be stored (:meth:`_start`): its mouse id is valid."""
        sid = stream["session_id"]
        stream["box"] = stream["asked_box"] = doc.box
        # The locked stream counts what is stored of it: nothing, and there is no stray (the
        # common case; a query less for each session started).
        strays = (
            conn.execute(
                select(
                    DOCUMENTS.c.id, DOCUMENTS.c.box, DOCUMENTS.c.body, DOCUMENTS.c.received_at
                ).where(DOCUMENTS.c.session_id == sid, DOCUMENTS.c.box != doc.box)
            ).all()
            if stream["stored"]
            else []
        )
        if strays:
            for _, box, body, received_at in strays:
                reason = (
                    f"a document of session {sid} from box {box}, but box {doc.box}'s "
                    "session_start opened it"
                )
                dead.append(
                    dead_letter(self.topics.events(box), body.encode(), received_at, reason)
                )
            conn.execute(DOCUMENTS.delete().where(DOCUMENTS.c.id.in_([row[0] for row in strays])))
            self._recount(conn, stream)
        try:
            check_mouse_id(doc.mouse)
        except InvalidIdError as exc:
            stream["problem"] = f"session_start: {exc}"
            log.error("session %s cannot be stored: %s", sid, exc)
            return False
        return True

    def _start(self, conn: Connection, starts: list[SessionStart], now: float) -> None:
        """The session rows of a batch's new sessions, and their new mice: three statements
        for all of them (a cohort starts together; a few statements each, one after the
        other, were up to a third of a batch's time on PostgreSQL)."""
        if not starts:
            return
        mice = sorted({doc.mouse for doc in starts})  # in order: no two writers cross
        created = insert_ignore(
            conn,
            MICE,
            [{"id": mouse, "created_at": now, "notes": ""} for mouse in mice],
            index_elements=["id"],
            returning=[MICE.c.id],
        )
        boxes = {doc.mouse: doc.box for doc in starts}
        for (mouse,) in sorted(created):
            log.info("new mouse %s (from box %s)", mouse, boxes[mouse])
        # Training order never rests on a rig's clock alone: a box whose clock is behind
        # places a new session after the mouse's latest stored one, not before it (nor
        # before one this batch starts earlier).
        latest: dict[str, float] = dict(
            conn.execute(
                select(SESSIONS.c.mouse_id, func.max(SESSIONS.c.position))
                .where(SESSIONS.c.mouse_id.in_(mice))
                .group_by(SESSIONS.c.mouse_id)
            ).all()
        )
        rows = []
        for doc in starts:
            before = latest.get(doc.mouse)
            position = doc.t if before is None else max(doc.t, before)
            latest[doc.mouse] = position
            rows.append(
                {
                    "session_id": doc.session_id,
                    "mouse_id": doc.mouse,
                    "box": doc.box,
                    "origin": "recorded",
                    "complete": False,
                    "position": position,
                    "start_time": doc.t,
                    "trial_count": 0,
                    "reward_count": 0,
                    "created_at": now,
                }
            )
        insert_ignore(conn, SESSIONS, rows, index_elements=["session_id"])
        for doc in starts:
            log.info("session %s of %s started on box %s", doc.session_id, doc.mouse, doc.box)

    def _recount(self, conn: Connection, stream: dict[str, Any]) -> None:
        sid = stream["session_id"]
        count, top = conn.execute(
            select(func.count(), func.max(DOCUMENTS.c.seq)).where(DOCUMENTS.c.session_id == sid)
        ).one()
        kinds: dict[str, int] = dict(
            conn.execute(
                select(DOCUMENTS.c.kind, func.count())
                .where(DOCUMENTS.c.session_id == sid)
                .group_by(DOCUMENTS.c.kind)
            ).all()
        )
        stream.update(
            stored=count,
            max_seq=-1 if top is None else top,
            # As the documents' own SessionCounts counts them: a trial per trial_end, a reward per
            # reward document.
            trials=kinds.get(kind_of(TrialEnd), 0),
            rewards=kinds.get(kind_of(Reward), 0),
        )
        if not kinds.get(kind_of(SessionEnd)):
            stream["last_seq"] = stream["status"] = None

    def _insert(
        self, conn: Connection, accepted: list[tuple[Document, str, float]]
    ) -> list[Document]:
        """Insert the accepted documents; returns those that were not stored yet."""
        if not accepted:
            return []
        rows: dict[tuple[str, int], tuple[Document, tuple[Any, ...]]] = {}
        for doc, body, received_at in accepted:
            rows.setdefault(
                (doc.session_id, doc.seq),
                (doc, (doc.session_id, doc.seq, doc.kind, doc.box, doc.t, received_at, body)),
            )
        if conn.dialect.name == "postgresql":
            # RETURNING names exactly the rows this transaction inserted, whatever another
            # collector inserts at the same moment.
            # One statement in plain SQL: SQLAlchemy's insertmanyvalues costs more per row.
            records = [
                {"session_id": sid, "seq": seq, "kind": kind, "box": box,
                 "t": repr(t), "received_at": repr(received_at), "body": body}
                for _, (sid, seq, kind, box, t, received_at, body) in rows.values()
            ]  # fmt: skip
            result = conn.exec_driver_sql(_PG_INSERT_DOCUMENTS, (json.dumps(records),))
            inserted = {(sid, seq) for sid, seq in result}
            return [rows[key][0] for key in sorted(inserted)]
        # SQLite holds the write lock for the whole transaction: what is not stored now is
        # new. Straight to sqlite3's executemany, the hot path of a single collector.
        keys = list(rows)
        # Plain SQL on the driver: compiling an IN of row values costs more than the query.
        query = (
            f"WITH wanted(s, q) AS (VALUES {', '.join(['(?, ?)'] * len(keys))}) "
            "SELECT d.session_id, d.seq FROM wanted "
            "JOIN documents d ON d.session_id = wanted.s AND d.seq = wanted.q"
        )
        params = tuple(value for key in keys for value in key)
        stored = {(sid, seq) for sid, seq in conn.exec_driver_sql(query, params).all()}
        fresh = [key for key in sorted(rows) if key not in stored]
        if fresh:
            conn.exec_driver_sql(_SQLITE_INSERT_DOCUMENT, [rows[key][1] for key in fresh])
        return [rows[key][0] for key in fresh]

    def _count(
        self,
        conn: Connection,
        streams: dict[str, dict[str, Any]],
        new: list[Document],
        opened: set[str],
        now: float,
    ) -> None:
        """Add the new documents to their streams' counts (rows locked: plain values are
        safe to write). The stored session rows get the counts from :func:`copy_counts`, once
        a tick: an UPDATE per session per batch would cost more than the documents."""
        by_session: dict[str, list[Document]] = defaultdict(list)
        for doc in new:
            by_session[doc.session_id].append(doc)
        stream_rows, session_rows = [], []
        for sid in sorted(streams):
            stream = streams[sid]
            docs = by_session.get(sid, [])
            counted = count_session(docs)
            stream["stored"] += len(docs)
            stream["trials"] += counted.trials
            stream["rewards"] += counted.rewards
            for doc in docs:
                stream["max_seq"] = max(stream["max_seq"], doc.seq)
                if isinstance(doc, SessionEnd):
                    stream["last_seq"], stream["status"] = doc.seq, doc.status
                    if stream["max_seq"] > doc.seq:
                        stream["problem"] = (
                            f"documents after session_end (seq {stream['max_seq']} > {doc.seq})"
                        )
            if docs:
                stream["last_doc_at"] = now
                stream["resends"] = 0  # what was asked for comes: the count is of asks in vain
            if not docs and sid not in opened:
                continue  # only documents stored before: nothing changed
            stream_rows.append({f"p_{key}": stream[key] for key in _STREAM_COUNTS})
            if stream["problem"]:
                session_rows.append({f"p_{key}": stream[key] for key in _SESSION_COUNTS})
        if stream_rows:
            if conn.dialect.name == "sqlite":
                # The hot path of a single collector: straight to sqlite3's executemany.
                conn.exec_driver_sql(
                    _SQLITE_UPDATE_STREAM,
                    [(*(row[f"p_{key}"] for key in _STREAM_COUNTS[1:]), row["p_session_id"])
                     for row in stream_rows],
                )  # fmt: skip
            else:
                conn.exec_driver_sql(
                    _PG_UPDATE_STREAM.format(rows=", ".join([_PG_STREAM_ROW] * len(stream_rows))),
                    tuple(row[f"p_{key}"] for row in stream_rows for key in _STREAM_COUNTS),
                )
        if session_rows:
            conn.execute(_UPDATE_SESSION, session_rows)


def copy_counts(conn: Connection, since: float) -> None:
    """The running counts of streams that moved since ``since`` onto their session rows."""
    moved = select(STREAMS.c.session_id).where(
        STREAMS.c.completed_at.is_(None), STREAMS.c.last_doc_at >= since
    )

    def of_stream(column: Any) -> Any:
        return select(column).where(STREAMS.c.session_id == SESSIONS.c.session_id).scalar_subquery()

    conn.execute(
        update(SESSIONS)
        .where(SESSIONS.c.complete.is_(False), SESSIONS.c.session_id.in_(moved))
        .values(
            trial_count=of_stream(STREAMS.c.trials),
            reward_count=of_stream(STREAMS.c.rewards),
            last_seq=of_stream(STREAMS.c.last_seq),
            status=of_stream(STREAMS.c.status),
        )
    )
