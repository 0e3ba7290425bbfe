"""One session's NWB file with pynwb: subject, trials, events, rig, settings, lab.

The one module that imports pynwb (the ``nwb`` extra). It lays out what
:mod:`.content` gathered: the trials table (``/intervals/trials``), one core
``EventsTable`` per kind of event (``/events``), the rig as a device, the task's
settings and the calibration in force as described tables in the ``behavior``
processing module, and the subject, experimenter and lab. A table with no rows is
left out (DANDI counts an empty table against a file).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from controller.nwb.content import EventKind, SessionContent
from controller.nwb.subject import SEXES, Subject

KEYWORDS = ["reach task", "forelimb reaching", "mouse behavior", "reachlab"]
EXPERIMENT = (
    "Visually guided forelimb reaching: a mouse rests both paws on sensors; a cue "
    "light marks one of two water spouts, and touching it earns a drop of water. Spouts move "
    "further away and the cue shortens as the mouse learns (reachlab, docs/task.md)."
)


@dataclass(frozen=True)
class SessionFacts:
    """What the file says about the session besides its content."""

    mouse: str
    #: The session's name in the file name and ``session_id``: its id, else its date and place.
    name: str
    description: str
    identifier: str
    box: str | None
    software_version: str | None
    experimenter: str | None
    lab: str | None
    institution: str | None
    weight_grams: float | None
    notes: str | None
    #: The rig's BCM pin numbers by role, where its ``session_start`` gave them.
    pins: dict[str, int | tuple[int, int]] | None
    #: The calibration in force at the start: spout -> its fields.
    calibration: dict[str, dict[str, Any]] | None
    exporter_version: str


def _timezone_aware(t: float) -> datetime:
    return datetime.fromtimestamp(t).astimezone()


def nwb_subject(subject: Subject, facts: SessionFacts, day: date) -> Any:
    from pynwb.file import Subject as NWBSubject

    dob = None
    if subject.date_of_birth:
        born = date.fromisoformat(subject.date_of_birth)
        dob = datetime(born.year, born.month, born.day).astimezone()
    weight = None if facts.weight_grams is None else f"{facts.weight_grams:g} g"
    return NWBSubject(
        subject_id=subject.mouse,
        species=subject.species,
        sex=subject.sex,
        date_of_birth=dob,
        age=subject.age_at(day),
        strain=subject.strain,
        genotype=subject.genotype,
        weight=weight,
        description=f"mouse {subject.mouse} ({SEXES.get(subject.sex or 'U', 'unknown')})"
        + ("; weight: as weighed for this session" if weight else ""),
    )


def _rig(facts: SessionFacts) -> Any:
    from pynwb.device import Device

    parts = [f"reachlab training box {facts.box or 'unknown'} (a Raspberry Pi rig)"]
    parts.append(
        f"agent software {facts.software_version}"
        if facts.software_version
        else "software version not recorded"
    )
    if facts.pins:
        pins = (
            f"{role} {', '.join(map(str, pin)) if isinstance(pin, list | tuple) else pin}"
            for role, pin in facts.pins.items()
        )
        parts.append("BCM pins (left, right): " + "; ".join(pins))
    else:
        parts.append("pins not recorded with the session")
    return Device(
        name=f"box_{facts.box}" if facts.box else "rig",
        description=", ".join(parts),
    )


def _named_table(name: str, description: str, columns: list[tuple[str, str, list[Any]]]) -> Any:
    from hdmf.common import DynamicTable, VectorData

    return DynamicTable(
        name=name,
        description=description,
        columns=[VectorData(name=n, description=d, data=v) for n, d, v in columns],
    )


def _data(values: list[Any]) -> Any:
    """A column's values as an array HDF5 writes in one go (text stays a list)."""
    import numpy as np

    if values and isinstance(values[0], str):
        return values
    return np.asarray(values)


def _events_table(kind: EventKind) -> Any:
    from hdmf.common import VectorData
    from pynwb.event import DurationVectorData, EventsTable, TimestampVectorData

    # Whole columns at once: add_row's per-row checks cost more than writing the file.
    columns: list[Any] = [
        TimestampVectorData(
            name="timestamp", description="seconds from the session start",
            data=_data(kind.timestamps),
        )
    ]  # fmt: skip
    if kind.durations is not None:
        columns.append(
            DurationVectorData(
                name="duration", description="seconds the valve stayed open",
                data=_data(kind.durations),
            )
        )  # fmt: skip
    columns += [
        VectorData(name=c.name, description=c.description, data=_data(c.values))
        for c in kind.columns
    ]
    return EventsTable(
        name=kind.name,
        description=kind.description,
        source_description=kind.source,
        columns=columns,
    )


