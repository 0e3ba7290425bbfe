"""Days and times as the lab reads them: local calendar days, ``--at`` and ``--from`` values.

A husbandry day is the session's day (:func:`shared.days.session_day`): the local
calendar day, the same ``%Y-%m-%d`` the rigs write as a session's ``date``.
"""

from __future__ import annotations

import functools
import math
import time
from datetime import date, datetime, timedelta

from shared.days import DAY_FORMAT, session_day
from shared.errors import ConfigError

_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


def today() -> str:
    return session_day(time.time())


def parse_day(text: str, what: str = "date") -> str:
    """``YYYY-MM-DD`` (or ``today``/``yesterday``) as a checked day; ConfigError if not."""
    value = text.strip().lower()
    if value == "today":
        return today()
    if value == "yesterday":
        return (date.today() - timedelta(days=1)).strftime(DAY_FORMAT)
    try:
        return datetime.strptime(value, DAY_FORMAT).strftime(DAY_FORMAT)
    except ValueError:
        raise ConfigError(f"invalid {what} {text!r}: expected YYYY-MM-DD") from None


@functools.lru_cache(maxsize=1024)  # a year's report asks for each day's a hundred times
def day_bounds(day: str) -> tuple[float, float]:
    """Unix times of the day's first moment and of the next day's (local time)."""
    first = datetime.strptime(day, DAY_FORMAT)
    return first.timestamp(), (first + timedelta(days=1)).timestamp()


def at_hour(day: str, hour: str) -> float:
    """Unix time of ``HH:MM`` local time on ``day`` (the lab's hours: weigh by, water by)."""
    return datetime.strptime(f"{day} {hour}", f"{DAY_FORMAT} %H:%M").timestamp()


def days_between(first: str, last: str) -> list[str]:
    """Every day from ``first`` to ``last``, both included."""
    start = datetime.strptime(first, DAY_FORMAT)
    end = datetime.strptime(last, DAY_FORMAT)
    if end < start:
        raise ConfigError(f"--to {last} is before --from {first}")
    return [(start + timedelta(days=n)).strftime(DAY_FORMAT) for n in range((end - start).days + 1)]


def parse_time(text: str, what: str = "--at") -> float:
    """A local time (``YYYY-MM-DD HH:MM[:SS]``, ``HH:MM`` today, or Unix seconds) as Unix s."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds > 0:
            return seconds
        raise ConfigError(f"invalid {what} {text!r}: not a time")
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(value, fmt).timestamp()
        except ValueError:
            continue
    for fmt in ("%H:%M", "%H:%M:%S"):
        try:
            clock = datetime.strptime(value, fmt).time()
        except ValueError:
            continue
        return datetime.combine(date.today(), clock).timestamp()
    raise ConfigError(
        f"invalid {what} {text!r}: expected 'YYYY-MM-DD HH:MM', 'HH:MM' (today) or Unix seconds"
    )
