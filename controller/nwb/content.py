"""What one session puts in its NWB file: trial rows, timestamped events, settings, and gaps.

Pure Python over the session dict (and, for a session reachlab recorded, its
stored documents), so it is tested without pynwb; :mod:`.writer` turns a
:class:`SessionContent` into an NWB file. Times are seconds from the session's
start. Nothing is made up for what an old session lacks: a trial without a
start, a trial cut short without an end, spout moves and cue changes of an
imported session, are left out and listed in :attr:`SessionContent.gaps`, which
the file's description carries. Rules used here are the task's own (DESIGN §3),
read from :mod:`shared.analysis.trials` where they already live.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.analysis.trials import (
    CANCELLED,
    LEFT,
    RIGHT,
    equals,
    is_number,
    outcome,
    raw_trials,
    side,
    side_events,
)
from shared.documents import (
    CueChanged,
    Document,
    Lift,
    Reset,
    Reward,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
)
from shared.outcomes import (
    CORRECT,
    INCORRECT,
    MISSED,
    OUTCOME_NAMES,
    is_reward,
    is_shaping_reward,
)

SIDES = ("left", "right")
NAN = math.nan
#: Keys of a session dict carried elsewhere in the file than the settings table.
NOT_SETTINGS = frozenset(
    {
        "trials", "resets", "spontaneous_reaches", "start_time", "end_time", "date", "notes",
        "trainer", "weight", "session_id", "box", "training_box", "status", "software_version",
    }
)  # fmt: skip
#: The original's 2019 files, before trials were records: a list of times per kind (flat,
#: or ``[[left times], [right times]]``) -> the events table, and its values after the side.
LEGACY_TIMES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "resets_t": ("paw_resets", ()),
    "cue_t": ("cue_onsets", ()),
    "cue_timepoints": ("cue_onsets", ()),
    "cued_lift_timepoints": ("paw_lifts", (-1,)),
    "touch_t": ("spout_touches", ("unknown",)),
    "touch_timepoints": ("spout_touches", ("unknown",)),
}
#: Time lists carried as events, never as settings (these two read by side_events).
TIME_LISTS = frozenset(LEGACY_TIMES) | {"resets_timepoints", "spont_reach_timepoints"}
#: A cue duration below this is in seconds: the original's Nov 2019 files (no cue is 0.1 s).
CUE_SECONDS_BELOW = 100.0


@dataclass
class Column:
    """One described column of a table."""

    name: str
    description: str
    values: list[Any] = field(default_factory=list)


@dataclass
class EventKind:
    """The timestamped events of one kind (one NWB events table)."""

    name: str
    description: str
    #: Where the times come from: the rig's own record, or the trials by the task's rule.
    source: str
    timestamps: list[float] = field(default_factory=list)
    #: Seconds each lasted (a valve's opening), or None for instants.
    durations: list[float] | None = None
    columns: list[Column] = field(default_factory=list)

    def add(self, t: float, *values: Any, duration: float | None = None) -> None:
        self.timestamps.append(t)
        if self.durations is not None:
            self.durations.append(NAN if duration is None else duration)
        for column, value in zip(self.columns, values, strict=True):
            column.values.append(value)

    def sorted(self) -> EventKind:
        """The same events in time order (a rig's record is; a file's lists may not be)."""
        order = sorted(range(len(self.timestamps)), key=self.timestamps.__getitem__)
        if order == list(range(len(order))):
            return self
        return EventKind(
            self.name, self.description, self.source,
            [self.timestamps[i] for i in order],
            None if self.durations is None else [self.durations[i] for i in order],
            [Column(c.name, c.description, [c.values[i] for i in order]) for c in self.columns],
        )  # fmt: skip


@dataclass
class SessionContent:
    """What goes in one session's file besides the subject and the lab."""

    start: float
    trial_columns: list[Column]
    events: list[EventKind]
    settings: list[tuple[str, str]]
    gaps: list[str]

    @property
    def trial_count(self) -> int:
        return len(self.trial_columns[0].values) if self.trial_columns else 0


#: (spout, Unix time, valve open ms or None) -> (µL, whether a calibration was in force)
RewardVolume = Callable[[int, float, float | None], tuple[float, bool]]


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) else None


def _side_name(value: Any) -> str:
    found = side(value)
    return "unknown" if found is None else SIDES[found]


def cue_seconds(value: Any) -> float:
    """A trial's cue duration in seconds (the file's ms, or the Nov 2019 files' seconds)."""
    number = _number(value)
    if number is None:
        return NAN
    return number if number < CUE_SECONDS_BELOW else number / 1000.0


