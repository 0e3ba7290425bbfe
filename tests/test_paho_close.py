"""Closing a link survives paho's loop_stop race (paho-mqtt issue 872, open): after
disconnect() paho's network thread ends by itself, and when it ends between loop_stop's
look at it and its join, loop_stop raises AttributeError. ``labctl status`` failed so in
2 of 12 runs of a fault test; here paho is made to lose that race every time."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import pytest

from agent.mqtt import MqttLink
from controller.transport import Transport
from shared.broker_url import BrokerSettings

pytestmark = pytest.mark.broker


@pytest.fixture
def thread_gone_first(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """paho's loop_stop as it behaves when the thread has already gone: it stops the
    thread, then fails on the reference the thread cleared. Returns the calls made."""
    calls: list[int] = []
    original = paho.Client.loop_stop

    def losing_the_race(self: paho.Client) -> Any:
        calls.append(1)
        original(self)
        raise AttributeError("'NoneType' object has no attribute 'join'")

    monkeypatch.setattr(paho.Client, "loop_stop", losing_the_race)
    return calls


def test_the_controllers_transport_closes(
    broker: BrokerSettings, thread_gone_first: list[int]
) -> None:
    transport = Transport(broker, client_id=f"close-{uuid.uuid4().hex[:6]}")
    transport.connect(10)
    transport.close()  # no AttributeError
    assert thread_gone_first == [1]


class _Quiet:
    def link_connected(self) -> None: ...

    def link_disconnected(self, reason: str) -> None: ...

    def link_message(self, topic: str, payload: bytes, retained: bool) -> None: ...

    def link_acked(self, mids: list[int]) -> None: ...


def test_the_agents_link_closes(broker: BrokerSettings, thread_gone_first: list[int]) -> None:
    def run_now(call: Callable[[], None]) -> None:
        call()

    link = MqttLink(
        broker, client_id=f"close-{uuid.uuid4().hex[:6]}", will=("reachlab-test/will", b"x"),
        subscriptions=[], dispatch=run_now, listener=_Quiet(),
    )  # fmt: skip
    link.start()
    link.close()  # no AttributeError
    assert thread_gone_first == [1]
