"""The agent's durable journal: every session document, on disk, before it is published.

One SQLite file in WAL mode holds two tables: ``sessions`` (one row per
session: mouse, box, state) and ``documents`` (every document as the JSON that
goes on the wire, with its ``(session_id, seq)`` and whether the broker has
acknowledged it). The journal is the agent's send queue (DESIGN §6):

* a document is appended, and committed to disk, before it is published;
* the PUBACK of each document is recorded; after a reconnect or a restart the
  unacknowledged documents are published again in journal order;
* ``resend`` serves any range of a session from here;
* a session's documents are deleted only when the controller says
  ``committed`` for it, the session has ended, and the controller's
  ``last_seq`` and digest of what it stored are the journal's own.

A session that was running when the process died has no ``session_end``;
:meth:`Journal.close_interrupted` gives it one with status ``aborted`` so the
controller can complete it.

Durability: appends run with ``synchronous=FULL``: in WAL mode each commit
then fsyncs the WAL, so a document survives a power cut as well as a crash.
A rig is a Raspberry Pi whose plug gets pulled, and until the controller has
committed a session the journal is the only copy, so the one fsync per
document (documents come a few per second) is worth it. Acknowledgement marks
are written with ``synchronous=NORMAL``: losing one to a power cut only means
the document is published once more, which the collector de-duplicates.

The journal is used from one thread at a time (the agent's task loop);
``labagent status`` reads it from another process through
:meth:`Journal.open_readonly`, which WAL allows while the agent writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from agent.interrupted import aborted_end
from shared.digest import session_digest
from shared.documents import (
    Document,
    SessionBuilder,
    SessionEnd,
    SessionStart,
    dump_document,
    parse_document,
)
from shared.errors import ProtocolError, ReachlabError

SCHEMA_VERSION = 1
SessionState = Literal["running", "ended", "committed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id   TEXT PRIMARY KEY,
    mouse        TEXT NOT NULL,
    box          TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('running', 'ended', 'committed')),
    status       TEXT,               -- complete / stopped / aborted, once ended
    start_time   REAL NOT NULL,
    end_time     REAL,
    last_seq     INTEGER,            -- seq of the session_end document
    copied       INTEGER NOT NULL DEFAULT 0,  -- the local per-mouse JSON copy is written
    committed_at REAL
);
CREATE TABLE IF NOT EXISTS documents (
    -- AUTOINCREMENT: ids never go backwards, even after a prune empties the table,
    -- so "publish everything after id N" can never skip a new document.
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions (session_id),
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    t          REAL NOT NULL,
    body       TEXT NOT NULL,
    acked      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (session_id, seq)
);
CREATE INDEX IF NOT EXISTS documents_unacked ON documents (id) WHERE acked = 0;
"""


class JournalError(ReachlabError, RuntimeError):
    """The journal cannot be opened, or refuses an operation; the message says why."""


class SessionNotFound(JournalError, LookupError):
    """No such session in the journal (never recorded, or already pruned)."""


class CommitRefused(JournalError, ValueError):
    """``committed`` cannot prune this session (still running, or ``last_seq`` differs)."""


@dataclass(frozen=True)
class JournalEntry:
    """One journalled document: its journal ``id`` orders publishing."""

    id: int
    session_id: str
    seq: int
    body: str


@dataclass(frozen=True)
class SessionInfo:
    """A session's row, with its document counts."""

    session_id: str
    mouse: str
    box: str
    state: SessionState
    status: str | None
    start_time: float
    end_time: float | None
    last_seq: int | None
    copied: bool
    documents: int
    pending: int


def _fetch_info(rows: Iterable[sqlite3.Row]) -> list[SessionInfo]:
    return [
        SessionInfo(
            session_id=row["session_id"],
            mouse=row["mouse"],
            box=row["box"],
            state=row["state"],
            status=row["status"],
            start_time=row["start_time"],
            end_time=row["end_time"],
            last_seq=row["last_seq"],
            copied=bool(row["copied"]),
            documents=row["documents"],
            pending=row["pending"],
        )
        for row in rows
    ]


_INFO_QUERY = """
SELECT s.*,
       (SELECT COUNT(*) FROM documents d WHERE d.session_id = s.session_id) AS documents,
       (SELECT COUNT(*) FROM documents d
         WHERE d.session_id = s.session_id AND d.acked = 0) AS pending
  FROM sessions s
"""


