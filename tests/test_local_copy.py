"""The Pi's local copy (issue 17 item 10): the journal is pruned only once ``<mouse>.json`` holds
the session; until then the rig's status lists it as not copied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.digest import session_digest
from shared.sessionfile import read_sessions

from .test_agent_input import WireAgent, ended_session


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[WireAgent]:
    agent = WireAgent(tmp_path)
    yield agent
    agent.close()


def test_a_session_whose_local_copy_failed_is_not_pruned_until_it_is_written(
    wire: WireAgent, tmp_path: Path
) -> None:
    mouse_file = tmp_path / "data" / "M1.json"
    mouse_file.parent.mkdir(parents=True, exist_ok=True)
    mouse_file.write_text("{not json", encoding="utf-8")  # a corrupt file: the copy fails
    sid = ended_session(wire)
    journal = wire.agent.journal
    info = journal.session(sid)
    assert info is not None and not info.copied and info.last_seq is not None
    assert wire.agent.current_status().uncopied == [sid]
    digest = session_digest(journal.load(sid))

    refused = wire.command("committed", session_id=sid, last_seq=info.last_seq, digest=digest)
    assert not refused.ok and refused.code == "busy"
    assert "local copy" in (refused.error or "") and "M1.json" in (refused.error or "")
    kept = journal.session(sid)
    assert kept is not None and kept.state == "ended" and kept.documents == info.documents

    mouse_file.unlink()  # the person fixed it: the next committed writes the copy, then prunes
    done = wire.command("committed", session_id=sid, last_seq=info.last_seq, digest=digest)
    assert done.ok and done.data["pruned"] is True
    assert [s["session_id"] for s in read_sessions(mouse_file)] == [sid]
    assert wire.agent.current_status().uncopied == []
