"""Asking the boxes for what is missing: gaps, lost tails, sessions never seen.

From the tick, :meth:`Resender.ask_for_missing` finds streams with a gap (or a
lost tail: the box moved on without the ``session_end`` arriving) and claims
each resend with a conditional ``UPDATE``: of all collectors, one sends it,
once per ``resend_interval``, at most ``resends_per_tick`` a tick and
``max_resends`` a session. Finding the gap reads the stored seqs' index and
never builds anything as large as the gap. A box's status listing sessions
it still holds uncommitted makes a stream for each one unknown here (at most
``max_listed`` of them), asked for whole once its documents had the time to come.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, and_, exists, func, select, update
from sqlalchemy.orm import aliased

from controller.collector.assembly import DOCUMENTS, SESSIONS, STREAMS, lock_streams
from controller.collector.decode import IngestSettings, RigCommand
from controller.store import insert_ignore
from shared.ids import new_request_id
from shared.protocol import ResendCommand, Status

log = logging.getLogger("labctl.collector")


#: Runs of missing seqs asked for at once, one resend command each.
GAPS_PER_REQUEST = 10


class Resender:
    """Decides, in the database, which resend requests go out."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings

    def list_unknown(self, conn: Connection, box: str, listed: list[str], now: float) -> list[str]:
        """Sessions a box lists as uncommitted that no stream knows: a stream for each, to be
        asked for whole after ``tail_grace``; returns the ones already known."""
        ids = list(dict.fromkeys(listed))[: self.settings.max_listed]
        if not ids:
            return []
        known = set(
            conn.execute(select(STREAMS.c.session_id).where(STREAMS.c.session_id.in_(ids)))
            .scalars()
            .all()
        )
        imported = set(
            conn.execute(select(SESSIONS.c.session_id).where(SESSIONS.c.session_id.in_(ids)))
            .scalars()
            .all()
        )
        unknown = [sid for sid in ids if sid not in known and sid not in imported]
        if unknown:
            insert_ignore(
                conn,
                STREAMS,
                [
                    {
                        "session_id": sid,
                        "asked_box": box,
                        "stored": 0,
                        "max_seq": -1,
                        "trials": 0,
                        "rewards": 0,
                        "resends": 0,
                        "created_at": now,
                    }
                    for sid in unknown
                ],
                index_elements=["session_id"],
            )
        return [sid for sid in ids if sid in known]

    def ask_for_missing(
        self, conn: Connection, now: float, online: dict[str, Status | None]
    ) -> list[tuple[str, RigCommand]]:
        """Resend requests for gaps and lost tails, each claimed in the database."""
        s = self.settings
        candidates = (
            conn.execute(
                select(STREAMS)
                .where(
                    STREAMS.c.completed_at.is_(None),
                    STREAMS.c.problem.is_(None),
                    STREAMS.c.asked_box.in_(sorted(online)),
                    (STREAMS.c.resend_at.is_(None))
                    | (STREAMS.c.resend_at <= now - s.resend_interval),
                    func.coalesce(STREAMS.c.last_doc_at, STREAMS.c.created_at) <= now - s.gap_grace,
                )
                .order_by(STREAMS.c.resend_at.is_not(None), STREAMS.c.resend_at)
                .limit(s.resends_per_tick * 5)
            )
            .mappings()
            .all()
        )
        chosen: list[tuple[Any, list[tuple[int, int | None]]]] = []
        asking = 0  # the chosen that will be asked for (the others are given up on)
        for stream in candidates:
            if asking >= s.resends_per_tick:
                break
            wanted = self._wanted(conn, stream, now, online.get(stream["asked_box"]))
            if wanted is not None:
                chosen.append((stream, wanted))
                asking += stream["resends"] < s.max_resends
        # The chosen streams are locked in session order, skipping any a batch holds now (its
        # documents are arriving: not the time to ask for them). Claiming them one by one in
        # the order found, waiting on the batches' locks, deadlocked a batch of another
        # collector of the group that held one and waited on the next (bench_load run D).
        free = lock_streams(conn, [c["session_id"] for c, _ in chosen], skip_locked=True)
        out: list[tuple[str, RigCommand]] = []
        for stream, wanted in sorted(chosen, key=lambda c: str(c[0]["session_id"])):
            sid = stream["session_id"]
            if sid not in free:
                continue
            if stream["resends"] >= s.max_resends:
                problem = (
                    f"box {stream['asked_box']} sent nothing of what was missing after "
                    f"{s.max_resends} requests"
                )
                conn.execute(
                    update(STREAMS).where(STREAMS.c.session_id == sid).values(problem=problem)
                )
                log.error("session %s: %s", sid, problem)
                continue
            request = new_request_id()
            claimed = conn.execute(
                update(STREAMS)
                .where(
                    STREAMS.c.session_id == sid,
                    (STREAMS.c.resend_at.is_(None))
                    | (STREAMS.c.resend_at <= now - s.resend_interval),
                )
                .values(resend_at=now, resend_request=request, resends=STREAMS.c.resends + 1)
            ).rowcount
            if claimed != 1:
                continue  # another collector asked just now
            for number, (first, last) in enumerate(wanted):
                log.info(
                    "session %s: documents %d-%s missing; asking box %s to resend them",
                    sid, first, "end" if last is None else last, stream["asked_box"],
                )  # fmt: skip
                command = ResendCommand(
                    request_id=f"{request}-{number}", session_id=sid, from_seq=first, to_seq=last
                )
                out.append((stream["asked_box"], command))
        return out

    def _wanted(
        self, conn: Connection, stream: Any, now: float, status: Status | None
    ) -> list[tuple[int, int | None]] | None:
        """The (first, last) seq ranges to ask for (last None: to the end), or None."""
        top = stream["last_seq"] if stream["last_seq"] is not None else stream["max_seq"]
        if stream["stored"] < top + 1:
            return list(self._gaps(conn, stream["session_id"], top))
        if stream["last_seq"] is not None:
            return None  # whole: completion takes it
        if status is not None and status.session_id == stream["session_id"]:
            return None  # still running: more is coming
        since = stream["last_doc_at"] if stream["last_doc_at"] is not None else stream["created_at"]
        if now - since < self.settings.tail_grace:
            return None
        return [(stream["max_seq"] + 1, None)]  # the box moved on without its end arriving

    def _gaps(self, conn: Connection, sid: str, top: int) -> list[tuple[int, int]]:
        """The first few runs of missing seqs up to ``top``, from the stored seqs alone:
        each run starts after a stored seq whose successor is not stored (or at 0)."""
        d, e = DOCUMENTS, aliased(DOCUMENTS)
        mine = d.c.session_id == sid
        starts: list[int] = []
        if not conn.execute(select(exists().where(mine, d.c.seq == 0))).scalar():
            starts.append(0)
        run_ends = conn.execute(
            select(d.c.seq)
            .where(
                mine,
                d.c.seq < top,
                ~exists().where(and_(e.c.session_id == sid, e.c.seq == d.c.seq + 1)),
            )
            .order_by(d.c.seq)
            .limit(GAPS_PER_REQUEST)
        ).scalars()
        starts += [int(seq) + 1 for seq in run_ends]
        gaps = []
        for first in starts[:GAPS_PER_REQUEST]:
            following = conn.execute(
                select(func.min(d.c.seq)).where(mine, d.c.seq > first)
            ).scalar()
            gaps.append((first, int(following) - 1 if following is not None else top))
        return gaps

    def on_resend_reply(
        self,
        conn: Connection,
        box: str,
        request_id: str,
        ok: bool,
        code: str | None,
        error: str | None,
        count: Any,
    ) -> None:
        stream = conn.execute(
            select(STREAMS.c.session_id, STREAMS.c.asked_box).where(
                STREAMS.c.resend_request == request_id.partition("-")[0]
            )
        ).first()
        if stream is None or stream.asked_box != box:
            return
        if ok:
            log.info("box %s resends %s document(s) of session %s", box, count, stream.session_id)
        elif code == "not_found":
            problem = f"box {box} no longer holds the session's documents"
            log.error("session %s cannot be completed: %s", stream.session_id, problem)
            conn.execute(
                update(STREAMS)
                .where(STREAMS.c.session_id == stream.session_id, STREAMS.c.completed_at.is_(None))
                .values(problem=problem)
            )
            conn.execute(
                update(SESSIONS)
                .where(SESSIONS.c.session_id == stream.session_id, SESSIONS.c.complete.is_(False))
                .values(problem=problem)
            )
        else:
            log.warning("box %s could not resend session %s: %s", box, stream.session_id, error)
