"""Storing and reading sessions: idempotent inserts, session rows and their trials, training order.

Used by the collector (recorded sessions) and by import/export (per-mouse
files). Everything here works on a SQLAlchemy Core :class:`Connection` inside
the caller's transaction; nothing commits on its own.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from controller.db import Mouse, TrainingSession, Trial
from shared.outcomes import rewards_in

SESSIONS: Table = TrainingSession.__table__  # type: ignore[assignment]
TRIALS: Table = Trial.__table__  # type: ignore[assignment]
MICE: Table = Mouse.__table__  # type: ignore[assignment]


def insert_ignore(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    index_elements: Sequence[str],
    returning: Sequence[Column[Any]] = (),
) -> list[tuple[Any, ...]]:
    """Insert ``rows``, skipping those that collide on ``index_elements``.

    Returns the ``returning`` columns of the rows actually inserted, which is
    how the collector tells new documents from duplicates in one statement.
    """
    if not rows:
        return []
    name = connection.dialect.name
    if name in ("sqlite", "postgresql"):
        dialect_insert = sqlite.insert if name == "sqlite" else postgresql.insert
        stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
        if returning:
            result = connection.execute(stmt.returning(*returning), list(rows))
            return [tuple(row) for row in result]
        connection.execute(stmt, list(rows))
        return []
    # Other databases: one savepoint per row. Slow, but correct.
    inserted: list[tuple[Any, ...]] = []
    for row in rows:
        try:
            with connection.begin_nested():
                plain = table.insert().values(**row)
                if returning:
                    inserted.extend(
                        tuple(r) for r in connection.execute(plain.returning(*returning))
                    )
                else:
                    connection.execute(plain)
        except IntegrityError:
            continue
    return inserted


def ensure_mouse(connection: Connection, mouse_id: str, now: float | None = None) -> bool:
    """Create the mouse if it is new; True if it was created."""
    created = insert_ignore(
        connection,
        MICE,
        [{"id": mouse_id, "created_at": now or time.time(), "notes": ""}],
        index_elements=["id"],
        returning=[MICE.c.id],
    )
    return bool(created)


def lock_mouse(connection: Connection, mouse_id: str) -> None:
    """Hold the mouse's row until the transaction ends, so that two imports of the same
    sessions (which may have no ``session_id`` to collide on) run one after the other.

    The second then finds the first's sessions stored. SQLite needs nothing: its writers
    begin ``IMMEDIATE`` and so never overlap.
    """
    if connection.dialect.name == "sqlite":
        return
    connection.execute(select(MICE.c.id).where(MICE.c.id == mouse_id).with_for_update())


def session_text(session: dict[str, Any]) -> str:
    """A session dict as stored and exported: ``json.dumps`` defaults, like the original library.

    ``"[" + ", ".join(texts) + "]"`` of these is exactly
    :func:`shared.sessionfile.dumps_sessions` of the dicts.
    """
    return json.dumps(session)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _choice(value: Any, allowed: tuple[int, ...]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        return None
    return value


def _position(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def session_time(session: dict[str, Any]) -> float | None:
    """The session's start as Unix seconds: a float ``start_time``, or ``date`` + ``HH:MM:SS``."""
    start = session.get("start_time")
    number = _number(start)
    if number is not None:
        return number
    day = session.get("date")
    if not isinstance(day, str):
        return None
    clock = start if isinstance(start, str) else "00:00:00"
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            text = f"{day} {clock}" if fmt != "%Y-%m-%d" else day
            return datetime.strptime(text, fmt).timestamp()  # local time, as the rig wrote it
        except ValueError:
            continue
    return None


TRIAL_COLUMNS = (
    "session_pk", "number", "start", "end", "lift_time", "lift_paw", "spout",
    "cue_duration", "outcome", "shaping", "position_left", "position_right",
)  # fmt: skip


def _plain_trial_row(session_pk: int, number: int, trial: dict[str, Any]) -> tuple[Any, ...]:
    """The row of a well-formed trial, as the session builder makes them; KeyError or
    ValueError (for :func:`trial_rows` to take the careful way) if it is not one."""
    left, right = trial["spout_position"]
    row = (
        session_pk, number, trial["start"], trial["end"], trial.get("lift_time"),
        trial.get("lift_paw"), trial["spout"], trial["cue_duration"], trial["outcome"],
        trial["shaping"], left, right,
    )  # fmt: skip
    types = (float, float, float | None, int | None, int, float, int, bool, int, int)
    if not all(
        isinstance(v, t) and not (isinstance(v, bool) and t is not bool)
        for v, t in zip(row[2:], types, strict=True)
    ):
        raise ValueError("not a plain trial")
    return row


def _trials_of(session: dict[str, Any]) -> list[Any]:
    # Sessions of the original's 2019 "timepoints" files have no trials list at all.
    trials = session.get("trials")
    return trials if isinstance(trials, list) else []


def trial_count_of(session: dict[str, Any]) -> int:
    """How many rows :func:`store_trials` stores for the session: its trials that are dicts."""
    return sum(1 for trial in _trials_of(session) if isinstance(trial, dict))


