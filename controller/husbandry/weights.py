"""Weighings, baselines and the weight check that guards ``labctl start``.

A mouse is under water restriction, and its weight is checked, from its first
baseline on. The check warns when the mouse has no weighing today or when its
latest weighing today is below the lab's threshold (default 80 %) of the baseline
in force; such a mouse starts only with ``--force``, and every override is kept
with who gave it and why (:class:`~controller.husbandry.models.WeightOverride`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import select

from controller.db import Transaction
from controller.husbandry.days import day_bounds
from controller.husbandry.models import Baseline, Weighing, WeightOverride
from controller.husbandry.settings import LabSettings
from controller.lab import LabError, get_mouse
from shared.days import session_day

#: A mouse weighs a few grams to a few tens; outside this is a typing mistake.
MIN_GRAMS, MAX_GRAMS = 1.0, 200.0
#: ``--at`` may be a little ahead of this computer's clock (another clock, typed by hand).
FUTURE_SLACK_S = 300.0
#: The ``method`` of the baselines row that ends a mouse's water restriction.
RESTRICTION_ENDED = "restriction ended"


def check_grams(grams: float, what: str = "weight") -> float:
    if not MIN_GRAMS <= grams <= MAX_GRAMS:
        raise LabError(f"invalid {what} {grams:g} g: expected {MIN_GRAMS:g} to {MAX_GRAMS:g} g")
    return grams


def record_weighing(
    tx: Transaction,
    mouse_id: str,
    grams: float,
    *,
    by: str,
    at: float | None = None,
    session_id: str | None = None,
    note: str = "",
) -> Weighing:
    get_mouse(tx, mouse_id)
    check_grams(grams)
    now = time.time()
    weighed_at = now if at is None else at
    if weighed_at > now + FUTURE_SLACK_S:
        raise LabError(f"--at {time.ctime(weighed_at)} is in the future")
    row = Weighing(
        mouse_id=mouse_id, grams=grams, weighed_at=weighed_at, recorded_at=now,
        recorded_by=by, session_id=session_id, note=note,
    )  # fmt: skip
    tx.add(row)
    tx.flush()
    return row


def weighings(
    tx: Transaction, mouse_id: str, *, since: float | None = None, until: float | None = None
) -> list[Weighing]:
    stmt = select(Weighing).where(Weighing.mouse_id == mouse_id, Weighing.voided_at.is_(None))
    if since is not None:
        stmt = stmt.where(Weighing.weighed_at >= since)
    if until is not None:
        stmt = stmt.where(Weighing.weighed_at < until)
    return list(tx.scalars(stmt.order_by(Weighing.weighed_at, Weighing.id)))


def latest_weighing(tx: Transaction, mouse_id: str, day: str) -> Weighing | None:
    """The mouse's last weighing of ``day``."""
    start, end = day_bounds(day)
    found = weighings(tx, mouse_id, since=start, until=end)
    return found[-1] if found else None


def set_baseline(
    tx: Transaction,
    mouse_id: str,
    grams: float | None,
    *,
    by: str,
    mean_of: int | None = None,
    at: float | None = None,
    note: str = "",
) -> Baseline:
    """Give the mouse a baseline: ``grams``, or the mean of its first ``mean_of`` weighings;
    in force from ``at`` (now when None: a baseline entered late from a paper record may
    be dated back)."""
    get_mouse(tx, mouse_id)
    now = time.time()
    set_at = now if at is None else at
    if set_at > now + FUTURE_SLACK_S:
        raise LabError(f"--at {time.ctime(set_at)} is in the future")
    if (grams is None) == (mean_of is None):
        raise LabError("give the baseline in grams, or --mean to average the first weighings")
    if grams is not None:
        method = "given"
        check_grams(grams, "baseline")
    else:
        assert mean_of is not None
        # The weighings before this restriction: after the previous one ended, if any.
        ended = tx.scalar(
            select(Baseline.set_at)
            .where(Baseline.mouse_id == mouse_id, Baseline.method == RESTRICTION_ENDED)
            .where(Baseline.set_at < set_at)
            .order_by(Baseline.set_at.desc())
            .limit(1)
        )
        first = weighings(tx, mouse_id, since=ended, until=set_at + 1e-6)[:mean_of]
        if len(first) < mean_of:
            raise LabError(
                f"mouse {mouse_id} has {len(first)} weighing(s); the baseline is the mean of "
                f"the first {mean_of} (`labctl weigh {mouse_id} GRAMS`)"
            )
        grams = round(sum(w.grams for w in first) / mean_of, 3)
        days = sorted({session_day(w.weighed_at) for w in first})
        method = f"mean of {mean_of} weighings ({days[0]} to {days[-1]})"
    row = Baseline(
        mouse_id=mouse_id, grams=grams, set_at=set_at, set_by=by, method=method, note=note
    )
    tx.add(row)
    tx.flush()
    return row


