"""Per-lab settings with defaults: weight threshold and grace, water rule, calibration age,
the hours and limits of the alerts, the lab's names.

A lab sets them with ``labctl lab set KEY VALUE``; every value given is kept with who gave
it and when (``lab_settings``), and the newest per key is in force. A key never set has
its default, so a new lab runs on sensible rules without configuring anything.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from controller.db import Transaction
from controller.husbandry.models import LabSetting
from shared.errors import ConfigError


@dataclass(frozen=True)
class WaterRule:
    """The daily water requirement: ``amount_ul`` per gram of baseline, or fixed."""

    amount_ul: float
    per_gram: bool

    def requirement(self, baseline_grams: float | None) -> float | None:
        """µL needed in a day; None for a per-gram rule without a baseline."""
        if not self.per_gram:
            return self.amount_ul
        return None if baseline_grams is None else self.amount_ul * baseline_grams

    def __str__(self) -> str:
        return self.text

    @functools.cached_property
    def text(self) -> str:
        """As written: ``40 ul/g`` or ``1000 ul`` (kept: each day of a report names it)."""
        return f"{self.amount_ul:g} ul/g" if self.per_gram else f"{self.amount_ul:g} ul"


_RULE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:ul|µl|μl)?\s*(/\s*g)?\s*$", re.IGNORECASE)


def parse_water_rule(text: str) -> WaterRule:
    """``40 ul/g`` (per gram of baseline weight) or ``1000 ul`` (fixed per day)."""
    match = _RULE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"invalid water_requirement {text!r}: expected e.g. '40 ul/g' (per gram of "
            "baseline) or '1000 ul' (fixed per day)"
        )
    return WaterRule(float(match.group(1)), per_gram=match.group(2) is not None)


def _number(low: float, high: float) -> Callable[[str, str], float]:
    def parse(key: str, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"invalid {key} {text!r}: expected a number") from None
        if not low <= value <= high:
            raise ConfigError(f"invalid {key} {text!r}: expected {low:g} to {high:g}")
        return value

    return parse


def _whole(low: int, high: int) -> Callable[[str, str], int]:
    def parse(key: str, text: str) -> int:
        value = _number(low, high)(key, text)
        if value != int(value):
            raise ConfigError(f"invalid {key} {text!r}: expected a whole number")
        return int(value)

    return parse


_count = _whole(1, 100)

_HOUR = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def parse_hour(key: str, text: str) -> str:
    """``HH:MM`` on the 24-hour clock (local time), kept as typed but zero-padded."""
    match = _HOUR.match(text)
    if not match:
        raise ConfigError(f"invalid {key} {text!r}: expected a time of day as HH:MM, e.g. 12:00")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _name(key: str, text: str) -> str:
    value = " ".join(text.split())
    if not 1 <= len(value) <= 200:
        raise ConfigError(f"invalid {key} {text!r}: expected 1 to 200 characters")
    return value


@dataclass(frozen=True)
class LabSettings:
    """The rules in force. Defaults: what a water-restriction protocol usually states."""

    #: A weight below this percentage of the baseline is a warning; starting needs --force.
    weight_threshold_pct: float = 80.0
    #: What a mouse must get in a day, in the box and by hand together.
    water_requirement: WaterRule = WaterRule(40.0, per_gram=True)
    #: A calibration older than this many days is stale.
    calibration_max_age_days: float = 14.0
    #: A calibration that differs from the one before by more than this is a warning.
    calibration_change_pct: float = 15.0
    #: ``labctl mouse baseline --mean`` averages this many first weighings.
    baseline_weighings: int = 3
    #: For this many days from the start of a mouse's restriction (its first baseline),
    #: ``grace_threshold_pct`` applies instead of ``weight_threshold_pct`` (0: no grace).
    grace_days: int = 0
    grace_threshold_pct: float = 70.0
    #: A weighing outside these is implausible (a typing or scale mistake), as is one under
    #: half or over twice the one before.
    weight_min_g: float = 10.0
    weight_max_g: float = 60.0
    #: Alerts: a restricted mouse not weighed by this hour, water owed at this hour, the
    #: daily summary at this hour (local time, HH:MM).
    alert_weigh_by: str = "12:00"
    alert_water_by: str = "17:00"
    alert_summary_at: str = "08:00"
    #: Alerts: an alert that still holds is sent again after this many hours (0: never).
    alert_repeat_hours: float = 4.0
    #: Alerts: a rig clock off the collector's by more than this many seconds.
    alert_clock_offset_s: float = 60.0
    #: Alerts: a rig's journal disk with less free space than this, in MB.
    alert_disk_free_mb: float = 500.0
    #: Who the lab is, as published data names it (NWB's lab, institution, experimenter).
    lab: str = ""
    institution: str = ""
    #: The experimenter of sessions whose metadata names no ``trainer``.
    experimenter: str = ""


#: key -> (parser, what it means), in the order `labctl lab show` lists them.
KEYS: dict[str, tuple[Callable[[str, str], Any], str]] = {
    "weight_threshold_pct": (_number(1, 100), "warn below this % of the baseline weight"),
    "water_requirement": (
        lambda key, text: parse_water_rule(text),
        "daily water: 'N ul/g' of baseline, or 'N ul' fixed",
    ),
    "calibration_max_age_days": (_number(0.01, 3650), "a calibration older than this is stale"),
    "calibration_change_pct": (_number(0.1, 1000), "warn when a calibration changes more"),
    "baseline_weighings": (_count, "first weighings averaged by `mouse baseline --mean`"),
    "grace_days": (_whole(0, 365), "days from a restriction's start with the grace threshold"),
    "grace_threshold_pct": (_number(1, 100), "the weight threshold during the grace days"),
    "weight_min_g": (_number(1, 200), "a weighing under this is implausible"),
    "weight_max_g": (_number(1, 200), "a weighing over this is implausible"),
    "alert_weigh_by": (parse_hour, "alert: a restricted mouse not weighed by HH:MM"),
    "alert_water_by": (parse_hour, "alert: water still owed at HH:MM"),
    "alert_summary_at": (parse_hour, "alert: the daily summary at HH:MM"),
    "alert_repeat_hours": (_number(0, 720), "alert: sent again while it holds (0: never)"),
    "alert_clock_offset_s": (_number(1, 86400), "alert: a rig clock off by more than S"),
    "alert_disk_free_mb": (_number(1, 1_000_000), "alert: a rig journal disk with less free"),
    "lab": (_name, "the lab's name, as published data (NWB) gives it"),
    "institution": (_name, "the lab's institution, for published data"),
    "experimenter": (_name, "who ran sessions whose metadata names no trainer ('Last, First')"),
}


def parse_setting(key: str, text: str) -> Any:
    if key not in KEYS:
        raise ConfigError(f"unknown lab setting {key!r}: known are {', '.join(KEYS)}")
    return KEYS[key][0](key, text)


def lab_settings(tx: Transaction, at: float | None = None) -> LabSettings:
    """The settings in force at ``at`` (now when None): the newest value of each key set
    by then, else its default. A report of a past day uses that day's rules."""
    values: dict[str, Any] = {}
    stmt = select(LabSetting)
    if at is not None:
        stmt = stmt.where(LabSetting.set_at < at)
    rows = tx.scalars(stmt.order_by(LabSetting.set_at, LabSetting.id))
    for row in rows:
        if row.key in KEYS:
            values[row.key] = parse_setting(row.key, row.value)
    return LabSettings(**values)


def set_lab_setting(tx: Transaction, key: str, value: str, by: str) -> Any:
    """Give ``key`` a new value (checked first); returns it parsed."""
    parsed = parse_setting(key, value)
    tx.add(LabSetting(key=key, value=value.strip(), set_at=time.time(), set_by=by))
    tx.flush()
    return parsed


def setting_history(tx: Transaction) -> list[LabSetting]:
    return list(tx.scalars(select(LabSetting).order_by(LabSetting.set_at, LabSetting.id)))
