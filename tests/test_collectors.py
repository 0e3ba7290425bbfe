"""Who is collecting (issue 9.4, issue 10): each collector's retained presence on the broker
and its lease in the database, as ``labctl status``, ``monitor`` and ``start`` show them."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.collector.leases import NO_COLLECTOR, CollectorRefused
from controller.collector.service import Collector, subscriptions
from controller.db import Database, open_database
from controller.mqtt import BrokerLink
from shared.broker_url import BrokerSettings
from shared.protocol import Topics
from tests.fakes import FakeRig

from .labctl import Labctl
from .waiting import wait_until

pytestmark = pytest.mark.broker
TIMEOUT = 20.0


def started(
    db: Database, broker: BrokerSettings, topics: Topics, client_id: str, group: str | None = None
) -> Collector:
    collector = Collector(
        db, broker, topics=topics, tick_interval=0.1, client_id=client_id, group=group
    )
    collector.start()
    assert collector.subscribed.wait(TIMEOUT), "the collector did not subscribe"
    return collector


def presence(broker: BrokerSettings, topics: Topics) -> dict[str, str]:
    with BrokerLink(broker, topics) as link:
        return {c.collector: c.state for c in link.collectors.values()}


def test_a_collector_announces_itself_and_says_when_it_leaves(
    db: Database, broker: BrokerSettings, topics: Topics
) -> None:
    collector = started(db, broker, topics, group="g1", client_id="col-a")
    try:
        wait_until(lambda: presence(broker, topics).get("col-a") == "online", TIMEOUT, "online")
        with BrokerLink(broker, topics) as link:
            (online,) = link.online_collectors()
        assert (online.collector, online.group, online.database) == ("col-a", "g1", db.url)
    finally:
        collector.stop()
    assert presence(broker, topics) == {"col-a": "offline"}


def test_a_group_shares_the_rig_topics_through_shared_subscriptions() -> None:
    assert subscriptions(Topics("lab"), "g") == [
        "$share/g/lab/rigs/+/status",
        "$share/g/lab/rigs/+/events",
        "$share/g/lab/rigs/+/reply",
    ]
    assert subscriptions(Topics("lab"), None)[1] == "lab/rigs/+/events"


def test_a_second_collector_with_the_same_client_id_is_refused(
    db: Database, broker: BrokerSettings, topics: Topics
) -> None:
    first = started(db, broker, topics, client_id="same")
    try:
        second = Collector(db, broker, topics=topics, client_id="same")
        with pytest.raises(CollectorRefused, match="already running with client id same"):
            second.start()
    finally:
        first.stop()
    again = started(db, broker, topics, client_id="same")  # the lease went with the first
    again.stop()


def test_a_second_collector_on_sqlite_is_refused_with_the_reason(
    tmp_path: Path, broker: BrokerSettings, topics: Topics
) -> None:
    db = open_database(f"sqlite:///{tmp_path}/lab.db")
    first = started(db, broker, topics, client_id="one")
    try:
        other = open_database(f"sqlite:///{tmp_path}/lab.db")
        with pytest.raises(CollectorRefused) as refused:
            Collector(other, broker, topics=topics, client_id="two").start()
        message = str(refused.value)
        assert "is SQLite" in message and "collector one" in message
        assert "use PostgreSQL to run several" in message
        other.close()
    finally:
        first.stop()
        db.close()


def test_labctl_serve_refuses_a_second_collector_on_sqlite_in_one_line(
    tmp_path: Path, broker: BrokerSettings, topics: Topics, broker_url: str
) -> None:
    url = f"sqlite:///{tmp_path}/lab.db"
    db = open_database(url)
    first = started(db, broker, topics, client_id="one")
    try:
        line = Labctl(url, broker_url, topics.prefix).error("serve", "--client-id", "two")
        assert "SQLite takes one collector at a time" in line
    finally:
        first.stop()
        db.close()


def test_status_and_start_say_whether_a_collector_is_online(
    tmp_path: Path, broker: BrokerSettings, topics: Topics, broker_url: str
) -> None:
    url = f"sqlite:///{tmp_path}/lab.db"
    labctl = Labctl(url, broker_url, topics.prefix)
    with FakeRig(broker, topics, "1"):
        labctl.ok("mouse", "add", "M1")
        labctl.add_boxes("1")  # no collector yet to make it known from its status
        labctl.ok("assign", "M1", "--box", "1")
        result = labctl("status")
        assert result.exit_code == 0 and NO_COLLECTOR in result.stderr
        db = open_database(url)
        collector = started(db, broker, topics, client_id="col-s")
        try:
            wait_until(lambda: presence(broker, topics).get("col-s") == "online", TIMEOUT, "online")
            result = labctl("status")
            assert "collectors online: col-s" in result.stdout
            assert NO_COLLECTOR not in result.stderr
            assert "collectors online: col-s" in labctl("monitor", "--once").stdout
            started_one = labctl("start", "M1")
            assert NO_COLLECTOR not in started_one.stderr
        finally:
            collector.stop()
            db.close()
        result = labctl("start", "M1")
        assert NO_COLLECTOR in result.stderr
