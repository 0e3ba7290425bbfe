"""The dashboard's live lab: one long-lived broker connection, per-box outcomes, and a fan-out.

One :class:`~controller.mqtt.BrokerLink` (the same client ``labctl monitor``
uses) stays connected for the life of the server: it receives every box's
retained status and every session document. paho's thread only records what
arrived, under a lock, and hands the box's id to the asyncio loop; there the
box's card is rebuilt (:func:`controller.views.box_views`, the merge ``labctl
status`` shows) and put on every open page's queue.

Made for a page left open all day: when the broker is away the connection is
retried every few seconds and the pages say so; a page's queue is bounded, and
a page that falls behind is dropped (its browser reconnects and is sent a
fresh snapshot), so memory does not grow with time or with slow viewers; only
the current session of each box has its outcomes kept. A box whose session has ended
keeps it on its card (trials, correct %, rewards, how it ended and when) until the
next one starts, from the database's last recorded session of the box.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from controller.db import Database, StoredDocument
from controller.last_session import LastSession, last_sessions
from controller.mqtt import BrokerLink
from controller.views import BoxView, StoredBox, box_views, is_retired, stored_boxes
from shared.broker_url import BrokerSettings
from shared.documents import (
    CueChanged,
    Document,
    DocumentRouter,
    Lift,
    Reset,
    Reward,
    SessionEnd,
    SessionStart,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
    TrialStart,
    kind_of,
)
from shared.errors import ReachlabError
from shared.protocol import Status, Topics, box_online

log = logging.getLogger("labctl.web")

#: Seconds between attempts to reach a broker that is away.
RETRY_S = 2.0
#: Seconds between reads of the collector's view of the boxes (offline timeouts, last events).
REFRESH_S = 5.0
#: Messages a page may have waiting before it is dropped (and reconnects for a snapshot).
QUEUE_LIMIT = 2000


@dataclass
class SessionOutcomes:
    """The outcomes of a box's current session, by trial number (duplicates are harmless)."""

    session_id: str
    mouse: str | None
    outcomes: dict[int, int] = field(default_factory=dict)

    @property
    def correct(self) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome == 1)


#: What a document of a box adds to the pages' stream besides the card: a judged trial.
TrialMessage = dict[str, Any]


@dataclass
class BoxLive(DocumentRouter[TrialMessage | None]):
    """What the dashboard itself saw of one box; its documents keep the session's outcomes."""

    text: str | None = None
    status_at: float | None = None
    online: bool | None = None
    since: float | None = None
    since_exact: bool = False
    skew: float | None = None
    event_at: float | None = None
    session: SessionOutcomes | None = None

    def session_start(self, doc: SessionStart) -> None:
        self.session = SessionOutcomes(doc.session_id, doc.mouse)

    def trial_end(self, doc: TrialEnd) -> TrialMessage:
        """The trial's outcome, kept and told to the pages (the caller adds the box)."""
        if self.session is None or self.session.session_id != doc.session_id:
            self.session = SessionOutcomes(doc.session_id, None)
        self.session.outcomes[doc.trial] = doc.outcome
        return {
            "mouse": self.session.mouse,
            "session_id": doc.session_id,
            "trial": doc.trial,
            "outcome": doc.outcome,
        }

    # The rest shows on the card through the box's status, not through its documents.
    def trial_start(self, doc: TrialStart) -> None:
        pass

    def lift(self, doc: Lift) -> None:
        pass

    def reward(self, doc: Reward) -> None:
        pass

    def reset(self, doc: Reset) -> None:
        pass

    def spontaneous_reach(self, doc: SpontaneousReach) -> None:
        pass

    def spouts_moved(self, doc: SpoutsMoved) -> None:
        pass

    def cue_changed(self, doc: CueChanged) -> None:
        pass

    def session_end(self, doc: SessionEnd) -> None:
        pass