def trial_row_tuples(session_pk: int, session: dict[str, Any]) -> list[tuple[Any, ...]]:
    """:func:`trial_rows` as tuples in :data:`TRIAL_COLUMNS` order (fast for our own trials)."""
    trials = _trials_of(session)
    try:
        return [_plain_trial_row(session_pk, n, t) for n, t in enumerate(trials)]
    except (KeyError, ValueError, TypeError, AttributeError):
        return [tuple(row.values()) for row in trial_rows(session_pk, session)]


def trial_rows(session_pk: int, session: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the ``trials`` table for a session dict; odd values of old files become NULL."""
    rows = []
    for number, trial in enumerate(t for t in _trials_of(session) if isinstance(t, dict)):
        position = trial.get("spout_position")
        left = right = None
        if isinstance(position, list) and len(position) == 2:
            left, right = _position(position[0]), _position(position[1])
        shaping = trial.get("shaping")
        rows.append(
            {
                "session_pk": session_pk,
                "number": number,
                "start": _number(trial.get("start")),
                "end": _number(trial.get("end")),
                "lift_time": _number(trial.get("lift_time")),
                "lift_paw": _choice(trial.get("lift_paw"), (0, 1)),
                "spout": _choice(trial.get("spout"), (0, 1)),
                "cue_duration": _number(trial.get("cue_duration")),
                "outcome": _choice(trial.get("outcome"), (0, 1, 2)),
                "shaping": shaping if isinstance(shaping, bool) else None,
                "position_left": left,
                "position_right": right,
            }
        )
    return rows


def rewards_of(session: dict[str, Any]) -> int:
    """Rewards a session dict implies: one per correct trial, one per shaping trial."""
    return sum(rewards_in(trial) for trial in _trials_of(session) if isinstance(trial, dict))


def store_trials(connection: Connection, session_pk: int, session: dict[str, Any]) -> int:
    """Replace the session's trial rows; returns how many there are."""
    connection.execute(TRIALS.delete().where(TRIALS.c.session_pk == session_pk))
    rows = trial_row_tuples(session_pk, session)
    if rows and connection.dialect.name == "sqlite":
        # Hundreds of rows at the end of every session: straight to sqlite3's executemany.
        connection.exec_driver_sql(_SQLITE_INSERT_TRIAL, rows)
    elif rows and connection.dialect.name == "postgresql":
        # The same on PostgreSQL, a page of rows a statement: SQLAlchemy's insertmanyvalues
        # (a dict a row) was 2/5 of a session's rebuild in the collector's profile.
        for start in range(0, len(rows), _PG_TRIAL_PAGE):
            page = rows[start : start + _PG_TRIAL_PAGE]
            connection.exec_driver_sql(
                _PG_INSERT_TRIALS + ", ".join([_PG_TRIAL_ROW] * len(page)),
                tuple(value for row in page for value in row),
            )
    elif rows:
        connection.execute(
            TRIALS.insert(), [dict(zip(TRIAL_COLUMNS, row, strict=True)) for row in rows]
        )
    return len(rows)


_PG_TRIAL_PAGE = 1000
_PG_INSERT_TRIALS = "INSERT INTO trials ({}) VALUES ".format(
    ", ".join(f'"{column}"' for column in TRIAL_COLUMNS)  # "end" is a keyword
)
_PG_TRIAL_ROW = f"({', '.join('%s' for _ in TRIAL_COLUMNS)})"
_SQLITE_INSERT_TRIAL = (
    f"INSERT INTO trials ({', '.join(TRIAL_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in TRIAL_COLUMNS)})"
)


def complete_session_texts(connection: Connection, mouse_id: str) -> Iterator[str]:
    """The stored JSON texts of the mouse's complete sessions, in training order."""
    stmt = (
        select(SESSIONS.c.data)
        .where(
            SESSIONS.c.mouse_id == mouse_id,
            SESSIONS.c.complete.is_(True),
            SESSIONS.c.data.is_not(None),
        )
        .order_by(SESSIONS.c.position, SESSIONS.c.id)
    )
    for (text,) in connection.execute(stmt):
        yield text


def mouse_sessions(connection: Connection, mouse_id: str) -> list[dict[str, Any]]:
    """The mouse's complete sessions as dicts, in training order."""
    return [json.loads(text) for text in complete_session_texts(connection, mouse_id)]


def recent_sessions(connection: Connection, mouse_id: str) -> Iterable[dict[str, Any]]:
    """The mouse's complete sessions, newest first, read lazily (for carry-over)."""
    stmt = (
        select(SESSIONS.c.data)
        .where(
            SESSIONS.c.mouse_id == mouse_id,
            SESSIONS.c.complete.is_(True),
            SESSIONS.c.data.is_not(None),
        )
        .order_by(SESSIONS.c.position.desc(), SESSIONS.c.id.desc())
    )
    for (text,) in connection.execute(stmt):
        yield json.loads(text)
