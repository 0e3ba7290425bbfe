"""The shipped broker configuration, proven on the wire (issue 11: who may talk to a rig).

Every test runs a real mosquitto from the files in docker/mosquitto/ (see
:mod:`tests.mosquitto_files`) with the compose stack's users: a credential per
rig (its box id), per collector (``collector-a``), per person using labctl
(``labctl-operator``) and a read-only viewer (``viewer-health``). Each
permission is checked with real clients: an allowed message arrives, and a
forbidden one is absent from everything delivered up to a later allowed one
(the broker keeps a client's messages in order).
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import time
from pathlib import Path

import pytest

from shared.protocol import DEFAULT_PREFIX, TopicKind, Topics
from tests.dockerstack import ACL_FILE, compose, stack_users
from tests.mosquitto_files import (
    BrokerFiles,
    broker_dir,
    broker_files,
    needs_mosquitto,
    real_broker,
    run_init,
    running,
)
from tests.mqttclient import MqttClient

pytestmark = needs_mosquitto
__all__ = ["broker_dir", "real_broker"]  # fixtures, used by name

TOPICS = Topics(DEFAULT_PREFIX)
RIG_PUBLISHES: tuple[TopicKind, ...] = ("status", "events", "reply")
COLLECTOR, OPERATOR, VIEWER = "collector-a", "labctl-operator", "viewer-health"


def connect(broker: BrokerFiles, user: str, **options: object) -> MqttClient:
    client = MqttClient(broker.port, user, broker.users[user], **options)  # type: ignore[arg-type]
    assert client.accepted, f"{user} was refused: {client.connack}"
    return client


# ---------------------------------------------------------------- who may connect


def test_anonymous_clients_and_wrong_passwords_are_refused(real_broker: BrokerFiles) -> None:
    for username, password in ((None, None), ("2", "wrong"), ("nobody", "x"), (COLLECTOR, "")):
        client = MqttClient(real_broker.port, username, password)
        try:
            assert not client.accepted, f"{username!r} must be refused"
        finally:
            client.close()


def test_no_credential_can_take_over_the_collector_s_client_id(real_broker: BrokerFiles) -> None:
    """A rig connecting with the collector's client id (the name or the one labctl serve
    uses) gets its own id, its user name: the collector stays connected and keeps its
    subscription, so nothing it should receive goes to the impostor. (Without
    use_username_as_clientid mosquitto closes the collector's connection and hands its
    persistent session, queued documents included, to the impostor.)"""
    collector = connect(real_broker, COLLECTOR, client_id=COLLECTOR, clean_session=False)
    rig = connect(real_broker, "2")
    impostors = [
        connect(real_broker, "3", client_id=COLLECTOR, clean_session=False),
        connect(real_broker, "1", client_id="labctl-collector-reachlab", clean_session=False),
        connect(real_broker, OPERATOR, client_id=COLLECTOR, clean_session=False),
    ]
    try:
        assert collector.subscribe(TOPICS.all_rigs("events")) == [True]
        for impostor in impostors:
            impostor.subscribe(TOPICS.all_rigs("events"))
        rig.publish(TOPICS.events("2"), b"for the collector")
        assert collector.until(TOPICS.events("2"), b"for the collector")
        assert collector.disconnects.empty(), "the collector was knocked off"
        assert collector.client.is_connected()
        # The rig impostors are confined to box 3's topics and got none of box 2's events.
        for impostor in impostors[:2]:
            assert impostor.received.empty()
    finally:
        for client in (collector, rig, *impostors):
            client.close()


# ---------------------------------------------------------------- what a rig may do


def test_a_rig_publishes_only_its_own_topics_and_reads_only_its_own_commands(
    real_broker: BrokerFiles,
) -> None:
    collector = connect(real_broker, COLLECTOR)
    operator = connect(real_broker, OPERATOR)
    rig = connect(real_broker, "2")
    try:
        assert all(collector.subscribe(*(TOPICS.all_rigs(k) for k in RIG_PUBLISHES)))
        assert rig.subscribe(TOPICS.cmd("2")) == [True]
        rig.subscribe(TOPICS.cmd("1"), TOPICS.all_rigs("cmd"))  # granted or not, nothing may arrive

        # Another box's status, events and replies are dropped; its own arrive.
        for kind in RIG_PUBLISHES:
            for other in ("1", "3", "box-12"):
                rig.publish(TOPICS.rig(other, kind), b"forged")
        for kind in RIG_PUBLISHES:
            rig.publish(TOPICS.rig("2", kind), b"own")
        seen = collector.until(TOPICS.reply("2"), b"own")
        assert sorted(seen) == sorted((TOPICS.rig("2", k), b"own") for k in RIG_PUBLISHES)

        # Only its own commands reach the rig, whatever it subscribed to.
        operator.publish(TOPICS.cmd("1"), b"for box 1")
        operator.publish(TOPICS.cmd("3"), b"for box 3")
        operator.publish(TOPICS.cmd("2"), b"for box 2")
        seen = rig.until(TOPICS.cmd("2"), b"for box 2")
        assert seen == [(TOPICS.cmd("2"), b"for box 2")]
    finally:
        for client in (rig, operator, collector):
            client.close()


def test_a_rig_subscribing_to_everything_gets_nothing_of_other_clients(
    real_broker: BrokerFiles,
) -> None:
    rig = connect(real_broker, "2")
    operator = connect(real_broker, OPERATOR)
    other = connect(real_broker, "1")
    try:
        rig.subscribe("#", "reachlab/#", "$SYS/#", "$share/g/reachlab/rigs/+/events")
        assert rig.subscribe(TOPICS.cmd("2")) == [True]
        other.publish(TOPICS.events("1"), b"box 1's events")
        other.publish(TOPICS.status("1"), b"box 1's status")
        operator.publish(TOPICS.cmd("1"), b"for box 1")
        operator.publish(TOPICS.cmd("2"), b"marker")
        seen = rig.until(TOPICS.cmd("2"), b"marker")
        assert {topic for topic, _ in seen} == {TOPICS.cmd("2")}
    finally:
        for client in (rig, operator, other):
            client.close()


def test_only_collector_and_labctl_users_may_send_commands(real_broker: BrokerFiles) -> None:
    """A start, stop or committed from a rig or a viewer never reaches the box."""
    box = connect(real_broker, "2")
    senders = {user: connect(real_broker, user) for user in (COLLECTOR, OPERATOR, VIEWER, "3")}
    try:
        assert box.subscribe(TOPICS.cmd("2")) == [True]
        for user in (VIEWER, "3"):
            for command in (b'{"command": "start"}', b'{"command": "committed"}'):
                senders[user].publish(TOPICS.cmd("2"), command + user.encode())
        senders[COLLECTOR].publish(TOPICS.cmd("2"), b"resend from the collector")
        senders[OPERATOR].publish(TOPICS.cmd("2"), b"start from labctl")
        seen = box.until(TOPICS.cmd("2"), b"start from labctl")
        assert [payload for _, payload in seen] == [
            b"resend from the collector",
            b"start from labctl",
        ]
    finally:
        for client in (box, *senders.values()):
            client.close()


def test_a_rig_s_last_will_reaches_the_collector(real_broker: BrokerFiles) -> None:
    collector = connect(real_broker, COLLECTOR)
    will = (TOPICS.status("3"), b'{"state": "offline"}')
    rig = connect(real_broker, "3", will=will)
    try:
        assert collector.subscribe(TOPICS.all_rigs("status")) == [True]
        rig.drop()
        assert collector.until(*will)[-1] == will
    finally:
        collector.close()


# ---------------------------------------------------------------- collectors and viewers


def test_two_collectors_share_the_rigs_through_a_shared_subscription(
    real_broker: BrokerFiles,
) -> None:
    users = {**real_broker.users}
    assert COLLECTOR in users
    rig = connect(real_broker, "1")
    collector = connect(real_broker, COLLECTOR)
    viewer = connect(real_broker, VIEWER)
    try:
        share = f"$share/collectors/{TOPICS.all_rigs('events')}"
        assert collector.subscribe(share) == [True]
        assert viewer.subscribe(TOPICS.all_rigs("events"), "$SYS/broker/version") == [True, True]
        for n in range(5):
            rig.publish(TOPICS.events("1"), f"doc {n}".encode())
        assert collector.until(TOPICS.events("1"), b"doc 4")[0] == (TOPICS.events("1"), b"doc 0")
        assert viewer.until(TOPICS.events("1"), b"doc 4")  # a viewer may watch, not command
    finally:
        for client in (rig, collector, viewer):
            client.close()


def test_the_broker_drops_a_message_over_its_size_limit(real_broker: BrokerFiles) -> None:
    collector = connect(real_broker, COLLECTOR)
    rig = connect(real_broker, "2")
    try:
        assert collector.subscribe(TOPICS.all_rigs("events")) == [True]
        rig.publish(TOPICS.events("2"), b"x" * (300 * 1024))  # over message_size_limit
        rig.publish(TOPICS.events("2"), b"y" * (200 * 1024))  # under it
        rig.publish(TOPICS.events("2"), b"small")
        seen = collector.until(TOPICS.events("2"), b"small")
        assert [len(payload) for _, payload in seen] == [200 * 1024, 5]
    finally:
        for client in (rig, collector):
            client.close()


def test_the_broker_sends_a_collector_1000_messages_before_it_acknowledges_any(
    real_broker: BrokerFiles,
) -> None:
    """``max_inflight_messages 1000`` took effect: a collector acknowledges a batch only once
    it is stored, so mosquitto's default of 20 would stop delivery at 20 unacknowledged."""
    assert "max_inflight_messages 1000" in real_broker.conf.read_text("utf-8").splitlines()
    collector = MqttClient(
        real_broker.port, COLLECTOR, real_broker.users[COLLECTOR], client_id=COLLECTOR,
        manual_ack=True,  # paho sends no PUBACK until told: every message stays in flight
    )  # fmt: skip
    rig = connect(real_broker, "2")
    mids: list[int] = []
    try:
        assert collector.subscribe(TOPICS.all_rigs("events")) == [True]
        for n in range(300):
            rig.client.publish(TOPICS.events("2"), b"%d" % n, qos=1)
        rig.publish(TOPICS.events("2"), b"last")  # returns once the broker has them all
        deadline = time.monotonic() + 10
        while len(mids) < 301 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                mids.append(collector.unacked.get(timeout=0.5))
        assert len(mids) == 301, f"{len(mids)} of 301 delivered with none acknowledged"
    finally:
        for mid in mids:
            collector.ack(mid)
        collector.close()
        rig.close()


