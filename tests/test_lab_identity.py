"""One lab, one database (issue 17 item 1): labctl refuses to command rigs from another database.

Each database has an identity; every collector announces the one it writes to;
a labctl whose database is not theirs refuses to send, naming both databases.
`labctl lab use URL` sets the lab database of a machine.
"""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import app
from controller.collector.leases import CollectorStatus, encode_status
from controller.collector.service import Collector
from controller.db import open_database
from controller.lab import assignments_by_box, database_identity
from controller.transport import Transport
from shared.broker_url import BrokerSettings, broker_settings
from shared.protocol import Topics

from .cli_runner import CliRunner, Result

pytestmark = [pytest.mark.broker]


def labctl(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def lab(broker_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str | None], Topics]]:
    topics = Topics(f"lab-{uuid.uuid4().hex[:8]}")
    env: dict[str, str | None] = {
        "LABCTL_BROKER": broker_url,
        "LABCTL_PREFIX": topics.prefix,
        "LABCTL_DB": None,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    yield env, topics


def announce(broker: BrokerSettings, topics: Topics, db_url: str, name: str) -> None:
    """A collector's retained presence, as `labctl serve` on ``db_url`` publishes it."""
    db = open_database(db_url)
    try:
        presence = CollectorStatus(
            collector=name, state="online", database=db.url, lab_id=database_identity(db)
        )
    finally:
        db.close()
    transport = Transport(broker, client_id=f"announce-{uuid.uuid4().hex[:6]}")
    transport.connect(10)
    try:
        transport.publish(
            topics.collector_status(name), encode_status(presence), retain=True, wait=10
        )
    finally:
        transport.close()


def test_every_database_has_one_identity_that_stays(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first = open_database(url)
    identity = database_identity(first)
    first.close()
    again = open_database(url)
    other = open_database(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        assert len(identity) == 32 and database_identity(again) == identity
        assert database_identity(other) != identity
    finally:
        again.close()
        other.close()


def test_a_collector_announces_the_identity_of_its_database(
    tmp_path: Path, broker: BrokerSettings
) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        service = Collector(db, broker, topics=Topics(f"p{uuid.uuid4().hex[:6]}"))
        assert service._status("online").lab_id == database_identity(db)
    finally:
        db.close()


def test_labctl_on_another_database_than_the_collectors_sends_nothing(
    lab: tuple[dict[str, str | None], Topics], tmp_path: Path, broker_url: str
) -> None:
    env, topics = lab
    real, empty = f"sqlite:///{tmp_path / 'real.db'}", f"sqlite:///{tmp_path / 'empty.db'}"
    announce(broker_settings(broker_url), topics, real, "labctl-collector-real")
    env = {**env, "LABCTL_DB": empty}
    for box in ("1", "2"):
        assert labctl(env, "box", "add", box).exit_code == 0
    assert labctl(env, "assign", "M1", "--box", "1").exit_code == 0  # the database alone
    assert labctl(env, "assign", "M2", "--box", "2").exit_code == 0
    for argv in (["start", "M1"], ["stop", "M1"], ["assign", "M2", "--box", "1", "--replace"]):
        result = labctl(env, *argv)
        assert result.exit_code != 0, result.output
        (line,) = result.stderr.splitlines()
        assert "empty.db" in line and "real.db" in line and "labctl lab use" in line, line
    db = open_database(empty)
    try:
        with db.reader() as tx:
            assert assignments_by_box(tx) == {"1": "M1", "2": "M2"}  # the refused one: nothing
    finally:
        db.close()
    status = labctl(env, "status")
    assert status.exit_code == 0, status.output
    assert status.stdout.splitlines()[0].startswith("database sqlite:///")
    assert "empty.db" in status.stdout.splitlines()[0] and broker_url in status.stdout
    assert "real.db" in status.stderr


def test_labctl_lab_use_sets_the_database_below_db_and_labctl_db(
    lab: tuple[dict[str, str | None], Topics], tmp_path: Path
) -> None:
    env, _ = lab
    chosen, other = f"sqlite:///{tmp_path / 'chosen.db'}", f"sqlite:///{tmp_path / 'other.db'}"
    used = labctl(env, "lab", "use", chosen)
    assert used.exit_code == 0, used.output
    written = tmp_path / "config" / "reachlab" / "labctl.toml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    first = labctl(env, "--broker", "mqtt://127.0.0.1:1", "status").stdout.splitlines()[0]
    assert "chosen.db" in first
    env_first = labctl({**env, "LABCTL_DB": other}, "status").stdout.splitlines()[0]
    assert "other.db" in env_first
    option_first = labctl(env, "--db", other, "status").stdout.splitlines()[0]
    assert "other.db" in option_first


def test_labctl_lab_use_refuses_a_database_it_cannot_open_and_writes_nothing(
    lab: tuple[dict[str, str | None], Topics], tmp_path: Path
) -> None:
    env, _ = lab
    result = labctl(env, "lab", "use", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert result.exit_code != 0
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "config" / "reachlab" / "labctl.toml").exists()
