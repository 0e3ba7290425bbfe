"""The ``session_end`` that closes a session a dead agent process left running.

When an agent is killed mid-session its journal holds the session's documents
but no end. At the next start :meth:`agent.journal.Journal.close_interrupted`
appends the end made here: status ``aborted``, at the time of the last document
(the last moment the journal knows the session was alive), with the counts of
every trial that was recorded, so the controller can complete the session.
"""

from __future__ import annotations

from shared.days import session_day
from shared.documents import Document, SessionBuilder, SessionEnd, SessionStart
from shared.errors import ProtocolError
from shared.outcomes import CORRECT, INCORRECT, MISSED


def aborted_end(docs: list[Document]) -> SessionEnd:
    """The ``session_end`` that closes an interrupted session's documents."""
    if not docs or not isinstance(docs[0], SessionStart):
        raise ProtocolError("an interrupted session has no session_start in the journal")
    start, last = docs[0], docs[-1]
    builder = SessionBuilder()
    try:
        for doc in docs:
            builder.add(doc)
    except ProtocolError:
        pass  # counts from what folds; the documents themselves are kept as they are
    outcomes = [t["outcome"] for t in builder.data.get("trials", [])]
    counts = {
        "trials": len(outcomes),
        "correct": outcomes.count(CORRECT),
        "incorrect": outcomes.count(INCORRECT),
        "missed": outcomes.count(MISSED),
        "rewards": builder.rewards,
    }
    notes = start.metadata.get("notes")
    return SessionEnd(
        session_id=start.session_id,
        box=start.box,
        seq=last.seq + 1,
        t=last.t,
        status="aborted",
        end_time=last.t,
        duration=round(last.t - start.t, 6),
        date=session_day(start.t),
        notes=notes if isinstance(notes, str) else None,
        counts=counts,
    )
