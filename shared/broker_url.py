"""Broker URLs (``mqtt://host[:port]``, ``mqtts://[user[:password]@]host[:port]``), parsed once
for both the agent and the controller so both accept and refuse exactly the same URLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from shared.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    """What a broker URL says: scheme, host, port and optional credentials."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line


def format_broker_url(host: str, port: int, tls: bool) -> str:
    """The URL of a broker, without credentials: safe for a log line."""
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address needs brackets
    return f"{'mqtts' if tls else 'mqtt'}://{shown}:{port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """The address in ``url``; :class:`ConfigError` naming the URL and what is wrong with it."""
    hint = "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"invalid broker URL {url!r}: bad port; {hint}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigError(f"invalid broker URL {url!r}: {hint}")
    if not parts.hostname:
        raise ConfigError(f"invalid broker URL {url!r}: no host; {hint}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"invalid broker URL {url!r}: unexpected path or query; {hint}")
    if port == 0:
        raise ConfigError(f"invalid broker URL {url!r}: port 0; {hint}")
    return BrokerAddress(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
