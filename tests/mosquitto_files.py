"""A real mosquitto started from the shipped files in docker/mosquitto/, for tests.

The repository's ``mosquitto.conf`` is copied with only its paths and ports moved:
listeners on free ports of 127.0.0.1, the auth files, the TLS key and the
persistence under a temporary folder, the certificates from a test CA made by
``docker/make-certs.sh``. ``init.sh`` then writes the password file and the ACL
from the shipped ``acl`` and role files exactly as in the container, and the
broker runs that. Every broker is stopped by its pid.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.demo.broker import find_free_port, wait_for_port
from tests.dockerstack import (
    ACL_FILE,
    DOCKER,
    INIT_SCRIPT,
    MOSQUITTO_CONF,
    stack_users,
)
from tests.processes import stop

MAKE_CERTS = DOCKER / "make-certs.sh"

needs_mosquitto = pytest.mark.skipif(
    not (
        shutil.which("mosquitto_passwd")
        and shutil.which("openssl")
        and (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists())
    ),
    reason="needs the mosquitto, mosquitto_passwd and openssl binaries",
)


@dataclass
class BrokerFiles:
    directory: Path
    conf: Path
    port: int  # the plain listener
    tls_port: int  # the TLS listener
    users: dict[str, str]
    certs: Path

    @property
    def ca(self) -> Path:
        return self.certs / "public" / "ca.pem"

    def client_cert(self, name: str) -> tuple[Path, Path]:
        """A client certificate and key signed by the test CA (made on first use)."""
        cert = self.certs / "clients" / f"{name}.pem"
        if not cert.exists():
            make_certs(self.certs, "client", name)
        return cert, self.certs / "clients" / f"{name}.key"


def make_certs(folder: Path, *args: str) -> None:
    result = subprocess.run(
        ["sh", str(MAKE_CERTS), str(folder), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


_CA_CACHE: list[Path] = []


def _test_ca() -> Path:
    """A test CA and broker certificate, made once per test run (RSA keys take a while)."""
    if not _CA_CACHE:
        folder = Path(tempfile.mkdtemp(prefix="reachlab-test-ca-")) / "certs"
        atexit.register(shutil.rmtree, folder.parent, True)
        make_certs(folder, "server", "127.0.0.1")
        _CA_CACHE.append(folder)
    return _CA_CACHE[0]


def run_init(conf: Path, users: str, **env: str) -> subprocess.CompletedProcess[str]:
    """init.sh as the container runs it, on ``conf``; its arguments just echo 'started'."""
    return subprocess.run(
        ["sh", str(INIT_SCRIPT), "echo", "started"],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MOSQUITTO_CONF": str(conf),
            "MOSQUITTO_ACL_SOURCE": str(ACL_FILE),
            "MOSQUITTO_USERS": users,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def broker_files(
    directory: Path, users: Mapping[str, str], *, require_certificate: bool = False
) -> BrokerFiles:
    """The repository's config with its paths moved under ``directory``; init.sh run on it."""
    ports = iter((find_free_port(), find_free_port()))
    plain, tls = next(ports), next(ports)
    auth = directory / "auth"
    data = directory / "data"
    certs = directory / "certs"
    data.mkdir()
    shutil.copytree(_test_ca(), certs)
    listeners = {"1883": plain, "8883": tls}
    lines = []
    for line in MOSQUITTO_CONF.read_text("utf-8").splitlines():
        name, _, value = line.partition(" ")
        if name == "listener":
            line = f"listener {listeners[value.strip()]} 127.0.0.1"
        elif name in ("password_file", "acl_file", "keyfile"):
            line = f"{name} {auth / Path(value.strip()).name}"
        elif name in ("cafile", "certfile"):
            line = f"{name} {certs / 'public' / Path(value.strip()).name}"
        elif name == "persistence_location":
            line = f"persistence_location {data}/"
        elif name == "require_certificate" and require_certificate:
            line = "require_certificate true"  # what docs/security.md says to change
        lines.append(line)
    conf = directory / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_init(
        conf,
        " ".join(f"{u}:{p}" for u, p in users.items()),
        MOSQUITTO_KEY_SOURCE=str(certs / "private" / "server.key"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("started"), "init.sh must exec its arguments"
    return BrokerFiles(directory, conf, plain, tls, dict(users), certs)


@pytest.fixture
def broker_dir() -> Iterator[Path]:
    # mosquitto started as root drops to the 'mosquitto' user: the folder must be traversable.
    with tempfile.TemporaryDirectory(prefix="reachlab-docker-test-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


@contextlib.contextmanager
def running(files: BrokerFiles) -> Iterator[BrokerFiles]:
    """mosquitto on ``files`` until the block ends; stopped by its pid."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    log_path = files.directory / "mosquitto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "-c", str(files.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            for port in (files.port, files.tls_port):
                if not wait_for_port("127.0.0.1", port):
                    pytest.fail("mosquitto did not start: " + log_path.read_text())
            yield files
        finally:
            stop(process)


@pytest.fixture
def real_broker(broker_dir: Path) -> Iterator[BrokerFiles]:
    """The stack's mosquitto config, ACL and init.sh, in a real mosquitto on free ports."""
    with running(broker_files(broker_dir, stack_users())) as files:
        yield files
