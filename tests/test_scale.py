"""Several collectors sharing the rigs (issue 10): real processes, a private Mosquitto, the real
PostgreSQL.

Three ``labctl serve`` processes in one shared-subscription group, ten
``labagent run --sim`` rigs, one cohort session each; one collector is
SIGKILLed mid-run. Every session must then be complete, stored exactly once,
equal to the rig's own per-mouse copy, and confirmed with exactly one
``committed`` (counted by a client subscribed to every rig's command topic).
Every process is started and stopped here, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from controller.cli import app
from controller.db import Database, StoredDocument, Stream, TrainingSession, open_database
from controller.demo.broker import MosquittoBroker
from controller.mqtt import BrokerLink
from controller.transport import Transport
from shared.broker_url import broker_settings
from shared.errors import ProtocolError
from shared.protocol import CommittedCommand, Topics, parse_command
from shared.sessionfile import read_sessions

from .cli_runner import CliRunner
from .conftest import temporary_postgres
from .processes import Processes
from .waiting import wait_until

pytestmark = [pytest.mark.scale, pytest.mark.broker, pytest.mark.postgres]

BOXES = [str(n) for n in range(1, 11)]
COLLECTORS = ("c1", "c2", "c3")
TIME_SCALE = 300
DURATION = 1500  # five wall seconds a session
TIMEOUT = 120.0


class CommittedCounter:
    """Every ``committed`` any collector sends, by session id, from the rigs' cmd topics."""

    def __init__(self, broker_url: str, topics: Topics) -> None:
        self.lock = threading.Lock()
        self.count: Counter[str] = Counter()
        self.transport = Transport(
            broker_settings(broker_url), client_id="committed-counter", on_message=self._seen
        )
        self.transport.subscribe([topics.all_rigs("cmd")])

    def __enter__(self) -> CommittedCounter:
        self.transport.connect(10)
        assert self.transport.subscribed.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.transport.close()

    def _seen(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            command = parse_command(payload)
        except ProtocolError:
            return
        if isinstance(command, CommittedCommand):
            with self.lock:
                self.count[command.session_id] += 1

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.count)


@pytest.fixture
def pg_url(postgres_server_url: str) -> Iterator[str]:
    with contextlib.contextmanager(temporary_postgres)(postgres_server_url) as url:
        yield url


def stored(db: Database) -> tuple[int, int]:
    """(documents stored, sessions complete and confirmed)."""
    with db.reader() as session:
        documents = session.scalar(select(func.count()).select_from(StoredDocument)) or 0
        confirmed = (
            session.scalar(
                select(func.count()).where(
                    TrainingSession.complete.is_(True), TrainingSession.committed_at.is_not(None)
                )
            )
            or 0
        )
    return int(documents), int(confirmed)


