"""Broker URLs: one parser and one formatter shared by the agent and the controller."""

from __future__ import annotations

import pytest

from agent.settings import BrokerSettings as AgentBroker
from controller.mqtt import parse_broker_url as controller_parse
from shared.broker_url import format_broker_url, parse_broker_url
from shared.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://lab", "mqtt://lab:1883"),
        ("mqtts://u:secret@broker.lab", "mqtts://broker.lab:8883"),
        ("mqtt://[::1]:9000", "mqtt://[::1]:9000"),
    ],
)
def test_a_parsed_url_formats_back_without_its_credentials(url: str, shown: str) -> None:
    address = parse_broker_url(url)
    assert format_broker_url(address.host, address.port, address.tls) == shown
    assert controller_parse(url).url == shown
    agent = AgentBroker(host=address.host, port=address.port, tls=address.tls)
    assert agent.url == shown


def test_the_password_never_shows_in_a_repr() -> None:
    for settings in (
        parse_broker_url("mqtts://u:secret@lab"),
        controller_parse("mqtts://u:secret@lab"),
        AgentBroker(host="lab", port=1, password="secret"),
    ):
        assert "secret" not in repr(settings)


@pytest.mark.parametrize("bad", ["tcp://lab", "mqtt://", "mqtt://lab:0", "mqtt://lab/x"])
def test_agent_and_controller_refuse_the_same_urls(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid broker URL"):
        parse_broker_url(bad)
    with pytest.raises(ConfigError, match="invalid broker URL"):
        controller_parse(bad)
