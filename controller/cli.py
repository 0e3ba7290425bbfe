"""``labctl``: the lab's command line (typer). Settings are read here and nowhere deeper.

Global options, each also an environment variable: ``--db`` (``LABCTL_DB``,
any SQLAlchemy URL; default a SQLite file in the user data directory),
``--broker`` (``LABCTL_BROKER``, ``mqtt://`` or ``mqtts://``), ``--prefix``
(``LABCTL_PREFIX``), ``--ca-file`` (``LABCTL_MQTT_CA_FILE``); the broker
credentials come from ``LABCTL_MQTT_USERNAME`` and ``LABCTL_MQTT_PASSWORD``.

A person's mistake or an unreachable service ends the command with one line
on stderr (``labctl: error: ...``) and exit status 2; a command that ran
but could not do all it was asked (a box did not start) exits with 1.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from shared.config import generate_config, parse_meta, read_config
from shared.errors import ConfigError, ReachlabError
from shared.protocol import DEFAULT_PREFIX, Topics

if TYPE_CHECKING:  # the real imports are deferred to keep labctl quick to start
    from controller.db import Database
    from controller.mqtt import BrokerSettings, LabLink

log = logging.getLogger("labctl")

EXIT_FAILED = 1  # ran, but not everything asked for happened
EXIT_ERROR = 2  # a mistake, or a service that cannot be reached


def fail(message: str) -> NoReturn:
    """End the command with one line on stderr."""
    typer.echo(f"labctl: error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)


def usage_error_line(exc: UsageError) -> str:
    """A mistake in the command line as one line: what is wrong, and where help is."""
    message = " ".join(exc.format_message().split())
    path = exc.ctx.command_path if exc.ctx is not None else "labctl"
    return f"{message} (see '{path} --help')"


class LabctlGroup(TyperGroup):
    """Turns reachlab's errors, database and OS errors, and command-line mistakes, into
    one line and exit status 2."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        # Options of labctl itself (--db, --broker, ...) are parsed here.
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NoArgsIsHelpError:
            raise  # plain `labctl` or `labctl mouse`: click shows the help
        except UsageError as exc:
            fail(usage_error_line(exc))

    def invoke(self, ctx: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:  # a subcommand's arguments (click's is several lines)
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
mouse_app = typer.Typer(cls=LabctlGroup, help="Add, list and show mice.", no_args_is_help=True)
cohort_app = typer.Typer(
    cls=LabctlGroup, help="Groups of mice that are started together.", no_args_is_help=True
)
config_app = typer.Typer(cls=LabctlGroup, help="Task configuration files.", no_args_is_help=True)
app.add_typer(mouse_app, name="mouse")
app.add_typer(cohort_app, name="cohort")
app.add_typer(config_app, name="config")


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
        from controller.mqtt import parse_broker_url

        return parse_broker_url(
            self.broker_url, username=self.username, password=self.password, ca_file=self.ca_file
        )

    def topics(self) -> Topics:
        try:
            return Topics(self.prefix)
        except ValueError as exc:
            raise ConfigError(f"--prefix: {exc}") from None

    @contextmanager
    def link(self, *, events: bool = False, timeout: float = 5.0) -> Iterator[LabLink]:
        from controller.mqtt import LabLink

        with LabLink(self.broker(), self.topics(), events=events, timeout=timeout) as link:
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
            help="database: any SQLAlchemy URL (default: reachlab.db in the user data directory)",
            show_default=False,
        ),
    ] = None,
    broker: Annotated[
        str,
        typer.Option(
            "--broker",
            envvar="LABCTL_BROKER",
            metavar="URL",
            help="MQTT broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT]",
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
    state = State(
        db_url=db.strip() if db and db.strip() else None,
        broker_url=broker,
        prefix=prefix,
        ca_file=ca_file,
        # Credentials only from the environment: options would show in `ps`.
        username=os.environ.get("LABCTL_MQTT_USERNAME") or None,
        password=os.environ.get("LABCTL_MQTT_PASSWORD") or None,
    )
    ctx.obj = state
    ctx.call_on_close(state.close)


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped into a file or another program, a table should not be squeezed into 80 columns.
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def say(message: str) -> None:
    typer.echo(message)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


# ---------------------------------------------------------------- assign


@app.command()
def assign(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(help="mouse id (created if new)")],
    box: Annotated[str, typer.Option("--box", "-b", help="box id", show_default=False)],
    move: Annotated[
        bool, typer.Option("--move", help="move the mouse off its current box")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="take the mouse already on BOX off it")
    ] = False,
) -> None:
    """Put a mouse on a box (one mouse per box, one box per mouse; the history is kept)."""
    from controller.lab import assign as assign_mouse

    db = state_of(ctx).db()
    with db.session() as session:
        result = assign_mouse(session, mouse, box, move=move, replace=replace)
    if result.created_mouse:
        say(f"created mouse {mouse}")
    if result.created_box:
        say(f"new box {box}")
    if result.already:
        say(f"{mouse} is already on box {box}")
        return
    if result.replaced:
        say(f"took {result.replaced} off box {box}")
    if result.moved_from:
        say(f"moved {mouse} from box {result.moved_from} to box {box}")
    else:
        say(f"assigned {mouse} to box {box}")


