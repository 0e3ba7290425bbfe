"""``labctl export --format nwb``: each stored session of the mice named as one NWB file.

Files go in DANDI's layout, ``DIR/sub-<mouse>/sub-<mouse>_ses-<start>_behavior.nwb``,
the labels being the mouse id and the session's local start time
(``20260907T101500``) with anything but letters, digits and ``-`` made ``-``
(DANDI splits names at ``_``). The subject's fields come from the mouse
(``labctl mouse set``); a mouse without what DANDI requires stops the export
before any file is written, naming what is missing. Lab, institution and the
default experimenter are lab settings (``labctl lab set``).

Everything is read in one database snapshot; each file is written through a
temporary file. pynwb is imported only by :mod:`.writer`.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from controller.db import Database, Transaction
from controller.husbandry.calibration import SPOUTS, Timeline, describe
from controller.husbandry.models import Weighing
from controller.husbandry.settings import LabSettings, lab_settings
from controller.husbandry.water import NOMINAL_UL, reward_volume
from controller.lab import get_mouse
from controller.models import StoredDocument, TrainingSession
from controller.nwb.content import RewardVolume, session_content
from controller.nwb.subject import Subject
from controller.store import session_time
from shared import __version__
from shared.analysis.trials import is_number
from shared.documents import Document, SessionStart, parse_document
from shared.errors import DataFileError, ProtocolError, ReachlabError

_LABEL = re.compile(r"[^A-Za-z0-9-]")
#: A session's NWB file names this in its identifier namespace (stable across exports).
_IDENTIFIERS = uuid.UUID("6f1c1f5e-3b1a-4c55-9a44-7f0d2c1e9b10")


class SubjectIncomplete(ReachlabError, ValueError):
    """A mouse lacks what DANDI requires of a subject."""


@dataclass
class NwbResult:
    """What exporting one session did."""

    mouse: str
    path: Path | None
    written: bool
    trials: int = 0
    note: str = ""
    failed: bool = False


def label(text: str) -> str:
    """``text`` as a DANDI file-name label: letters, digits and ``-``."""
    return _LABEL.sub("-", text) or "unknown"


def session_path(out_dir: Path, mouse: str, session_label: str) -> Path:
    sub = f"sub-{label(mouse)}"
    return out_dir / sub / f"{sub}_ses-{session_label}_behavior.nwb"


def check_subjects(tx: Transaction, mice: Sequence[str]) -> dict[str, Subject]:
    """The mice as subjects; :class:`SubjectIncomplete` naming every missing field if any
    mouse lacks what DANDI requires (so nothing is written)."""
    subjects = {m: Subject.of(get_mouse(tx, m)) for m in mice}
    lacking = [(m, s.missing()) for m, s in subjects.items() if s.missing()]
    if lacking:
        what = "; ".join(f"{m} lacks {', '.join(fields)}" for m, fields in lacking)
        example = lacking[0][0]
        raise SubjectIncomplete(
            f"DANDI requires each subject's species, sex and date of birth or age: {what}; set "
            f'them with `labctl mouse set {example} --species "Mus musculus" --sex F '
            "--dob YYYY-MM-DD`"
        )
    return subjects


def _weight(tx: Transaction, row: TrainingSession, data: dict[str, Any]) -> float | None:
    """The session's weight in grams: its own metadata, else a weighing given with it."""
    value = data.get("weight")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            value = None  # "?" and the like, as the 2019 prompts took them
    if is_number(value) and value > 0:
        return float(value)
    if row.session_id is None:
        return None
    grams = tx.scalars(
        select(Weighing.grams)
        .where(Weighing.session_id == row.session_id, Weighing.voided_at.is_(None))
        .order_by(Weighing.weighed_at.desc())
    ).first()
    return grams


def _documents(tx: Transaction, row: TrainingSession) -> list[Document] | None:
    """The rig's own record of a recorded session, if the database holds it whole."""
    if row.origin != "recorded" or row.session_id is None:
        return None
    bodies = tx.scalars(
        select(StoredDocument.body)
        .where(StoredDocument.session_id == row.session_id)
        .order_by(StoredDocument.seq)
    ).all()
    try:
        docs = [parse_document(body) for body in bodies]
    except ProtocolError:
        return None
    if not docs or (row.last_seq is not None and len(docs) != row.last_seq + 1):
        return None
    return docs


