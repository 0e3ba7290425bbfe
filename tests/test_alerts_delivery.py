"""Real alert deliveries from real processes: a rig SIGKILLed mid-session, a mouse under its
threshold, a mouse not weighed by the hour, and each alert's clearing reach a local JSON
webhook and a local SMTP server through Apprise, sent by ``labctl watch``; a restarted
``labctl watch`` sends nothing twice.

Every process (collector, agent, watch) is started by the test and stopped by its pid.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faultlab import FaultLab
from tests.processes import Processes
from tests.receivers import MailReceiver, WebhookReceiver, titles
from tests.waiting import wait_until

pytestmark = [pytest.mark.alerts, pytest.mark.broker]

#: An upper bound for one step, not a wait.
TIMEOUT = 45.0


@pytest.fixture
def receivers() -> Iterator[tuple[WebhookReceiver, MailReceiver]]:
    hook, mail = WebhookReceiver(), MailReceiver()
    try:
        yield hook, mail
    finally:
        hook.close()
        mail.close()


class AlertLab(FaultLab):
    """The fault lab plus ``labctl watch`` and two alert targets."""

    def add_targets(
        self, hook: WebhookReceiver, mail: MailReceiver, only: tuple[str, ...] = ()
    ) -> None:
        kinds = [option for kind in only for option in ("--only", kind)]
        assert "alert target 1" in self.labctl("alerts", "add", hook.url, *kinds)
        assert "alert target 2" in self.labctl("alerts", "add", mail.url, *kinds)

    def start_watch(self) -> str:
        name = self._name("watch")
        argv = [sys.executable, "-m", "controller.cli", "watch", "--every", "1"]
        self.procs.start(name, argv, self.env)
        return name

    def wait(self, condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
        """Poll another process's effect until the deadline (there is nothing to wait on)."""
        wait_until(
            condition, timeout, what,
            alive=self.procs.check_alive, detail=self.procs.all_logs, interval=0.1,
        )  # fmt: skip

    def arrived(self, receiver: WebhookReceiver | MailReceiver, title: str, count: int = 1) -> None:
        self.wait(
            lambda: titles(receiver).count(title) >= count,
            f"{count} x {title!r} at the {type(receiver).__name__} (has {titles(receiver)})",
            timeout=TIMEOUT,
        )


def _both(lab: AlertLab, hook: WebhookReceiver, mail: MailReceiver, title: str) -> None:
    lab.arrived(hook, title)
    lab.arrived(mail, title)


def _each_once(receiver: WebhookReceiver | MailReceiver) -> None:
    counts = Counter(titles(receiver))
    assert all(n == 1 for n in counts.values()), counts


def test_a_rig_killed_mid_session_is_sent_to_a_webhook_and_an_inbox_and_cleared_once_back(
    tmp_path: Path,
    broker_url: str,
    processes: Processes,
    receivers: tuple[WebhookReceiver, MailReceiver],
) -> None:
    hook, mail = receivers
    lab = AlertLab(tmp_path, broker_url, f"sqlite:///{tmp_path / 'lab.db'}", processes)
    lab.add_targets(hook, mail)
    lab.start_collector()
    rig = lab.start_rig("1")
    lab.wait_ready(("1",))
    # The rig's status carries its journal disk's free space (the disk-low alert's fact).
    with sqlite3.connect(tmp_path / "lab.db") as conn:
        (text,) = conn.execute("SELECT status FROM boxes WHERE id = '1'").fetchone()
    assert json.loads(text)["journal_free_mb"] > 0
    lab.start_watch()
    lab.start_cohort(("1",), duration=36000)
    lab.wait_trials(2, ("1",))
    lab.kill(rig)
    _both(lab, hook, mail, "reachlab rig-offline")
    with hook.cond:
        offline = next(m for m in hook.messages if m.title == "reachlab rig-offline")
    assert "box 1 is offline during session" in offline.body
    assert "FaultMouse1" in offline.body

    # Back up: the agent closes the interrupted session as aborted, the rig is online.
    lab.start_rig("1")
    _both(lab, hook, mail, "reachlab cleared: rig-offline")
    _both(lab, hook, mail, "reachlab session-aborted")
    with mail.cond:
        cleared = next(m for m in mail.messages if m.title == "reachlab cleared: rig-offline")
    assert cleared.body.startswith("cleared: box 1 is offline during session")
    _each_once(hook)
    _each_once(mail)


def test_weights_and_the_weigh_by_hour_are_sent_cleared_and_never_twice_across_a_restart(
    tmp_path: Path,
    broker_url: str,
    processes: Processes,
    receivers: tuple[WebhookReceiver, MailReceiver],
) -> None:
    hook, mail = receivers
    lab = AlertLab(tmp_path, broker_url, f"sqlite:///{tmp_path / 'lab.db'}", processes)
    # The lab's other hours (water owed at 17:00, the summary at 08:00) pass on the wall clock
    # while the suite runs at any time of day: these targets hear of weights only.
    lab.add_targets(hook, mail, only=("not-weighed", "weight-low"))
    lab.labctl("mouse", "add", "M1")
    lab.labctl("mouse", "baseline", "M1", "25")
    lab.labctl("lab", "set", "alert_weigh_by", "00:00")  # the hour has passed: M1 is late
    watch = lab.start_watch()
    _both(lab, hook, mail, "reachlab not-weighed")
    with hook.cond:
        late = next(m for m in hook.messages if m.title == "reachlab not-weighed")
    assert late.body.startswith("M1 has not been weighed today")

    lab.labctl("weigh", "M1", "18")  # 72 % of 25 g: under the 80 % threshold
    _both(lab, hook, mail, "reachlab weight-low")
    _both(lab, hook, mail, "reachlab cleared: not-weighed")
    with mail.cond:
        low = next(m for m in mail.messages if m.title == "reachlab weight-low")
    assert "M1 weighs 18 g, 72.0 % of its baseline 25 g (below 80 %)" in low.body

    lab.labctl("weigh", "M1", "24")
    _both(lab, hook, mail, "reachlab cleared: weight-low")

    # The alerting process dies and comes back: what it recorded as sent stays sent. (Killed
    # between Apprise's hand-over and that record, a message goes once more: at least once.)
    lab.wait(
        lambda: '"state": "pending"' not in lab.labctl("alerts", "history", "--json"),
        "every delivery recorded",
    )
    lab.kill(watch)
    lab.start_watch()
    lab.labctl("weigh", "M1", "19")  # something new, so the new process is seen working
    lab.arrived(hook, "reachlab weight-low", 2)
    lab.arrived(mail, "reachlab weight-low", 2)
    for receiver in (hook, mail):
        counts = Counter(titles(receiver))
        assert counts == {
            "reachlab not-weighed": 1,
            "reachlab cleared: not-weighed": 1,
            "reachlab weight-low": 2,
            "reachlab cleared: weight-low": 1,
        }, counts
    # A receiver has a message before the process records it as sent (the record follows
    # Apprise's hand-over): wait for the record, as above, rather than read it at once.
    lab.wait(
        lambda: '"state": "pending"' not in lab.labctl("alerts", "history", "--json"),
        "every delivery recorded after the restart",
    )
    assert '"state": "sent"' in lab.labctl("alerts", "history", "--json")