@app.command()
def unassign(ctx: typer.Context, mouse: Annotated[str, typer.Argument(help="mouse id")]) -> None:
    """Take a mouse off its box."""
    from controller.lab import unassign as unassign_mouse

    with state_of(ctx).db().session() as session:
        box = unassign_mouse(session, mouse)
    say(f"took {mouse} off box {box}")


# ---------------------------------------------------------------- mice


@mouse_app.command("add")
def mouse_add(
    ctx: typer.Context,
    mice: Annotated[list[str], typer.Argument(help="mouse ids")],
    notes: Annotated[str, typer.Option("--notes", help="a note kept with each mouse")] = "",
) -> None:
    """Add mice to the lab."""
    from controller.lab import add_mouse

    with state_of(ctx).db().session() as session:
        results = [(m, add_mouse(session, m, notes)[1]) for m in mice]
    for mouse_id, created in results:
        say(f"created mouse {mouse_id}" if created else f"mouse {mouse_id} already exists")


@mouse_app.command("list")
def mouse_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every mouse: its box, cohorts and stored sessions."""
    from dataclasses import asdict

    from rich.table import Table

    from controller.lab import mouse_summaries

    with state_of(ctx).db().reader() as session:
        rows = mouse_summaries(session)
    if as_json:
        print_json([asdict(r) for r in rows])
        return
    if not rows:
        say("no mice yet: `labctl assign MOUSE --box BOX` or `labctl mouse add MOUSE`")
        return
    table = Table()
    for column in ("mouse", "box", "cohorts", "sessions", "last session", "notes"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.mouse, r.box or "-", ", ".join(r.cohorts) or "-", str(r.sessions),
            r.last_date or "-", r.notes,
        )  # fmt: skip
    console().print(table)


@mouse_app.command("show")
def mouse_show(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(help="mouse id")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """One mouse: box, cohorts, assignment history and sessions."""
    from rich.table import Table

    from controller.lab import assignment_history, mouse_summaries, session_rows

    with state_of(ctx).db().reader() as session:
        (summary,) = mouse_summaries(session, [mouse])
        history: list[dict[str, Any]] = [
            {"box": a.box_id, "from": a.started_at, "until": a.ended_at}
            for a in assignment_history(session, mouse)
        ]
        sessions: list[dict[str, Any]] = [
            {
                "session_id": s.session_id,
                "date": s.date,
                "box": s.box,
                "origin": s.origin,
                "status": s.status,
                "complete": s.complete,
                "trials": s.trial_count,
                "rewards": s.reward_count,
                "problem": s.problem,
            }
            for s in session_rows(session, mouse)
        ]
    if as_json:
        print_json(
            {
                "mouse": summary.mouse,
                "box": summary.box,
                "cohorts": summary.cohorts,
                "notes": summary.notes,
                "assignments": history,
                "sessions": sessions,
            }
        )
        return
    say(
        f"mouse {summary.mouse}: box {summary.box or '-'}, "
        f"cohorts {', '.join(summary.cohorts) or '-'}"
    )
    if summary.notes:
        say(f"notes: {summary.notes}")
    for a in history:
        until = _when(a["until"]) if a["until"] else "now"
        say(f"  on box {a['box']} from {_when(a['from'])} until {until}")
    table = Table(title=f"{len(sessions)} session(s)", title_justify="left")
    for column in ("#", "date", "box", "status", "trials", "rewards", "origin", "state"):
        table.add_column(column)
    for number, s in enumerate(sessions, 1):
        collected = "stored" if s["complete"] else (s["problem"] or "collecting")
        table.add_row(
            str(number), s["date"] or "-", s["box"] or "-", s["status"] or "-",
            str(s["trials"]), str(s["rewards"]), s["origin"], collected,
        )  # fmt: skip
    console().print(table)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


# ---------------------------------------------------------------- cohorts


@cohort_app.command("create")
def cohort_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="cohort name")],
    mice: Annotated[list[str], typer.Argument(help="mouse ids (created if new)")],
) -> None:
    """Create a cohort of mice."""
    from controller.lab import create_cohort

    with state_of(ctx).db().session() as session:
        created = create_cohort(session, name, mice)
    for mouse_id in created:
        say(f"created mouse {mouse_id}")
    say(f"created cohort {name}: {' '.join(dict.fromkeys(mice))}")


@cohort_app.command("add")
def cohort_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="cohort name")],
    mice: Annotated[list[str], typer.Argument(help="mouse ids (created if new)")],
) -> None:
    """Add mice to a cohort."""
    from controller.lab import add_to_cohort

    with state_of(ctx).db().session() as session:
        created = add_to_cohort(session, name, mice)
    for mouse_id in created:
        say(f"created mouse {mouse_id}")
    say(f"cohort {name}: added {' '.join(mice)}")


@cohort_app.command("remove")
def cohort_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="cohort name")],
    mice: Annotated[list[str], typer.Argument(help="mouse ids")],
) -> None:
    """Take mice out of a cohort (the mice and their data stay)."""
    from controller.lab import remove_from_cohort

    with state_of(ctx).db().session() as session:
        remove_from_cohort(session, name, mice)
    say(f"cohort {name}: removed {' '.join(mice)}")


@cohort_app.command("list")
def cohort_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every cohort and its mice."""
    from controller.lab import list_cohorts

    with state_of(ctx).db().reader() as session:
        cohorts = list_cohorts(session)
    if as_json:
        print_json([{"cohort": name, "mice": mice} for name, mice in cohorts])
        return
    if not cohorts:
        say("no cohorts yet: `labctl cohort create NAME MOUSE...`")
    for name, mice in cohorts:
        say(f"{name}: {' '.join(mice) or '(no mice)'}")


