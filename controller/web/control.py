"""Starting and stopping sessions from the dashboard, only with the lab's token.

Control is off unless a token is configured (``--token-file``, a file only its
owner may read, or ``LABCTL_WEB_TOKEN``); then a request must carry it as
``Authorization: Bearer <token>``. The work is :mod:`controller.control`'s, as
for ``labctl start`` and ``labctl stop``: the same choice of mice, the same
weight gate, the same refusals and warnings, on a short-lived
:class:`~controller.mqtt.BrokerLink`. What is this module's own is the wording: a
request is JSON (``{"mice": [...]}`` or ``{"cohort": NAME}``, ``"duration"`` in
seconds) and its mistakes are named by those fields, not by labctl's flags.
Overriding the weight gate is left to labctl, where the reason is typed.
"""

from __future__ import annotations

import hmac
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from controller import control
from controller.control import Outcome, OutcomeCode, Problem, RequestError
from controller.db import Database
from controller.mqtt import BrokerLink
from shared.broker_url import BrokerSettings
from shared.config import TaskConfig
from shared.errors import ConfigError, ReachlabError
from shared.protocol import Topics

TOKEN_ENV = "LABCTL_WEB_TOKEN"
#: A token shorter than this is refused: it would be guessed.
MIN_TOKEN_CHARS = 16
REPLY_TIMEOUT_S = 10.0
#: Who a start from the page is recorded as.
BY = "labctl web"

#: A start's or stop's broken rule, in the dashboard's words (its JSON fields).
REQUEST_WORDS: dict[Problem, str] = {
    "choose_mice": 'give the mice to start: "mice" (a list of mouse ids) or "cohort" '
    "(a cohort name), exactly one of them",
    "choose_stop": 'give the mice to stop: "mice" (a list of mouse ids) or "cohort" '
    "(a cohort name), exactly one of them",
    "weight_twice": "the dashboard does not take a weight: weigh with labctl weigh",
    "weight_one_mouse": "the dashboard does not take a weight: weigh with labctl weigh",
    "shift_needs_cohort": "the dashboard does not start shifts: labctl start --cohort --shift",
    "force_needs_reason": "the dashboard does not override the weight check: "
    "labctl start --force --reason WHY",
    "reserved_key": '"metadata" names a key the session records itself: give the length as '
    '"duration", other settings with labctl start --config FILE, and your own metadata '
    "under another name",
}

#: The fields a start from the page may have; any other is refused, never ignored.
START_FIELDS = ("mice", "cohort", "duration", "metadata")

#: What a person at the dashboard can do about an outcome, after its reason.
HINTS: dict[OutcomeCode, str] = {
    "no_box": " (assign it a box: labctl assign)",
    "weight_check": " (weigh it with labctl weigh; only labctl start --force --reason WHY "
    "overrides the check)",
}


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
    """What a start or stop did: a row per mouse (with its outcome's code), a summary line."""

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

    def _link(self) -> BrokerLink:
        from controller.lab import database_identity

        # Refuses (WrongLab) when the collectors write to another database than this one.
        return BrokerLink(self.settings, self.topics, lab=(self.db.url, database_identity(self.db)))

    def start(self, body: dict[str, Any]) -> Result:
        """``{"mice": [...]}`` or ``{"cohort": NAME}``, optionally ``"duration"`` (seconds)
        and ``"metadata"`` (an object of metadata to store with each session)."""
        unknown = [key for key in body if key not in START_FIELDS]
        if unknown:
            raise ControlError(
                f"unknown field {unknown[0]!r}: a start takes " + ", ".join(START_FIELDS), 400
            )
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ControlError("metadata must be an object of KEY: VALUE", 400)
        config = TaskConfig()
        duration = body.get("duration")
        if duration is not None:
            if isinstance(duration, bool) or not isinstance(duration, int | float):
                raise ControlError(f"duration must be a number of seconds, got {duration!r}", 400)
            if duration <= 0:
                raise ControlError(
                    f"duration must be a positive number of seconds, got {duration:g}", 400
                )
            config = config.replace(duration=float(duration))
        mice, cohort = _mice(body)
        try:
            request = control.StartRequest(
                mice=mice, cohort=cohort, config=config, metadata=metadata, by=BY,
                timeout=self.timeout,
            )  # fmt: skip
        except RequestError as exc:
            raise ControlError(REQUEST_WORDS[exc.problem], 400) from None
        except ConfigError as exc:
            raise ControlError(str(exc), 400) from None
        result = control.start(self.db, self._link, request)
        warnings = result.warnings + result.box_warnings
        return _result(
            result.outcomes,
            f"{result.started} of {len(result.outcomes)} session(s) started",
            [w.text for w in warnings],
        )

    def stop(self, body: dict[str, Any]) -> Result:
        """``{"mice": [...]}``, or ``{"cohort": NAME}`` for its mice."""
        mice, cohort = _mice(body)
        try:
            request = control.StopRequest(mice=mice, cohort=cohort, timeout=self.timeout)
        except RequestError as exc:
            raise ControlError(REQUEST_WORDS[exc.problem], 400) from None
        result = control.stop(self.db, self._link, request)
        return _result(
            result.outcomes, f"{result.stopped} of {len(result.outcomes)} session(s) stopped", []
        )


def _mice(body: dict[str, Any]) -> tuple[list[str], str | None]:
    """The request's ``mice`` and ``cohort``, each of the right type."""
    mice = body.get("mice")
    cohort = body.get("cohort")
    if mice is not None and (
        not isinstance(mice, list) or not all(isinstance(m, str) for m in mice)
    ):
        raise ControlError("mice must be a list of mouse ids", 400)
    if cohort is not None and not isinstance(cohort, str):
        raise ControlError("cohort must be a cohort name", 400)
    return list(mice or []), cohort


def _result(outcomes: list[Outcome], summary: str, warnings: list[str]) -> Result:
    rows = [
        {
            "mouse": o.mouse,
            "box": o.box,
            "ok": o.ok,
            "code": o.code,
            "session_id": o.session_id,
            "reason": o.reason + HINTS.get(o.code, "") if o.reason else "",
        }
        for o in outcomes
    ]
    return Result(
        ok=all(o.ok for o in outcomes),
        summary=summary,
        outcomes=rows,
        warnings=[f"labctl: warning: {line}" for line in warnings],
    )
