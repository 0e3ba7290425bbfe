"""A real agent that never connects: box 1, ``--sim`` on virtual time, for tests that
drive it through its link's entry point (``link_message``) on the test's own thread."""

from __future__ import annotations

import math
from pathlib import Path

from agent.daemon import Agent
from agent.runtime import RigRuntime
from agent.settings import AgentSettings
from shared.broker_url import BrokerSettings


def offline_agent(folder: Path, seed: int) -> tuple[Agent, RigRuntime]:
    """The agent ``labagent run --box 1 --sim --seed SEED`` would build, its journal and
    data in ``folder``, and the runtime whose loop the test runs (time_scale inf)."""
    settings = AgentSettings(
        box="1",
        broker=BrokerSettings(host="127.0.0.1", port=1),  # never connected
        journal=folder / "journal.sqlite3",
        data_dir=folder / "data",
        sim=True,
        seed=seed,
    )
    runtime = RigRuntime.create(sim=True, time_scale=math.inf, seed=seed)
    return Agent(settings, runtime=runtime), runtime