@cohort_app.command("show")
def cohort_show(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="cohort name")]
) -> None:
    """A cohort's mice with their boxes."""
    from controller.lab import box_of, cohort_members

    with state_of(ctx).db().reader() as session:
        rows = [(m, box_of(session, m)) for m in cohort_members(session, name)]
    say(f"cohort {name}: {len(rows)} mice")
    for mouse_id, box in rows:
        say(f"  {mouse_id}  box {box or '- (not assigned)'}")


# ---------------------------------------------------------------- start and stop


def _select_mice(
    ctx: typer.Context, mice: list[str] | None, cohort: str | None, every: bool, what: str
) -> list[str]:
    from controller.lab import assigned_mice, cohort_members, get_mouse

    chosen = sum((bool(mice), cohort is not None, every))
    if chosen != 1:
        fail(f"give the mice to {what}: MOUSE..., --cohort NAME or --all (exactly one of them)")
    with state_of(ctx).db().reader() as session:
        if cohort is not None:
            selected = cohort_members(session, cohort)
            if not selected:
                fail(f"cohort {cohort} has no mice")
        elif every:
            selected = assigned_mice(session)
            if not selected:
                fail("no mouse is assigned to a box: `labctl assign MOUSE --box BOX`")
        else:
            selected = list(dict.fromkeys(mice or []))
        for mouse_id in selected:
            get_mouse(session, mouse_id)  # unknown ones end the command before anything is sent
    return selected


