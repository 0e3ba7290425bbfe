"""The alerts' ledger in the database: each alert sent once, followed up when it clears,
repeated only after a set time, held through a target's quiet hours, retried on failure.

Everything that decides what to send is a row: an :class:`Alert` per occurrence (a key
that began to hold), an :class:`AlertDelivery` per message per target. A restarted
alerting process reads them back, so nothing already sent is sent again; a message is
marked sent only after Apprise took it, so a crash between the two sends it once more
rather than never (at least once, never silently lost).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from controller.alerts.models import Alert, AlertDelivery, AlertTarget
from controller.alerts.rules import KINDS, Raised
from controller.db import Transaction
from controller.husbandry.days import at_hour
from controller.husbandry.settings import LabSettings
from shared.days import session_day
from shared.errors import ConfigError

#: A failed delivery is tried again after 30 s, then twice as long each time, up to this.
RETRY_MAX_S = 1800.0
RETRY_FIRST_S = 30.0
#: After this many attempts a delivery is given up (``failed``); the history keeps why.
MAX_ATTEMPTS = 12
#: Kinds whose key ends with the day they are about: they end silently when it is over.
DAY_BOUND = ("not-weighed", "water-owed")

_QUIET = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)-([01]?\d|2[0-3]):([0-5]\d)$")


# ---------------------------------------------------------------- targets


def parse_quiet(text: str) -> str:
    """``22:00-07:00`` (local time, may span midnight), zero-padded; "" for none."""
    text = text.strip()
    if not text:
        return ""
    match = _QUIET.match(text)
    if not match or match.group(1, 2) == match.group(3, 4):
        raise ConfigError(
            f"invalid --quiet {text!r}: expected HH:MM-HH:MM, e.g. 22:00-07:00 (local time)"
        )
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"


def quiet_until(quiet: str, now: float) -> float | None:
    """The end of the quiet hours ``now`` is in, or None when it is not in any."""
    if not quiet:
        return None
    start_text, end_text = quiet.split("-")
    local = datetime.fromtimestamp(now)

    def at(day: datetime, hhmm: str) -> datetime:
        hour, minute = (int(x) for x in hhmm.split(":"))
        return day.replace(hour=hour, minute=minute, second=0, microsecond=0)

    for offset in (-1, 0):  # quiet hours that began yesterday evening, or today
        begin = at(local + timedelta(days=offset), start_text)
        end = at(begin, end_text)
        if end <= begin:
            end += timedelta(days=1)
        if begin <= local < end:
            return end.timestamp()
    return None


def check_kinds(kinds: Iterable[str]) -> list[str]:
    out = []
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"unknown alert kind {kind!r}: known are {', '.join(KINDS)}")
        out.append(kind)
    return out


def add_target(tx: Transaction, url: str, only: Sequence[str], quiet: str, by: str) -> AlertTarget:
    row = AlertTarget(
        url=url, only=",".join(check_kinds(only)), quiet=parse_quiet(quiet),
        added_at=time.time(), added_by=by,
    )  # fmt: skip
    tx.add(row)
    tx.flush()
    return row


def targets(tx: Transaction) -> list[AlertTarget]:
    """The targets in force (not removed), oldest first."""
    stmt = select(AlertTarget).where(AlertTarget.removed_at.is_(None)).order_by(AlertTarget.id)
    return list(tx.scalars(stmt))


def get_target(tx: Transaction, target_id: int) -> AlertTarget:
    row = tx.get(AlertTarget, target_id)
    if row is None or row.removed_at is not None:
        raise ConfigError(f"no alert target {target_id}: `labctl alerts list` shows their ids")
    return row


def wants(target: AlertTarget, kind: str) -> bool:
    return not target.only or kind in target.only.split(",")


# ---------------------------------------------------------------- raising and clearing


def queue(
    tx: Transaction,
    alert: Alert | None,
    what: str,
    title: str,
    body: str,
    kind: str,
    now: float,
    only: Sequence[AlertTarget] | None = None,
    quiet: bool = True,
) -> list[AlertDelivery]:
    """A delivery to each target that takes ``kind`` (or to ``only``), due now or, with
    ``quiet``, at the end of the target's quiet hours."""
    out = []
    for target in targets(tx) if only is None else only:
        if only is None and not wants(target, kind):
            continue
        row = AlertDelivery(
            alert_id=alert.id if alert else None, target_id=target.id, what=what, title=title,
            body=body, created_at=now,
            due_at=(quiet_until(target.quiet, now) if quiet else None) or now,
            state="pending", attempts=0,
        )  # fmt: skip
        tx.add(row)
        out.append(row)
    tx.flush()
    return out


def _title(what: str, kind: str) -> str:
    prefix = {"raised": "", "repeat": "still: ", "cleared": "cleared: "}[what]
    return f"reachlab {prefix}{kind}"