def _trials_table(content: SessionContent) -> Any:
    from hdmf.common import VectorData
    from pynwb.epoch import TimeIntervals

    start, stop, *extra = content.trial_columns
    return TimeIntervals(
        name="trials",
        description="the session's trials, from cue onset to the touch (or to the cue's end "
        "when missed)",
        columns=[
            VectorData(name="start_time", description="cue onset, seconds from the session "
                       "start", data=_data(start.values)),
            VectorData(name="stop_time", description="the touch, or the cue's end when "
                       "missed, seconds from the session start", data=_data(stop.values)),
            *(VectorData(name=c.name, description=c.description, data=_data(c.values))
              for c in extra),
        ],
    )  # fmt: skip


def build_file(subject: Subject, facts: SessionFacts, content: SessionContent) -> Any:
    """The session's :class:`pynwb.NWBFile`, in memory."""
    from pynwb import NWBFile

    start = _timezone_aware(content.start)
    description = facts.description
    if content.gaps:
        description += ". Left out, not made up: " + "; ".join(content.gaps) + "."
    nwbfile = NWBFile(
        session_description=description,
        identifier=facts.identifier,
        session_start_time=start,
        session_id=facts.name,
        experimenter=[facts.experimenter] if facts.experimenter else None,
        lab=facts.lab or None,
        institution=facts.institution or None,
        experiment_description=EXPERIMENT,
        keywords=KEYWORDS,
        notes=facts.notes or None,
        was_generated_by=[["reachlab", facts.exporter_version]],
        subject=nwb_subject(subject, facts, start.date()),
    )
    nwbfile.add_device(_rig(facts))
    if content.trial_columns:
        nwbfile.trials = _trials_table(content)
    for kind in content.events:
        nwbfile.add_events_table(_events_table(kind))
    behavior = nwbfile.create_processing_module(
        name="behavior", description="the reach task's settings and the rig's calibration"
    )
    if content.settings:
        names, values = zip(*content.settings, strict=True)
        behavior.add(
            _named_table(
                "task_settings",
                "the session's task settings and metadata as the session recorded them "
                "(docs/task.md names each), one per row; nested ones flattened with dots",
                [
                    ("setting", "the setting's name", list(names)),
                    ("value", "its value, as JSON", list(values)),
                ],
            )
        )
    if facts.calibration:
        spouts = list(facts.calibration)
        rows = [facts.calibration[s] for s in spouts]
        behavior.add(
            _named_table(
                "reward_calibration",
                "the box's solenoid calibration in force at the session's start, per spout "
                "(labctl calibrate)",
                [
                    ("spout", "left or right", spouts),
                    (
                        "volume_per_opening",
                        "microlitres per valve opening",
                        [float(r["ul_per_opening"]) for r in rows],
                    ),
                    (
                        "opening_duration",
                        "the valve's open time when calibrated, in seconds",
                        [r["duration_ms"] / 1000.0 for r in rows],
                    ),
                    (
                        "measured_at",
                        "when it was measured, ISO 8601",
                        [_timezone_aware(r["measured_at"]).isoformat() for r in rows],
                    ),
                    ("measured_by", "who measured it", [str(r["measured_by"]) for r in rows]),
                ],
            )
        )
    return nwbfile


def write_file(path: Path, nwbfile: Any) -> None:
    """Write ``nwbfile`` to ``path`` through a temporary file, so no half file is left."""
    from pynwb import NWBHDF5IO

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{uuid.uuid4().hex[:8]}.partial.{path.name}")
    try:
        with NWBHDF5IO(str(partial), mode="w") as io:
            io.write(nwbfile)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def new_identifier() -> str:
    return str(uuid.uuid4())


def require_pynwb() -> None:
    """ImportError naming what is missing when pynwb (the ``nwb`` extra) is not installed."""
    import pynwb

    try:
        from pynwb.event import EventsTable  # noqa: F401
    except ImportError:
        raise ImportError(
            f"pynwb {pynwb.__version__} has no core EventsTable (pynwb 4 has)"
        ) from None