def _outcome_table(outcomes: list[Any], verb: str) -> Any:
    from rich.table import Table

    table = Table()
    for column in ("mouse", "box", verb, "session", "why not"):
        table.add_column(column)
    for o in outcomes:
        done = "[green]yes[/green]" if o.ok else "[red]no[/red]"
        table.add_row(o.mouse or "-", o.box or "-", done, o.session_id or "-", o.reason or "")
    return table


@app.command()
def start(
    ctx: typer.Context,
    mice: Annotated[list[str] | None, typer.Argument(help="mouse ids", show_default=False)] = None,
    cohort: Annotated[
        str | None,
        typer.Option("--cohort", help="start every mouse of a cohort", show_default=False),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="start every assigned mouse")] = False,
    duration: Annotated[
        float | None,
        typer.Option("--duration", metavar="S", help="session length in s", show_default=False),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", metavar="FILE", help="task config file (.ini)", show_default=False
        ),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option("--meta", metavar="KEY=VALUE", help="session metadata, repeatable"),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="wait for replies")
    ] = 10.0,
) -> None:
    """Start sessions: every mouse on its assigned box, all at the same moment."""
    from controller.rigs import start_sessions

    state = state_of(ctx)
    if config_file is not None and not config_file.expanduser().is_file():
        fail(f"--config: no such file {config_file}")
    config = read_config(config_file)
    if duration is not None:
        if duration <= 0:
            fail(f"--duration must be positive, got {duration:g}")
        config = config.replace(duration=duration)
    metadata = parse_meta(meta)
    selected = _select_mice(ctx, mice, cohort, every, "start")
    db = state.db()
    with state.link() as link:
        outcomes = start_sessions(db, link, selected, config, metadata, timeout=timeout)
    console().print(_outcome_table(outcomes, "started"))
    failed = [o for o in outcomes if not o.ok]
    started = len(outcomes) - len(failed)
    say(f"{started} of {len(outcomes)} session(s) started")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def stop(
    ctx: typer.Context,
    mice: Annotated[list[str] | None, typer.Argument(help="mouse ids", show_default=False)] = None,
    box: Annotated[
        list[str] | None,
        typer.Option("--box", "-b", help="a box id, repeatable", show_default=False),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="stop every running session")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="wait for replies")
    ] = 10.0,
) -> None:
    """Stop running sessions (they end as "stopped" and are kept)."""
    from controller.lab import box_of, get_mouse
    from controller.rigs import stop_boxes
    from shared.ids import check_box_id

    state = state_of(ctx)
    if sum((bool(mice), bool(box), every)) != 1:
        fail("give what to stop: MOUSE..., --box BOX or --all (exactly one of them)")
    targets: list[tuple[str | None, str]] = []
    if mice:
        with state.db().reader() as session:
            for mouse_id in mice:
                get_mouse(session, mouse_id)
                where = box_of(session, mouse_id)
                if where is None:
                    fail(f"mouse {mouse_id} is not on any box")
                targets.append((mouse_id, where))
    for box_id in box or []:
        targets.append((None, check_box_id(box_id)))
    with state.link() as link:
        if every:
            targets = [
                (status.mouse, name)
                for name, status in sorted(link.statuses.items())
                if status.state == "running"
            ]
            if not targets:
                say("no session is running")
                return
        for _, box_id in targets:
            if box_id not in link.statuses:
                from controller.lab import get_box

                with state.db().reader() as session:
                    get_box(session, box_id)  # unknown box: one line, exit 2
        outcomes = stop_boxes(link, targets, timeout=timeout)
    console().print(_outcome_table(outcomes, "stopped"))
    if any(not o.ok for o in outcomes):
        raise typer.Exit(EXIT_FAILED)


# ---------------------------------------------------------------- status and monitor


