"""The dashboard's curve cache: one point per stored session, never stale, bounded.

A cohort page computes each stored session's point once; a second look reads none
again and sends the same JSON; a session added, or stored again with other data, is
computed (alone) on the next look, and a mouse's new box shows; the cache holds at most
its limit; and the cached curves equal the uncached ones (a cache of size 0).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from controller.db import open_database
from controller.store import SESSIONS, digest, session_text
from controller.web.pages import Pages

from .weblab import import_history, labctl


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    db_url = f"sqlite:///{tmp_path / 'lab.db'}"
    open_database(db_url).close()
    return {"LABCTL_DB": db_url}


def test_each_stored_session_is_computed_once_and_again_only_when_stored_again(
    env: dict[str, str], tmp_path: Path
) -> None:
    import_history(env, tmp_path / "files", {"M1": 3, "M2": 2})
    labctl(env, "cohort", "create", "C1", "M1", "M2")
    db = open_database(env["LABCTL_DB"])
    try:
        pages = Pages(db)
        first = pages.cohort("C1")
        assert pages.computed == 5
        assert pages.cohort("C1") == first
        assert [p["index"] for p in pages.curve("M1")] == [1, 2, 3]
        assert pages.computed == 5  # the mouse page shares the cohort's points
        assert first == Pages(db, cache_limit=0).cohort("C1")  # cached == uncached

        body = pages.cohort_json("C1")
        assert json.loads(body) == first
        assert pages.cohort_json("C1") is body  # nothing changed: the same bytes, not rebuilt

        # A session added: only it is read, and the curve has it.
        import_history(env, tmp_path / "more", {"M1": 4})
        assert [len(c) for c in json.loads(pages.cohort_json("C1"))["curves"].values()] == [4, 2]
        after = pages.cohort("C1")
        assert pages.computed == 6
        assert [len(after["curves"][m]) for m in ("M1", "M2")] == [4, 2]
        assert after == Pages(db, cache_limit=0).cohort("C1")

        # A session stored again with other data (as a completion stores it): a new key.
        with db.engine.begin() as conn:
            pk, text = conn.execute(
                select(SESSIONS.c.id, SESSIONS.c.data)
                .where(SESSIONS.c.mouse_id == "M2")
                .order_by(SESSIONS.c.position)
                .limit(1)
            ).one()
            session = json.loads(text)
            session["trials"] = session["trials"][:7]
            stored = session_text(session)
            conn.execute(
                update(SESSIONS)
                .where(SESSIONS.c.id == pk)
                .values(data=stored, digest=digest(stored), completed_at=time.time())
            )
        assert pages.curve("M2")[0]["trials"] == 7
        assert pages.computed == 7
        assert pages.cohort("C1")["curves"]["M2"][0]["trials"] == 7
        assert json.loads(pages.cohort_json("C1"))["curves"]["M2"][0]["trials"] == 7
        assert pages.computed == 7
        # A mouse put on a box: the page's JSON says so.
        labctl(env, "box", "add", "4")
        labctl(env, "assign", "M2", "--box", "4")
        assert json.loads(pages.cohort_json("C1"))["rows"][1]["box"] == "4"

        # Bounded: a small cache keeps only its limit.
        small = Pages(db, cache_limit=2)
        assert small.cohort("C1") == pages.cohort("C1")
        assert small.cached == 2
    finally:
        db.close()
