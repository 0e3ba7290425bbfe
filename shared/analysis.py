"""Results of training sessions: counts per spout and paw, d-prime and water, per session or day.

This is the reach library's per-session summary, computed from the session
dicts of a per-mouse file (DESIGN §4). It reads old files too: keys may be
missing and values of unexpected types are skipped, never fatal.

Definitions
-----------
* **Spouts and paws**: 0 = left, 1 = right. ``correct``, ``incorrect`` and
  ``missed`` are counted per *target* spout of the trial (outcome 1, 2 and 0);
  ``resets`` per paw that broke the ITI; ``spontaneous_reaches`` per spout
  touched during the ITI.
* **Correction trials**: after a missed or incorrect trial the task repeats the
  same spout, so the mouse can predict the target. A trial is a correction
  trial when the trial before it *in the same session* was missed or
  incorrect and had the same target spout; the first trial of a session never
  is. (reachlab always repeats the spout; older versions of the original
  library drew every target at random, and a trial whose target did not repeat
  was not predictable, so it is not a correction.) Correction trials are
  excluded from d-prime, and only from d-prime.
* **d-prime**: the right spout is the "signal". Among non-correction trials,
  signal trials are right-spout trials and noise trials are left-spout trials;
  a *hit* is a correct touch on a right-spout trial and a *false alarm* is a
  touch of the right spout on a left-spout trial (an incorrect left-spout
  trial). A missed left-spout trial is neither. With the log-linear
  correction (Hautus 1995)::

      H  = (hits + 0.5) / (signal trials + 1)
      FA = (false alarms + 0.5) / (noise trials + 1)
      d' = Z(H) - Z(FA)

  where Z is the inverse of the standard normal CDF. d' is ``None`` when there
  are no signal or no noise trials, since one of the rates would then be a
  made-up 0.5.
* **Water**: every correct trial is rewarded at the touch and every trial with
  ``shaping`` true was rewarded at cue onset as well (DESIGN §3), so
  ``rewards = correct trials + shaping trials`` and
  ``water_ul = rewards x reward_volume_ul``, the volume being the session's
  own setting, or 6 µl when the session predates that key.
* **Days**: with ``collapse_days`` the sessions sharing a ``date`` are merged
  into one row at the place of the first: counts and water are summed and
  d-prime is computed from all their trials, each session keeping its own
  correction trials. Sessions without a date are never merged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from statistics import NormalDist
from typing import Any

from shared.sessionfile import CORRECT, INCORRECT, MISSED

#: Water per reward assumed for sessions recorded before ``reward_volume_ul`` existed.
DEFAULT_REWARD_VOLUME_UL = 6.0

Pair = tuple[int, int]

_Z = NormalDist().inv_cdf


@dataclass(frozen=True)
class SessionResults:
    """The results of one session, or of one day's sessions merged.

    Pairs are ``(left, right)``: per target spout for the outcomes, per paw for
    resets, per touched spout for spontaneous reaches.
    """

    mouse: str | None
    date: str | None
    sessions: int
    trials: int
    correct: Pair
    incorrect: Pair
    missed: Pair
    resets: Pair
    spontaneous_reaches: Pair
    correction_trials: int
    signal_trials: int
    hits: int
    noise_trials: int
    false_alarms: int
    d_prime: float | None
    rewards: int
    water_ul: float

    @property
    def total_correct(self) -> int:
        return sum(self.correct)

    @property
    def total_incorrect(self) -> int:
        return sum(self.incorrect)

    @property
    def total_missed(self) -> int:
        return sum(self.missed)

    @property
    def total_resets(self) -> int:
        return sum(self.resets)

    @property
    def total_spontaneous_reaches(self) -> int:
        return sum(self.spontaneous_reaches)

    def as_dict(self) -> dict[str, Any]:
        """The results as JSON-ready values; pairs become ``[left, right]`` lists."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }


