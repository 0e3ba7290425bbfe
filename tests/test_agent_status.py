"""``labagent status`` (agent.status): the journal's uncommitted sessions and pending documents."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from agent.journal import Journal
from agent.status import StatusCommand

pytestmark = pytest.mark.broker


def test_labagent_status_lists_uncommitted_sessions_and_pending_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_journal import run_session

    path = tmp_path / "journal.sqlite3"
    args = argparse.Namespace(journal=str(path), config_file=None, json=False)
    assert StatusCommand.run(args) == 0
    assert "no journal" in capsys.readouterr().out
    docs = run_session(duration=30)
    with Journal.open(path) as journal:
        entries = [journal.append(doc) for doc in docs]
        journal.mark_acked(e.id for e in entries[:-3])
    assert StatusCommand.run(args) == 0
    out = capsys.readouterr().out
    assert "1 session(s) not yet committed" in out and "3 document(s) not yet acknowledged" in out
    assert "s1" in out and "M1" in out and "complete" in out
    args.json = True
    StatusCommand.run(args)
    data = json.loads(capsys.readouterr().out)
    assert data["pending"] == 3 and data["sessions"][0]["session_id"] == "s1"
