"""The dashboard answers only its own names (DNS rebinding): the Host header is checked.

A page elsewhere that rebinds its own name to 127.0.0.1 makes the browser send
``Host: evil.example``; the dashboard refuses it (421) and answers the loopback names,
the address it listens on and each ``labctl web --allowed-host NAME``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.db import open_database
from controller.web.hosts import allowed_hosts, host_name
from shared.broker_url import broker_settings
from shared.protocol import Topics

pytest.importorskip("starlette", reason="the web extra is not installed")

from starlette.testclient import TestClient

from controller.web.app import create_app


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8080", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("Lab-PC.local:80", "lab-pc.local"),
    ],
)
def test_the_host_name_is_read_without_its_port(header: str, name: str) -> None:
    assert host_name(header) == name


def test_the_allowed_names_are_loopback_the_listen_address_and_the_options() -> None:
    assert allowed_hosts("127.0.0.1") == ("localhost", "127.0.0.1", "::1")
    assert "10.0.0.5" in allowed_hosts("10.0.0.5")
    assert allowed_hosts("0.0.0.0", ["labpc:8080"])[-1] == "labpc"
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0")


def test_the_dashboard_refuses_a_request_for_another_host(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        application = create_app(
            db, broker_settings("mqtt://127.0.0.1:1"), Topics("t"), allowed_hosts=("localhost",)
        )
        with TestClient(application, base_url="http://localhost") as client:
            assert client.get("/api/info").status_code == 200
            rebound = client.get("/api/info", headers={"Host": "evil.example:8080"})
            assert rebound.status_code == 421
            assert "--allowed-host" in rebound.text
        labs = create_app(
            db, broker_settings("mqtt://127.0.0.1:1"), Topics("t"),
            allowed_hosts=allowed_hosts("0.0.0.0", ["labpc"]),
        )  # fmt: skip
        with TestClient(labs, base_url="http://labpc:8080") as client:
            assert client.get("/api/info").status_code == 200
    finally:
        db.close()