def _views(state: State, link: LabLink | None) -> list[Any]:
    from controller.views import box_views, stored_boxes

    stored, assigned = stored_boxes(state.db())
    live = link.statuses if link is not None else None
    texts = link.status_texts if link is not None else None
    return box_views(stored, assigned, live, texts)


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every box: online, state, mouse, session progress, trials, rewards, last event."""
    from controller.mqtt import BrokerError
    from controller.views import status_table

    state = state_of(ctx)
    state.db()
    broker = state.broker()
    warning = None
    try:
        with state.link() as link:
            views = _views(state, link)
    except BrokerError as exc:
        warning = f"{exc}; showing the database's last known state"
        views = _views(state, None)
    if as_json:
        print_json(
            {
                "broker": broker.url,
                "broker_reachable": warning is None,
                "database": state.db_url_display,
                "boxes": [v.as_dict() for v in views],
            }
        )
    elif not views:
        say("no boxes yet: start `labagent run` on the rigs and `labctl serve` here")
    else:
        console().print(status_table(views))
    if warning:
        typer.echo(f"labctl: warning: {warning}", err=True)


@app.command()
def monitor(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="print one snapshot and exit")] = False,
    duration: Annotated[
        float | None,
        typer.Option("--duration", metavar="S", help="exit after S seconds", show_default=False),
    ] = None,
    refresh: Annotated[float, typer.Option("--refresh", metavar="S", help="redraw period")] = 0.5,
) -> None:
    """A live view of every rig and the latest events (Ctrl-C to leave)."""
    from rich.live import Live

    from controller.views import monitor_view

    state = state_of(ctx)
    state.db()
    with state.link(events=True) as link:
        header = f"reachlab monitor: broker {link.settings.url}, prefix {link.topics.prefix}"

        def render() -> Any:
            with link.cond:
                events = list(link.events)
            return monitor_view(_views(state, link), events, header)

        if once:
            console().print(render())
            return
        deadline = None if duration is None else time.monotonic() + duration
        # Ctrl-C (or a SIGINT from a script) ends the loop between redraws rather than
        # interrupting whatever runs (a database read, a redraw): the last view stays on
        # screen and the exit status is 0, even where a parent left SIGINT ignored.
        leave = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            leave.set()
            with link.cond:  # re-entrant: safe even if this thread holds it
                link.cond.notify_all()

        # SIGTERM (how the demo ends it) leaves the same clean way, the cursor restored.
        in_main = threading.current_thread() is threading.main_thread()  # else no signals
        previous = (
            {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            if in_main
            else {}
        )
        try:
            with Live(render(), console=console(), refresh_per_second=4, transient=False) as live:
                while not leave.is_set() and (deadline is None or time.monotonic() < deadline):
                    wait = (
                        refresh if deadline is None else min(refresh, deadline - time.monotonic())
                    )
                    link.wait_for_message(max(wait, 0.0))
                    if leave.is_set():
                        break
                    live.update(render())
                    # However busy the lab, redraw at most ten times a second.
                    link.wait_for(leave.is_set, 0.1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@app.command("dead-letters")
def dead_letters(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", help="show the N newest")
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Messages the collector could not use, newest first, with the reason.

    One row each: when it arrived, its topic, why the collector refused it, and
    the start of its payload with its size. They are kept in the database's
    dead_letters table; listing them changes nothing.
    """
    from controller.views import dead_letters_table, recent_dead_letters

    if limit < 1:
        fail(f"--limit must be at least 1, got {limit}")
    rows, total = recent_dead_letters(state_of(ctx).db(), limit)
    if as_json:
        print_json([row.as_dict() for row in rows])
    elif not rows:
        say("no dead letters")
    else:
        console().print(dead_letters_table(rows, total))


# ---------------------------------------------------------------- files


