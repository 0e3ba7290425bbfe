"""Who is collecting: each collector's retained presence on the broker, and its lease in the DB.

A collector announces itself on ``<prefix>/collectors/<client id>/status``
(retained; its Last Will says ``offline``), so ``labctl status``, ``monitor``
and ``start`` can tell when nothing is collecting. In the database each
running collector holds a lease row (``collectors``), renewed as it works: a
second process with the same client id is refused (it would take the first
one's MQTT session over), and on SQLite, which takes one writer, so is any
second collector.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, Table, delete, select, text, update

from controller.db import Database
from controller.models import CollectorLease
from shared.errors import ProtocolError, ReachlabError
from shared.ids import COLLECTOR_ID_PATTERN, check_collector_id

#: A lease not renewed for this long belongs to a collector that is gone.
LEASE_S = 20.0
#: How often a running collector renews its lease.
RENEW_S = 5.0
_LEASE_LOCK_KEY = 0x72656163686C  # PostgreSQL advisory lock: one lease decision at a time

#: What labctl says when no collector announces itself.
NO_COLLECTOR = "no collector is online: nothing stores the rigs' documents (run labctl serve)"

LEASES: Table = CollectorLease.__table__  # type: ignore[assignment]


class CollectorRefused(ReachlabError, RuntimeError):
    """This collector may not run against this database now; the message says why."""


class CollectorStatus(BaseModel):
    """A collector's retained presence message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    collector: str = Field(pattern=COLLECTOR_ID_PATTERN.pattern)
    state: Literal["online", "offline"]
    group: str | None = None
    host: str = ""
    pid: int = 0
    database: str = ""
    #: The identity of the database it writes to (controller.lab.database_identity).
    lab_id: str = ""
    started_at: float = 0.0


class WrongLab(ReachlabError):
    """labctl's database is not the one the online collectors write to: nothing is sent."""


def check_same_lab(database: str, lab_id: str, collectors: Sequence[CollectorStatus]) -> None:
    """:class:`WrongLab` when an online collector writes to another lab database than ours.

    Otherwise a weight check or carry-over read from one database would start a rig
    whose session is stored in another (DESIGN §15). Collectors that announce no
    identity (older releases) are not judged."""
    for collector in collectors:
        if collector.state == "online" and collector.lab_id and collector.lab_id != lab_id:
            raise WrongLab(
                f"labctl uses database {database}, but the collectors write to "
                f"{collector.database or 'another database'}: nothing was sent; set the lab's "
                "database with `labctl lab use URL` (or --db / LABCTL_DB)"
            )


def collector_client_id(prefix: str, group: str | None = None) -> str:
    """The default client id: one per prefix, or per group and host with ``group``."""

    def safe(value: str) -> str:
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in value)

    if group is None:
        return f"labctl-collector-{safe(prefix)}"
    return f"labctl-collector-{safe(prefix)}-{safe(group)}-{safe(socket.gethostname())}"


def parse_collector_status(payload: bytes) -> CollectorStatus:
    try:
        return CollectorStatus.model_validate_json(payload)
    except ValidationError as exc:
        raise ProtocolError(f"invalid collector status: {exc.errors()[0]['msg']}") from None


def encode_status(status: CollectorStatus) -> bytes:
    return status.model_dump_json().encode()


# ---------------------------------------------------------------- the lease


@dataclass(frozen=True)
class Lease:
    """This process's lease on the database as collector ``client_id``."""

    client_id: str
    group: str | None
    host: str
    pid: int


def _gone(row: dict[str, object], now: float, host: str) -> bool:
    """A lease whose collector has stopped renewing it, or whose process is dead here."""
    if float(row["heartbeat_at"]) < now - LEASE_S:  # type: ignore[arg-type]
        return True
    if row["host"] == host:
        try:
            os.kill(int(row["pid"]), 0)  # type: ignore[call-overload]
        except ProcessLookupError:
            return True  # SIGKILLed or crashed on this machine
        except PermissionError:
            return False
    return False


def take_lease(db: Database, client_id: str, group: str | None, now: float | None = None) -> Lease:
    """Register this collector; :class:`CollectorRefused` naming the one in the way."""
    now = time.time() if now is None else now
    lease = Lease(check_collector_id(client_id), group, socket.gethostname(), os.getpid())
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LEASE_LOCK_KEY})
        for row in conn.execute(select(LEASES)).mappings().all():
            other = dict(row)
            if _gone(other, now, lease.host):
                conn.execute(delete(LEASES).where(LEASES.c.id == other["id"]))
                continue
            who = f"collector {other['id']} (pid {other['pid']} on {other['host']})"
            if other["id"] == client_id:
                raise CollectorRefused(
                    f"{who} is already running with client id {client_id}: a second one "
                    "would take its MQTT session over; give each collector its own --client-id"
                )
            if conn.dialect.name == "sqlite":
                raise CollectorRefused(
                    f"database {db.url} is SQLite and {who} already collects into it: SQLite "
                    "takes one collector at a time; use PostgreSQL to run several"
                )
        conn.execute(
            LEASES.insert().values(
                id=client_id,
                group_name=group,
                host=lease.host,
                pid=lease.pid,
                started_at=now,
                heartbeat_at=now,
            )
        )
    return lease


def renew_lease(conn: Connection, lease: Lease, now: float) -> None:
    conn.execute(update(LEASES).where(LEASES.c.id == lease.client_id).values(heartbeat_at=now))


def drop_lease(db: Database, lease: Lease) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            delete(LEASES).where(LEASES.c.id == lease.client_id, LEASES.c.pid == lease.pid)
        )
