"""``labctl demo``: a whole simulated lab on this machine.

It starts an MQTT broker (mosquitto when installed, else the embedded amqtt
broker), the collector on a SQLite file, and N real ``labagent run --sim``
processes; creates a cohort with one mouse per box, starts it, shows the live
monitor while the sessions run, then exports the per-mouse JSON files and
prints a results table. Every step is the real command a lab would type, so
the demo is also a tour.

``--minutes`` is the session length in task time; unless ``--time-scale`` is
given, the time scale makes the sessions last about two minutes of wall time
(shorter sessions run in real time).

Ctrl-C (or SIGTERM) at any point stops the sessions, still exports what was
collected, and stops every process it started, by pid. The signals are only
counted, never raised as ``KeyboardInterrupt`` in the middle of a step, so
nothing can skip that cleanup; a second Ctrl-C only cuts the waiting for the
last documents short ("stopping now") and exports what the database holds.
The pids and the broker's port are written to ``DIR/processes.json``.

A second demo in the same folder starts a fresh lab there: it removes the
previous demo's files first and says so (a folder holding anything else, or
a demo still running there, is an error before anything starts).

Exit status: 0 when the sessions ran to their end; 130 after Ctrl-C or SIGTERM
(the export is still written); 2 on an error: said first on stdout, before
the wrap-up's output, and reported by labctl as one line on stderr
(``labctl: error: ...``) after everything was stopped. The processes
themselves are kept by :class:`controller.demo.lab.DemoLab`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, TextIO

import typer

from controller.demo.lab import DemoError, DemoLab, Interrupted, clear_previous_run
from shared.analysis import cohort_results, format_table
from shared.errors import ReachlabError
from shared.sessionfile import read_sessions

__all__ = ["DemoError", "demo_command", "run_demo"]

COHORT = "demo"
STARTUP_TIMEOUT_S = 60.0
#: How long the wrap-up waits for the stopped sessions, then for their last documents.
STOP_TIMEOUT_S = 20.0
COLLECT_TIMEOUT_S = 30.0
EXIT_INTERRUPTED = 130


def default_time_scale(minutes: float) -> float:
    """Task seconds per wall second so that the sessions take about two minutes."""
    return max(1.0, minutes * 60 / 120)


def run_demo(
    *,
    rigs: int = 4,
    minutes: float = 30.0,
    time_scale: float | None = None,
    directory: Path | None = None,
    seed: int = 1,
    out: TextIO = sys.stdout,
    monitor: bool = True,
    embedded_broker: bool = False,
) -> int:
    """Run the whole demo; returns 0, or 130 after Ctrl-C/SIGTERM.

    Raises :class:`DemoError` when a step fails, after every process was stopped.
    """
    if rigs < 1 or rigs > 32:
        raise DemoError(f"--rigs must be between 1 and 32, got {rigs}")
    if minutes <= 0:
        raise DemoError(f"--minutes must be positive, got {minutes:g}")
    if time_scale is not None and time_scale <= 0:
        raise DemoError(f"--time-scale must be positive, got {time_scale:g}")
    scale = time_scale or default_time_scale(minutes)
    lab = DemoLab(
        directory=(directory or Path("reachlab-demo")).resolve(),
        rigs=rigs,
        out=out,
        embedded_broker=embedded_broker,
    )
    # Before anything starts or prints: a previous demo's lab would make this one fail
    # half-way ("cohort demo already exists") after showing the old results.
    removed = clear_previous_run(lab.directory)
    wall = minutes * 60 / scale
    lab.say(
        f"reachlab demo: {rigs} simulated rigs, {minutes:g}-minute sessions at {scale:g}x "
        f"(about {wall:.0f} s), files in {lab.directory}"
    )
    if removed:
        lab.say(f"a fresh lab: removed the previous demo's files ({', '.join(removed)})")
    failure: DemoError | None = None
    with lab.interrupts.installed():
        try:
            run_lab(lab, minutes, scale, seed, monitor)
        except Interrupted:
            pass
        except DemoError as exc:
            failure = exc
            # Said now, before the wrap-up's output; labctl repeats it on stderr at the end.
            lab.say(f"\nthe demo failed: {exc}\nstopping the lab and exporting what was collected")
        finally:
            wrap_up(lab, failed=failure is not None)
    if failure is not None:
        raise failure
    return EXIT_INTERRUPTED if lab.interrupts.count else 0


def run_lab(lab: DemoLab, minutes: float, scale: float, seed: int, monitor: bool) -> None:
    """Start the lab and the cohort and wait for the sessions; Interrupted on Ctrl-C."""
    lab.start_services(scale, seed)
    lab.wait_until(
        "every rig to come online",
        lambda: all(lab.box_states().get(b) == "idle" for b in lab.boxes),
        STARTUP_TIMEOUT_S,
    )
    mice = [lab.mouse(b) for b in lab.boxes]
    for box, mouse in zip(lab.boxes, mice, strict=True):
        lab.labctl("assign", mouse, "--box", box)
        lab.interrupts.check()
    lab.labctl("cohort", "create", COHORT, *mice)
    lab.interrupts.check()
    lab.started = True
    lab.labctl("start", "--cohort", COHORT, "--duration", f"{minutes * 60:g}")
    wall = minutes * 60 / scale
    if monitor:
        watch_until_done(lab, wall)
    else:
        lab.wait_until("the sessions to end", lambda: sessions_done(lab), wall * 3 + 60)


def wrap_up(lab: DemoLab, failed: bool = False) -> None:
    """Stop the sessions (after Ctrl-C or a failure), export, report, stop every process.

    Signals are still only counted here: another Ctrl-C ends the waiting ("stopping now"),
    and the export and :meth:`DemoLab.stop_all` run whatever happens.
    """
    interrupts = lab.interrupts
    interrupts.tolerated = interrupts.count  # from here on, only a further Ctrl-C counts
    try:
        if interrupts.count:
            lab.say(
                "\ninterrupted: stopping the sessions and exporting what was collected"
                " (Ctrl-C again to stop now)"
            )
        if lab.broker is not None and (lab.directory / "lab.db").exists():
            try:
                if lab.started and (interrupts.count or failed):
                    lab.labctl("stop", "--all", check=False)
                    lab.wait_until(
                        "the stopped sessions", lambda: sessions_done(lab), STOP_TIMEOUT_S
                    )
                if lab.started and not failed:
                    lab.wait_until(
                        "the last documents to be stored", lambda: collected(lab), COLLECT_TIMEOUT_S
                    )
            except Interrupted:
                lab.say("\nstopping now: exporting what the database holds")
            except Exception as exc:  # a dead collector, a timeout: export what there is
                lab.say(f"not waiting any longer: {exc}")
            export(lab)
    finally:
        lab.stop_all()
        lab.say("all demo processes stopped")


def sessions_done(lab: DemoLab) -> bool:
    return all(state in ("idle", "offline") for state in lab.box_states().values())


def watch_until_done(lab: DemoLab, wall: float) -> None:
    """Show ``labctl monitor`` in this terminal until every rig is idle again."""
    lab.monitor = subprocess.Popen(lab.labctl_argv("monitor"), stdin=subprocess.DEVNULL)
    lab.write_record()
    try:
        # A rig may not have reported "running" yet; give it a moment before judging "idle".
        with contextlib.suppress(DemoError):
            lab.wait_until(
                "the sessions to start",
                lambda: all(s == "running" for s in lab.box_states().values()),
                15,
            )
        lab.wait_until("the sessions to end", lambda: sessions_done(lab), wall * 3 + 60)
    finally:
        # SIGTERM, not SIGINT: a monitor still starting (importing) when the sessions end
        # would print a KeyboardInterrupt traceback; SIGTERM ends it quietly there, and
        # once its live view runs it leaves cleanly on either.
        lab.monitor.send_signal(signal.SIGTERM)
        try:
            lab.monitor.wait(timeout=10)
        except subprocess.TimeoutExpired:
            lab.monitor.kill()
            lab.monitor.wait()
        lab.say("")  # the monitor's last line has no newline of its own


def collected(lab: DemoLab) -> bool:
    """True when every mouse's session is stored whole (judged from a scratch export)."""
    with tempfile.TemporaryDirectory(dir=lab.directory) as scratch:
        lab.labctl("export", "--all", "--out", scratch, check=False, show=False)
        for box in lab.boxes:
            file = Path(scratch) / f"{lab.mouse(box)}.json"
            sessions = read_sessions(file) if file.exists() else []
            if not sessions or "status" not in sessions[-1]:
                return False
    return True


