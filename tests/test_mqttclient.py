"""The tests' MQTT client (tests/mqttclient.py) on the test broker: publish, collect, clear."""

from __future__ import annotations

import contextlib
import queue

import pytest

from shared.protocol import Topics

from .mqttclient import MqttClient

pytestmark = pytest.mark.broker


def test_a_retained_message_reaches_a_late_subscriber_until_it_is_cleared(
    broker_url: str, topics: Topics
) -> None:
    topic = topics.status("9")
    with MqttClient.at(broker_url) as box:
        box.publish(topic, b"idle", retain=True)
    with MqttClient.at(broker_url) as late:
        assert late.subscribe(topic) == [True]
        assert late.until(topic, b"idle")[-1] == (topic, b"idle")
        late.clear_retained(topic)
    with MqttClient.at(broker_url) as later:
        assert later.subscribe(topic) == [True]
        heard = []  # (amqtt also hands a new subscriber other topics' retained messages)
        with contextlib.suppress(queue.Empty):
            while True:
                heard += later.collect(1, timeout=1)
        assert topic not in [t for t, _ in heard], "nothing retained any more"


def test_a_client_the_broker_cannot_be_reached_for_is_not_accepted() -> None:
    from controller.demo.broker import find_free_port

    client = MqttClient(find_free_port())
    assert not client.accepted
    assert isinstance(client.connack, OSError)