def _volume(timeline: Timeline | None, nominal: float) -> RewardVolume:
    def volume(spout: int, t: float, duration_ms: float | None) -> tuple[float, bool]:
        return reward_volume(timeline, spout, t, duration_ms, nominal)

    return volume


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _box(row: TrainingSession, data: dict[str, Any]) -> str | None:
    for value in (row.box, data.get("box"), data.get("training_box")):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def export_session(
    tx: Transaction,
    row: TrainingSession,
    subject: Subject,
    settings: LabSettings,
    out_dir: Path,
    used: set[str],
    timelines: dict[str, Timeline],
) -> NwbResult:
    from controller.nwb.writer import SessionFacts, build_file, write_file

    assert row.data is not None
    data = json.loads(row.data)
    mouse = subject.mouse
    if not isinstance(data, dict):
        return NwbResult(mouse, None, False, note="a session that is not a record: skipped")
    start = session_time(data)
    if start is None:
        start = row.start_time
    if start is None:
        return NwbResult(
            mouse, None, False, note=f"session {row.id}: no start time or date: not exported"
        )
    base = datetime.fromtimestamp(start).strftime("%Y%m%dT%H%M%S")
    name, copy = base, 1
    while name in used:
        copy += 1
        name = f"{base}-{copy}"
    used.add(name)
    box = _box(row, data)
    timeline = None
    if row.box is not None:
        if row.box not in timelines:
            timelines[row.box] = Timeline.of_box(tx, row.box)
        timeline = timelines[row.box]
    nominal = data.get("reward_volume_ul")
    volume = _volume(timeline, float(nominal) if is_number(nominal) else NOMINAL_UL)
    documents = _documents(tx, row)
    content = session_content(data, start, volume, documents)
    if row.origin == "recorded" and documents is None:
        content.gaps.append("the rig's own record of this session is not in the database")
    calibration = None
    if timeline is not None:
        rows = {n: timeline.at(s, start) for s, n in enumerate(SPOUTS)}
        calibration = {n: describe(r) for n, r in rows.items() if r is not None} or None
    status = row.status or _text(data.get("status"))
    origin = (
        "recorded by reachlab"
        if row.origin == "recorded"
        else "imported from a per-mouse file of the original single-rig library"
    )
    first = documents[0] if documents else None
    pins = first.pins if isinstance(first, SessionStart) else None
    facts = SessionFacts(
        mouse=mouse,
        name=row.session_id or name,
        description=(
            f"Reach-task training session of mouse {mouse}"
            + (f" on box {box}" if box else "")
            + (f" ({status})" if status else "")
            + f", {origin}"
        ),
        identifier=str(uuid.uuid5(_IDENTIFIERS, f"{mouse}:{row.session_id or row.digest}")),
        box=box,
        software_version=_text(data.get("software_version")),
        experimenter=_text(data.get("trainer")) or settings.experimenter or None,
        lab=settings.lab or None,
        institution=settings.institution or None,
        weight_grams=_weight(tx, row, data),
        notes=_text(data.get("notes")),
        pins=pins,
        calibration=calibration,
        exporter_version=__version__,
    )
    path = session_path(out_dir, mouse, label(name))
    write_file(path, build_file(subject, facts, content))
    return NwbResult(mouse, path, True, trials=content.trial_count)


def export_nwb(
    db: Database,
    mice: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    progress: Callable[[NwbResult], None] | None = None,
) -> list[NwbResult]:
    """Write every complete session of ``mice`` as an NWB file under ``out_dir``.

    Refuses (:class:`SubjectIncomplete`) before writing anything when a mouse lacks what
    DANDI requires; a session whose file cannot be written gets a result with ``failed``.
    """
    folder = Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise DataFileError(f"{folder} is a file, not a folder: --out names the folder to write to")
    results = []
    with db.reader() as tx:
        subjects = check_subjects(tx, mice)
        settings = lab_settings(tx)
        folder.mkdir(parents=True, exist_ok=True)
        timelines: dict[str, Timeline] = {}
        for mouse in mice:
            used: set[str] = set()
            rows = tx.scalars(
                select(TrainingSession)
                .where(
                    TrainingSession.mouse_id == mouse,
                    TrainingSession.complete.is_(True),
                    TrainingSession.data.is_not(None),
                )
                .order_by(TrainingSession.position, TrainingSession.id)
            )
            for row in rows:
                try:
                    result = export_session(
                        tx, row, subjects[mouse], settings, folder, used, timelines
                    )
                except OSError as exc:
                    result = NwbResult(mouse, None, False, note=str(exc), failed=True)
                results.append(result)
                if progress is not None:
                    progress(result)
    return results