def baseline_of(tx: Transaction, mouse_id: str, at: float | None = None) -> Baseline | None:
    """The baseline in force at ``at`` (now when None): the newest set by then; None when
    there is none or the restriction had ended (:func:`end_restriction`)."""
    stmt = select(Baseline).where(Baseline.mouse_id == mouse_id)
    if at is not None:
        stmt = stmt.where(Baseline.set_at < at)
    newest = tx.scalars(stmt.order_by(Baseline.set_at.desc(), Baseline.id.desc())).first()
    return None if newest is None or newest.method == RESTRICTION_ENDED else newest


def restriction_ended(tx: Transaction, mouse_id: str, at: float | None = None) -> float | None:
    """When the mouse's water restriction ended, if the newest baselines row by ``at`` is
    its end (:func:`end_restriction`); None when it is restricted or never was."""
    stmt = select(Baseline).where(Baseline.mouse_id == mouse_id)
    if at is not None:
        stmt = stmt.where(Baseline.set_at < at)
    newest = tx.scalars(stmt.order_by(Baseline.set_at.desc(), Baseline.id.desc())).first()
    return newest.set_at if newest is not None and newest.method == RESTRICTION_ENDED else None


def end_restriction(
    tx: Transaction, mouse_id: str, *, by: str, at: float | None = None, note: str = ""
) -> Baseline:
    """Take the mouse off water restriction (free water, end of the experiment): from then
    its weight is not checked and nothing is owed. A new baseline restricts it again."""
    now = time.time()
    ended_at = now if at is None else at
    current = baseline_of(tx, mouse_id, at=ended_at + 1e-6)
    if current is None:
        get_mouse(tx, mouse_id)
        raise LabError(f"mouse {mouse_id} is not on water restriction (it has no baseline)")
    # Kept as a baselines row, so the mouse's restriction history is one time line.
    row = Baseline(
        mouse_id=mouse_id, grams=current.grams, set_at=ended_at, set_by=by,
        method=RESTRICTION_ENDED, note=note,
    )  # fmt: skip
    tx.add(row)
    tx.flush()
    return row


def baselines(tx: Transaction, mouse_id: str) -> list[Baseline]:
    return list(
        tx.scalars(
            select(Baseline)
            .where(Baseline.mouse_id == mouse_id)
            .order_by(Baseline.set_at, Baseline.id)
        )
    )


@dataclass
class WeightCheck:
    """A mouse's weight against its baseline on one day, and what is wrong with it."""

    mouse: str
    day: str
    baseline_grams: float | None
    weight_grams: float | None
    weighed_at: float | None
    threshold_pct: float
    warnings: list[str] = field(default_factory=list)
    #: The lower grace threshold applies: the mouse is in its first days of restriction.
    grace: bool = False

    @property
    def percent(self) -> float | None:
        if self.baseline_grams is None or self.weight_grams is None:
            return None
        return 100.0 * self.weight_grams / self.baseline_grams

    @property
    def restricted(self) -> bool:
        """Under water restriction (it has a baseline): the check applies."""
        return self.baseline_grams is not None

    @property
    def below_threshold(self) -> bool:
        percent = self.percent
        return percent is not None and percent < self.threshold_pct

    @property
    def blocks_start(self) -> bool:
        """A start needs ``--force``: no weight today, or below the threshold."""
        return bool(self.warnings) and self.restricted


def restriction_start(tx: Transaction, mouse_id: str, at: float) -> float | None:
    """When the mouse's restriction in force at ``at`` began: its first baseline since the
    last end of restriction before ``at``; None when it is not restricted then."""
    return restriction_began(baselines(tx, mouse_id), at)


def restriction_began(rows: Iterable[Baseline], at: float) -> float | None:
    """:func:`restriction_start` from the mouse's baselines, oldest first."""
    started = None
    for row in rows:
        if row.set_at >= at:
            break
        if row.method == RESTRICTION_ENDED:
            started = None
        elif started is None:
            started = row.set_at
    return started


