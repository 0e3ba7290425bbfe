"""The rig's hardware check commands, on this Pi's GPIO or on mock pins with ``--sim``.

test-sensors, toggle-solenoids, toggle-leds, dispense, step-actuators.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from typing import Any

from agent.hardware import PinMap, Rig
from agent.runtime import RigRuntime
from shared.errors import ConfigError
from shared.protocol import MAX_DISPENSE_OPEN_MS

SIDES = ("left", "right")
#: Seconds between actuator steps: the PQ12-P needs about a second to travel.
STEP_INTERVAL_S = 1.5


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sim", action="store_true", help="mock pins instead of this Pi's GPIO")
    parser.add_argument("--pins", metavar="FILE", help="JSON file of BCM pin numbers")


def _runtime(args: argparse.Namespace) -> RigRuntime:
    pins = PinMap.load(args.pins) if args.pins else None
    return RigRuntime.create(sim=args.sim, pins=pins)


Step = tuple[float, Callable[[], Any]]


def _run_steps(args: argparse.Namespace, make_steps: Callable[[Rig], list[Step]]) -> None:
    """Build the rig, then run ``(delay_s, action)`` steps one after another on its loop."""
    runtime = _runtime(args)
    loop = runtime.loop
    try:
        t = 0.0
        for delay, action in make_steps(runtime.rig):
            t += delay
            loop.call_later(t, action)
        loop.call_later(t + 0.01, loop.stop)
        loop.run()
    finally:
        runtime.close()


def _both(action: Any, value: Any) -> None:
    """Apply ``action(spout, value)`` to both spouts."""
    for spout in (0, 1):
        action(spout, value)


class SensorCheck:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _common(parser)
        parser.add_argument("--seconds", type=float, default=30.0, help="how long to listen")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        runtime = _runtime(args)
        rig = runtime.rig
        rig.on_paw = lambda paw, rest: print(f"{SIDES[paw]} paw {'rests' if rest else 'lifted'}")
        rig.on_touch = lambda s, on: print(f"{SIDES[s]} spout {'touched' if on else 'released'}")
        print(f"listening for {args.seconds:g} s (Ctrl-C to stop): {rig.sensors()}")
        try:
            runtime.loop.call_later(args.seconds, runtime.loop.stop)
            runtime.loop.run()
        except KeyboardInterrupt:
            pass
        finally:
            runtime.close()
        return 0


class ToggleSolenoids:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _common(parser)
        parser.add_argument("--times", type=int, default=5)
        parser.add_argument("--open-ms", type=int, default=500)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        def steps(rig: Rig) -> list[Step]:
            out: list[Step] = []
            for _ in range(args.times):
                for spout in (0, 1):
                    out.append((0.0, partial(rig.open_solenoid, spout)))
                    out.append((args.open_ms / 1000, partial(rig.close_solenoid, spout)))
            return out

        _run_steps(args, steps)
        print(f"toggled both solenoids {args.times} times")
        return 0


class ToggleLeds:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _common(parser)
        parser.add_argument("--times", type=int, default=5)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        def steps(rig: Rig) -> list[Step]:
            out: list[Step] = []
            for _ in range(args.times):
                out.append((0.0, lambda: _both(rig.set_cue, True)))
                out.append((0.5, lambda: _both(rig.set_cue, False)))
                out.append((0.5, lambda: None))
            return out

        _run_steps(args, steps)
        print(f"toggled both cue LEDs {args.times} times")
        return 0


class Dispense:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _common(parser)
        parser.add_argument("--spout", type=int, choices=(0, 1), required=True)
        parser.add_argument("--count", type=int, default=100, help="number of rewards")
        parser.add_argument("--duration-ms", type=int, default=70, help="open time per reward")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        # The bounds of the rig's dispense command, so the terminal cannot do what MQTT may not.
        if not 1 <= args.count <= 1000:
            raise ConfigError(f"--count {args.count}: give 1 to 1000 rewards")
        if not 1 <= args.duration_ms <= 5000:
            raise ConfigError(f"--duration-ms {args.duration_ms}: give 1 to 5000 ms")
        total = args.count * args.duration_ms
        if total > MAX_DISPENSE_OPEN_MS:
            raise ConfigError(
                f"--count x --duration-ms = {total} ms of open valve; at most "
                f"{MAX_DISPENSE_OPEN_MS} ms per dispense"
            )

        def steps(rig: Rig) -> list[Step]:
            out: list[Step] = []
            for _ in range(args.count):
                out.append((0.2, lambda: rig.open_solenoid(args.spout)))
                out.append((args.duration_ms / 1000, lambda: rig.close_solenoid(args.spout)))
            return out

        _run_steps(args, steps)
        side = SIDES[args.spout]
        print(f"dispensed {args.count} rewards of {args.duration_ms} ms from the {side} spout")
        return 0


class StepActuators:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _common(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        def steps(rig: Rig) -> list[Step]:
            out: list[Step] = []
            for position in [*range(1, 8), 1]:
                out.append((STEP_INTERVAL_S, partial(_both, rig.move_spout, position)))
            return out

        _run_steps(args, steps)
        print("stepped both actuators through positions 1-7 and back to 1")
        return 0


COMMANDS: dict[str, tuple[str, Any]] = {
    "test-sensors": ("print paw and touch sensor changes", SensorCheck),
    "toggle-solenoids": ("open and close both reward solenoids", ToggleSolenoids),
    "toggle-leds": ("blink both cue LEDs", ToggleLeds),
    "dispense": ("dispense N rewards from one spout (calibration)", Dispense),
    "step-actuators": ("move both spouts through positions 1-7", StepActuators),
}
