"""The canonical per-mouse JSON file: typed models of a session, reading and atomic writing.

A file is a JSON list with one dict per session in training order. Reading is
lenient and writing exact: :func:`read_sessions` keeps the plain dicts as they
are in the file, so that every shape the original library wrote over its life,
key order, number types and keys we do not know survive a read-write round
trip. The models describe and strictly validate the sessions reachlab itself
records (and generate their JSON Schema); docs/data-format.md lists the older
shapes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from shared.errors import DataFileError
from shared.ids import check_mouse_id
from shared.outcomes import Outcome

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
    """Check strictly that ``sessions`` are sessions as reachlab records them; return them
    unchanged.

    This is for what reachlab itself makes; files from elsewhere are read with
    :func:`read_sessions`, which only refuses what is not a list of sessions at all.
    """
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


_JSON_KIND = {dict: "a JSON object", list: "a JSON list", str: "a string", bool: "true/false"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_KIND.get(type(value), "a number")


def _cut_short(text: str, exc: json.JSONDecodeError) -> bool:
    """Whether the decoder failed because the text ends mid-JSON (a copy cut short)."""
    if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
        return True
    # Cut inside a number or a literal: '[{"end": 2.' or '[{"shaping": tru'
    rest = text[exc.pos :].rstrip()
    if all(char in "-+.eE0123456789" for char in rest):
        return True
    words = ("true", "false", "null", "NaN", "Infinity", "-Infinity")
    return any(word.startswith(rest) for word in words)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return data


def loads_sessions(
    text: str, source: str, *, refuse_duplicate_keys: bool = False
) -> list[dict[str, Any]]:
    """The session dicts of a per-mouse file's text, exactly as they are in it.

    Lenient: every shape of session the original library ever wrote is kept,
    unknown keys and odd values and all. Refused, with one line naming
    ``source`` and the problem: text that is not JSON (or is cut short), and
    JSON that is not a list of dicts. ``refuse_duplicate_keys``: also refuse an
    object that names a key twice (a hand edit), of which JSON keeps only the
    last value, so storing it would lose the other.
    """
    if not text.strip():
        raise DataFileError(f"{source}: the file is empty, not a JSON list of sessions")
    try:
        hook = _refuse_duplicate_keys if refuse_duplicate_keys else None
        data = json.loads(text, object_pairs_hook=hook)
    except _DuplicateKey as exc:
        raise DataFileError(
            f"{source}: the key {exc.key!r} appears twice in one object; only one value "
            "would be kept, so fix the file first"
        ) from None
    except json.JSONDecodeError as exc:
        if _cut_short(text, exc):
            raise DataFileError(
                f"{source}: truncated: the JSON ends before it is complete "
                f"(line {exc.lineno}, column {exc.colno})"
            ) from None
        raise DataFileError(
            f"{source}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        # The C decoder stops at Python's recursion limit; a session is ~5 levels deep.
        raise DataFileError(
            f"{source}: nested too deeply to be a per-mouse file (not a list of sessions)"
        ) from None
    if not isinstance(data, list):
        raise DataFileError(f"{source}: expected a JSON list of sessions, found {_kind(data)}")
    for number, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataFileError(
                f"{source}: session {number} is {_kind(item)}, not a session (a JSON object)"
            )
    return data


def read_sessions(
    path: str | os.PathLike[str], *, refuse_duplicate_keys: bool = False
) -> list[dict[str, Any]]:
    """The session dicts of a per-mouse file, unchanged; a missing file is an empty history.

    See :func:`loads_sessions` for what is refused (:class:`DataFileError`).
    """
    file = Path(path).expanduser()
    if not file.exists():
        return []
    try:
        # utf-8-sig: a file saved by an editor that adds a byte-order mark still reads.
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except IsADirectoryError:
        raise DataFileError(f"{file}: is a folder, not a per-mouse file") from None
    except OSError as exc:
        raise DataFileError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    return loads_sessions(text, str(file), refuse_duplicate_keys=refuse_duplicate_keys)


#: Text read at a time by :func:`iter_sessions`: a session is ~60 kB, so most need one read.
READ_CHARS = 1 << 20
_SPACE = " \t\n\r"


class _NotPlain(Exception):
    """The streaming reader met something :func:`loads_sessions` must judge (a refusal)."""


class _Reader:
    """A window on a text file: the part not parsed yet, refilled a chunk at a time."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.text, self.pos, self.eof = handle, "", 0, False

    def more(self) -> bool:
        """Read on (at least as much as is held, so a long session costs few re-parses)."""
        if self.eof:
            return False
        chunk = self.handle.read(max(READ_CHARS, len(self.text) - self.pos))
        self.eof = not chunk
        self.text, self.pos = self.text[self.pos :] + chunk, 0
        return bool(chunk)

    def next_char(self) -> str:
        """The next character that is not JSON whitespace ("" at the end), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""


def _stream_sessions(handle: Any, decoder: json.JSONDecoder) -> Iterator[dict[str, Any]]:
    reader = _Reader(handle)
    if reader.next_char() != "[":
        raise _NotPlain
    reader.pos += 1
    if reader.next_char() == "]":
        reader.pos += 1
    else:
        while True:
            if reader.next_char() != "{":
                raise _NotPlain
            if len(reader.text) - reader.pos < READ_CHARS // 2:
                reader.more()  # a session seldom ends past the text held (parsed twice)
            while True:
                try:
                    session, reader.pos = decoder.raw_decode(reader.text, reader.pos)
                    break
                except json.JSONDecodeError:
                    if not reader.more():  # at the end and still not a whole object
                        raise _NotPlain from None
            yield session
            following = reader.next_char()
            reader.pos += 1
            if following == "]":
                break
            if following != ",":
                raise _NotPlain
    if reader.next_char() != "":
        raise _NotPlain


def iter_sessions(
    path: str | os.PathLike[str], *, refuse_duplicate_keys: bool = False
) -> Iterator[dict[str, Any]]:
    """The session dicts of a per-mouse file one at a time, as :func:`read_sessions` would
    return them, holding a few MB of the text rather than the whole file and every dict.

    Refuses what :func:`read_sessions` refuses, with its line, possibly after yielding the
    sessions before the problem: a caller that stores them must do so in one transaction.
    """
    file = Path(path).expanduser()
    hook = _refuse_duplicate_keys if refuse_duplicate_keys else None
    decoder = json.JSONDecoder(object_pairs_hook=hook)
    try:
        with file.open(encoding="utf-8-sig") as handle:
            yield from _stream_sessions(handle, decoder)
        return
    except (_NotPlain, _DuplicateKey, RecursionError, UnicodeDecodeError, OSError):
        pass
    # A refusal (or an unreadable file): the whole-text reader words it, line and column.
    read_sessions(file, refuse_duplicate_keys=refuse_duplicate_keys)
    raise DataFileError(f"{file}: cannot be read as a list of sessions")


def dumps_sessions(sessions: Iterable[dict[str, Any]]) -> str:
    """Serialise sessions exactly as the original library did (``json.dump`` defaults)."""
    return json.dumps(list(sessions))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` via a temp file and a rename, so a crash never leaves half a file."""
    file = Path(path).expanduser()
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    except OSError as exc:
        raise _naming(exc, file) from None
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
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(exc, file) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def _naming(exc: OSError, file: Path) -> OSError:
    """``exc`` about ``file``: the hidden temp file is ours, the person knows only the target."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(file))


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
