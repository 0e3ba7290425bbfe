"""``labctl watch``: the always-on loop that evaluates the rules, keeps the ledger and sends.

One round (:meth:`Watch.round`) reads the lab (the broker's retained statuses and
collector presence through one long-lived :class:`~controller.mqtt.BrokerLink`, and the
database), records what began and cleared, and sends every message that is due. A
round runs every ``every`` seconds and as soon as a rig's status changes (its Last Will
after a crash), so a rig killed mid-session is reported within a second or two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from controller.alerts.ledger import due, reconcile, record_result, summary_due
from controller.alerts.rules import LiveFacts, lab_alerts
from controller.alerts.send import notify, warm_up
from controller.db import Database
from controller.husbandry.report import DayRow, today_rows
from controller.husbandry.settings import lab_settings
from controller.last_session import last_sessions
from controller.mqtt import BrokerError, BrokerLink
from controller.views import box_views, stored_boxes
from shared.days import session_day
from shared.protocol import Status

log = logging.getLogger("labctl.watch")

#: The broker counts as unreachable (an alert) only after this long without it: a
#: broker restart is not a page.
BROKER_GRACE_S = 30.0
#: However busy the broker, at most this many rounds a second.
MIN_ROUND_S = 0.5


class Watch:
    """The alerting process's state: its database, its link to the broker, a wake-up."""

    def __init__(
        self,
        db: Database,
        make_link: Callable[[Callable[[str, Status], None]], BrokerLink],
        *,
        every: float = 10.0,
        send: Callable[[str, str, str, str], str | None] = notify,
    ) -> None:
        self.db = db
        self.make_link = make_link
        self.every = every
        self.send = send
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.link: BrokerLink | None = None
        self._broker_error: str | None = None
        self._broker_lost_at: float | None = None
        self._last_state: dict[str, str] = {}

    def _on_status(self, box: str, status: Status) -> None:
        # Called on paho's thread: a changed state (a Last Will) is worth a round now.
        if self._last_state.get(box) != status.state:
            self._last_state[box] = status.state
            self.wake.set()

    def _live(self, now: float) -> LiveFacts:
        if self.link is None:
            try:
                self.link = self.make_link(self._on_status)
                self.link.open()
            except BrokerError as exc:
                self.link = None
                self._broker_error = str(exc)
        link = self.link
        stored, assigned = stored_boxes(self.db)
        last = last_sessions(self.db)
        if link is not None and link.connected:
            self._broker_lost_at = None
            with link.cond:  # paho's thread adds to them
                live, texts = dict(link.statuses), dict(link.status_texts)
            collectors = [c.collector for c in link.online_collectors()]
            views = box_views(stored, assigned, live, texts, now=now, last=last)
            return LiveFacts(views, live, collectors)
        if self._broker_lost_at is None:
            self._broker_lost_at = now
        views = box_views(stored, assigned, None, None, now=now, last=last)
        error = None
        if now - self._broker_lost_at >= BROKER_GRACE_S:
            error = self._broker_error or "the MQTT broker is unreachable (the link dropped)"
        # Without the broker the collectors cannot be seen: no "no collector" guess.
        return LiveFacts(views, None, None, broker_error=error)

    def round(self, now: float | None = None) -> int:
        """Evaluate, record, send; returns how many messages went out."""
        now = time.time() if now is None else now
        live = self._live(now)
        with self.db.session() as tx:
            settings = lab_settings(tx)
            open_alerts = reconcile(tx, lab_alerts(tx, live, settings, now), settings, now)
            lines = [_row_line(r) for r in today_rows(tx, session_day(now), settings)]
            summary_due(tx, open_alerts, settings, now, lines)
        return self.dispatch(now)

    def dispatch(self, now: float | None = None) -> int:
        return dispatch(self.db, time.time() if now is None else now, send=self.send)

    def run(self) -> None:
        """Rounds until :attr:`stop` is set: every ``every`` s, and on a rig's change."""
        warm_up()
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    self.round()
                except Exception:  # one bad round must not silence the lab for good
                    log.exception("alert round failed; the next one tries again")
                self.wake.wait(self.every)
                self.wake.clear()
                self.stop.wait(max(0.0, MIN_ROUND_S - (time.monotonic() - started)))
        finally:
            if self.link is not None:
                self.link.close()


def dispatch(
    db: Database,
    now: float,
    *,
    only_id: int | None = None,
    send: Callable[[str, str, str, str], str | None] = notify,
) -> int:
    """Send every due message, each marked in its own transaction right after; returns how
    many went."""
    with db.reader() as tx:
        outgoing = due(tx, now, only_id)
    sent = 0
    for item in outgoing:
        error = send(item.url, item.title, item.body, item.what)
        if error is not None:
            log.warning("alert delivery %d failed: %s (retried later)", item.id, error)
        with db.session() as tx:
            record_result(tx, item, error, time.time())
        sent += error is None
    return sent


def _row_line(row: DayRow) -> str:
    """One mouse of today's table in the summary."""
    weight = "not weighed" if row.weight_g is None else f"{row.weight_g:g} g"
    if row.weight_pct is not None:
        weight += f" ({row.weight_pct:g} %)"
    owed = f", owed {row.owed_ul:g} ul" if row.owed_ul else ""
    return f"{row.mouse}: {weight}, {row.sessions} session(s){owed}"