# ---------------------------------------------------------------- TLS


def test_tls_with_the_lab_ca_and_a_password_works_and_a_stranger_ca_is_refused(
    real_broker: BrokerFiles, tmp_path: Path
) -> None:
    client = MqttClient(real_broker.tls_port, "2", real_broker.users["2"], ca=real_broker.ca)
    try:
        assert client.accepted
        assert client.subscribe(TOPICS.cmd("2")) == [True]
    finally:
        client.close()
    wrong_password = MqttClient(real_broker.tls_port, "2", "wrong", ca=real_broker.ca)
    assert not wrong_password.accepted
    wrong_password.close()
    # A client that trusts another CA refuses the broker's certificate (no man in the middle).
    from tests.mosquitto_files import make_certs

    make_certs(tmp_path / "stranger", "server", "127.0.0.1")
    stranger = MqttClient(
        real_broker.tls_port, "2", real_broker.users["2"], ca=tmp_path / "stranger/public/ca.pem"
    )
    assert not stranger.accepted
    stranger.close()


def test_tls_requiring_client_certificates_refuses_a_client_without_one(
    broker_dir: Path,
) -> None:
    files = broker_files(broker_dir, stack_users(), require_certificate=True)
    with running(files):
        password = files.users["2"]
        without = MqttClient(files.tls_port, "2", password, ca=files.ca)
        assert not without.accepted
        without.close()
        with_cert = MqttClient(
            files.tls_port, "2", password, ca=files.ca, cert=files.client_cert("2")
        )
        try:
            assert with_cert.accepted
            assert with_cert.subscribe(TOPICS.cmd("2")) == [True]
        finally:
            with_cert.close()
        # The certificate is a second factor, not a replacement for the password.
        no_password = MqttClient(
            files.tls_port, "2", "wrong", ca=files.ca, cert=files.client_cert("2")
        )
        assert not no_password.accepted
        no_password.close()


