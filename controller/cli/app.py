"""The labctl typer app itself: global options, the shared state, and one-line errors.

Global options, each also an environment variable: ``--db`` (``LABCTL_DB``,
any SQLAlchemy URL; default a SQLite file in the user data directory),
``--broker`` (``LABCTL_BROKER``, ``mqtt://`` or ``mqtts://``), ``--prefix``
(``LABCTL_PREFIX``), ``--ca-file`` (``LABCTL_MQTT_CA_FILE``); the broker
credentials come from ``LABCTL_MQTT_USERNAME`` and ``LABCTL_MQTT_PASSWORD``.
Settings are read here and nowhere deeper.

A person's mistake or an unreachable service ends the command with one line
on stderr (``labctl: error: ...``) and exit status 2; a command that ran
but could not do all it was asked (a box did not start) exits with 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from shared.errors import ConfigError, ReachlabError
from shared.protocol import DEFAULT_PREFIX, Topics

if TYPE_CHECKING:  # the real imports are deferred to keep labctl quick to start
    from controller.db import Database
    from controller.mqtt import BrokerLink
    from shared.broker_url import BrokerSettings

log = logging.getLogger("labctl")

EXIT_FAILED = 1  # ran, but not everything asked for happened
EXIT_ERROR = 2  # a mistake, or a service that cannot be reached
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it and shared.entry exits


def fail(message: str) -> NoReturn:
    """End the command with one line on stderr."""
    typer.echo(f"labctl: error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)


def interrupted() -> NoReturn:
    """End the command on Ctrl-C: labctl's own line and exit 130, as at any other moment."""
    typer.echo("\nlabctl: interrupted (Ctrl-C)", err=True)
    raise typer.Exit(EXIT_INTERRUPTED)


