"""Starting and stopping sessions from the dashboard, only with the lab's token.

Control is off unless a token is configured (``--token-file``, a file only its
owner may read, or ``LABCTL_WEB_TOKEN``); then a request must carry it as
``Authorization: Bearer <token>``. The work is labctl's own: the same choice
of mice (:func:`controller.rigs.select_mice`) and the same start and stop
(:mod:`controller.rigs`) on a short-lived :class:`~controller.mqtt.BrokerLink`,
and the same weight gate (:mod:`controller.husbandry.starts`), so the checks,
the error lines and the warnings are the ones ``labctl start`` and ``labctl
stop`` print. Overriding the weight gate (``--force --reason``) is left to
labctl, where the reason is typed.
"""

from __future__ import annotations

import hmac
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from controller.collector.leases import NO_COLLECTOR
from controller.db import Database
from controller.husbandry.starts import finish_start, prepare_start
from controller.mqtt import BrokerLink
from controller.rigs import Outcome, plan_stop, select_mice, start_sessions, stop_boxes
from shared.broker_url import BrokerSettings
from shared.config import read_config
from shared.errors import ConfigError, ReachlabError
from shared.protocol import Topics

TOKEN_ENV = "LABCTL_WEB_TOKEN"
#: A token shorter than this is refused: it would be guessed.
MIN_TOKEN_CHARS = 16
REPLY_TIMEOUT_S = 10.0
#: Who a start from the page is recorded as.
BY = "labctl web"


def read_token(token_file: Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The configured token, or None (read-only). ConfigError names what is wrong with it."""
    environ = dict(os.environ) if environ is None else environ
    if token_file is not None:
        path = token_file.expanduser()
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {path}: {exc.strerror or exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"--token-file {path} can be read by others (mode {stat.S_IMODE(mode):o}); "
                f"chmod 600 {path}"
            )
        token = text
        source = f"--token-file {path}"
    else:
        token = environ.get(TOKEN_ENV, "").strip()
        if not token:
            return None
        source = TOKEN_ENV
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{source}: the token must be at least {MIN_TOKEN_CHARS} characters")
    return token


class ControlError(ReachlabError):
    """A control request that is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Result:
    """What a start or stop did: labctl's table as rows, and its summary line."""

    ok: bool
    summary: str
    outcomes: list[dict[str, Any]]
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Control:
    """Start and stop for the dashboard; every method runs in a worker thread."""

    def __init__(
        self,
        db: Database,
        settings: BrokerSettings,
        topics: Topics,
        token: str | None,
        *,
        timeout: float = REPLY_TIMEOUT_S,
    ) -> None:
        self.db = db
        self.settings = settings
        self.topics = topics
        self.token = token
        self.timeout = timeout

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def authorize(self, header: str | None) -> None:
        """ControlError (403 read-only, 401 wrong token) unless the request may control."""
        if self.token is None:
            raise ControlError(
                "control is off: this dashboard is read-only (start labctl web with "
                f"--token-file FILE or {TOKEN_ENV} to allow starting and stopping)",
                403,
            )
        given = (header or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise ControlError("wrong or missing token: control needs the lab's token", 401)

    def _mice(self, request: dict[str, Any], what: str) -> list[str]:
        mice = request.get("mice")
        cohort = request.get("cohort")
        if mice is not None and (
            not isinstance(mice, list) or not all(isinstance(m, str) for m in mice)
        ):
            raise ControlError("mice must be a list of mouse ids", 400)
        if cohort is not None and not isinstance(cohort, str):
            raise ControlError("cohort must be a cohort name", 400)
        return select_mice(self.db, mice or None, cohort, False, what)

    def start(self, request: dict[str, Any]) -> Result:
        """``labctl start MOUSE...`` or ``labctl start --cohort NAME`` [``--duration S``]."""
        config = read_config(None)
        duration = request.get("duration")
        if duration is not None:
            if isinstance(duration, bool) or not isinstance(duration, int | float):
                raise ControlError(f"--duration must be a number, got {duration!r}", 400)
            if duration <= 0:
                raise ControlError(f"--duration must be positive, got {duration:g}", 400)
            config = config.replace(duration=float(duration))
        selected = self._mice(request, "start")
        with BrokerLink(self.settings, self.topics) as link:
            warnings = [] if link.online_collectors() else [NO_COLLECTOR]
            # The weight gate of labctl start; an override (--force --reason) stays with labctl.
            plan = prepare_start(self.db, selected, weight=None, force=False, reason=None, by=BY)
            warnings += plan.warnings
            outcomes = start_sessions(
                self.db, link, plan.allowed, config, {}, timeout=self.timeout,
                extra_metadata=plan.metadata_for,
            )  # fmt: skip
        outcomes += plan.refused_outcomes()
        finish_start(plan, outcomes)
        warnings += plan.box_warnings
        started = sum(o.ok for o in outcomes)
        return _result(outcomes, f"{started} of {len(outcomes)} session(s) started", warnings)

    def stop(self, request: dict[str, Any]) -> Result:
        """``labctl stop MOUSE...``, for a cohort its mice."""
        plan = plan_stop(self.db, self._mice(request, "stop"), None, False)
        with BrokerLink(self.settings, self.topics) as link:
            targets = plan.targets(self.db, link)
            outcomes = stop_boxes(link, targets, timeout=self.timeout)
        stopped = sum(o.ok for o in outcomes)
        return _result(outcomes, f"{stopped} of {len(outcomes)} session(s) stopped", [])


def _result(outcomes: list[Outcome], summary: str, warnings: list[str]) -> Result:
    rows = [
        {
            "mouse": o.mouse,
            "box": o.box,
            "ok": o.ok,
            "session_id": o.session_id,
            "reason": o.reason,
        }
        for o in outcomes
    ]
    return Result(
        ok=all(o.ok for o in outcomes),
        summary=summary,
        outcomes=rows,
        warnings=[f"labctl: warning: {line}" for line in warnings],
    )