def in_grace(tx: Transaction, mouse_id: str, settings: LabSettings, day: str) -> bool:
    """Whether ``day`` is one of the first ``grace_days`` days of the mouse's restriction."""
    if settings.grace_days <= 0:
        return False
    return grace_day(restriction_start(tx, mouse_id, day_bounds(day)[1]), settings, day)


def grace_day(started: float | None, settings: LabSettings, day: str) -> bool:
    """:func:`in_grace` for a restriction that began at ``started`` (None: not restricted)."""
    if started is None or settings.grace_days <= 0:
        return False
    first = session_day(started)
    return day < session_day(day_bounds(first)[0] + (settings.grace_days + 0.5) * 86400)


def weight_check(
    tx: Transaction, mouse_id: str, settings: LabSettings, day: str | None = None
) -> WeightCheck:
    """Check the mouse's weight on ``day`` (today) against the baseline in force at its end,
    with the grace threshold in the first ``grace_days`` days of its restriction."""
    day = day or session_day(time.time())
    _, end = day_bounds(day)
    baseline = baseline_of(tx, mouse_id, at=end)
    weighing = latest_weighing(tx, mouse_id, day)
    grace = baseline is not None and in_grace(tx, mouse_id, settings, day)
    grams = baseline.grams if baseline else None
    return judge_weight(mouse_id, day, grams, weighing, settings, grace=grace)


class Weighed(Protocol):
    """What a check reads of a weighing (a :class:`Weighing`, or a row of its columns)."""

    @property
    def grams(self) -> float: ...

    @property
    def weighed_at(self) -> float: ...


def judge_weight(
    mouse_id: str,
    day: str,
    baseline_grams: float | None,
    weighing: Weighed | None,
    settings: LabSettings,
    *,
    grace: bool = False,
) -> WeightCheck:
    """The check of ``day`` from the grams of the baseline in force at its end (None: not
    restricted) and its last weighing (``grace``: a day of the restriction's first days,
    :func:`in_grace`)."""
    threshold = settings.grace_threshold_pct if grace else settings.weight_threshold_pct
    # By position: a year's report judges ~36,500 days, and keywords cost a third more.
    if weighing is None:
        check = WeightCheck(mouse_id, day, baseline_grams, None, None, threshold, [], grace)
    else:
        check = WeightCheck(
            mouse_id, day, baseline_grams, weighing.grams, weighing.weighed_at, threshold, [],
            grace,
        )  # fmt: skip
    if baseline_grams is None:
        return check  # not on restriction: nothing to hold the weight against
    if weighing is None:
        check.warnings.append(f"{mouse_id} has not been weighed on {day}")
    elif check.below_threshold:
        grace_note = (
            f", the grace threshold of its first {settings.grace_days} days" if grace else ""
        )
        check.warnings.append(
            f"{mouse_id} weighs {weighing.grams:g} g, {check.percent:.1f} % of its baseline "
            f"{baseline_grams:g} g (below {check.threshold_pct:g} %{grace_note})"
        )
    return check


def record_override(
    tx: Transaction,
    check: WeightCheck,
    *,
    by: str,
    reason: str,
    session_id: str | None,
    at: float | None = None,
) -> WeightOverride:
    """Keep the fact that a session started although ``check`` warned."""
    if not reason.strip():
        raise LabError("an override needs a reason (--reason WHY): it is kept for the record")
    row = WeightOverride(
        mouse_id=check.mouse, at=time.time() if at is None else at, by=by, reason=reason.strip(),
        warning="; ".join(check.warnings), weight_grams=check.weight_grams,
        baseline_grams=check.baseline_grams, session_id=session_id,
    )  # fmt: skip
    tx.add(row)
    tx.flush()
    return row


def overrides(
    tx: Transaction, mouse_id: str, *, since: float | None = None, until: float | None = None
) -> list[WeightOverride]:
    stmt = select(WeightOverride).where(WeightOverride.mouse_id == mouse_id)
    if since is not None:
        stmt = stmt.where(WeightOverride.at >= since)
    if until is not None:
        stmt = stmt.where(WeightOverride.at < until)
    return list(tx.scalars(stmt.order_by(WeightOverride.at, WeightOverride.id)))
