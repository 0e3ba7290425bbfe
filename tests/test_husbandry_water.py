"""The water warning names the spout that has no calibration, not the whole box.

A box calibrated on its left spout only counts the right spout's rewards at the
nominal volume; the day's warning says "box 7 right spout" and the command that
calibrates it, so nobody recalibrates the spout that is fine.
"""

from __future__ import annotations

from controller.db import Database
from controller.husbandry.calibration import record_calibration
from controller.husbandry.settings import lab_settings
from controller.husbandry.water import water_day
from tests.test_husbandry import (
    DAY,
    add_boxes,
    at,
    restricted_mouse,
    reward_trial,
    session,
    store,
)


def test_the_water_warning_names_the_uncalibrated_spout_and_how_to_calibrate_it(
    db: Database,
) -> None:
    add_boxes(db, "7")
    restricted_mouse(db)
    with db.session() as s:
        record_calibration(
            s, "7", 0, openings=100, duration_ms=70, total=500.0, unit="mg", by="a",
            at=at("09:00"),
        )  # fmt: skip
    trials = [reward_trial(0, at("10:00")), reward_trial(1, at("10:01")),
              reward_trial(1, at("10:02"))]  # fmt: skip
    store(db, "M1", session("S1", "7", trials))
    with db.session() as s:
        day = water_day(s, "M1", DAY, lab_settings(s))
    assert day.earned.uncalibrated == 2
    (line,) = [w for w in day.warnings if "nominal volume" in w]
    assert "no calibration of the box 7 right spout was in force" in line
    assert "labctl calibrate --box 7 --spout right" in line
    assert "left" not in line
