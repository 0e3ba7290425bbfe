"""The agent's broker connection (agent.mqtt) over TLS: passwords, client certificates, refusals.

Each test runs a private mosquitto with a TLS listener and its own test CA, and
a real ``python -m agent.cli run`` (or the controller's view of a box) against it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.demo.broker import MosquittoBroker

from .agentlab import TIMEOUT, AgentProcess, RigClient
from .waiting import wait_until

pytestmark = pytest.mark.broker


class SecureBroker:
    """A private mosquitto with a TLS listener (own test CA) that wants a user name and password."""

    USER, PASSWORD = "rig1", "s3cret"

    def __init__(self, client_certificates: bool = False) -> None:
        # Outside pytest's private tmp_path: mosquitto drops to its own user to read these.
        self.folder = Path(tempfile.mkdtemp(prefix="reachlab-tls-"))
        self.folder.chmod(0o755)
        self.ca = self.folder / "ca.pem"
        run = [
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=reachlab-test-ca"],
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext"],
            ["mosquitto_passwd", "-b", "-c", "passwords", self.USER, self.PASSWORD],
            # A client certificate for the rig, signed by the same CA.
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
             "-out", "client.csr", "-subj", "/CN=rig1"],
            ["openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "client.pem", "-days", "2"],
        ]  # fmt: skip
        self.client_cert = self.folder / "client.pem"
        self.client_key = self.folder / "client.key"
        (self.folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        for argv in run:
            subprocess.run(argv, cwd=self.folder, check=True, capture_output=True)
        for file in self.folder.iterdir():
            file.chmod(0o644)
        self.broker = MosquittoBroker(
            extra_config=(
                f"allow_anonymous false\npassword_file {self.folder / 'passwords'}\n"
                f"cafile {self.ca}\ncertfile {self.folder / 'server.pem'}\n"
                f"keyfile {self.folder / 'server.key'}\n"
                + ("require_certificate true\n" if client_certificates else "")
            )
        )
        self.url = f"mqtts://127.0.0.1:{self.broker.port}"
        self.broker.start()

    def close(self) -> None:
        self.broker.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def secure_broker() -> Iterator[SecureBroker]:
    if not (MosquittoBroker.available() and shutil.which("openssl")):
        pytest.skip("needs the mosquitto and openssl binaries")
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("needs mosquitto_passwd")
    broker = SecureBroker()
    yield broker
    broker.close()


def test_the_agent_connects_over_tls_with_a_password_from_the_environment(
    secure_broker: SecureBroker, topic_prefix: str, tmp_path: Path
) -> None:
    client = RigClient(
        secure_broker.url,
        topic_prefix,
        ca_file=secure_broker.ca,
        username=SecureBroker.USER,
        password=SecureBroker.PASSWORD,
    )
    try:
        with AgentProcess(
            tmp_path, secure_broker.url, topic_prefix, "--ca-file", str(secure_broker.ca),
            env={"LABAGENT_MQTT_USERNAME": SecureBroker.USER,
                 "LABAGENT_MQTT_PASSWORD": SecureBroker.PASSWORD},
        ) as process:  # fmt: skip
            client.wait_state("idle")
            assert client.command("ping").ok
            assert SecureBroker.PASSWORD not in process.output()
    finally:
        client.close()


@pytest.fixture
def mtls_broker() -> Iterator[SecureBroker]:
    if not (MosquittoBroker.available() and shutil.which("openssl")):
        pytest.skip("needs the mosquitto and openssl binaries")
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("needs mosquitto_passwd")
    broker = SecureBroker(client_certificates=True)
    yield broker
    broker.close()


def test_a_broker_that_wants_client_certificates_takes_the_rig_s_and_refuses_none(
    mtls_broker: SecureBroker, topic_prefix: str, tmp_path: Path
) -> None:
    broker = mtls_broker
    auth = {"LABAGENT_MQTT_USERNAME": SecureBroker.USER,
            "LABAGENT_MQTT_PASSWORD": SecureBroker.PASSWORD}  # fmt: skip
    client = RigClient(
        broker.url, topic_prefix, ca_file=broker.ca, username=SecureBroker.USER,
        password=SecureBroker.PASSWORD, cert=(broker.client_cert, broker.client_key),
    )  # fmt: skip
    try:
        with AgentProcess(
            tmp_path / "without", broker.url, topic_prefix, "--ca-file", str(broker.ca), env=auth
        ) as refused:
            wait_until(
                lambda: "closed the connection before" in refused.output(), TIMEOUT, "the refusal"
            )
            assert refused.process.poll() is None  # still running, retrying with back-off
            assert client.status is None  # it never got as far as publishing a status
        with AgentProcess(
            tmp_path / "with", broker.url, topic_prefix, "--ca-file", str(broker.ca),
            "--cert-file", str(broker.client_cert), "--key-file", str(broker.client_key), env=auth,
        ):  # fmt: skip
            client.wait_state("idle")
            assert client.command("ping").ok
    finally:
        client.close()


def test_a_refused_password_is_logged_and_the_agent_keeps_trying(
    secure_broker: SecureBroker, topic_prefix: str, tmp_path: Path
) -> None:
    with AgentProcess(
        tmp_path, secure_broker.url, topic_prefix, "--ca-file", str(secure_broker.ca),
        "--username", SecureBroker.USER, env={"LABAGENT_MQTT_PASSWORD": "wrong"},
    ) as process:  # fmt: skip
        wait_until(lambda: "refused the connection" in process.output(), TIMEOUT, "the refusal")
        assert "Not authorized" in process.output()
        assert process.process.poll() is None  # still running, retrying with back-off
