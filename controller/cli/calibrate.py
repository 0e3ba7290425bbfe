"""labctl calibrate and calibrations: the reward solenoids' µL per opening, per box and spout."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from controller.cli.app import app, ask_number, fail, print_json, say, state_of, warn, when
from controller.cli.husbandry import By, Note, who


@app.command()
def calibrate(
    ctx: typer.Context,
    box: Annotated[
        str, typer.Option("--box", "-b", metavar="BOX", help="box id", show_default=False)
    ],
    spout: Annotated[
        str, typer.Option("--spout", metavar="SIDE", help="left or right", show_default=False)
    ],
    count: Annotated[int, typer.Option("--count", metavar="N", help="openings")] = 100,
    duration_ms: Annotated[
        int, typer.Option("--duration-ms", metavar="MS", help="open time of each opening")
    ] = 70,
    total_mg: Annotated[
        float | None,
        typer.Option(
            "--total-mg",
            metavar="MG",
            help="the weighed total, for scripts (else you are asked)",
            show_default=False,
        ),
    ] = None,
    total_ul: Annotated[
        float | None,
        typer.Option(
            "--total-ul", metavar="UL", help="the total measured as a volume", show_default=False
        ),
    ] = None,
    already: Annotated[
        bool,
        typer.Option(
            "--already-dispensed",
            help="the openings were made on the rig already "
            "(`labagent dispense`): only store the result",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="wait for the box's replies")
    ] = 10.0,
    by: By = None,
    note: Note = "",
) -> None:
    """Calibrate a reward solenoid: open it N times for MS ms through the box's agent,
    weigh the water, and store µL per opening.

    Put a weighed cup under the spout first. The total is asked for once the box has
    finished (or given with --total-mg / --total-ul); 1 mg of water is 1 µL. A change of
    more than the lab's limit (15 %) from the previous calibration is warned about."""  # fmt: skip
    from controller.husbandry.calibration import (
        SPOUTS,
        new_calibration_warnings,
        record_calibration,
        spout_number,
    )
    from controller.husbandry.dispense import run_dispense
    from controller.husbandry.settings import lab_settings
    from controller.lab import get_box

    state = state_of(ctx)
    side = spout_number(spout)
    if total_mg is not None and total_ul is not None:
        fail("give the total once: --total-mg or --total-ul")
    if count < 1 or duration_ms < 1:
        fail(f"--count and --duration-ms must be at least 1, got {count} and {duration_ms}")
    db = state.db()
    with db.reader() as tx:
        get_box(tx, box)  # before a solenoid opens: a mistyped box is refused, nothing sent
    if not already:
        opening = (
            f"box {box}: opening the {SPOUTS[side]} solenoid {count} times for {duration_ms} ms"
        )
        with state.link(timeout=timeout) as link:
            run = run_dispense(
                link, box, side, count, duration_ms, timeout=timeout, on_send=lambda: say(opening)
            )
        seen = "" if run.openings_seen is None else f" (the box counted {run.openings_seen})"
        say(f"box {box}: dispensed {count} x {duration_ms} ms{seen}")
    if total_mg is None and total_ul is None:
        total_mg = ask_number(f"weighed total of the {count} openings in mg")
    unit, total = ("mg", total_mg) if total_mg is not None else ("ul", total_ul)
    assert total is not None
    with db.session() as tx:
        row = record_calibration(
            tx, box, side, openings=count, duration_ms=duration_ms, total=total,
            unit=unit, by=who(by), note=note,
        )  # fmt: skip
        warnings = new_calibration_warnings(tx, row, lab_settings(tx))
    say(
        f"box {box} {SPOUTS[side]} spout: {row.ul_per_opening:.3f} ul per {duration_ms} ms "
        f"opening ({total:g} {unit} over {count} openings), stored"
    )
    for line in warnings:
        warn(line)


@app.command()
def calibrations(
    ctx: typer.Context,
    box: Annotated[
        str | None,
        typer.Option("--box", "-b", metavar="BOX", help="only this box", show_default=False),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="every calibration, oldest first")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The calibration in force on each box and spout, with stale or drifting ones warned."""
    import time

    from controller.husbandry import calibration
    from controller.husbandry.schedule import known_boxes
    from controller.husbandry.settings import lab_settings
    from controller.lab import box_sort_key, get_box

    now = time.time()
    with state_of(ctx).db().reader() as tx:
        if box is not None:
            get_box(tx, box, retired=True)  # a retired box's calibrations are its history
        rows = calibration.calibrations(tx, box)
        settings = lab_settings(tx)
        # The calibrations in force of the box asked for, else of every box in use.
        in_use = set(known_boxes(tx))
        boxes = [box] if box else sorted({r.box_id for r in rows} & in_use, key=box_sort_key)
        in_force: list[dict[str, Any]] = []
        warnings: list[str] = []
        for box_id in boxes:
            timeline = calibration.Timeline.of_box(tx, box_id)
            for spout in (0, 1):
                current = timeline.at(spout, now)
                if current is not None:
                    in_force.append(
                        {
                            **calibration.describe(current),
                            "age_days": round((now - current.measured_at) / 86400, 1),
                        }
                    )
            warnings.extend(calibration.calibration_warnings(tx, box_id, settings, now))
        listed = [calibration.describe(r) for r in rows] if history else in_force
    if as_json:
        print_json({"calibrations": listed, "warnings": warnings})
        return
    if not listed:
        say("no calibrations yet: `labctl calibrate --box BOX --spout left`")
    for c in listed:
        measured = when(c["measured_at"])
        say(
            f"box {c['box']} {c['spout']:<5}  {c['ul_per_opening']:.3f} ul per "
            f"{c['duration_ms']} ms  ({c['openings']} openings, {measured}, by {c['measured_by']})"
        )
    for line in warnings:
        warn(line)
