"""Starting a private mosquitto (the demo's and the tests' broker) when its port is taken."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from controller.broker import LOOPBACK, BrokerStartError, MosquittoBroker, wait_for_port

pytestmark = pytest.mark.skipif(not MosquittoBroker.available(), reason="needs mosquitto")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process (here: a socket of this one) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_picked_for_it_but_taken_meanwhile_makes_it_take_another(taken_port: int) -> None:
    broker = MosquittoBroker()
    broker.port, broker.url = taken_port, f"mqtt://{LOOPBACK}:{taken_port}"  # lost the race
    broker.start()
    try:
        assert broker.port != taken_port and broker.url.endswith(f":{broker.port}")
        assert broker.process is not None and broker.process.poll() is None
        assert wait_for_port(LOOPBACK, broker.port, 5)
    finally:
        broker.close()


def test_a_port_given_to_it_that_is_taken_is_a_clear_error(taken_port: int) -> None:
    broker = MosquittoBroker(port=taken_port)
    try:
        with pytest.raises(BrokerStartError, match=f"{taken_port}.*Address already in use"):
            broker.start()
        assert broker.process is None  # nothing left running
    finally:
        broker.close()


def test_a_restarted_broker_keeps_its_port() -> None:
    broker = MosquittoBroker()
    try:
        broker.start()
        port, first = broker.port, broker.pid
        broker.stop()
        broker.start()
        assert broker.port == port and broker.pid != first
        assert wait_for_port(LOOPBACK, port, 5)
    finally:
        broker.close()