# typer keeps its copy of click private and exports, of click's errors, only BadParameter:
# its parent is click's UsageError, the class of every mistake in a command line (should a
# typer release change that, every typer error is one line, and the tests of labctl's
# usage errors say so).
UsageError: type[Exception] = next(
    (c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"), typer.TyperException
)


def is_help_request(exc: BaseException) -> bool:
    """Plain ``labctl`` or ``labctl mouse``: click's "no arguments, so show the help".

    Told by its class name, as typer itself does, since typer does not export the class.
    """
    return type(exc).__name__ == "NoArgsIsHelpError"


def usage_error_line(exc: Any) -> str:
    """A mistake in the command line as one line: what is wrong, and where help is."""
    message = " ".join(exc.format_message().split())
    path = exc.ctx.command_path if exc.ctx is not None else "labctl"
    return f"{message} (see '{path} --help')"


class NamedArgument(TyperArgument):
    """An argument shown by its name in capitals (``MOUSE``, ``[MOUSE...]``), as click and
    argparse show them, not typer's ``{mouse}`` with the Python type (``<list[str]>``) beside."""

    def shown_name(self) -> str:
        name = self.metavar or (self.name or "").upper()
        return name if self.nargs == 1 or name.endswith("...") else f"{name}..."

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.shown_name()
        return [name if self.required else f"[{name}]"]

    def get_help_record(self, ctx: Any) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        return None if record is None else (self.shown_name(), record[1])


def name_parameters(command: Any) -> None:
    """Help that names values rather than Python types: every argument of ``command``
    (and of its subcommands) shows its name, every option without a metavar its name
    in capitals (``--notes NOTES``) or its choices."""
    for param in command.params:
        if isinstance(param, TyperArgument) and not isinstance(param, NamedArgument):
            param.__class__ = NamedArgument
            if param.metavar is None:
                param.metavar = (param.name or "").upper()
        elif isinstance(param, TyperOption) and param.metavar is None:
            if param.is_flag or param.count:
                continue
            described = param.type_descriptor
            param.metavar = (
                f"[{'|'.join(str(c) for c in described.choices or ())}]"
                if described.is_choice
                else (param.name or "value").upper()
            )
    for sub in getattr(command, "commands", {}).values():
        name_parameters(sub)


class LabctlGroup(TyperGroup):
    """Turns reachlab's errors, database and OS errors, and command-line mistakes, into
    one line and exit status 2; its commands' help names values, not Python types."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        name_parameters(self)

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        # Options of labctl itself (--db, --broker, ...) are parsed here.
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:
            if is_help_request(exc):
                raise  # plain `labctl` or `labctl mouse`: click shows the help
            fail(usage_error_line(exc))

    def invoke(self, ctx: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()
        except typer.Abort as exc:
            # click turns a Ctrl-C at a prompt into "Aborted!" and exit 1; Ctrl-D stays that.
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                interrupted()
            raise
        except UsageError as exc:  # a subcommand's arguments (click's is several lines)
            if is_help_request(exc):
                raise
            fail(usage_error_line(exc))
        except ReachlabError as exc:
            fail(str(exc))
        except SQLAlchemyError as exc:
            state = ctx.obj if isinstance(ctx.obj, State) else None
            where = f"database {state.db_url_display}" if state else "database"
            orig = getattr(exc, "orig", None)
            text = str(orig if orig is not None else exc).strip().splitlines()
            fail(f"{where}: {text[0] if text else type(exc).__name__}")
        except OSError as exc:
            target = f"{exc.filename}: " if exc.filename else ""
            fail(f"{target}{exc.strerror or exc}")


app = typer.Typer(
    cls=LabctlGroup,
    name="labctl",
    help="Run a reach-task training lab: assign mice to boxes, start cohorts, watch the rigs, "
    "collect and export the per-mouse JSON files.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# ---------------------------------------------------------------- global state


@dataclass
class State:
    """The global options; the database and broker settings are made on first use."""

    db_url: str | None
    broker_url: str
    prefix: str
    ca_file: str | None
    username: str | None
    password: str | None
    _db: Database | None = field(default=None, repr=False)
    _broker: BrokerSettings | None = field(default=None, repr=False)

    @property
    def db_url_display(self) -> str:
        from controller.db import default_database_url, display_url

        try:
            return display_url(self.db_url or default_database_url())
        except Exception:  # an unparseable URL: show it as given
            return str(self.db_url)

    def db(self) -> Database:
        if self._db is None:
            from controller.db import open_database

            self._db = open_database(self.db_url)
        return self._db

    def broker(self) -> BrokerSettings:
        from shared.broker_url import broker_settings_from_environ

        # LABCTL_MQTT_* (user name, password, a 0600 credentials file, certificates): the one
        # settings type the agent uses too; a credentials file others can read is warned
        # about, once per command.
        if self._broker is None:
            self._broker = broker_settings_from_environ(
                self.broker_url,
                os.environ,
                "LABCTL_",
                warn=warn,
                username=self.username,
                password=self.password,
                ca_file=self.ca_file,
            )
        return self._broker

    def topics(self) -> Topics:
        try:
            return Topics(self.prefix)
        except ValueError as exc:
            raise ConfigError(f"--prefix: {exc}") from None

    @contextmanager
    def link(
        self, *, events: bool = False, timeout: float = 5.0, check_lab: bool = True
    ) -> Iterator[BrokerLink]:
        """The broker link; with ``check_lab`` (every command that sends to rigs) it refuses
        when the online collectors write to another database than labctl's."""
        from controller.lab import database_identity
        from controller.mqtt import BrokerLink

        lab = None
        if check_lab:
            db = self.db()
            lab = (db.url, database_identity(db))
        with BrokerLink(
            self.broker(), self.topics(), events=events, timeout=timeout, lab=lab
        ) as link:
            yield link

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def state_of(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


@app.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="LABCTL_DB",
            metavar="URL",
            help="database: any SQLAlchemy URL (default: the one `labctl lab use` set, else "
            "reachlab.db in the user data directory)",
            show_default=False,
        ),
    ] = None,
    broker: Annotated[
        str,
        typer.Option(
            "--broker",
            envvar="LABCTL_BROKER",
            metavar="URL",
            help="MQTT broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (no password: "
            "LABCTL_MQTT_PASSWORD)",
        ),
    ] = "mqtt://localhost:1883",
    prefix: Annotated[
        str,
        typer.Option(
            "--prefix", envvar="LABCTL_PREFIX", metavar="PREFIX", help="MQTT topic prefix"
        ),
    ] = DEFAULT_PREFIX,
    ca_file: Annotated[
        str | None,
        typer.Option(
            "--ca-file",
            envvar="LABCTL_MQTT_CA_FILE",
            metavar="FILE",
            help="CA certificate for an mqtts:// broker",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from shared.broker_url import refuse_password_in_option

    try:
        if _on_command_line(ctx, "broker"):
            refuse_password_in_option(
                broker,
                "--broker",
                "give the URL without it and set LABCTL_MQTT_USERNAME and LABCTL_MQTT_PASSWORD",
            )
        if db and _on_command_line(ctx, "db"):
            refuse_password_in_option(
                db,
                "--db",
                "give the URL without it and set LABCTL_DB to the whole URL, or keep the "
                "password in ~/.pgpass (PostgreSQL reads it there)",
            )
    except ConfigError as exc:
        fail(str(exc))
    db_url = db.strip() if db and db.strip() else None
    if db_url is None:
        from controller.cli.labfile import configured_database

        db_url = configured_database()  # `labctl lab use`: before the default SQLite file
    state = State(
        db_url=db_url,
        broker_url=broker,
        prefix=prefix,
        ca_file=ca_file,
        # Credentials only from the environment: options would show in `ps`.
        username=os.environ.get("LABCTL_MQTT_USERNAME") or None,
        password=os.environ.get("LABCTL_MQTT_PASSWORD") or None,
    )
    ctx.obj = state
    ctx.call_on_close(state.close)


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed (not from its environment variable or default):
    only the command line is readable by everyone on the machine (``ps``)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped into a file or another program, a table should not be squeezed into 80 columns.
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def say(message: str) -> None:
    typer.echo(message)


def warn(message: str) -> None:
    """A warning on stderr (``labctl: warning: ...``); the command goes on."""
    typer.echo(f"labctl: warning: {message}", err=True)


def confirm(question: str) -> bool:
    """Yes or no from the person at the terminal, no by default; asked until answered."""
    while True:
        answer = _ask(f"{question} [y/N]: ").strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
        warn(f"answer y or n, not {answer!r}")


def ask_number(question: str) -> float:
    """A number from the person at the terminal; asked again until it is one."""
    while True:
        answer = _ask(f"{question}: ")
        try:
            return float(answer)
        except ValueError:
            warn(f"{answer.strip()!r} is not a number")


def _ask(prompt: str) -> str:
    # Not typer.prompt: its input() can miss a Ctrl-C that lands just as the prompt is
    # written, and then waits for a line nobody types (shared.prompt says how).
    from shared.prompt import read_line

    try:
        return read_line(prompt)
    except EOFError:
        raise typer.Abort() from None  # Ctrl-D: "Aborted!" and exit 1, as click's prompts


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def when(t: float) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM``."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