def test_three_collectors_share_ten_rigs_and_one_dies_mid_run(
    tmp_path: Path, private_mosquitto: MosquittoBroker, pg_url: str, topic_prefix: str
) -> None:
    broker_url = private_mosquitto.url
    topics = Topics(topic_prefix)
    env = {
        **os.environ,
        "LABCTL_DB": pg_url,
        "LABCTL_BROKER": broker_url,
        "LABCTL_PREFIX": topic_prefix,
        "LABCTL_GROUP": "scale",
        "PYTHONUNBUFFERED": "1",
    }
    db = open_database(pg_url)  # the schema, before three processes race for it
    procs = Processes(tmp_path / "logs")

    runner = CliRunner()
    cli_env = {k: env[k] for k in ("LABCTL_DB", "LABCTL_BROKER", "LABCTL_PREFIX")}

    def labctl(*args: str) -> str:
        result = runner.invoke(app, list(args), env=cli_env)
        assert result.exit_code == 0, result.output
        return result.stdout

    try:
        with CommittedCounter(broker_url, topics) as counter:
            for name in COLLECTORS:
                argv = [sys.executable, "-m", "controller.cli", "serve", "--client-id", name]
                procs.start(name, argv, env)
            for box in BOXES:
                rig = tmp_path / f"rig{box}"
                procs.start(
                    f"rig{box}",
                    [
                        sys.executable, "-m", "agent.cli", "run", "--box", box,
                        "--broker", broker_url, "--prefix", topic_prefix, "--sim",
                        "--time-scale", str(TIME_SCALE), "--seed", box,
                        "--journal", str(rig / "journal.db"), "--data-dir", str(rig / "data"),
                    ],
                    env,
                )  # fmt: skip

            def everyone_up() -> bool:
                with BrokerLink(broker_settings(broker_url), topics) as link:
                    online = {c.collector for c in link.online_collectors()}
                    idle = {b for b, s in link.statuses.items() if s.state == "idle"}
                return online == set(COLLECTORS) and idle == set(BOXES)

            wait_until(
                everyone_up, TIMEOUT, "three collectors and ten idle rigs",
                alive=procs.check_alive, detail=procs.all_logs, interval=0.2,
            )  # fmt: skip
            wait_until(
                lambda: {b["box"] for b in json.loads(labctl("box", "list", "--json"))}
                >= set(BOXES),
                TIMEOUT, "every rig known to the lab (a collector stored its first status)",
                alive=procs.check_alive, detail=procs.all_logs, interval=0.2,
            )  # fmt: skip
            mice = [f"ScaleMouse{box}" for box in BOXES]
            for box, mouse in zip(BOXES, mice, strict=True):
                labctl("assign", mouse, "--box", box)
            out = labctl("start", *mice, "--duration", str(DURATION), "--meta", "trainer=scale")
            assert f"{len(BOXES)} of {len(BOXES)} session(s) started" in out

            wait_until(
                lambda: stored(db)[0] >= 100, TIMEOUT, "documents stored mid-run",
                alive=procs.check_alive, detail=procs.all_logs, interval=0.2,
            )  # fmt: skip
            assert stored(db)[1] == 0, "the kill is to come mid-run, before any session ends"
            killed = procs.children.pop("c1")
            os.kill(killed.pid, signal.SIGKILL)
            killed.wait(10)

            wait_until(
                lambda: stored(db)[1] == len(BOXES), TIMEOUT, "every session stored and committed",
                alive=procs.check_alive, detail=procs.all_logs, interval=0.2,
            )  # fmt: skip
            wait_until(
                lambda: len(counter.counts()) == len(BOXES), TIMEOUT,
                "the committed of every session seen",
                alive=procs.check_alive, detail=procs.all_logs, interval=0.2,
            )  # fmt: skip
            # Whatever could still go out would be a retry of an unconfirmed commit: none is.
            with db.reader() as session:
                unconfirmed = session.scalar(
                    select(func.count()).where(
                        Stream.completed_at.is_not(None), Stream.committed_at.is_(None)
                    )
                )
            assert unconfirmed == 0
            assert counter.counts() == dict.fromkeys(counter.counts(), 1)

            with db.reader() as session:
                rows = session.scalars(select(TrainingSession)).all()
                for row in rows:
                    documents = session.scalar(
                        select(func.count()).where(StoredDocument.session_id == row.session_id)
                    )
                    assert row.last_seq is not None and documents == row.last_seq + 1
                assert {r.session_id for r in rows} == set(counter.counts())

            out_dir = tmp_path / "export"
            labctl("export", "--all", "--out", str(out_dir))
            for box, mouse in zip(BOXES, mice, strict=True):
                exported = out_dir / f"{mouse}.json"
                agent_copy = tmp_path / f"rig{box}" / "data" / f"{mouse}.json"
                (ours,), (theirs,) = read_sessions(exported), read_sessions(agent_copy)
                assert ours == theirs and ours["status"] == "complete"
                assert exported.read_bytes() == agent_copy.read_bytes()

            status = json.loads(labctl("status", "--json"))
            online = {c["collector"] for c in status["collectors"]}
            assert online == {"c2", "c3"}  # c1's Last Will said it is gone
    finally:
        codes = procs.stop_all()
        db.close()
    assert codes == dict.fromkeys(procs.children, 0), {n: procs.log(n) for n in procs.children}