def reconcile(
    tx: Transaction, raised: Sequence[Raised], settings: LabSettings, now: float
) -> list[Alert]:
    """Record what began, still holds or stopped holding at ``now``, and queue its messages.
    Returns the alerts that hold (open) after it."""
    open_rows = {a.key: a for a in tx.scalars(select(Alert).where(Alert.cleared_at.is_(None)))}
    holding = {r.key for r in raised}
    repeat_s = settings.alert_repeat_hours * 3600.0
    for item in raised:
        row = open_rows.get(item.key)
        if row is None:
            if item.event and tx.scalar(select(Alert.id).where(Alert.key == item.key).limit(1)):
                continue  # an event is sent once, ever
            row = Alert(
                key=item.key, kind=item.kind, text=item.text, raised_at=now,
                cleared_at=now if item.event else None, sent_at=now,
            )  # fmt: skip
            tx.add(row)
            tx.flush()
            if not item.event:
                open_rows[item.key] = row
            queue(tx, row, "raised", _title("raised", item.kind), item.text, item.kind, now)
        elif repeat_s > 0 and now - row.sent_at >= repeat_s:
            row.sent_at, row.text = now, item.text
            since = time.strftime("%H:%M", time.localtime(row.raised_at))
            body = f"{item.text} (since {since})"
            queue(tx, row, "repeat", _title("repeat", item.kind), body, item.kind, now)
    today = session_day(now)
    for key, row in list(open_rows.items()):
        if key in holding:
            continue
        row.cleared_at = now
        del open_rows[key]
        if row.kind in DAY_BOUND and not key.endswith(today):
            continue  # its day is over: tomorrow's rule speaks for itself
        # A target still holding the alert in its quiet hours hears of neither.
        told = [t for t in targets(tx) if wants(t, row.kind) and not _drop_held(tx, row, t, now)]
        body = f"cleared: {row.text}"
        queue(tx, row, "cleared", _title("cleared", row.kind), body, row.kind, now, only=told)
    return sorted(open_rows.values(), key=lambda a: a.raised_at)


def _drop_held(tx: Transaction, alert: Alert, target: AlertTarget, now: float) -> bool:
    """Cancel the alert's messages to ``target`` still held for its quiet hours; True when
    the target was never told of the alert at all."""
    rows = list(
        tx.scalars(
            select(AlertDelivery).where(
                AlertDelivery.alert_id == alert.id, AlertDelivery.target_id == target.id
            )
        )
    )
    held = [d for d in rows if d.state == "pending" and d.attempts == 0 and d.due_at > now]
    for delivery in held:
        delivery.state, delivery.last_error = "dropped", "cleared before it was sent"
    return len(held) == len(rows)


def summary_due(tx: Transaction, open_alerts: Sequence[Alert], settings: LabSettings,
                now: float, lines: Sequence[str]) -> bool:  # fmt: skip
    """Queue today's summary once, at ``alert_summary_at``; True when it was queued now."""
    day = session_day(now)
    if now < at_hour(day, settings.alert_summary_at):
        return False
    key = f"summary:{day}"
    if tx.scalar(select(Alert.id).where(Alert.key == key).limit(1)):
        return False
    holding = [f"- {a.text}" for a in open_alerts] or ["- nothing needs attention"]
    body = "\n".join([f"Alerts holding now ({len(open_alerts)}):", *holding, "", *lines])
    row = Alert(key=key, kind="summary", text=f"daily summary {day}", raised_at=now,
                cleared_at=now, sent_at=now)  # fmt: skip
    tx.add(row)
    tx.flush()
    queue(tx, row, "summary", f"reachlab daily summary {day}", body, "summary", now)
    return True


# ---------------------------------------------------------------- sending


@dataclass(frozen=True)
class Outgoing:
    """A due delivery, detached from the transaction that found it."""

    id: int
    url: str
    title: str
    body: str
    what: str
    attempts: int


def due(tx: Transaction, now: float, only_id: int | None = None) -> list[Outgoing]:
    stmt = (
        select(AlertDelivery, AlertTarget.url)
        .join(AlertTarget, AlertTarget.id == AlertDelivery.target_id)
        .where(AlertDelivery.state == "pending", AlertDelivery.due_at <= now)
        .where(AlertTarget.removed_at.is_(None))  # a removed target gets nothing more
        .order_by(AlertDelivery.due_at, AlertDelivery.id)
    )
    if only_id is not None:
        stmt = stmt.where(AlertDelivery.id == only_id)
    return [Outgoing(d.id, url, d.title, d.body, d.what, d.attempts) for d, url in tx.execute(stmt)]


def record_result(tx: Transaction, item: Outgoing, error: str | None, now: float) -> None:
    """Mark the delivery sent, or count the failed attempt and set the next try."""
    attempts = item.attempts + 1
    stmt = update(AlertDelivery).where(AlertDelivery.id == item.id)
    if error is None:
        tx.execute(stmt.values(state="sent", sent_at=now, attempts=attempts, last_error=None))
        return
    retry = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (attempts - 1))
    state = "failed" if attempts >= MAX_ATTEMPTS else "pending"
    tx.execute(stmt.values(state=state, attempts=attempts, last_error=error, due_at=now + retry))


def history(tx: Transaction, limit: int) -> list[tuple[AlertDelivery, AlertTarget]]:
    """The newest deliveries first, with their targets."""
    stmt = (
        select(AlertDelivery, AlertTarget)
        .join(AlertTarget, AlertTarget.id == AlertDelivery.target_id)
        .order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc())
        .limit(limit)
    )
    return [(d, t) for d, t in tx.execute(stmt)]