# ---------------------------------------------------------------- init.sh


def test_init_script_writes_private_hashed_passwords_and_an_acl_block_per_lab_user(
    broker_dir: Path,
) -> None:
    users = stack_users()
    files = broker_files(broker_dir, users)
    passwords = files.directory / "auth" / "passwords"
    acl = (files.directory / "auth" / "acl").read_text("utf-8")
    assert acl.startswith(ACL_FILE.read_text("utf-8"))
    for user in (COLLECTOR, OPERATOR, VIEWER):
        assert f"\nuser {user}\n" in acl
    assert "\nuser 1\n" not in acl, "rigs get the patterns only"
    lines = passwords.read_text("utf-8").splitlines()
    assert [line.split(":", 1)[0] for line in lines] == list(users)
    for line in lines:
        user, hashed = line.split(":", 1)
        assert hashed.startswith("$7$") and users[user] not in hashed, "passwords must be hashed"
    for path in (passwords, files.directory / "auth" / "acl", files.directory / "auth/server.key"):
        assert os.stat(path).st_mode & 0o077 == 0, f"{path.name} must be private"


@pytest.mark.parametrize(
    "users",
    [
        "",
        "collector-a",
        "collector-a: 1:pw",
        "+:pw",
        "#:pw",
        "a/b:pw",
        "rigs/+:pw",
        "$SYS:pw",
        "%u:pw",
        "controller:pw",
        "collector:pw",
        "Labctl7:pw",
        "labctl-:pw",
        "viewer-a/b:pw",
        "1:pw 1:other",
        f"{'x' * 33}:pw",
    ],
)
def test_init_script_refuses_user_names_that_could_break_the_acl(
    users: str, broker_dir: Path
) -> None:
    conf = broker_dir / "mosquitto.conf"
    conf.write_text(
        f"password_file {broker_dir}/auth/passwords\nacl_file {broker_dir}/auth/acl\n",
        encoding="utf-8",
    )
    result = run_init(conf, users)
    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "MOSQUITTO_USERS" in result.stderr and "\n" not in result.stderr.strip()
    assert not (broker_dir / "auth" / "passwords").exists()


def test_the_compose_healthcheck_passes_with_its_viewer_and_fails_without(
    real_broker: BrokerFiles,
) -> None:
    # As the container's shell gets it: compose turns its escape $$ into a literal $.
    test = compose()["services"]["mosquitto"]["healthcheck"]["test"][1].replace("$$", "$")
    command = test.replace("-p 1883", f"-p {real_broker.port}")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MOSQUITTO_HEALTHCHECK_PASSWORD": real_broker.users[VIEWER],
    }
    result = subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    env["MOSQUITTO_HEALTHCHECK_PASSWORD"] = "wrong"
    result = subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=30)
    assert result.returncode != 0, "a broker refusing the healthcheck must not look healthy"
