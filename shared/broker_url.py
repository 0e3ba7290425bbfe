"""How to reach the broker: one URL parser and one settings type for both sides.

:class:`BrokerSettings`, so the agent and the controller accept and refuse exactly the
same settings.

A URL is ``mqtt://host[:port]`` or ``mqtts://[user[:password]@]host[:port]``. The
credentials come, best first, from what the caller passes (its environment:
``LABCTL_MQTT_*`` for labctl, ``LABAGENT_MQTT_*`` for the agent), from a credentials
file, then from the URL. Secrets never belong on a command line (``ps`` shows it):
the environment or a file only readable by its owner (mode 0600). A credentials
file that others can read still works but is warned about in one line.

Nothing here reads ``os.environ`` by itself: :func:`broker_settings_from_environ`
takes the mapping and the prefix from the entry point (the edge) that calls it.
"""

from __future__ import annotations

import logging
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shared.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
DEFAULT_KEEPALIVE_S = 15

Warn = Callable[[str], None]
"""Where a one-line warning goes (labctl prints ``labctl: warning: ...``)."""

log = logging.getLogger("reachlab.broker")


@dataclass(frozen=True)
class BrokerAddress:
    """What a broker URL says: scheme, host, port and optional credentials."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect: address, credentials, TLS files; ``url`` never shows the
    password. Validated in ``__post_init__``: certificate files need ``mqtts://`` and exist,
    a client key needs its certificate."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = DEFAULT_KEEPALIVE_S

    def __post_init__(self) -> None:
        files = (
            ("CA certificate file", self.ca_file),
            ("client certificate file", self.cert_file),
            ("client key file", self.key_file),
        )
        for what, path in files:
            if path is not None and not path.is_file():
                raise ConfigError(f"{what} {path} does not exist")
        if not self.tls and any(path is not None for _, path in files):
            raise ConfigError(
                f"certificate files need a TLS broker URL (mqtts://), but the broker is {self.url}"
            )
        if self.key_file is not None and self.cert_file is None:
            raise ConfigError("a client key file needs a client certificate file")
        if not 5 <= self.keepalive <= 3600:
            raise ConfigError(f"keepalive must be between 5 and 3600 s, got {self.keepalive}")
        if self.password is not None and self.username is None:
            raise ConfigError(f"a broker password without a user name for {self.url}")

    @property
    def url(self) -> str:
        return format_broker_url(self.host, self.port, self.tls)


@dataclass(frozen=True)
class Credentials:
    """A user name and password read from a credentials file."""

    username: str | None
    password: str | None = field(default=None, repr=False)


def format_broker_url(host: str, port: int, tls: bool) -> str:
    """The URL of a broker, without credentials: safe for a log line."""
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address needs brackets
    return f"{'mqtts' if tls else 'mqtt'}://{shown}:{port}"


#: The password of a URL's ``user:password@`` part (any scheme: broker and database URLs).
_URL_PASSWORD = re.compile(r"(?P<head>//[^/@:\s]*:)[^@/\s]*@")


def redact_url(url: str) -> str:
    """``url`` with its password shown as ``***``: for every error line and log line."""
    return _URL_PASSWORD.sub(r"\g<head>***@", url)


def refuse_password_in_option(url: str, option: str, fix: str) -> None:
    """:class:`ConfigError` when ``url``, given as the command-line ``option``, holds a
    password: the command line of a running process is readable by anyone (``ps``).
    ``fix`` names the environment variable or file that takes it instead."""
    if redact_url(url) != url:
        raise ConfigError(
            f"{option} {redact_url(url)}: a password in a URL on the command line shows in "
            f"`ps` to everyone on this machine; {fix}"
        )


def parse_broker_url(url: str) -> BrokerAddress:
    """The address in ``url``; :class:`ConfigError` naming the URL and what is wrong with it."""
    hint = "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
    url_shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"invalid broker URL {url_shown!r}: bad port; {hint}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigError(f"invalid broker URL {url_shown!r}: {hint}")
    if not parts.hostname:
        raise ConfigError(f"invalid broker URL {url_shown!r}: no host; {hint}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"invalid broker URL {url_shown!r}: unexpected path or query; {hint}")
    if port == 0:
        raise ConfigError(f"invalid broker URL {url_shown!r}: port 0; {hint}")
    return BrokerAddress(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def warn_if_readable_by_others(path: Path, what: str, warn: Warn | None = None) -> bool:
    """Warn (one line) when ``path`` may be read by its group or by anyone; True if so."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return False
    message = (
        f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):04o}); "
        f"run: chmod 600 {path}"
    )
    (warn or log.warning)(message)
    return True