def _positions(value: Any) -> tuple[float, float]:
    if isinstance(value, list) and len(value) == 2:
        left, right = (_number(v) for v in value)
        return (NAN if left is None else left, NAN if right is None else right)
    one = _number(value)  # the single actuator of the 2019 rigs: one position for both
    return (NAN, NAN) if one is None else (one, one)


def reward_durations(session: Mapping[str, Any]) -> list[float | None]:
    """The session's valve opening per spout in ms (``reward_duration_ms``), if it says."""
    value = session.get("reward_duration_ms")
    if isinstance(value, list) and len(value) == 2:
        return [_number(v) for v in value]
    one = _number(value)
    return [one, one]


def outcome_label(code: int) -> str:
    """An outcome's name; the original's outcome 3 (a trial it cancelled) is ``cancelled``."""
    return "cancelled" if code == CANCELLED else OUTCOME_NAMES[code]


def reward_times(
    trial: Mapping[str, Any], session_shaping: bool, start: float | None, end: float | None
) -> list[float]:
    """When the trial gave water, by the reward rule (:mod:`shared.outcomes`): at cue onset
    when shaping, at the touch when correct."""
    times = []
    if start is not None and is_shaping_reward(trial, session_shaping):
        times.append(start)
    if end is not None and is_reward(trial.get("outcome")):
        times.append(end)
    return times


def trial_columns() -> list[Column]:
    return [
        Column("trial_number", "the trial's place in the session's list of trials, from 0"),
        Column("outcome", "missed (no touch before the cue ended), correct (the target spout "
               "touched), incorrect (the other spout touched), cancelled, or unknown"),
        Column("target_spout", "the spout whose cue was lit: left or right"),
        Column("lift_time", "the first paw lift after cue onset, in seconds from the session "
               "start; NaN when no paw was lifted"),
        Column("lift_paw", "the paw of that first lift: left, right, or none"),
        Column("reaction_time", "the touch minus cue onset in seconds, for correct and "
               "incorrect trials; NaN otherwise"),
        Column("cue_duration", "how long the cue stayed lit at most (the window to reach), "
               "in seconds"),
        Column("spout_position_left", "the left spout's actuator position during the trial, "
               "as the task's spout_positions setting numbers them (mm from the mouse); the "
               "2019 rigs' single actuator gives its one position in both columns"),
        Column("spout_position_right", "the right spout's actuator position, as the left's"),
        Column("shaping", "water was given at cue onset (shaping): the trial's own flag, else "
               "the session's (2019 files)"),
        Column("correction_trial", "the target repeats that of the trial before, which was "
               "missed or incorrect (the task repeats the spout until it is touched)"),
        Column("reward_given", "water was given: at the touch of a correct trial, at cue "
               "onset of a shaping trial"),
        Column("reward_volume", "the water given in the trial in microlitres, at the box's "
               "solenoid calibration in force then; 0 when none was given"),
        Column("reward_volume_calibrated", "the volume comes from a calibration in force; "
               "false: no calibration was, so the session's nominal reward_volume_ul (else "
               "6 ul) is given"),
    ]  # fmt: skip


def build_trials(
    session: Mapping[str, Any], start: float, volume: RewardVolume, gaps: list[str]
) -> list[Column]:
    """The trials table's columns, one row per trial that has a start, in time order."""
    columns = trial_columns()
    starts: list[float] = []
    stops: list[float] = []
    rows: list[list[Any]] = []
    durations = reward_durations(session)
    session_shaping = session.get("shaping") is True
    previous: Mapping[str, Any] | None = None
    no_start = cut_short = 0
    for number, trial in enumerate(raw_trials(session)):
        if not isinstance(trial, Mapping):
            no_start += 1
            continue
        t0 = _number(trial.get("start"))
        if t0 is None:
            no_start += 1
            continue
        result = outcome(trial)
        cancelled = equals(trial.get("outcome"), CANCELLED)
        cue = cue_seconds(trial.get("cue_duration"))
        end = _number(trial.get("end"))
        if (end is None or end <= t0) and result == MISSED and not math.isnan(cue):
            end = t0 + cue  # a missed trial ends when its cue does (DESIGN §3)
        if end is None or end <= t0:
            cut_short += 1
            previous = trial
            continue
        target = side(trial.get("spout"))
        shaping = is_shaping_reward(trial, session_shaping)
        lift = _number(trial.get("lift_time"))
        paw = side(trial.get("lift_paw"))
        reaction = end - t0 if result in (CORRECT, INCORRECT) else NAN
        correction = (
            previous is not None
            and outcome(previous) in (MISSED, INCORRECT)
            and target is not None
            and side(previous.get("spout")) == target
        )
        ul, calibrated, rewarded = 0.0, True, False
        if target is not None:
            for t in reward_times(trial, session_shaping, t0, end):
                part, known = volume(target, t, durations[target])
                ul, calibrated, rewarded = ul + part, calibrated and known, True
        left, right = _positions(trial.get("spout_position"))
        code = CANCELLED if cancelled else result
        name = "unknown" if code is None else outcome_label(code)
        starts.append(t0 - start)
        stops.append(end - start)
        rows.append(
            [
                number, name, _side_name(trial.get("spout")),
                NAN if lift is None else lift - start,
                "none" if paw is None else SIDES[paw], reaction, cue, left, right,
                shaping, correction, rewarded, ul, calibrated,
            ]
        )  # fmt: skip
        previous = trial
    if no_start:
        gaps.append(f"{no_start} trial(s) without a start time are left out of the trials table")
    if cut_short:
        gaps.append(
            f"{cut_short} trial(s) cut short (no end and no outcome) are left out of the "
            "trials table"
        )
    order = sorted(range(len(rows)), key=starts.__getitem__)
    start_column = Column("start_time", "", [starts[i] for i in order])
    stop_column = Column("stop_time", "", [stops[i] for i in order])
    for index, column in enumerate(columns):
        column.values = [rows[i][index] for i in order]
    return [start_column, stop_column, *columns] if rows else []


