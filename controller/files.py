"""Per-mouse JSON files in and out of the database: ``labctl import`` and ``labctl export``.

Export writes ``DIR/<mouse>.json`` atomically in the canonical format
(:func:`shared.sessionfile.dumps_sessions` of the session dicts in training
order). Each session is stored as its exported JSON text, so exporting is
joining texts, and an imported file comes out byte for byte as it went in
when it was in that canonical form (as the original library wrote it).

Import is idempotent: a session already stored (same text, or same
``session_id``) is skipped, so importing a file twice, or importing the
agent's local copy of sessions the collector already has, changes nothing.
The file's order is kept: each session is placed at its start time, but
never before the session above it in the file. Reading is lenient (every
shape the original library wrote is kept as it came, see docs/data-format.md);
a file that is not a list of sessions is refused with one line and changes
nothing, while the other files named are still imported.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from controller.db import Database
from controller.husbandry.figures import session_figures
from controller.store import (
    SESSIONS,
    complete_session_texts,
    digest,
    ensure_mouse,
    lock_mouse,
    rewards_of,
    session_text,
    session_time,
    store_trials,
    trial_count_of,
)
from shared.errors import DataFileError, InvalidIdError
from shared.ids import check_mouse_id
from shared.sessionfile import atomic_write_text, iter_sessions, mouse_file_path

# ---------------------------------------------------------------- import


@dataclass
class ImportResult:
    """What importing one file did. A refused file changed nothing in the database."""

    path: Path
    mouse: str
    created_mouse: bool = False
    imported: int = 0
    present: int = 0
    conflicts: list[str] = field(default_factory=list)
    refused: str = ""  # why the file was not imported: one line, without the path

    @property
    def error(self) -> str:
        """The refusal as one line naming the file."""
        return f"{self.path}: {self.refused}"


def mouse_id_of(path: Path) -> str:
    """The mouse a per-mouse file belongs to: its name without ``.json``."""
    try:
        return check_mouse_id(path.stem)
    except InvalidIdError as exc:
        raise DataFileError(f"{path}: the file name must be <mouse id>.json, and {exc}") from None


def read_mouse_file(path: str | os.PathLike[str]) -> tuple[str, list[dict[str, Any]]]:
    """(mouse id, sessions) of a per-mouse file; DataFileError naming the file if unusable."""
    mouse, sessions = stream_mouse_file(path)
    return mouse, list(sessions)


def stream_mouse_file(path: str | os.PathLike[str]) -> tuple[str, Iterator[dict[str, Any]]]:
    """(mouse id, its sessions one at a time) of a per-mouse file: DataFileError naming the
    file at once if it is not one, or while the sessions are read if its text is unusable."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise DataFileError(f"{file}: is a folder, not a per-mouse file")
    if not file.is_file():
        raise DataFileError(f"{file}: no such file")
    mouse = mouse_id_of(file)
    # Stored once, a file must come back whole: a key named twice would lose a value.
    return mouse, iter_sessions(file, refuse_duplicate_keys=True)