class Subscriber:
    """One open page's stream: a bounded queue; ``None`` on it means "reconnect"."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(limit)
        self.dropped = False

    def put(self, kind: str, data: dict[str, Any]) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait((kind, data))
        except asyncio.QueueFull:
            # Too slow a reader: drop what waits and tell it to come back for a snapshot.
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


def session_outcomes(db: Database, session_id: str) -> dict[int, int]:
    """Trial number -> outcome of a session, from the documents the collector stored."""
    query = select(StoredDocument.body).where(
        StoredDocument.session_id == session_id, StoredDocument.kind == kind_of(TrialEnd)
    )
    outcomes: dict[int, int] = {}
    with db.reader() as tx:
        for body in tx.scalars(query):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                doc = json.loads(body)
                outcomes[int(doc["trial"])] = int(doc["outcome"])
    return outcomes


class LiveLab:
    """The broker's view of the lab for the dashboard; start it inside the server's loop."""

    def __init__(
        self,
        db: Database,
        settings: BrokerSettings,
        topics: Topics,
        *,
        retry_s: float = RETRY_S,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.db = db
        self.settings = settings
        self.topics = topics
        self.retry_s = retry_s
        self.refresh_s = refresh_s
        self.started_at = time.time()
        self.broker_up = False
        self.broker_note = "connecting"
        self._lock = threading.Lock()
        self._boxes: dict[str, BoxLive] = {}
        self._statuses: dict[str, Status] = {}
        self._stored: dict[str, StoredBox] = {}
        self._assigned: dict[str, str] = {}
        self._last: dict[str, LastSession] = {}
        #: session id -> (correct, judged) of each box's last session: read once each.
        self._last_correct: dict[str, tuple[int, int]] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._link: BrokerLink | None = None
        self._refresher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(None, self._read_stored)
        self._thread = threading.Thread(target=self._connect_loop, name="web-broker", daemon=True)
        self._thread.start()
        self._refresher = asyncio.create_task(self._refresh_loop())

    async def stop(self) -> None:
        self._stopping.set()
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        self.end_streams()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10.0)

    def end_streams(self) -> None:
        """Tell every open page's stream to end now (the server is stopping)."""
        for subscriber in list(self._subscribers):
            subscriber.put("bye", {})

    def _connect_loop(self) -> None:
        """Paho's own loop reconnects a connection once made; this makes the first one."""
        while not self._stopping.is_set():
            try:
                link = self._link = BrokerLink(
                    self.settings,
                    self.topics,
                    events=True,
                    on_event=self._on_event,
                    on_status=self._on_status,
                )
                link.open()
            except ReachlabError as exc:
                self._set_broker(False, f"{exc}; retrying every {self.retry_s:g} s")
                self._stopping.wait(self.retry_s)
                continue
            self._set_broker(True, "")
            try:
                while not self._stopping.wait(0.5):
                    up = link.connected
                    if up != self.broker_up:
                        note = "" if up else f"lost the broker {self.settings.url}; reconnecting"
                        self._set_broker(up, note)
            finally:
                link.close()

    def _set_broker(self, up: bool, note: str) -> None:
        self.broker_up, self.broker_note = up, note
        self._call(self._broadcast_broker)

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed under us: shutting down
                loop.call_soon_threadsafe(callback, *args)

    # ------------------------------------------------------------ paho's thread

    def _on_status(self, box: str, status: Status) -> None:
        now = time.time()
        with self._lock:
            live = self._boxes.setdefault(box, BoxLive())
            link = self._link
            text = link.status_texts.get(box) if link is not None else None
            repeated = live.text == text  # the retained copy again, after a reconnect
            live.text = text
            self._statuses[box] = status
            if not repeated:
                live.status_at = now
                # Retained statuses read at start-up are old: their clock says nothing of skew.
                if self.broker_up:
                    live.skew = status.calendar_time - now  # the calendar, not the task clock
            online = box_online(status)
            if live.online is None:
                live.online, live.since, live.since_exact = online, now, False
            elif live.online != online:
                live.online, live.since, live.since_exact = online, now, True
            seed = None
            current = live.session
            if status.session_id and (current is None or current.session_id != status.session_id):
                live.session = SessionOutcomes(status.session_id, status.mouse)
                seed = status.session_id
        self._call(self._box_changed, box)
        if seed is not None:
            self._call(self._seed_outcomes, box, seed)

    def _on_event(self, box: str, doc: Document) -> None:
        now = time.time()
        with self._lock:
            live = self._boxes.setdefault(box, BoxLive())
            live.event_at = now
            judged = live(doc)
        trial = {"box": box, **judged} if judged is not None else None
        self._call(self._box_changed, box, trial)

    # ------------------------------------------------------------ the loop's side

    def _seed_outcomes(self, box: str, session_id: str) -> None:
        """A session that began before this server: its earlier outcomes from the database."""
        assert self._loop is not None

        async def seed() -> None:
            assert self._loop is not None
            try:
                outcomes = await self._loop.run_in_executor(
                    None, session_outcomes, self.db, session_id
                )
            except Exception as exc:  # a database hiccup must not end the live stream
                log.warning("could not read session %s: %s", session_id, exc)
                return
            with self._lock:
                current = self._boxes[box].session
                if current is None or current.session_id != session_id:
                    return
                for trial, outcome in outcomes.items():
                    current.outcomes.setdefault(trial, outcome)
            self._box_changed(box)

        self._loop.create_task(seed())

    def _read_stored(self) -> None:
        stored, assigned = stored_boxes(self.db)
        last = last_sessions(self.db)
        with self._lock:
            known = dict(self._last_correct)
        correct: dict[str, tuple[int, int]] = {}
        for ended in last.values():
            if ended.session_id is None:
                continue
            if ended.session_id not in known:
                outcomes = session_outcomes(self.db, ended.session_id).values()
                known[ended.session_id] = (sum(o == 1 for o in outcomes), len(outcomes))
            correct[ended.session_id] = known[ended.session_id]
        with self._lock:
            self._stored, self._assigned = stored, assigned
            self._last, self._last_correct = last, correct

    async def _refresh_loop(self) -> None:
        assert self._loop is not None
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self._loop.run_in_executor(None, self._read_stored)
            except Exception as exc:  # keep the live view going; the next refresh may work
                log.warning("could not read the boxes from the database: %s", exc)
                continue
            for box in self.box_names():
                self._box_changed(box)

    def box_names(self) -> list[str]:
        """The boxes with a card: every box known or heard of, but not a retired one."""
        with self._lock:
            names = set(self._stored) | set(self._assigned) | set(self._statuses)
            return sorted(n for n in names if not is_retired(self._stored, n))

    def card(self, box: str) -> dict[str, Any]:
        """The rig card of one box: ``labctl status``'s row and what only the live stream has."""
        with self._lock:
            stored = self._stored.get(box)
            live = self._boxes.get(box, BoxLive())
            status = self._statuses.get(box)
            views = box_views(
                {box: stored} if stored else {},
                {box: self._assigned[box]} if box in self._assigned else {},
                ({box: status} if status else {}) if self.broker_up else None,
                {box: live.text} if live.text else {},
                last=self._last,
            )
            # Known only from the broker, which is away now: offline, and why.
            view = views[0] if views else BoxView(box, False, "offline", note=self.broker_note)
            current = live.session if view.session_id and live.session else None
            if current is not None and current.session_id != view.session_id:
                current = None
            judged = len(current.outcomes) if current else 0
            correct = current.correct if current else 0
            event_at = max(
                (t for t in (live.event_at, stored.last_event_at if stored else None) if t),
                default=None,
            )
            if live.online is not None and live.online == view.online:
                since, exact = live.since, live.since_exact
            elif not view.online and stored is not None and stored.last_seen is not None:
                since, exact = stored.last_seen, True
            else:
                since, exact = None, False
            ended = None
            if view.last_session is not None:
                right, judged_then = self._last_correct.get(
                    view.last_session.session_id or "", (0, 0)
                )
                ended = {
                    **view.as_dict()["last_session"],
                    "correct_pct": round(100 * right / judged_then, 1) if judged_then else None,
                }
            return {
                **view.as_dict(),
                "last_session": ended,
                "last_seen_age": None,
                "last_event_age": None,
                "judged": judged,
                "correct": correct,
                "correct_pct": round(100 * correct / judged, 1) if judged else None,
                "since": since,
                "since_exact": exact,
                "status_at": live.status_at,
                "last_seen": stored.last_seen if stored else None,
                "event_at": event_at,
                "skew": round(live.skew, 3) if live.skew is not None and view.online else None,
            }

    def cards(self) -> list[dict[str, Any]]:
        from controller.lab import box_sort_key

        return [self.card(box) for box in sorted(self.box_names(), key=box_sort_key)]

    def current_trials(self, mouse: str) -> dict[str, Any] | None:
        """The running session of ``mouse`` with its outcomes so far, if one runs now."""
        with self._lock:
            for box, status in self._statuses.items():
                current = self._boxes.get(box, BoxLive()).session
                if status.mouse == mouse and status.session_id and box_online(status):
                    mine = current is not None and current.session_id == status.session_id
                    outcomes = current.outcomes if current is not None and mine else {}
                    return {
                        "box": box,
                        "session_id": status.session_id,
                        "trials": [[n, outcomes[n]] for n in sorted(outcomes)],
                    }
        return None

    def broker_state(self) -> dict[str, Any]:
        return {"connected": self.broker_up, "note": self.broker_note, "url": self.settings.url}

    def _box_changed(self, box: str, trial: dict[str, Any] | None = None) -> None:
        with self._lock:
            if is_retired(self._stored, box):
                return  # a retired box that still sends gets no card
        card = self.card(box)
        if self._cards.get(box) != card:
            self._cards[box] = card
            self._broadcast("box", card)
        if trial is not None:
            self._broadcast("trial", trial)

    def _broadcast_broker(self) -> None:
        self._broadcast("broker", self.broker_state())
        for box in self.box_names():
            self._box_changed(box)

    def _broadcast(self, kind: str, data: dict[str, Any]) -> None:
        for subscriber in list(self._subscribers):
            subscriber.put(kind, data)
        self._subscribers = {s for s in self._subscribers if not s.dropped}

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    @property
    def viewers(self) -> int:
        return len(self._subscribers)