def d_prime(hits: int, signal_trials: int, false_alarms: int, noise_trials: int) -> float | None:
    """d' with the log-linear correction; None without signal or without noise trials."""
    if signal_trials <= 0 or noise_trials <= 0:
        return None
    hit_rate = (hits + 0.5) / (signal_trials + 1)
    false_alarm_rate = (false_alarms + 0.5) / (noise_trials + 1)
    return _Z(hit_rate) - _Z(false_alarm_rate)


def _choice(value: Any, allowed: tuple[int, ...]) -> int | None:
    """``value`` as one of ``allowed`` if it is that number (bools excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value in allowed:
        return int(value)
    return None


def _count_sides(events: Any) -> Pair:
    """Count ``[t, side]`` entries per side (0/1), skipping malformed ones."""
    counts = [0, 0]
    if isinstance(events, list):
        for event in events:
            if isinstance(event, list | tuple) and len(event) >= 2:
                side = _choice(event[1], (0, 1))
                if side is not None:
                    counts[side] += 1
    return counts[0], counts[1]


def _reward_volume(session: Mapping[str, Any]) -> float:
    value = session.get("reward_volume_ul")
    if isinstance(value, bool):
        return DEFAULT_REWARD_VOLUME_UL
    if isinstance(value, int | float | str):
        try:
            volume = float(value)
        except ValueError:
            return DEFAULT_REWARD_VOLUME_UL
        if math.isfinite(volume) and volume >= 0:
            return volume
    return DEFAULT_REWARD_VOLUME_UL


def session_results(session: dict[str, Any]) -> SessionResults:
    """The results of one session dict as stored in a per-mouse file."""
    if not isinstance(session, Mapping):
        session = {}
    raw_trials = session.get("trials")
    trials = (
        [t for t in raw_trials if isinstance(t, Mapping)] if isinstance(raw_trials, list) else []
    )

    outcomes = {CORRECT: [0, 0], INCORRECT: [0, 0], MISSED: [0, 0]}
    corrections = signal = hits = noise = false_alarms = shaping = 0
    previous: tuple[int | None, int | None] = (None, None)  # (spout, outcome)
    for trial in trials:
        spout = _choice(trial.get("spout"), (0, 1))
        outcome = _choice(trial.get("outcome"), (MISSED, CORRECT, INCORRECT))
        if trial.get("shaping") is True:
            shaping += 1
        is_correction = previous[1] in (MISSED, INCORRECT) and previous[0] == spout
        previous = (spout, outcome)
        if spout is None or outcome is None:
            continue
        outcomes[outcome][spout] += 1
        if is_correction:
            corrections += 1
        elif spout == 1:
            signal += 1
            if outcome == CORRECT:
                hits += 1
        else:
            noise += 1
            if outcome == INCORRECT:
                false_alarms += 1

    date = session.get("date")
    correct = sum(outcomes[CORRECT])
    return SessionResults(
        mouse=None,
        date=date if isinstance(date, str) else None,
        sessions=1,
        trials=len(trials),
        correct=_pair(outcomes[CORRECT]),
        incorrect=_pair(outcomes[INCORRECT]),
        missed=_pair(outcomes[MISSED]),
        resets=_count_sides(session.get("resets")),
        spontaneous_reaches=_count_sides(session.get("spontaneous_reaches")),
        correction_trials=corrections,
        signal_trials=signal,
        hits=hits,
        noise_trials=noise,
        false_alarms=false_alarms,
        d_prime=d_prime(hits, signal, false_alarms, noise),
        rewards=correct + shaping,
        water_ul=(correct + shaping) * _reward_volume(session),
    )


def _pair(counts: list[int]) -> Pair:
    return counts[0], counts[1]


def _add(a: Pair, b: Pair) -> Pair:
    return a[0] + b[0], a[1] + b[1]


def merge_results(results: Iterable[SessionResults]) -> SessionResults:
    """Merge sessions into one row: counts summed, d' from all their non-correction trials.

    Mouse and date are taken from the first session.
    """
    items = list(results)
    if not items:
        raise ValueError("merge_results needs at least one session")
    first, *rest = items
    merged = first
    for other in rest:
        merged = replace(
            merged,
            sessions=merged.sessions + other.sessions,
            trials=merged.trials + other.trials,
            correct=_add(merged.correct, other.correct),
            incorrect=_add(merged.incorrect, other.incorrect),
            missed=_add(merged.missed, other.missed),
            resets=_add(merged.resets, other.resets),
            spontaneous_reaches=_add(merged.spontaneous_reaches, other.spontaneous_reaches),
            correction_trials=merged.correction_trials + other.correction_trials,
            signal_trials=merged.signal_trials + other.signal_trials,
            hits=merged.hits + other.hits,
            noise_trials=merged.noise_trials + other.noise_trials,
            false_alarms=merged.false_alarms + other.false_alarms,
            rewards=merged.rewards + other.rewards,
            water_ul=merged.water_ul + other.water_ul,
        )
    return replace(
        merged,
        d_prime=d_prime(
            merged.hits, merged.signal_trials, merged.false_alarms, merged.noise_trials
        ),
    )


def mouse_results(
    mouse_id: str, sessions: list[dict[str, Any]], collapse_days: bool = False
) -> list[SessionResults]:
    """One row per session in training order, or per training day with ``collapse_days``."""
    per_session = [replace(session_results(s), mouse=mouse_id) for s in sessions]
    if not collapse_days:
        return per_session
    groups: list[list[SessionResults]] = []
    by_date: dict[str, list[SessionResults]] = {}
    for result in per_session:
        if result.date is None:
            groups.append([result])
        elif result.date in by_date:
            by_date[result.date].append(result)
        else:
            by_date[result.date] = [result]
            groups.append(by_date[result.date])
    return [merge_results(group) for group in groups]


def cohort_results(
    mice: dict[str, list[dict[str, Any]]], collapse_days: bool = False
) -> list[dict[str, Any]]:
    """Rows for every mouse, in the order given, each mouse's sessions (or days) numbered from 1.

    A row holds ``mouse``, ``index`` (the session's, or the day's, place in
    the mouse's training), ``date`` and every field of :class:`SessionResults`.
    """
    rows: list[dict[str, Any]] = []
    for mouse_id, sessions in mice.items():
        for index, result in enumerate(mouse_results(mouse_id, sessions, collapse_days), 1):
            rows.append({"mouse": mouse_id, "index": index, **result.as_dict()})
    return rows


TABLE_COLUMNS = (
    "mouse", "date", "trials", "correct", "incorrect", "missed",
    "resets", "spont", "d'", "water µl",
)  # fmt: skip
_TEXT_COLUMNS = {"mouse", "date"}


def _total(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return sum(value)
    return value


def _table_cells(row: Mapping[str, Any] | SessionResults) -> list[str]:
    data = row.as_dict() if isinstance(row, SessionResults) else row
    d = data.get("d_prime")
    water = data.get("water_ul")
    values = [
        data.get("mouse"),
        data.get("date"),
        data.get("trials"),
        _total(data.get("correct")),
        _total(data.get("incorrect")),
        _total(data.get("missed")),
        _total(data.get("resets")),
        _total(data.get("spontaneous_reaches")),
        f"{d:.2f}" if isinstance(d, int | float) else None,
        f"{water:.1f}" if isinstance(water, int | float) else None,
    ]
    return ["-" if value is None else str(value) for value in values]


def format_table(rows: Iterable[Mapping[str, Any] | SessionResults]) -> str:
    """A plain-text table of result rows (from :func:`cohort_results` or :func:`mouse_results`).

    Outcome, reset and spontaneous-reach columns show the total of both sides;
    a missing value shows as ``-``. Text columns are left-aligned, numbers
    right-aligned; lines carry no trailing spaces.
    """
    body = [_table_cells(row) for row in rows]
    widths = [
        max(len(cell) for cell in column) for column in zip(TABLE_COLUMNS, *body, strict=True)
    ]

    def line(cells: Iterable[str]) -> str:
        parts = [
            cell.ljust(width) if name in _TEXT_COLUMNS else cell.rjust(width)
            for name, cell, width in zip(TABLE_COLUMNS, cells, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(TABLE_COLUMNS), "  ".join("-" * width for width in widths)]
    lines.extend(line(cells) for cells in body)
    return "\n".join(lines)
