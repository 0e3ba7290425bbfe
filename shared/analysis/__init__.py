"""Analysis of training sessions: the original library's figures and reachlab's results table.

* :mod:`shared.analysis.trials` reads trials and ITI events out of session
  dicts of every shape the original ever wrote, never refusing one;
* :mod:`shared.analysis.dprime` is the original's d';
* :mod:`shared.analysis.original` builds the rows of the original's
  ``get_results`` / ``get_trials`` / ``get_spontaneous_reaches``;
* :mod:`shared.analysis.summary` and :mod:`shared.analysis.table` are the
  per-session or per-day figure that ``labctl results`` prints.

docs/analysis.md defines every figure.
"""

from shared.analysis import original
from shared.analysis.dprime import (
    DPrimeCounts,
    SessionTouches,
    joined_counts,
    loglinear_d_prime,
    original_counts,
    original_d_prime,
    session_touches,
)
from shared.analysis.summary import (
    DEFAULT_REWARD_VOLUME_UL,
    SessionResults,
    cohort_results,
    mouse_results,
    session_results,
    summarise,
)
from shared.analysis.table import TABLE_COLUMNS, format_table
from shared.analysis.trials import lift_latency, reaction_time

__all__ = [
    "DEFAULT_REWARD_VOLUME_UL",
    "TABLE_COLUMNS",
    "DPrimeCounts",
    "SessionResults",
    "SessionTouches",
    "cohort_results",
    "format_table",
    "joined_counts",
    "lift_latency",
    "loglinear_d_prime",
    "mouse_results",
    "original",
    "original_counts",
    "original_d_prime",
    "reaction_time",
    "session_results",
    "session_touches",
    "summarise",
]
