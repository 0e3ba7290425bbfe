"""Benchmark of the task engine: simulated session speed and touch-to-reward latency.

1. Wall time of a simulated 1800-s session at unlimited time scale (target < 1 s),
   against the 1800 s it would take on a rig.
2. On gpiozero mock pins with the real-time loop on its own thread (as on a rig,
   where pin callbacks come from a background thread): latency from a touch edge
   to the reward pin going high (target p99 < 1 ms), against the baseline of a
   bare mock-pin edge reaching its gpiozero callback, measured in the same run.

Run: ``python bench/bench_engine.py [--sessions N] [--touches N]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from measure import percentile  # bench/ is the script's folder

from agent.clock import EventLoop
from agent.engine import TaskEngine
from agent.hardware import PinMap, Rig, mock_pin_factory
from agent.runtime import RigRuntime
from shared.config import TaskConfig
from shared.sessionfile import validate_sessions


def bench_simulated_sessions(count: int) -> None:
    walls = []
    trials = []
    for seed in range(count):
        runtime = RigRuntime.create(sim=True, time_scale=math.inf, seed=seed)
        start = time.perf_counter()
        session = runtime.new_session(config=TaskConfig(), mouse="BenchMouse")
        data = runtime.run_session(session)
        walls.append(time.perf_counter() - start)
        runtime.close()
        validate_sessions([data], "bench")
        trials.append(len(data["trials"]))
    median = statistics.median(walls)
    print("simulated 1800-s session, unlimited time scale")
    print(f"  sessions: {count}, trials per session: median {statistics.median(trials):.0f}")
    print(
        f"  wall time: median {median * 1000:.1f} ms, max {max(walls) * 1000:.1f} ms "
        f"(target < 1000 ms)"
    )
    print(f"  speed-up over a real rig (1800 s): {1800 / median:,.0f}x")


def bench_pin_baseline(count: int) -> list[float]:
    """Mock pin edge -> its gpiozero callback, nothing of ours in between."""
    from gpiozero import DigitalInputDevice

    factory = mock_pin_factory()
    device = DigitalInputDevice(5, pull_up=False, pin_factory=factory)
    stamps: list[float] = []
    device.when_activated = lambda _d=None: stamps.append(time.perf_counter())
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        device.pin.drive_high()
        latencies.append(stamps[-1] - start)
        device.pin.drive_low()
    device.close()
    return latencies


def bench_touch_to_reward(count: int) -> list[float]:
    loop = EventLoop(time_scale=1.0)
    rig = Rig(PinMap(), mock_pin_factory(), loop)
    config = TaskConfig(
        intertrial_interval=(1, 1), timeout=0, reward_duration_ms=(1, 1), duration=10_000
    )
    cue_on = threading.Event()
    rewarded = threading.Event()
    reward_at = [0.0]

    def on_solenoid(value: float) -> None:
        if value > 0:
            reward_at[0] = time.perf_counter()
            rewarded.set()

    for spout in (0, 1):
        rig.cues[spout].pin.watchers.append(lambda v: cue_on.set() if v > 0 else None)
        rig.solenoids[spout].pin.watchers.append(on_solenoid)
    for paw in rig.paws:
        paw.pin.drive_high()
    session = TaskEngine(config=config, clock=loop, rig=rig)
    loop.call_soon_threadsafe(session.start)
    thread = threading.Thread(target=loop.run, kwargs={"idle_exit": False}, daemon=True)
    thread.start()
    latencies = []
    try:
        for _ in range(count):
            if not cue_on.wait(5):
                raise RuntimeError("no cue came on")
            cue_on.clear()
            spout = 0 if rig.cues[0].is_lit else 1
            rewarded.clear()
            touch = rig.touches[spout].pin
            start = time.perf_counter()
            touch.drive_high()
            if not rewarded.wait(5):
                raise RuntimeError("no reward after a correct touch")
            latencies.append(reward_at[0] - start)
            touch.drive_low()
    finally:
        loop.call_soon_threadsafe(session.stop)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        rig.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--touches", type=int, default=2000)
    args = parser.parse_args()
    bench_simulated_sessions(args.sessions)
    base = bench_pin_baseline(args.touches)
    touch = bench_touch_to_reward(args.touches)
    print(f"touch edge -> reward pin high on mock pins ({args.touches} correct touches)")
    for name, values in (
        ("baseline: mock edge -> gpiozero callback", base),
        ("touch -> reward pin", touch),
    ):
        print(
            f"  {name}: median {statistics.median(values) * 1e6:.1f} us, "
            f"p99 {percentile(values, 99) * 1e6:.1f} us, max {max(values) * 1e6:.1f} us"
        )
    print(
        f"  p99 target < 1000 us; p99 ratio to baseline: "
        f"{percentile(touch, 99) / percentile(base, 99):.1f}x"
    )


if __name__ == "__main__":
    main()
