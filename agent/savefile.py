"""Saving a Mouse's sessions: the file gets what the mouse holds, and nothing is lost silently.

A script may delete a session or merge two (the original library's
``undo_last_session.py``, ``merge_last_two_sessions.py``); saving writes that,
as the original did. What the previous file held and the new one does not
(a session removed, or changed in place) is kept in a backup beside it,
``<mouse>.json.<UTC time>.bak``, and named in the :class:`SaveReport` and the
log. Sessions another process added to the file since the mouse read it are
kept, not overwritten.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.sessionfile import read_sessions, write_sessions

log = logging.getLogger(__name__)


def fingerprint(session: dict[str, Any]) -> str:
    """The session's content as text: equal text, the same session."""
    return json.dumps(session, sort_keys=True, default=str)


def describe(session: dict[str, Any], number: int) -> str:
    """``session 3 (2024-05-01, 42 trials)``: a session named as a person finds it in a file."""
    trials = session.get("trials")
    count = len(trials) if isinstance(trials, list) else 0
    return f"session {number} ({session.get('date', 'no date')}, {count} trials)"


@dataclass(frozen=True)
class SaveReport:
    """What a save wrote, what it removed or changed, and where the previous file went."""

    path: Path
    sessions: int
    backup: Path | None = None
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept_from_others: int = 0

    def lines(self) -> list[str]:
        """What a person should read about this save, one line a fact."""
        out = [f"saved {self.sessions} sessions to {self.path}"]
        if self.removed:
            out.append(f"removed from the file: {', '.join(self.removed)}")
        if self.changed:
            out.append(f"changed in the file: {', '.join(self.changed)}")
        if self.backup is not None:
            out.append(f"the previous file is kept as {self.backup}")
        if self.kept_from_others:
            out.append(f"kept {self.kept_from_others} sessions another program added to the file")
        return out


def _backup_path(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate = path.with_name(f"{path.name}.{stamp}.bak")
    number = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{stamp}-{number}.bak")
        number += 1
    return candidate


def save_sessions(
    path: Path,
    held: list[dict[str, Any]],
    known: list[str | None],
    read: list[str] | None,
    mine: list[bool] | None = None,
) -> SaveReport:
    """Write ``held`` (the mouse's sessions, in order) to ``path``.

    ``read`` holds the fingerprints of the file as the mouse read (or last saved)
    it; ``known[i]`` is the one ``held[i]`` had then, None for a session new
    since. Sessions now in the file that ``read`` does not account for were added
    by someone else: kept, placed before the mouse's new sessions. ``read`` None
    (the mouse did not read this file) makes everything in it the mouse's to
    replace, as the original's save did, backed up. ``mine[i]``
    marks a session this mouse made itself (a session still running, saved by a
    hook after every trial): its growth is no change that needs a backup.
    """
    mine = mine if mine is not None else [False] * len(held)
    previous = read_sessions(path)
    remaining = Counter(read if read is not None else map(fingerprint, previous))
    held_now = Counter(fingerprint(s) for s in held)
    others: list[dict[str, Any]] = []
    dropped: list[tuple[str, str]] = []  # (fingerprint, description) of sessions not kept as-is
    for number, session in enumerate(previous, 1):
        fp = fingerprint(session)
        if remaining[fp] == 0:
            others.append(session)
            continue
        remaining[fp] -= 1
        if held_now[fp] > 0:
            held_now[fp] -= 1
        else:
            dropped.append((fp, describe(session, number)))
    edits = [
        (i, s, fp)
        for i, (s, fp) in enumerate(zip(held, known, strict=True), 1)
        if fp is not None and fingerprint(s) != fp
    ]
    edited = Counter(fp for _i, _s, fp in edits)
    changed = [describe(s, i) for i, s, _fp in edits if not mine[i - 1]]
    removed = []
    for fp, description in dropped:
        if edited[fp] > 0:  # its new form is in the file: said once, as changed
            edited[fp] -= 1
        else:
            removed.append(description)
    first_new = next((i for i, fp in enumerate(known) if fp is None), len(held))
    sessions = [*held[:first_new], *others, *held[first_new:]]
    backup = None
    if (removed or changed) and path.exists():
        backup = _backup_path(path)
        shutil.copy2(path, backup)
    write_sessions(path, sessions)
    report = SaveReport(path, len(sessions), backup, removed, changed, len(others))
    if removed or changed or others:
        for line in report.lines()[1:]:
            log.warning("%s: %s", path.name, line)
    return report
