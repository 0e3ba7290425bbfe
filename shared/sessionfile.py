"""The canonical per-mouse JSON file: typed models of a session, reading and atomic writing.

A file is a JSON list with one dict per session in training order. The models
describe and validate that shape (and generate its JSON Schema), but files are
kept as the plain dicts they were read as, so that key order, number types and
keys we do not know survive a read-write round trip byte for byte.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from shared.errors import DataFileError
from shared.ids import check_mouse_id

Outcome = Literal[0, 1, 2]
MISSED, CORRECT, INCORRECT = 0, 1, 2
SessionStatus = Literal["complete", "stopped", "aborted"]


def _not_bool(value: Any) -> Any:
    # JSON true would otherwise pass as 1 (a right spout, a correct trial).
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


class Trial(BaseModel):
    """One cued trial. Times are Unix seconds; durations are ms."""

    model_config = ConfigDict(extra="allow")

    start: float = Field(description="cue onset")
    lift_time: float | None = Field(None, description="first paw lift after cue onset")
    lift_paw: Literal[0, 1] | None = Field(None, description="0 = left paw, 1 = right paw")
    end: float = Field(description="touch time, or the cue's end when missed")
    spout: Annotated[Literal[0, 1], BeforeValidator(_not_bool)] = Field(
        description="target spout: 0 = left, 1 = right"
    )
    shaping: bool = Field(False, description="water was given at cue onset")
    cue_duration: float = Field(description="cue duration of this trial in ms")
    outcome: Annotated[Outcome, BeforeValidator(_not_bool)] = Field(
        description="0 = missed, 1 = correct, 2 = incorrect"
    )
    spout_position: list[int] = Field(description="[left, right] actuator positions in mm")


class SessionRecord(BaseModel):
    """One training session as stored in a per-mouse file.

    Metadata given at start (``trainer``, ``weight``, ``training_box`` ...) and
    unknown keys from older files are kept as extra keys.
    """

    model_config = ConfigDict(extra="allow")

    trials: list[Trial] = Field(default_factory=list)
    resets: list[tuple[float, int]] = Field(default_factory=list, description="[t, paw]")
    spontaneous_reaches: list[tuple[float, int]] = Field(
        default_factory=list, description="[t, spout]"
    )
    start_time: float | str | None = Field(
        None, description="Unix seconds; older files hold 'HH:MM:SS'"
    )
    end_time: float | str | None = Field(None, description="Unix seconds or 'HH:MM:SS'")
    date: str | None = Field(None, description="%Y-%m-%d")
    duration: float | None = Field(None, description="actual session length in s")
    notes: str | None = None
    session_id: str | None = Field(None, description="reachlab: unique session id")
    box: str | None = Field(None, description="reachlab: the box that ran the session")
    status: SessionStatus | None = Field(None, description="reachlab: how the session ended")
    software_version: str | None = Field(None, description="reachlab: agent version")


MouseFile = TypeAdapter(list[SessionRecord])


def validate_sessions(sessions: Any, source: str) -> list[dict[str, Any]]:
    """Check that ``sessions`` is a list of session dicts; return it unchanged."""
    if not isinstance(sessions, list):
        raise DataFileError(f"{source}: expected a JSON list of sessions")
    try:
        MouseFile.validate_python(sessions)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise DataFileError(f"{source}: session {where}: {err['msg']}") from None
    return sessions


def mouse_file_path(data_dir: str | os.PathLike[str], mouse_id: str) -> Path:
    """Where ``mouse_id``'s file lives in ``data_dir``."""
    return Path(data_dir).expanduser() / f"{check_mouse_id(mouse_id)}.json"


def read_sessions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and validate a per-mouse file; a missing file is an empty history."""
    file = Path(path).expanduser()
    if not file.exists():
        return []
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{file}: not valid JSON ({exc})") from None
    return validate_sessions(raw, str(file))


def dumps_sessions(sessions: Iterable[dict[str, Any]]) -> str:
    """Serialise sessions exactly as the original library did (``json.dump`` defaults)."""
    return json.dumps(list(sessions))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` via a temp file and a rename, so a crash never leaves half a file."""
    file = Path(path).expanduser()
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        # mkstemp makes the file owner-only; keep the old file's mode, or the umask's default.
        try:
            mode = file.stat().st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def write_sessions(path: str | os.PathLike[str], sessions: Iterable[dict[str, Any]]) -> Path:
    """Atomically write a per-mouse file."""
    return atomic_write_text(path, dumps_sessions(sessions))


def append_session(path: str | os.PathLike[str], session: dict[str, Any]) -> Path:
    """Add one session to a per-mouse file, keeping every session already in it.

    A session already present (same ``session_id``) is not added twice.
    """
    sessions = read_sessions(path)
    sid = session.get("session_id")
    if sid is not None and any(s.get("session_id") == sid for s in sessions):
        return Path(path).expanduser()
    return write_sessions(path, [*sessions, session])
