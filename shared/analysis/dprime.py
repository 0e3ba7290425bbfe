"""d' exactly as the original single-rig library computes it (``reach/session.py``).

The original's rule, in words (docs/analysis.md has the worked definition):

* Only trials with a touch count: correct (1) and incorrect (2). Missed (0),
  cancelled (3) and unfinished trials are dropped first.
* Among those, a trial that follows an *incorrect* one is a correction trial
  and is left out, whichever spout either targeted. Because missed trials were
  dropped first, a trial after ``incorrect, missed`` is a correction trial too.
* The **left** spout is the signal: a hit is a correct trial targeting the
  left spout; a false alarm is an incorrect trial targeting the right spout
  (a touch of the left spout when the right was cued). Every non-left target
  counts as right, as in the original.
* Rates use the log-linear correction (Hautus 1995):
  ``H = (hits + 0.5) / (left trials + 1)``, ``FA = (false alarms + 0.5) /
  (right trials + 1)``, and ``d' = Z(H) - Z(FA)``, Z being the inverse of the
  standard normal CDF. A side with no trials has the rate 0.5, so a session
  without touches has d' = 0.0.

For a day of several sessions the original's training-summary script applies
the same rule to the day's trials in order, the correction rule running on
across the sessions' boundaries; :func:`original_d_prime` over the joined
trials does the same, and so does :func:`joined_counts` from each session's
:func:`session_touches` (what the husbandry stores per session, so a day's d'
needs no trials read again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from shared.analysis.trials import (
    LEFT,
    equals,
)
from shared.outcomes import CORRECT, INCORRECT

_NUMBER_TYPES = (int, float)
_TOUCHED = (CORRECT, INCORRECT)

_PHI_INV = NormalDist().inv_cdf


def loglinear_d_prime(hits: int, signal_trials: int, false_alarms: int, noise_trials: int) -> float:
    """Z(H) - Z(FA) with the log-linear correction of both rates."""
    hit_rate = (hits + 0.5) / (signal_trials + 1)
    false_alarm_rate = (false_alarms + 0.5) / (noise_trials + 1)
    return _PHI_INV(hit_rate) - _PHI_INV(false_alarm_rate)


@dataclass(frozen=True)
class DPrimeCounts:
    """The counts behind the original's d' (see the module docstring)."""

    signal_trials: int  # non-correction touched trials targeting the left spout
    hits: int  # of those, correct
    noise_trials: int  # non-correction touched trials targeting the right spout
    false_alarms: int  # of those, incorrect
    correction_trials: int  # touched trials right after an incorrect one

    @property
    def d_prime(self) -> float:
        return loglinear_d_prime(
            self.hits, self.signal_trials, self.false_alarms, self.noise_trials
        )


@dataclass(frozen=True)
class SessionTouches:
    """One session's part of a day's d': its counts as if no incorrect trial came before it,
    and what the correction rule needs to carry it across the sessions' boundaries."""

    counts: DPrimeCounts
    #: The first touched trial as (targets the left spout, incorrect); None: no touched trial.
    first_touch: tuple[bool, bool] | None
    #: The last touched trial was incorrect (so the next session's first touch is a correction).
    last_touch_incorrect: bool


def session_touches(trials: Iterable[Any]) -> SessionTouches:
    """Classify ``trials`` (trial dicts in order; anything else is ignored) as the original did."""
    signal = hits = noise = false_alarms = corrections = 0
    after_incorrect = False
    first: tuple[bool, bool] | None = None
    for trial in trials:
        if not isinstance(trial, Mapping):
            continue
        result = trial.get("outcome")
        if type(result) not in _NUMBER_TYPES or result not in _TOUCHED:
            continue  # missed, cancelled or unfinished: dropped before anything else
        incorrect = result == INCORRECT
        left = equals(trial.get("spout"), LEFT)
        if first is None:
            first = (left, incorrect)
        if after_incorrect:
            corrections += 1
        elif left:
            signal += 1
            hits += not incorrect
        else:
            noise += 1
            false_alarms += incorrect
        after_incorrect = incorrect
    counts = DPrimeCounts(signal, hits, noise, false_alarms, corrections)
    return SessionTouches(counts, first, after_incorrect)


def joined_counts(parts: Iterable[SessionTouches]) -> DPrimeCounts:
    """The counts of the sessions' trials joined in order (the correction rule running on
    across their boundaries), from each session's :func:`session_touches` alone."""
    signal = hits = noise = false_alarms = corrections = 0
    after_incorrect = False
    for part in parts:
        c = part.counts
        signal, hits, noise = signal + c.signal_trials, hits + c.hits, noise + c.noise_trials
        false_alarms += c.false_alarms
        corrections += c.correction_trials
        if part.first_touch is None:
            continue  # no touched trial: the state runs on through the session unchanged
        if after_incorrect:  # its first touch follows an incorrect trial: a correction trial
            left, incorrect = part.first_touch
            if left:
                signal, hits = signal - 1, hits - (not incorrect)
            else:
                noise, false_alarms = noise - 1, false_alarms - incorrect
            corrections += 1
        after_incorrect = part.last_touch_incorrect
    return DPrimeCounts(signal, hits, noise, false_alarms, corrections)


def original_counts(trials: Iterable[Any]) -> DPrimeCounts:
    """Classify ``trials`` (trial dicts in order; anything else is ignored) as the original did."""
    return session_touches(trials).counts


def original_d_prime(trials: Iterable[Any]) -> float:
    """The original's ``Session.get_d_prime()`` of these trials."""
    return original_counts(trials).d_prime
