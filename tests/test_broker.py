"""The private brokers of the demo and the tests: a mosquitto whose port is taken, and the
embedded amqtt broker's log."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.demo.broker import (
    LOOPBACK,
    AmqttBroker,
    BrokerStartError,
    MosquittoBroker,
    wait_for_port,
)

needs_mosquitto = pytest.mark.skipif(not MosquittoBroker.available(), reason="needs mosquitto")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process (here: a socket of this one) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@needs_mosquitto
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


@needs_mosquitto
def test_a_port_given_to_it_that_is_taken_is_a_clear_error(taken_port: int) -> None:
    broker = MosquittoBroker(port=taken_port)
    try:
        with pytest.raises(BrokerStartError, match=f"{taken_port}.*Address already in use"):
            broker.start()
        assert broker.process is None  # nothing left running
    finally:
        broker.close()


@needs_mosquitto
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


def test_the_embedded_broker_logs_to_its_file_and_not_to_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """What amqtt says, and what its event loop trips over, goes to the broker's log (the
    demo's logs/broker.log) as mosquitto's would, not to the embedding process's stderr."""
    log_file = tmp_path / "logs" / "broker.log"
    broker = AmqttBroker(log_file=log_file)
    broker.start()
    try:
        loop = broker._loop
        assert loop is not None
        done = threading.Event()

        def fail_in_the_loop() -> None:
            loop.call_exception_handler(
                {"message": "a task failed", "exception": RuntimeError("changed size")}
            )
            logging.getLogger("amqtt.broker").warning("messages not broadcasted")
            done.set()

        loop.call_soon_threadsafe(fail_in_the_loop)
        assert done.wait(10)
    finally:
        broker.stop()
    text = log_file.read_text(encoding="utf-8")
    assert "a task failed" in text and "RuntimeError: changed size" in text
    assert "messages not broadcasted" in text
    assert capfd.readouterr().err == ""
    assert logging.getLogger("amqtt").propagate  # the logger is as it was once stopped


def test_the_bridge_tests_relay_listens_below_the_ephemeral_range() -> None:
    """A port from the ephemeral range can be handed to another worker's outgoing
    connection while the relay is cut, and mending it then fails (seen in a suite run)."""
    from .tcp_relay import Relay

    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    relay = Relay((LOOPBACK, 1))
    try:
        assert relay.port < ephemeral_low
        relay.cut()
        relay.mend()  # listens again on the same port
        with socket.create_connection((LOOPBACK, relay.port), timeout=2):
            pass
    finally:
        relay.close()
