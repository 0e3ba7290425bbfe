"""Recording a weighing or water by hand, and what is said back: one home for
``labctl weigh``, ``labctl water`` and the dashboard's animal-care page, so both give the
same checks and the same lines."""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.db import Transaction
from controller.husbandry.settings import lab_settings
from controller.husbandry.water import NeedsConfirmation, give_water, over_limit, water_day
from controller.husbandry.weights import record_weighing, restriction_ended, weight_check
from shared.days import session_day


@dataclass
class Said:
    """The line a record is acknowledged with, and its warnings (each a ``warning:`` line)."""

    line: str
    warnings: list[str] = field(default_factory=list)
    record_id: int = 0


def weigh(
    tx: Transaction, mouse: str, grams: float, *, by: str, at: float | None = None, note: str = ""
) -> Said:
    """Record a weighing and compare it with the mouse's baseline (LabError if refused)."""
    row = record_weighing(tx, mouse, grams, by=by, at=at, note=note)
    check = weight_check(tx, mouse, lab_settings(tx), session_day(row.weighed_at))
    if check.percent is not None:
        line = (
            f"{mouse}: {grams:g} g, {check.percent:.1f} % of its baseline "
            f"{check.baseline_grams:g} g (weighing {row.id})"
        )
    elif (ended := restriction_ended(tx, mouse, at=row.weighed_at + 1e-6)) is not None:
        line = (
            f"{mouse}: {grams:g} g (weighing {row.id}; its water restriction ended on "
            f"{session_day(ended)}: the weight is not checked; a new baseline restricts it "
            f"again: `labctl mouse baseline {mouse} GRAMS`)"
        )
    else:
        line = (
            f"{mouse}: {grams:g} g (weighing {row.id}; no baseline yet: "
            f"`labctl mouse baseline {mouse} GRAMS`)"
        )
    return Said(line, list(check.warnings), row.id)


def water(
    tx: Transaction,
    mouse: str,
    microliters: float,
    *,
    by: str,
    kind: str = "water",
    at: float | None = None,
    note: str = "",
    confirmed: bool = False,
) -> Said:
    """Record water given by hand and the mouse's water for that day (LabError if refused;
    NeedsConfirmation for a volume over the lab's limit unless ``confirmed``)."""
    question = over_limit(microliters)
    if question is not None and not confirmed:
        raise NeedsConfirmation(f"{question}: nothing stored; confirm it to store it")
    row = give_water(tx, mouse, microliters, by=by, kind=kind, at=at, note=note)
    day = water_day(tx, mouse, session_day(row.given_at), lab_settings(tx))
    required = "no requirement (no baseline)" if day.requirement_ul is None else (
        f"{day.requirement_ul:g} ul required, {day.owed_ul:g} ul still owed"
    )  # fmt: skip
    line = (
        f"{mouse} on {day.day}: earned {day.earned.ul:.0f} ul in the box, given "
        f"{day.given_ul:g} ul by hand, total {day.total_ul:.0f} ul; {required} (water {row.id})"
    )
    return Said(line, list(day.warnings), row.id)