@app.command("export")
def export_command(
    ctx: typer.Context,
    mice: Annotated[list[str] | None, typer.Argument(help="mouse ids", show_default=False)] = None,
    every: Annotated[bool, typer.Option("--all", help="every mouse with sessions")] = False,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="folder for <mouse>.json files")
    ] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="replace files holding sessions the database lacks")
    ] = False,
) -> None:
    """Write each mouse's sessions to DIR/<mouse>.json (the canonical per-mouse file)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from controller.files import export_mice, mice_with_sessions
    from controller.lab import get_mouse

    db = state_of(ctx).db()
    if bool(mice) == every:
        fail("give the mice to export: MOUSE... or --all")
    if every:
        with db.reader_engine.connect() as conn:
            selected = mice_with_sessions(conn)
        if not selected:
            say("no mouse has stored sessions yet: nothing to export")
            return
    else:
        selected = list(dict.fromkeys(mice or []))
        with db.reader() as session:
            for mouse_id in selected:
                get_mouse(session, mouse_id)
    show_bar = len(selected) > 3 and sys.stdout.isatty()
    with Progress(
        TextColumn("exporting"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=console(), disable=not show_bar, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("", total=len(selected))
        results = export_mice(
            db,
            selected,
            out,
            force=force,
            progress=lambda r: progress.update(task, advance=1, description=r.mouse),
        )
    for r in results:
        if r.failed:
            typer.echo(f"labctl: error: {r.mouse}: {r.note}", err=True)
        elif r.written:
            say(f"{r.mouse}: {r.sessions} session(s) -> {r.path}")
        else:
            say(f"{r.mouse}: {r.note} ({r.path})")
    if any(r.failed for r in results):
        raise typer.Exit(EXIT_FAILED)


@app.command("import")
def import_command(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="per-mouse files: <mouse id>.json")],
) -> None:
    """Load per-mouse JSON files into the database (importing twice changes nothing)."""
    from controller.files import import_files

    results = import_files(state_of(ctx).db(), files)
    for r in results:
        if r.created_mouse:
            say(f"created mouse {r.mouse}")
        say(f"{r.path}: {r.imported} session(s) imported, {r.present} already stored")
        for conflict in r.conflicts:
            typer.echo(f"labctl: warning: {r.path}: {conflict}", err=True)


@app.command()
def results(
    ctx: typer.Context,
    mouse: Annotated[str, typer.Argument(help="mouse id")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    days: Annotated[bool, typer.Option("--days", help="one row per training day")] = False,
) -> None:
    """Per-session results: trials, outcomes, d', water given."""
    from controller.lab import get_mouse
    from controller.store import mouse_sessions
    from shared.analysis import format_table, mouse_results

    db = state_of(ctx).db()
    with db.reader() as session:
        get_mouse(session, mouse)
    with db.reader_engine.connect() as conn:
        sessions = mouse_sessions(conn, mouse)
    rows = mouse_results(mouse, sessions, collapse_days=days)
    if as_json:
        print_json([{"index": i, **r.as_dict()} for i, r in enumerate(rows, 1)])
        return
    if not rows:
        say(f"mouse {mouse} has no stored sessions yet")
        return
    say(format_table(rows))


@config_app.command("init")
def config_init(
    path: Annotated[Path, typer.Argument(help="where to write the file")],
    force: Annotated[bool, typer.Option("--force", help="replace an existing file")] = False,
) -> None:
    """Write a task config file with every setting at its default."""
    written = generate_config(path, overwrite=force)
    say(f"wrote {written}")


@config_app.command("show")
def config_show(
    path: Annotated[
        Path | None, typer.Argument(help="a config file (default: the defaults)")
    ] = None,
) -> None:
    """Check a config file and print the settings it gives."""
    if path is not None and not path.expanduser().is_file():
        fail(f"no such config file {path}")
    config = read_config(path)
    print_json(config.settings())


# ---------------------------------------------------------------- serve


@app.command()
def serve(
    ctx: typer.Context,
    heartbeat_timeout: Annotated[
        float,
        typer.Option(
            "--heartbeat-timeout", metavar="S", help="mark a silent box offline after S s"
        ),
    ] = 30.0,
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id", help="MQTT client id (default: one per prefix)", show_default=False
        ),
    ] = None,
) -> None:
    """The collector: store every rig's documents and status until SIGTERM or Ctrl-C."""
    from controller.collector import Collector
    from controller.ingest import IngestSettings

    state = state_of(ctx)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("labctl.mqtt").setLevel(logging.WARNING)
    db = state.db()
    collector = Collector(
        db,
        state.broker(),
        topics=state.topics(),
        client_id=client_id,
        settings=IngestSettings(heartbeat_timeout=heartbeat_timeout),
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the collector", signal.Signals(signum).name)
        collector.stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        collector.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------- demo


def _register_demo() -> None:
    """``labctl demo`` lives with the rest of the demo, in :mod:`controller.demo`."""
    from controller.demo import demo_command

    app.command("demo")(demo_command)


_register_demo()


def main() -> None:
    """The ``labctl`` entry point."""
    app(prog_name="labctl")


if __name__ == "__main__":
    main()