def read_settings_text(file: Path, what: str) -> str:
    """The text of a settings file (credentials, a rig config file); a missing or
    unreadable one is a one-line :class:`ConfigError` naming ``what`` and the file."""
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {file}: cannot read it ({exc})") from None


def read_credentials_file(path: str | Path, warn: Warn | None = None) -> Credentials:
    """Read ``username = ...`` and ``password = ...`` lines (``#`` starts a comment line).

    A file readable by others is used but warned about; a missing or unreadable file,
    an unknown key or a line that is not ``key = value`` is a :class:`ConfigError`.
    """
    file = Path(path).expanduser()
    text = read_settings_text(file, "credentials file")
    warn_if_readable_by_others(file, "credentials file", warn)
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("username", "password"):
            # The line may hold a secret: name its number, never its text.
            raise ConfigError(
                f"credentials file {file} line {number}: expected 'username = NAME' or "
                "'password = SECRET'"
            )
        values[key] = value.strip()
    return Credentials(
        username=values.get("username") or None, password=values.get("password") or None
    )


def _path(value: str | Path | None) -> Path | None:
    if value is None or value == "":
        return None
    return Path(value).expanduser()


def broker_settings(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    credentials_file: str | Path | None = None,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    keepalive: int = DEFAULT_KEEPALIVE_S,
    warn: Warn | None = None,
) -> BrokerSettings:
    """Validated settings from a URL and what the caller found; :class:`ConfigError` if bad.

    A credential given here wins over the credentials file, which wins over the URL.
    """
    address = parse_broker_url(url)
    from_file = Credentials(None, None)
    if credentials_file not in (None, ""):
        assert credentials_file is not None
        from_file = read_credentials_file(credentials_file, warn)
    return BrokerSettings(
        host=address.host,
        port=address.port,
        tls=address.tls,
        username=username or from_file.username or address.username,
        password=password or from_file.password or address.password,
        ca_file=_path(ca_file),
        cert_file=_path(cert_file),
        key_file=_path(key_file),
        keepalive=keepalive,
    )


#: setting -> the environment variable's name after its prefix (``LABCTL_``, ``LABAGENT_``)
ENVIRONMENT_NAMES = {
    "username": "MQTT_USERNAME",
    "password": "MQTT_PASSWORD",
    "credentials_file": "MQTT_CREDENTIALS_FILE",
    "ca_file": "MQTT_CA_FILE",
    "cert_file": "MQTT_CERT_FILE",
    "key_file": "MQTT_KEY_FILE",
}


def broker_settings_from_environ(
    url: str,
    environ: Mapping[str, str],
    prefix: str,
    *,
    warn: Warn | None = None,
    keepalive: int = DEFAULT_KEEPALIVE_S,
    **given: str | Path | None,
) -> BrokerSettings:
    """:func:`broker_settings` with each unset value taken from ``{prefix}MQTT_*`` in
    ``environ`` (see :data:`ENVIRONMENT_NAMES`); ``given`` (e.g. ``ca_file`` from an option)
    wins over the environment. Password and user name are never options."""
    unknown = set(given) - set(ENVIRONMENT_NAMES)
    if unknown:
        raise TypeError(f"unknown broker settings: {sorted(unknown)}")
    values: dict[str, str | None] = {}
    for name, suffix in ENVIRONMENT_NAMES.items():
        value = given.get(name)
        if value in (None, ""):
            value = environ.get(prefix + suffix) or None
        values[name] = None if value is None else str(value)
    return broker_settings(
        url,
        username=values["username"],
        password=values["password"],
        credentials_file=values["credentials_file"],
        ca_file=values["ca_file"],
        cert_file=values["cert_file"],
        key_file=values["key_file"],
        keepalive=keepalive,
        warn=warn,
    )