class Journal:
    """The SQLite journal of one agent. Open it with :meth:`open` or :meth:`open_readonly`."""

    def __init__(self, path: Path, connection: sqlite3.Connection, lock: IO[bytes] | None) -> None:
        self.path = path
        self._db = connection
        self._lock = lock

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, exclusive: bool = True) -> Journal:
        """Open (creating it if needed) the journal at ``path`` for writing.

        With ``exclusive`` a lock file next to it makes a second agent on the same
        journal fail at once instead of interleaving two processes' documents.
        """
        file = Path(path).expanduser()
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create the journal's folder {file.parent}: {exc}") from None
        lock = cls._take_lock(file) if exclusive else None
        try:
            db = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            if lock is not None:
                lock.close()
            raise JournalError(f"cannot open the journal {file}: {exc}") from None
        journal = cls(file, db, lock)
        try:
            journal._prepare()
        except JournalError:
            journal.close()
            raise
        except sqlite3.DatabaseError as exc:
            journal.close()
            raise JournalError(f"cannot use {file} as a journal: {exc}") from None
        return journal

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> Journal:
        """Open an existing journal only to read it, e.g. while its agent runs."""
        file = Path(path).expanduser()
        if not file.exists():
            raise JournalError(f"no journal at {file}")
        try:
            db = sqlite3.connect(
                f"{file.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("SELECT 1 FROM sessions LIMIT 1")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {file}: {exc}") from None
        return cls(file, db, None)

    @staticmethod
    def _take_lock(file: Path) -> IO[bytes]:
        lock = open(file.with_name(file.name + ".lock"), "ab")  # noqa: SIM115  # held while open
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise JournalError(f"another labagent is already using the journal {file}") from None
        return lock

    def _prepare(self) -> None:
        db = self._db
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout = 5000")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(
                f"the journal {self.path} cannot use WAL mode (got {mode!r}); "
                "put it on a local file system"
            )
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal {self.path} was written by a newer reachlab (schema {version})"
            )
        with self._transaction():
            # Statement by statement: executescript() would commit outside this transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database and release the lock; safe to call twice."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite's own errors (disk full ...) become JournalError."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise JournalError(f"cannot write to the journal {self.path}: {exc}") from None

    # ------------------------------------------------------------------ inspection

    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def synchronous(self) -> int:
        """SQLite's synchronous level: 1 = NORMAL, 2 = FULL."""
        return int(self._db.execute("PRAGMA synchronous").fetchone()[0])

    # ------------------------------------------------------------------ writing

    def append(self, doc: Document) -> JournalEntry:
        """Commit ``doc`` to disk; only then may it be published.

        ``session_start`` opens a session; every later document must be the
        session's next ``seq``; ``session_end`` closes it.
        """
        body = dump_document(doc)
        with self._transaction() as db:
            if isinstance(doc, SessionStart):
                if doc.seq != 0:
                    raise JournalError(f"session_start of {doc.session_id} has seq {doc.seq}")
                exists = db.execute(
                    "SELECT 1 FROM sessions WHERE session_id = ?", (doc.session_id,)
                ).fetchone()
                if exists:
                    raise JournalError(f"session {doc.session_id} is already in the journal")
                db.execute(
                    "INSERT INTO sessions (session_id, mouse, box, state, start_time)"
                    " VALUES (?, ?, ?, 'running', ?)",
                    (doc.session_id, doc.mouse, doc.box, doc.t),
                )
            else:
                self._check_next(db, doc)
            cursor = db.execute(
                "INSERT INTO documents (session_id, seq, kind, t, body) VALUES (?, ?, ?, ?, ?)",
                (doc.session_id, doc.seq, doc.kind, doc.t, body),
            )
            if isinstance(doc, SessionEnd):
                db.execute(
                    "UPDATE sessions SET state = 'ended', status = ?, end_time = ?,"
                    " last_seq = ? WHERE session_id = ?",
                    (doc.status, doc.end_time, doc.seq, doc.session_id),
                )
        entry_id = cursor.lastrowid
        assert entry_id is not None
        return JournalEntry(entry_id, doc.session_id, doc.seq, body)

    @staticmethod
    def _check_next(db: sqlite3.Connection, doc: Document) -> None:
        row = db.execute(
            "SELECT s.state, (SELECT MAX(seq) FROM documents d WHERE d.session_id = s.session_id)"
            " FROM sessions s WHERE s.session_id = ?",
            (doc.session_id,),
        ).fetchone()
        if row is None:
            raise SessionNotFound(f"{doc.kind} for unknown session {doc.session_id}")
        state, last = row[0], row[1]
        if state != "running":
            raise JournalError(f"{doc.kind} for session {doc.session_id}, which has {state}")
        if doc.seq != last + 1:
            raise JournalError(
                f"{doc.kind} of session {doc.session_id} has seq {doc.seq}, expected {last + 1}"
            )

    def mark_acked(self, ids: Iterable[int]) -> None:
        """Record the broker's PUBACK for these journal entries."""
        rows = [(i,) for i in ids]
        if not rows:
            return
        # An ack mark lost to a power cut costs one duplicate publish: no fsync for it.
        self._set_synchronous("NORMAL")
        try:
            with self._transaction() as db:
                db.executemany("UPDATE documents SET acked = 1 WHERE id = ?", rows)
        finally:
            self._set_synchronous("FULL")

    def _set_synchronous(self, level: str) -> None:
        try:
            self._db.execute(f"PRAGMA synchronous = {level}")
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from None

    def mark_copied(self, session_id: str) -> None:
        """The local per-mouse JSON copy of ``session_id`` has been written."""
        with self._transaction() as db:
            db.execute("UPDATE sessions SET copied = 1 WHERE session_id = ?", (session_id,))

    def commit(self, session_id: str, last_seq: int, digest: str | None, now: float) -> bool:
        """Prune a session the controller has stored; True if this call pruned it.

        Only on a ``committed`` this journal can check: the session has ended,
        ``last_seq`` is its own and ``digest`` (:func:`shared.digest.session_digest`)
        is that of its documents 0..last_seq, so a forged or premature ``committed``
        raises :class:`CommitRefused` and keeps everything. A repeated ``committed``
        for an already pruned session is accepted (False): there is nothing left to lose.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT state, last_seq FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                raise SessionNotFound(f"session {session_id} is not in the journal")
            state, journal_last = row["state"], row["last_seq"]
            if state == "running":
                raise CommitRefused(f"session {session_id} is still running")
            if journal_last != last_seq:
                raise CommitRefused(
                    f"session {session_id}: last_seq {last_seq} does not match the journal's "
                    f"{journal_last}; not pruning"
                )
            if state == "committed":
                return False
            if digest is None:
                raise CommitRefused(
                    f"session {session_id}: committed without a digest of the stored "
                    "documents; not pruning"
                )
            if session_digest(self.load(session_id)) != digest:
                raise CommitRefused(
                    f"session {session_id}: the digest does not match the journal's documents "
                    f"0..{journal_last}; not pruning"
                )
            db.execute("DELETE FROM documents WHERE session_id = ?", (session_id,))
            db.execute(
                "UPDATE sessions SET state = 'committed', committed_at = ? WHERE session_id = ?",
                (now, session_id),
            )
        return True

    def close_interrupted(self) -> list[SessionEnd]:
        """End every session left running by a process that died, as ``aborted``.

        The end document takes the next seq and the time of the session's last
        document (the last moment the journal knows the session was alive).
        """
        ended: list[SessionEnd] = []
        running = self._db.execute(
            "SELECT session_id FROM sessions WHERE state = 'running' ORDER BY start_time"
        ).fetchall()
        for row in running:
            docs = self.load(row["session_id"])
            try:
                end = aborted_end(docs)
            except ProtocolError as exc:
                raise JournalError(str(exc)) from None
            self.append(end)
            ended.append(end)
        return ended

    # ------------------------------------------------------------------ reading

    def pending(self, after_id: int = 0, limit: int = 100) -> list[JournalEntry]:
        """Unacknowledged documents after journal id ``after_id``, in journal order."""
        rows = self._db.execute(
            "SELECT id, session_id, seq, body FROM documents"
            " WHERE acked = 0 AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [JournalEntry(r[0], r[1], r[2], r[3]) for r in rows]

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM documents WHERE acked = 0").fetchone()[0])

    def entries(
        self, session_id: str, from_seq: int = 0, to_seq: int | None = None
    ) -> list[JournalEntry]:
        """A session's documents with ``from_seq <= seq <= to_seq``, in seq order.

        Raises :class:`SessionNotFound` when the session is unknown or pruned.
        """
        info = self.session(session_id)
        if info is None:
            raise SessionNotFound(f"session {session_id} is not in the journal")
        if info.state == "committed":
            raise SessionNotFound(f"session {session_id} was committed and pruned")
        upper = to_seq if to_seq is not None else 2**62
        rows = self._db.execute(
            "SELECT id, session_id, seq, body FROM documents"
            " WHERE session_id = ? AND seq >= ? AND seq <= ? ORDER BY seq",
            (session_id, from_seq, upper),
        ).fetchall()
        return [JournalEntry(r[0], r[1], r[2], r[3]) for r in rows]

    def load(self, session_id: str) -> list[Document]:
        """Every journalled document of a session, parsed, in seq order."""
        return [parse_document(e.body) for e in self.entries(session_id)]

    def rebuild(self, session_id: str) -> dict[str, Any]:
        """The session dict folded from the journal's documents (the local JSON copy)."""
        builder = SessionBuilder()
        for doc in self.load(session_id):
            builder.add(doc)
        return builder.data

    def session(self, session_id: str) -> SessionInfo | None:
        rows = self._db.execute(_INFO_QUERY + " WHERE s.session_id = ?", (session_id,)).fetchall()
        found = _fetch_info(rows)
        return found[0] if found else None

    def sessions(self, include_committed: bool = False) -> list[SessionInfo]:
        """Sessions in start order; committed (pruned) ones only when asked."""
        where = "" if include_committed else " WHERE s.state != 'committed'"
        rows = self._db.execute(_INFO_QUERY + where + " ORDER BY s.start_time").fetchall()
        return _fetch_info(rows)

    def uncommitted(self, limit: int = 50) -> list[str]:
        """Ids of ended sessions not yet committed by the controller, oldest first."""
        rows = self._db.execute(
            "SELECT session_id FROM sessions WHERE state = 'ended' ORDER BY start_time LIMIT ?",
            (limit,),
        ).fetchall()
        return [row[0] for row in rows]

    def uncopied(self) -> list[SessionInfo]:
        """Ended sessions whose local per-mouse JSON copy has not been written yet."""
        return [s for s in self.sessions() if s.state == "ended" and not s.copied]
