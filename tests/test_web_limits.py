"""What keeps the dashboard answering when anyone on the network can reach it.

The Host header is checked (DNS rebinding): a page elsewhere that rebinds its own
name to 127.0.0.1 makes the browser send ``Host: evil.example``; the dashboard
refuses it (421) and answers the loopback names, the address it listens on and each
``labctl web --allowed-host NAME``. The live streams are capped in total and per
client address: one over a cap gets 503 with ``Retry-After`` at once, pages and the
API still answer, and a stream that ends frees its slot (a real ``labctl web``
process, real connections from two client addresses).
"""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from controller.cli import app as labctl_app
from controller.db import open_database
from controller.demo.broker import find_free_port
from controller.web.hosts import allowed_hosts, host_name
from controller.web.streams import StreamLimiter, make_room
from shared.broker_url import broker_settings
from shared.protocol import Topics

from .cli_runner import CliRunner
from .waiting import wait_until
from .weblab import TIMEOUT, WebLab

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


def test_the_limiter_counts_streams_in_total_and_per_client() -> None:
    limiter = StreamLimiter(total=3, per_client=2)
    assert limiter.acquire("a") is None and limiter.acquire("a") is None
    assert limiter.acquire("a") == "a has 2 live streams open, its limit"
    assert limiter.acquire("b") is None
    assert limiter.acquire("c") == "the dashboard has 3 live streams open, its limit"
    limiter.release("a")
    assert limiter.acquire("c") is None
    assert limiter.open == 3


def test_a_stream_cap_the_open_file_limit_cannot_hold_is_one_line() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on open files here")
    assert make_room(hard) == (
        f"--max-streams {hard} needs about {hard + 100} open files, but this process may "
        f"open only {hard} (ulimit -n): lower --max-streams or raise the limit"
    )
    assert make_room(min(soft, hard) - 100) is None
    result = CliRunner().invoke(labctl_app, ["web", "--max-streams", str(hard)])
    assert result.exit_code == 2
    assert result.output.startswith(f"labctl: error: --max-streams {hard} needs about")
    result = CliRunner().invoke(labctl_app, ["web", "--max-streams-per-client", "0"])
    assert result.exit_code == 2
    assert "must be at least 1" in result.output


@contextlib.contextmanager
def live_stream(client: httpx.Client, url: str) -> Iterator[httpx.Response]:
    """An open stream, once the server has sent its snapshot."""
    with client.stream("GET", f"{url}/api/stream") as response:
        assert response.status_code == 200, response.read()
        # Held until the end: httpx closes the response when its line iterator is dropped.
        lines = response.iter_lines()
        while next(lines) != "event: snapshot":
            pass
        yield response


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_streams_over_the_caps_get_503_and_an_ended_stream_frees_its_slot(
    tmp_path: Path,
) -> None:
    # No broker: the dashboard serves without one (it says "broker unreachable").
    lab = WebLab(tmp_path, "mqtt://127.0.0.1:1", "limits", find_free_port())
    open_database(lab.env["LABCTL_DB"]).close()
    here = httpx.Client(timeout=10)  # from 127.0.0.1
    there = httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    try:
        lab.start("web", [
            sys.executable, "-m", "controller.cli", "web", "--port", str(lab.port),
            "--max-streams", "3", "--max-streams-per-client", "2",
        ])  # fmt: skip
        wait_until(lab.web_answers, TIMEOUT, "labctl web to answer")

        def viewers() -> int:
            count: int = here.get(f"{lab.url}/api/info").json()["viewers"]
            return count

        with contextlib.ExitStack() as streams:
            first = streams.enter_context(live_stream(here, lab.url))
            streams.enter_context(live_stream(here, lab.url))
            refused = here.get(f"{lab.url}/api/stream")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "10"
            assert refused.text.startswith(
                "labctl: error: 127.0.0.1 has 2 live streams open, its limit: try again in 10 s"
            )
            streams.enter_context(live_stream(there, lab.url))  # another client: its own cap
            full = there.get(f"{lab.url}/api/stream")
            assert full.status_code == 503
            assert "the dashboard has 3 live streams open, its limit" in full.text
            # Full of streams, the dashboard still answers its pages and its API.
            assert here.get(f"{lab.url}/rigs").status_code == 200
            assert viewers() == 3
            first.close()  # the page went away: its slot is free again
            wait_until(lambda: viewers() == 2, TIMEOUT, "the ended stream to be let go")
            streams.enter_context(live_stream(there, lab.url))
            assert viewers() == 3
        wait_until(lambda: viewers() == 0, TIMEOUT, "every ended stream to be let go")
        with live_stream(here, lab.url), live_stream(here, lab.url):
            assert viewers() == 2
    finally:
        here.close()
        there.close()
        lab.processes.stop_all()
