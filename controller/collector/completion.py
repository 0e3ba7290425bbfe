"""Completion: a whole session rebuilt from its stored documents, stored, and ``committed`` sent.

A stream is whole when every seq ``0..last_seq`` is stored. :func:`complete_one`
claims one whole stream (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
collectors never rebuild the same one), folds its documents with
:class:`~shared.documents.SessionBuilder` (the code the agent's own copy comes
from), stores the session dict and its trials, and marks the stream complete
in the same transaction: the ``committed`` that follows is sent by exactly one
collector. It carries the last seq and :func:`~shared.digest.session_digest`
of the stored documents, so the agent prunes only what the database holds.

``committed`` is sent again (:func:`commit_again`, claimed by a conditional
update so one collector sends it) when the box still lists the session, replays
it, or comes back online. Only the box's ``ok`` confirms it: ``not_found`` means
the box never held that session, which is then kept with its problem and not
exported as one of the mouse's sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection, Table, select, update

from controller.collector.assembly import STREAMS
from controller.collector.decode import RigCommand
from controller.db import commit_durably
from controller.husbandry.figures import session_figures
from controller.models import StoredDocument, TrainingSession
from controller.store import digest, session_text, store_trials
from shared.digest import session_digest
from shared.documents import SessionBuilder, parse_document
from shared.errors import ProtocolError
from shared.ids import new_request_id
from shared.protocol import CommittedCommand, Reply

log = logging.getLogger("labctl.collector")

DOCUMENTS: Table = StoredDocument.__table__  # type: ignore[assignment]
SESSIONS: Table = TrainingSession.__table__  # type: ignore[assignment]


def complete_one(conn: Connection, now: float) -> tuple[str, list[tuple[str, RigCommand]]] | None:
    """Complete one whole stream, if there is one; (its id, the commands to send)."""
    query = (
        select(STREAMS)
        .where(
            STREAMS.c.completed_at.is_(None),
            STREAMS.c.problem.is_(None),
            STREAMS.c.box.is_not(None),
            STREAMS.c.last_seq.is_not(None),
            STREAMS.c.stored == STREAMS.c.last_seq + 1,
            STREAMS.c.max_seq == STREAMS.c.last_seq,
        )
        .order_by(STREAMS.c.last_doc_at)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    stream = conn.execute(query).mappings().first()
    if stream is None:
        return None
    # Once this commits, the box is told it may delete its own copy.
    commit_durably(conn)
    sid = stream["session_id"]
    builder = SessionBuilder()
    docs = []
    try:
        for (body,) in conn.execute(
            select(DOCUMENTS.c.body).where(DOCUMENTS.c.session_id == sid).order_by(DOCUMENTS.c.seq)
        ):
            doc = parse_document(body)
            builder.add(doc)
            docs.append(doc)
    except ProtocolError as exc:
        _problem(conn, sid, f"cannot rebuild the session from its documents: {exc}")
        return sid, []
    pk = conn.execute(select(SESSIONS.c.id).where(SESSIONS.c.session_id == sid)).scalar()
    if pk is None:
        _problem(conn, sid, "no stored session row (its session_start was refused)")
        return sid, []
    data = builder.data
    text = session_text(data)
    trials = store_trials(conn, pk, data)
    end = builder.end
    conn.execute(
        update(SESSIONS)
        .where(SESSIONS.c.id == pk)
        .values(
            complete=True,
            data=text,
            digest=digest(text),
            status=end.status if end else None,
            end_time=end.end_time if end else None,
            date=end.date if end else None,
            last_seq=stream["last_seq"],
            trial_count=trials,
            reward_count=builder.rewards,
            completed_at=now,
            problem=None,
            **session_figures(data),
        )
    )
    request = new_request_id()
    documents_digest = session_digest(docs)
    conn.execute(
        update(STREAMS)
        .where(STREAMS.c.session_id == sid)
        .values(
            completed_at=now,
            digest=documents_digest,
            commit_request=request,
            commit_sent_at=now,
        )
    )
    log.info(
        "session %s (box %s) complete: %s, %d trials, %d documents",
        sid, stream["box"], end.status if end else "?", trials, stream["last_seq"] + 1,
    )  # fmt: skip
    command = CommittedCommand(
        request_id=request, session_id=sid, last_seq=stream["last_seq"], digest=documents_digest
    )
    return sid, [(stream["box"], command)]


def _problem(conn: Connection, sid: str, problem: str) -> None:
    log.error("session %s: %s", sid, problem)
    conn.execute(update(STREAMS).where(STREAMS.c.session_id == sid).values(problem=problem))
    conn.execute(update(SESSIONS).where(SESSIONS.c.session_id == sid).values(problem=problem))


def commit_again(
    conn: Connection, session_ids: Iterable[str], now: float, min_interval: float
) -> list[tuple[str, RigCommand]]:
    """``committed`` again for those of ``session_ids`` complete and not yet confirmed, at
    most every ``min_interval``, each claimed so that one collector sends it."""
    out: list[tuple[str, RigCommand]] = []
    for sid in sorted(set(session_ids)):
        request = new_request_id()
        row = conn.execute(
            update(STREAMS)
            .where(
                STREAMS.c.session_id == sid,
                STREAMS.c.completed_at.is_not(None),
                STREAMS.c.committed_at.is_(None),
                STREAMS.c.problem.is_(None),
                (STREAMS.c.commit_sent_at.is_(None))
                | (STREAMS.c.commit_sent_at <= now - min_interval),
            )
            .values(commit_request=request, commit_sent_at=now)
            .returning(STREAMS.c.box, STREAMS.c.last_seq, STREAMS.c.digest)
        ).first()
        if row is None or row.box is None or row.last_seq is None:
            continue
        out.append(
            (
                row.box,
                CommittedCommand(
                    request_id=request, session_id=sid, last_seq=row.last_seq, digest=row.digest
                ),
            )
        )
    return out


def unconfirmed_of(
    conn: Connection, boxes: Iterable[str], sent_before: float | None = None
) -> list[str]:
    """The boxes' complete sessions whose ``committed`` they have not confirmed (last sent
    before ``sent_before``, if given), in one query."""
    query = select(STREAMS.c.session_id).where(
        STREAMS.c.box.in_(sorted(boxes)),
        STREAMS.c.completed_at.is_not(None),
        STREAMS.c.committed_at.is_(None),
        STREAMS.c.problem.is_(None),
    )
    if sent_before is not None:
        query = query.where(STREAMS.c.commit_sent_at <= sent_before)
    return list(conn.execute(query).scalars().all())


def on_commit_reply(conn: Connection, box: str, reply: Reply, now: float) -> bool:
    """Record the box's answer to a ``committed``; False if it answers none of ours."""
    stream = conn.execute(
        select(STREAMS.c.session_id, STREAMS.c.box).where(
            STREAMS.c.commit_request == reply.request_id
        )
    ).first()
    if stream is None:
        return False
    sid = stream.session_id
    if stream.box != box:
        log.warning(
            "box %s answered the committed of session %s, which is box %s's", box, sid, stream.box
        )
        return True
    if reply.ok:
        conn.execute(
            update(STREAMS)
            .where(STREAMS.c.session_id == sid, STREAMS.c.committed_at.is_(None))
            .values(committed_at=now)
        )
        conn.execute(update(SESSIONS).where(SESSIONS.c.session_id == sid).values(committed_at=now))
        log.info("box %s confirmed committed session %s", box, sid)
    elif reply.code == "not_found":
        # Not a confirmation: the box that opened the session says it never held it.
        problem = f"box {box} does not hold this session (not_found to committed): not exported"
        log.error("session %s: %s", sid, problem)
        conn.execute(update(STREAMS).where(STREAMS.c.session_id == sid).values(problem=problem))
        conn.execute(
            update(SESSIONS)
            .where(SESSIONS.c.session_id == sid, SESSIONS.c.committed_at.is_(None))
            .values(complete=False, problem=problem)
        )
    else:
        log.warning("box %s refused committed for session %s: %s", box, sid, reply.error)
    return True
