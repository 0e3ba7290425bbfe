"""The alert rules: from the lab's state now, the alerts that hold, each under a stable key.

Nothing here sends or remembers anything: :func:`lab_alerts` is a pure reading of the
rigs' view (the same :func:`controller.views.box_views` rows ``labctl status`` shows),
the collectors' leases and presence, and the husbandry records (the same
:func:`controller.husbandry.report.today_rows` ``labctl today`` shows). The ledger
(:mod:`.ledger`) turns a key's appearing and disappearing into messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from controller.collector.leases import LEASE_S
from controller.db import Transaction
from controller.husbandry.days import at_hour
from controller.husbandry.models import Weighing
from controller.husbandry.report import DayRow, box_warnings, today_rows
from controller.husbandry.settings import LabSettings
from controller.husbandry.weights import weighings, weight_check
from controller.models import CollectorLease, Stream
from controller.views import BoxView
from shared.days import session_day
from shared.protocol import Status

#: kind -> what it means, in the order docs/alerts.md lists them. ``--only`` takes these.
KINDS: dict[str, str] = {
    "rig-offline": "a rig went offline or silent during a session",
    "session-aborted": "a session ended aborted",
    "collector-gone": "a collector stopped renewing its lease (it died or hangs)",
    "no-collector": "no collector is online: nothing stores the rigs' documents",
    "broker-unreachable": "the alerting process cannot reach the MQTT broker",
    "clock-offset": "a rig's clock is off the collector's by more than alert_clock_offset_s",
    "disk-low": "a rig's journal disk has less free space than alert_disk_free_mb",
    "weight-low": "a mouse's last weighing is under its threshold",
    "weight-implausible": "a weighing under half or over twice the one before, or outside "
    "weight_min_g..weight_max_g",
    "not-weighed": "a restricted mouse not weighed by alert_weigh_by",
    "water-owed": "water still owed at alert_water_by",
    "calibration": "a spout's calibration is stale or drifted",
    "summary": "the daily summary at alert_summary_at",
}
#: A session not ended this long after it began is not watched any more (a rig that died
#: days ago and was never restarted is a matter for `labctl status`, not a page at night).
SESSION_WATCH_S = 24 * 3600.0
#: A weighing below this fraction of the one before, or above its inverse, is implausible.
IMPLAUSIBLE_RATIO = 0.5


@dataclass(frozen=True)
class Raised:
    """One alert that holds now."""

    key: str
    kind: str
    text: str
    #: An event (an aborted session) is sent once and has nothing to clear.
    event: bool = False
    #: A day-bound alert (not weighed today) ends without a follow-up when its day is over.
    day: str | None = None


@dataclass(frozen=True)
class LiveFacts:
    """What the alerting process has from the broker (None where it is unreachable)."""

    views: Sequence[BoxView]
    statuses: Mapping[str, Status] | None
    collectors_online: Sequence[str] | None
    broker_error: str | None = None


def lab_alerts(tx: Transaction, live: LiveFacts, settings: LabSettings, now: float) -> list[Raised]:
    """Every alert that holds at ``now``."""
    out = list(rig_alerts(tx, live, settings, now))
    out.extend(collector_alerts(tx, live, now))
    rows = today_rows(tx, session_day(now), settings)
    out.extend(mouse_alerts(tx, rows, settings, now))
    out.extend(calibration_alerts(tx, rows, settings))
    return out


def rig_alerts(
    tx: Transaction, live: LiveFacts, settings: LabSettings, now: float
) -> Iterable[Raised]:
    views = {v.box: v for v in live.views}
    open_streams = tx.execute(
        select(Stream.session_id, Stream.box, Stream.status, Stream.last_doc_at).where(
            Stream.box.is_not(None), Stream.created_at > now - SESSION_WATCH_S
        )
    ).all()
    for session_id, box, status, last_doc_at in open_streams:
        view = views.get(box or "")
        mouse = f" (mouse {view.assigned})" if view is not None and view.assigned else ""
        if status is None and view is not None and not view.online:
            why = f": {view.note}" if view.note else ""
            yield Raised(
                f"rig-offline:{box}:{session_id}",
                "rig-offline",
                f"box {box} is offline during session {session_id}{mouse}{why}",
            )
        elif status == "aborted" and (last_doc_at or now) > now - SESSION_WATCH_S:
            yield Raised(
                f"session-aborted:{session_id}",
                "session-aborted",
                f"session {session_id} on box {box}{mouse} ended aborted",
                event=True,
            )
    for view in live.views:
        offset = view.clock_offset
        if view.online and offset is not None and abs(offset) > settings.alert_clock_offset_s:
            side = "ahead of" if offset > 0 else "behind"
            yield Raised(
                f"clock-offset:{view.box}",
                "clock-offset",
                f"box {view.box}'s clock is {abs(offset):.0f} s {side} the collector's: "
                "check its time service (NTP)",
            )
    for box, rig in (live.statuses or {}).items():
        free = rig.journal_free_mb
        if rig.state != "offline" and free is not None and free < settings.alert_disk_free_mb:
            yield Raised(
                f"disk-low:{box}",
                "disk-low",
                f"box {box}'s journal disk has {free:.0f} MB free (under "
                f"{settings.alert_disk_free_mb:g} MB): free space before it stops recording",
            )


def collector_alerts(tx: Transaction, live: LiveFacts, now: float) -> Iterable[Raised]:
    if live.broker_error is not None:
        yield Raised("broker-unreachable", "broker-unreachable", live.broker_error)
    elif live.collectors_online is not None and not live.collectors_online:
        yield Raised(
            "no-collector",
            "no-collector",
            "no collector is online: nothing stores the rigs' documents (run labctl serve)",
        )
    for lease in tx.scalars(select(CollectorLease)):
        if lease.heartbeat_at < now - LEASE_S:
            yield Raised(
                f"collector-gone:{lease.id}",
                "collector-gone",
                f"collector {lease.id} (pid {lease.pid} on {lease.host}) stopped renewing its "
                f"lease {now - lease.heartbeat_at:.0f} s ago: it died or hangs",
            )


def mouse_alerts(
    tx: Transaction, rows: Sequence[DayRow], settings: LabSettings, now: float
) -> Iterable[Raised]:
    day = session_day(now)
    weigh_by, water_by = (
        at_hour(day, settings.alert_weigh_by),
        at_hour(day, settings.alert_water_by),
    )
    for row in rows:
        mouse, restricted = row.mouse, row.baseline_g is not None
        recent = weighings(tx, row.mouse)[-10:]
        if restricted and recent:
            # The last weighing, whatever its day: it stays the mouse's weight until the next.
            check = weight_check(tx, mouse, settings, session_day(recent[-1].weighed_at))
            if check.below_threshold:
                yield Raised(f"weight-low:{mouse}", "weight-low", check.warnings[0])
        if recent and recent[-1].weighed_at > now - 86400:
            last = recent[-1]
            why = implausible(last.grams, last_plausible(recent[:-1], settings), settings)
            if why:
                yield Raised(
                    f"weight-implausible:{mouse}:{last.id}",
                    "weight-implausible",
                    f"{mouse} was weighed at {last.grams:g} g ({why}): weigh it again, and void "
                    "the entry if it was a mistake",
                )
        if restricted and row.weight_g is None and now >= weigh_by:
            yield Raised(
                f"not-weighed:{mouse}:{day}",
                "not-weighed",
                f"{mouse} has not been weighed today ({day}) by {settings.alert_weigh_by}",
                day=day,
            )
        if restricted and row.owed_ul and row.owed_ul > 0 and now >= water_by:
            yield Raised(
                f"water-owed:{mouse}:{day}",
                "water-owed",
                f"{mouse} is owed {row.owed_ul:g} ul of today's water at "
                f"{settings.alert_water_by} (earned {row.earned_ul:g}, given {row.given_ul:g}, "
                f"needs {row.required_ul or 0:g}): `labctl water {mouse} UL`",
                day=day,
            )


def implausible(grams: float, before: float | None, settings: LabSettings) -> str:
    """Why a weighing of ``grams`` cannot be right ("" when it can)."""
    if not settings.weight_min_g <= grams <= settings.weight_max_g:
        return f"outside the lab's {settings.weight_min_g:g}-{settings.weight_max_g:g} g"
    if before is not None and grams < IMPLAUSIBLE_RATIO * before:
        return f"under half of the {before:g} g before"
    if before is not None and grams > before / IMPLAUSIBLE_RATIO:
        return f"over twice the {before:g} g before"
    return ""


def last_plausible(earlier: Sequence[Weighing], settings: LabSettings) -> float | None:
    """The grams of the last of ``earlier`` weighings that was plausible itself: one slip
    of the decimal point does not make the next, right, weighing look wrong."""
    reference = None
    for weighing in earlier:
        if not implausible(weighing.grams, reference, settings):
            reference = weighing.grams
    return reference


_CALIBRATION = re.compile(r"^box (\S+) (\S+) spout (was calibrated|gives)")


def calibration_alerts(
    tx: Transaction, rows: Sequence[DayRow], settings: LabSettings
) -> Iterable[Raised]:
    for warning in box_warnings(tx, rows, settings):
        match = _CALIBRATION.match(warning)
        if match is None:
            continue  # never calibrated: `labctl today` lists it; not a page to a phone
        box, spout, verb = match.groups()
        what = "stale" if verb == "was calibrated" else "drifted"
        yield Raised(f"calibration:{box}:{spout}:{what}", "calibration", warning)
