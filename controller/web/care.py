"""The animal-care page's side on the server: today's table as ``labctl today`` has it,
each mouse's weight curve with its threshold line, and recording a weighing or water by
hand with the lab's token, through the same checks and lines as ``labctl weigh`` and
``labctl water`` (:mod:`controller.husbandry.entry`).
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from controller.db import Database
from controller.husbandry import entry
from controller.husbandry.days import at_hour, today
from controller.husbandry.report import box_warnings, today_rows
from controller.husbandry.settings import lab_settings
from controller.husbandry.weights import RESTRICTION_ENDED, baselines, in_grace, weighings
from controller.lab import get_mouse
from controller.web.control import ControlError
from shared.days import session_day
from shared.ids import check_mouse_id

#: Who a record made from the page is kept as, when the page gives no name.
BY = "labctl web"
#: The weight curve covers this many days back.
CURVE_DAYS = 90


def care_day(db: Database, now: float | None = None) -> dict[str, Any]:
    """Today's rows with what needs doing in each: not weighed, under threshold, and water
    still owed once the lab's ``alert_water_by`` hour has passed (before it, water owed is
    the day's plan, not yet a lapse)."""
    now = time.time() if now is None else now
    day = today()
    with db.reader() as tx:
        settings = lab_settings(tx)
        rows = today_rows(tx, day, settings)
        boxes = box_warnings(tx, rows, settings)
    water_late = now >= at_hour(day, settings.alert_water_by)
    out = []
    for row in rows:
        restricted = row.baseline_g is not None
        needs = []
        if restricted and row.weight_g is None:
            needs.append("weigh")
        if row.below_threshold:
            needs.append("weight")
        if restricted and row.owed_ul and water_late:
            needs.append("water")
        out.append({**row.as_dict(), "restricted": restricted, "needs": needs})
    return {
        "date": day,
        "server_time": now,
        "rows": out,
        "box_warnings": boxes,
        "settings": {
            "weight_threshold_pct": settings.weight_threshold_pct,
            "alert_weigh_by": settings.alert_weigh_by,
            "alert_water_by": settings.alert_water_by,
        },
    }


def weight_curve(db: Database, mouse: str, now: float | None = None) -> dict[str, Any]:
    """The mouse's weighings of the last :data:`CURVE_DAYS` days, and at each the threshold
    in grams it was held against (the baseline then times that day's threshold, grace included)."""
    now = time.time() if now is None else now
    with db.reader() as tx:
        get_mouse(tx, mouse)
        settings = lab_settings(tx)
        history = baselines(tx, mouse)
        times = [b.set_at for b in history]
        points = []
        for w in weighings(tx, mouse, since=now - CURVE_DAYS * 86400):
            index = bisect.bisect_left(times, w.weighed_at) - 1
            baseline = history[index] if index >= 0 else None
            threshold = None
            if baseline is not None and baseline.method != RESTRICTION_ENDED:
                grace = in_grace(tx, mouse, settings, session_day(w.weighed_at))
                pct = settings.grace_threshold_pct if grace else settings.weight_threshold_pct
                threshold = round(baseline.grams * pct / 100, 2)
            points.append(
                {"at": w.weighed_at, "grams": w.grams, "threshold_g": threshold, "id": w.id}
            )
    return {"mouse": mouse, "weighings": points}


def _text(body: dict[str, Any], key: str, default: str = "", limit: int = 64) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise ControlError(f"{key} must be text", 400)
    return value.strip()[:limit] or default


def _number(body: dict[str, Any], key: str, what: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{what} must be a number, got {value!r}", 400)
    return float(value)


def record(db: Database, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """Record a weighing (``grams``) or water (``ul``, ``kind``, and ``confirm`` true for a
    volume over the lab's limit) for ``mouse``; LabError (the CLI's line) when refused,
    NeedsConfirmation when over the limit unconfirmed, and then nothing is stored."""
    mouse = body.get("mouse")
    if not isinstance(mouse, str):
        raise ControlError("mouse must be a mouse id", 400)
    check_mouse_id(mouse)
    by = _text(body, "by", BY)
    with db.session() as tx:
        if kind == "weigh":
            said = entry.weigh(tx, mouse, _number(body, "grams", "the weight"), by=by)
        else:
            amount = _number(body, "ul", "the volume")
            confirmed = body.get("confirm", False)
            if not isinstance(confirmed, bool):
                raise ControlError(f"confirm must be true or false, got {confirmed!r}", 400)
            said = entry.water(
                tx, mouse, amount, by=by, kind=_text(body, "kind", "water"), confirmed=confirmed
            )
    return {
        "ok": True,
        "line": said.line,
        "warnings": [f"labctl: warning: {w}" for w in said.warnings],
        "id": said.record_id,
    }