def _kind(name: str, description: str, source: str, *columns: tuple[str, str]) -> EventKind:
    return EventKind(name, description, source, columns=[Column(n, d) for n, d in columns])


def _event_kinds(recorded: bool) -> dict[str, EventKind]:
    rig = "recorded by the rig (reachlab's session documents)"
    trials = "the session's trial records"
    kinds = [
        _kind("paw_lifts", "the first paw lift after each cue onset", trials,
              ("paw", "left or right"), ("trial_number", "the trial, from 0")),
        _kind("paw_resets", "a paw lifted during the intertrial interval, which restarted it",
              "the session's resets", ("paw", "left, right or unknown")),
        _kind("spout_touches", "a spout touched while its cue or the other's was lit",
              trials, ("spout", "left, right or unknown"),
              ("outcome", "correct (the target), incorrect, or unknown (2019 files)")),
        _kind("spontaneous_reaches", "a spout touched during the intertrial interval, which "
              "restarted it", "the session's spontaneous reaches",
              ("spout", "left, right or unknown")),
        _kind("cue_onsets", "a cue lit (the 2019 files' cue times)", "the session's cue times"),
        _kind("rewards", "a reward solenoid opened (water given); duration: how long, in "
              "seconds", rig if recorded else "the trials, by the task's rule: a correct "
              "trial is rewarded at the touch, a shaping trial also at cue onset",
              ("spout", "left or right"),
              ("volume", "microlitres, at the box's calibration in force (else nominal)"),
              ("calibrated", "false: no calibration was in force, the volume is nominal")),
        _kind("spout_moves", "the adaptive rule moved a spout", rig,
              ("position_left", "the left spout's position after the move"),
              ("position_right", "the right spout's position after the move")),
        _kind("cue_duration_changes", "the adaptive rule shortened the cue", rig,
              ("cue_duration", "the new cue duration, in seconds")),
    ]  # fmt: skip
    out = {kind.name: kind for kind in kinds}
    out["rewards"].durations = []
    return out


def build_events(
    session: Mapping[str, Any],
    start: float,
    volume: RewardVolume,
    documents: Iterable[Document] | None,
    gaps: list[str],
) -> list[EventKind]:
    """Every kind of event the session records, each in time order; kinds with none left out.

    With ``documents`` (a session reachlab recorded) rewards, spout moves and cue changes
    are the rig's own record; without, rewards follow the trials by the task's rule and
    spout moves and cue changes are left out (the file never had them).
    """
    kinds = _event_kinds(documents is not None)
    trials = [t for t in raw_trials(session) if isinstance(t, Mapping)]
    for number, trial in enumerate(raw_trials(session)):
        if not isinstance(trial, Mapping):
            continue
        lift, paw = _number(trial.get("lift_time")), side(trial.get("lift_paw"))
        if lift is not None and paw is not None:
            kinds["paw_lifts"].add(lift - start, SIDES[paw], number)
        end, result = _number(trial.get("end")), outcome(trial)
        if end is not None and result in (CORRECT, INCORRECT):
            touched = trial.get("spout") if result == CORRECT else _other(trial.get("spout"))
            kinds["spout_touches"].add(end - start, _side_name(touched), outcome_label(result))
    for t, paw in side_events(session, "resets"):
        if is_number(t):
            kinds["paw_resets"].add(t - start, "unknown" if paw is None else SIDES[paw])
    for t, spout in side_events(session, "spontaneous_reaches"):
        if is_number(t):
            kinds["spontaneous_reaches"].add(
                t - start, "unknown" if spout is None else SIDES[spout]
            )
    if not trials:
        _legacy_times(session, start, kinds)
    if documents is None:
        _rule_rewards(session, start, volume, kinds["rewards"])
        gaps.append(
            "imported session: spout moves and cue duration changes were not recorded as "
            "events (each trial's spout positions and cue duration are in the trials table); "
            "reward times follow the trials by the task's rule"
        )
    else:
        _document_events(documents, start, volume, kinds)
    return [kind.sorted() for kind in kinds.values() if kind.timestamps]