def files_to_import(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files named by ``paths``: a file as given, a folder as every ``*.json`` in it.

    A folder's files come in name order, hidden ones left out; a file named twice is
    imported once.
    Names that are neither (or an empty folder) are kept, for the import to refuse.
    """
    files: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            # Hidden files are never a mouse's (ids start with a letter or digit): macOS's
            # "._M1.json" copies on a USB stick, say.
            found = sorted(
                p for p in path.glob("*.json") if p.is_file() and not p.name.startswith(".")
            )
            files.extend(found or [path])
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def _refusal(path: Path, exc: Exception) -> str:
    message = str(exc)
    for prefix in (f"{path}: ", f"{path.expanduser()}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def import_files(
    db: Database,
    paths: Sequence[str | os.PathLike[str]],
    *,
    progress: Callable[[ImportResult], None] | None = None,
) -> list[ImportResult]:
    """Import per-mouse files and folders of them, each file in its own transaction.

    A file that cannot be used is refused with the reason and changes nothing
    (not even its mouse is created); the other files are still imported.
    """
    results = []
    for path in files_to_import(paths):
        result = import_file(db, path)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def import_file(db: Database, path: Path) -> ImportResult:
    """Import one per-mouse file; a refused file gets a result with ``refused`` set."""
    if path.is_dir():
        return ImportResult(path, path.name, refused="a folder with no *.json files in it")
    try:
        mouse, sessions = stream_mouse_file(path)
    except DataFileError as exc:
        return ImportResult(path, path.stem, refused=_refusal(path, exc))
    try:
        # Read while stored, one session at a time: memory stays near one session's, and a
        # problem found late in the file rolls back what was stored before it.
        with db.engine.begin() as conn:
            return import_sessions(conn, mouse, sessions, path=path)
    except DataFileError as exc:  # the transaction is rolled back: nothing of the file stays
        return ImportResult(path, mouse, refused=_refusal(path, exc))


def _text(session: dict[str, Any], number: int, source: str) -> str:
    try:
        return session_text(session)
    except RecursionError:
        raise DataFileError(f"{source}: session {number} is nested too deeply") from None
    except (TypeError, ValueError) as exc:  # not from a JSON file, but a caller's dicts
        raise DataFileError(f"{source}: session {number} is not JSON ({exc})") from None


def import_sessions(
    conn: Connection, mouse: str, sessions: Iterable[dict[str, Any]], *, path: Path | None = None
) -> ImportResult:
    """Store the sessions of one mouse that are not stored yet, keeping their order.

    A session stored already counts as present, as many times as it is stored:
    a file that holds the same session twice (two empty sessions, say) gets
    both stored, and importing it again stores neither.
    """
    now = time.time()
    result = ImportResult(path=path or Path(f"{mouse}.json"), mouse=mouse)
    result.created_mouse = ensure_mouse(conn, mouse, now)
    lock_mouse(conn, mouse)
    previous: float | None = None
    seen: dict[str, int] = {}  # digest of the text -> copies met so far in this file
    for number, session in enumerate(sessions):
        text = _text(session, number, str(result.path))
        hashed = digest(text)
        copy = seen.get(hashed, 0)
        seen[hashed] = copy + 1
        existing = _find_existing(conn, mouse, session, text, hashed, copy)
        if existing is not None:
            position, conflict = existing
            if conflict:
                result.conflicts.append(conflict)
            else:
                result.present += 1
            previous = position if previous is None else max(previous, position)
            continue
        when = session_time(session)
        # The file's order is the training order: never place a session before the one above it.
        position = when if when is not None else (previous if previous is not None else 0.0)
        if previous is not None and position < previous:
            position = previous
        previous = position
        _insert_imported(conn, mouse, session, text, hashed, position, now)
        result.imported += 1
    return result


def _find_existing(
    conn: Connection, mouse: str, session: dict[str, Any], text: str, hashed: str, copy: int
) -> tuple[float, str | None] | None:
    """(position, conflict message or None) of the stored ``copy``-th copy of this session."""
    same = conn.execute(
        select(SESSIONS.c.position, SESSIONS.c.data)
        .where(SESSIONS.c.mouse_id == mouse, SESSIONS.c.digest == hashed)
        .order_by(SESSIONS.c.position, SESSIONS.c.id)
    ).all()
    stored = [position for position, data in same if data == text]
    session_id = session.get("session_id")
    if copy < len(stored) or (stored and isinstance(session_id, str)):
        # A recorded session (it has an id) is stored once however often a file repeats it.
        return stored[min(copy, len(stored) - 1)], None
    if isinstance(session_id, str):
        row = conn.execute(
            select(SESSIONS.c.position, SESSIONS.c.mouse_id, SESSIONS.c.complete).where(
                SESSIONS.c.session_id == session_id
            )
        ).first()
        if row is not None:
            position, owner, complete = row
            what = "a different copy of it" if complete else "it, still being collected"
            if owner != mouse:
                what = f"it for mouse {owner}"
            return position, f"session {session_id}: the database already holds {what}; kept that"
    return None


def _insert_imported(
    conn: Connection,
    mouse: str,
    session: dict[str, Any],
    text: str,
    hashed: str,
    position: float,
    now: float,
) -> None:
    session_id = session.get("session_id")
    status = session.get("status")
    box = session.get("box")
    end = session.get("end_time")
    date = session.get("date")
    session_pk = conn.execute(
        SESSIONS.insert()
        .values(
            session_id=session_id if isinstance(session_id, str) and session_id else None,
            mouse_id=mouse,
            box=str(box)[:32] if isinstance(box, str | int) and not isinstance(box, bool) else None,
            origin="imported",
            status=status if status in ("complete", "stopped", "aborted") else None,
            complete=True,
            position=position,
            start_time=session_time(session),
            end_time=float(end)
            if isinstance(end, int | float) and not isinstance(end, bool)
            else None,
            date=date[:32] if isinstance(date, str) else None,
            trial_count=trial_count_of(session),
            reward_count=rewards_of(session),
            data=text,
            digest=hashed,
            created_at=now,
            completed_at=now,
            **session_figures(session),
        )
        .returning(SESSIONS.c.id)
    ).scalar_one()
    store_trials(conn, session_pk, session)


# ---------------------------------------------------------------- export


@dataclass
class ExportResult:
    mouse: str
    path: Path
    sessions: int
    written: bool
    note: str = ""
    failed: bool = False


def export_text(conn: Connection, mouse: str) -> tuple[str, int]:
    """The canonical file text of the mouse's complete sessions, and how many there are."""
    texts = list(complete_session_texts(conn, mouse))
    # Equal to json.dumps(list_of_dicts): json.dumps joins list items with ", ".
    return "[" + ", ".join(texts) + "]", len(texts)


def _foreign_sessions(existing: str, text: str) -> int | None:
    """How many sessions the existing file holds that the new text lacks (None: not a file
    of sessions)."""
    try:
        old = json.loads(existing)
        new = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(old, list):
        return None
    ours = {json.dumps(s) for s in new}
    return sum(1 for s in old if json.dumps(s) not in ours)


def export_mouse(
    conn: Connection, mouse: str, out_dir: Path, *, force: bool = False
) -> ExportResult:
    """Write ``out_dir/<mouse>.json``; never silently drop sessions an existing file holds."""
    path = mouse_file_path(out_dir, mouse)
    text, count = export_text(conn, mouse)
    if count == 0:
        return ExportResult(mouse, path, 0, False, "no complete sessions yet: nothing written")
    if path.exists() and not force:
        existing = path.read_text(encoding="utf-8", errors="replace")
        if existing == text:
            return ExportResult(mouse, path, count, False, "unchanged")
        # The everyday case, checked without parsing 10+ MB twice: the database has only
        # added sessions after those of our last export.
        appended = existing.startswith("[") and text.startswith(existing.rstrip()[:-1] + ", ")
        foreign = 0 if appended and existing.rstrip().endswith("]") else None
        if foreign is None:
            foreign = _foreign_sessions(existing, text)
        if foreign is None:
            raise DataFileError(
                f"{path} exists and is not a per-mouse file; not replacing it (--force would)"
            )
        if foreign:
            raise DataFileError(
                f"{path} holds {foreign} session(s) the database does not have; "
                f"`labctl import {path}` first, or pass --force to replace it"
            )
    atomic_write_text(path, text)
    return ExportResult(mouse, path, count, True)


def export_mice(
    db: Database,
    mice: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: Callable[[ExportResult], None] | None = None,
) -> list[ExportResult]:
    """Export every mouse in ``mice`` (one consistent snapshot of the database).

    A mouse whose file cannot be written gets a result with ``failed`` set;
    the others are still exported.
    """
    folder = Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise DataFileError(f"{folder} is a file, not a folder: --out names the folder to write to")
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    with db.reader_engine.connect() as conn, conn.begin():
        for mouse in mice:
            try:
                result = export_mouse(conn, mouse, folder, force=force)
            except (DataFileError, OSError) as exc:
                # One mouse's problem must not stop the others' export.
                path = mouse_file_path(folder, mouse)
                result = ExportResult(mouse, path, 0, False, str(exc), failed=True)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def mice_with_sessions(conn: Connection) -> list[str]:
    return list(
        conn.execute(
            select(SESSIONS.c.mouse_id)
            .where(SESSIONS.c.complete.is_(True))
            .group_by(SESSIONS.c.mouse_id)
            .order_by(SESSIONS.c.mouse_id)
        ).scalars()
    )


def session_count(conn: Connection, mouse: str) -> int:
    return int(
        conn.execute(
            select(func.count()).where(SESSIONS.c.mouse_id == mouse, SESSIONS.c.complete.is_(True))
        ).scalar_one()
    )