def export(lab: DemoLab) -> None:
    """Export every mouse and print where the files are and a results table."""
    lab.labctl("export", "--all", "--out", str(lab.export_dir), check=False)
    files = sorted(lab.export_dir.glob("*.json"))
    if not files:
        lab.say("no sessions were collected")
        return
    lab.say(f"\nper-mouse JSON files in {lab.export_dir}:")
    for file in files:
        lab.say(f"  {file}")
    try:
        mice = {f.stem: read_sessions(f) for f in files}
    except ReachlabError as exc:
        lab.say(f"cannot read the exported files: {exc}")
        return
    lab.say("")
    lab.say(format_table(cohort_results(mice)))


def demo_command(
    rigs: Annotated[int, typer.Option("--rigs", help="simulated rigs, one mouse each")] = 4,
    minutes: Annotated[
        float,
        typer.Option(
            "--minutes",
            metavar="M",
            help="session length in task minutes; the default time scale plays it in about "
            "two minutes of wall time",
        ),
    ] = 30.0,
    time_scale: Annotated[
        float | None,
        typer.Option(
            "--time-scale",
            metavar="X",
            help="task seconds per wall second (default: M/2, at least 1)",
            show_default=False,
        ),
    ] = None,
    directory: Annotated[Path, typer.Option("--dir", help="where the demo's files go")] = Path(
        "reachlab-demo"
    ),
    seed: Annotated[int, typer.Option("--seed", help="seed of the simulated mice")] = 1,
    no_monitor: Annotated[
        bool, typer.Option("--no-monitor", help="do not show the live monitor")
    ] = False,
    embedded_broker: Annotated[
        bool,
        typer.Option(
            "--embedded-broker",
            help="use the embedded amqtt broker even if mosquitto is installed",
        ),
    ] = False,
) -> None:
    """A whole simulated lab on this machine: broker, collector, rigs and a cohort.

    Ctrl-C stops the sessions, still exports what was collected and stops every process
    the demo started (a second Ctrl-C stops waiting for the last documents). Exit status:
    0 when the sessions ran to their end, 130 after Ctrl-C or SIGTERM (the export is
    still written), 2 on an error.
    """
    code = run_demo(
        rigs=rigs,
        minutes=minutes,
        time_scale=time_scale,
        directory=directory,
        seed=seed,
        monitor=not no_monitor,
        embedded_broker=embedded_broker,
    )
    raise typer.Exit(code)