def _other(value: Any) -> int | None:
    found = side(value)
    return None if found is None else 1 - found


def _legacy_times(session: Mapping[str, Any], start: float, kinds: dict[str, EventKind]) -> None:
    """The 2019 files' per-kind time lists (:data:`LEGACY_TIMES`); a side they do not give
    is unknown (``resets_t``'s sides are the ``resets_sides`` letters)."""
    letters = session.get("resets_sides")
    for key, (name, rest) in LEGACY_TIMES.items():
        value = session.get(key)
        if not isinstance(value, list):
            continue
        nested = bool(value) and all(isinstance(v, list) for v in value)
        pairs = (
            [(t, i) for i, times in enumerate(value) for t in times]
            if nested
            else [(t, None) for t in value]
        )
        kind = kinds[name]
        for index, (t, which) in enumerate(pairs):
            if not is_number(t):
                continue
            if which is None and key == "resets_t" and isinstance(letters, list):
                letter = letters[index] if index < len(letters) else None
                which = {"l": LEFT, "r": RIGHT}.get(letter) if isinstance(letter, str) else None
            label = "unknown" if which is None else SIDES[which]
            kind.add(float(t) - start, *[label, *rest][: len(kind.columns)])


def _rule_rewards(
    session: Mapping[str, Any], start: float, volume: RewardVolume, kind: EventKind
) -> None:
    durations = reward_durations(session)
    session_shaping = session.get("shaping") is True
    for trial in raw_trials(session):
        if not isinstance(trial, Mapping):
            continue
        spout = side(trial.get("spout"))
        t0, end = _number(trial.get("start")), _number(trial.get("end"))
        if spout is None:
            continue
        for t in reward_times(trial, session_shaping, t0, end):
            ul, known = volume(spout, t, durations[spout])
            ms = durations[spout]
            kind.add(t - start, SIDES[spout], ul, known, duration=None if ms is None else ms / 1000)


def _document_events(
    documents: Iterable[Document], start: float, volume: RewardVolume, kinds: dict[str, EventKind]
) -> None:
    for doc in documents:
        t = doc.t - start
        if isinstance(doc, Reward):
            ul, known = volume(doc.spout, doc.t, float(doc.duration_ms))
            kinds["rewards"].add(t, SIDES[doc.spout], ul, known, duration=doc.duration_ms / 1000.0)
        elif isinstance(doc, SpoutsMoved):
            left, right = doc.spout_position
            kinds["spout_moves"].add(t, float(left), float(right))
        elif isinstance(doc, CueChanged):
            kinds["cue_duration_changes"].add(t, doc.cue_duration / 1000.0)
        # Lifts, touches, resets and spontaneous reaches are in the session dict already,
        # folded from these same documents.
        elif not isinstance(doc, Lift | TrialEnd | Reset | SpontaneousReach):
            continue


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    # A table cell holding a dict is a DANDI best-practice violation: one row per leaf.
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, out)
    else:
        out.append((prefix, json.dumps(value)))


def build_settings(session: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, value as JSON) of the session's settings and other keys, nested ones flattened
    (``calibration.left.ul_per_opening``); time lists of the 2019 files are events instead."""
    out: list[tuple[str, str]] = []
    for key, value in session.items():
        if key in NOT_SETTINGS or key in TIME_LISTS:
            continue
        _flatten(str(key), value, out)
    return out


def session_content(
    session: Mapping[str, Any],
    start: float,
    volume: RewardVolume,
    documents: Iterable[Document] | None = None,
) -> SessionContent:
    """Everything of ``session`` (started at Unix time ``start``) its NWB file holds."""
    gaps: list[str] = []
    trials = build_trials(session, start, volume, gaps)
    if not raw_trials(session):
        gaps.append("the session has no trials: the file has no trials table")
    events = build_events(session, start, volume, documents, gaps)
    return SessionContent(start, trials, events, build_settings(session), gaps)
