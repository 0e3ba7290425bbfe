"""The docker/ stack run without a Docker engine: its services on a real mosquitto.

No Docker engine runs on the team's machines, so nothing here builds an image or
starts a container. The stack's mosquitto config, entrypoint script and ACL run in
a real ``mosquitto`` when one is installed, and (marked slow) the collector and three
rigs started with the compose file's environment (docker/.env.example's values)
train a cohort through that broker, down to the pruned journals. The files
themselves are checked in test_docker_compose.py, test_docker_mosquitto.py and
test_dockerfiles.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.mosquitto_files import BrokerFiles, broker_files, needs_mosquitto, running

from .conftest import REPO
from .dockerstack import (
    DOCKER,
    OPERATOR_USER,
    RIGS,
    command_of,
    compose,
    dockerfile_env,
    environment,
    stack_users,
    with_example_values,
)
from .processes import Processes
from .waiting import wait_until

# ================================================================ tests: the stack, real mosquitto
# The broker's own tests (init.sh, every permission, TLS, client ids, the size limit) are in
# tests/test_broker_security.py, on the same shipped files; here the whole stack runs on them.


@pytest.fixture
def stack_broker() -> Iterator[BrokerFiles]:
    """The stack's mosquitto config, ACL and init.sh, in a real mosquitto on free ports."""
    # mosquitto started as root drops to the 'mosquitto' user: the folder must be traversable.
    with tempfile.TemporaryDirectory(prefix="reachlab-docker-test-") as name:
        os.chmod(name, 0o755)
        with running(broker_files(Path(name), stack_users())) as files:
            yield files


def _run(argv: list[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(
        argv, env=dict(env), capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, f"{argv[2:]} failed: {result.stderr or result.stdout}"
    return result.stdout


@needs_mosquitto
@pytest.mark.slow
def test_the_stack_s_services_train_a_cohort_through_its_broker_config(
    stack_broker: BrokerFiles,
) -> None:
    """The collector and three rigs, with the compose file's environment, through the
    stack's mosquitto config and ACL over TLS with the lab CA, and labctl with the
    operator's own credential: every session is stored, committed and pruned."""
    stack = compose()
    work = stack_broker.directory
    url = f"mqtts://127.0.0.1:{stack_broker.tls_port}"
    ca = str(stack_broker.ca)
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": str(work)}
    collector_env = {
        **base,
        **with_example_values(environment(stack["services"]["controller"])),
        "LABCTL_DB": f"sqlite:///{work / 'lab.db'}",
        "LABCTL_BROKER": url,
        "LABCTL_MQTT_CA_FILE": ca,
    }
    # A person's labctl: its own credential (sharing the collector's would knock the
    # collector off the broker: a client id is its user name).
    controller_env = {
        **collector_env,
        "LABCTL_MQTT_USERNAME": OPERATOR_USER,
        "LABCTL_MQTT_PASSWORD": stack_broker.users[OPERATOR_USER],
    }
    labctl = [sys.executable, "-m", "controller.cli"]
    processes = Processes(work / "logs")
    try:
        processes.start("collector", [*labctl, "serve"], collector_env)
        for rig in RIGS:
            rig_env = {
                **base,
                **dockerfile_env(DOCKER / "agent.Dockerfile"),
                **with_example_values(environment(stack["services"][rig])),
                "LABAGENT_BROKER": url,
                "LABAGENT_CA_FILE": ca,
                "LABAGENT_TIME_SCALE": "120",
                "LABAGENT_JOURNAL": str(work / rig / "journal.sqlite3"),
                "LABAGENT_DATA_DIR": str(work / rig / "sessions"),
            }
            argv = command_of(DOCKER / "agent.Dockerfile")
            processes.start(rig, [sys.executable, "-m", "agent.cli", *argv[1:]], rig_env)

        def states() -> dict[str, str]:
            text = _run([*labctl, "status", "--json"], controller_env)
            return {row["box"]: row["state"] for row in json.loads(text)["boxes"]}

        boxes = set(RIGS.values())
        wait_until(
            lambda: states() == dict.fromkeys(boxes, "idle"), 60, "every rig idle",
            alive=processes.check_alive, detail=processes.all_logs, interval=0.25,
        )  # fmt: skip
        wait_until(
            lambda: {b["box"] for b in json.loads(_run([*labctl, "box", "list", "--json"],
                                                      controller_env))} >= boxes,
            60, "every rig known to the lab (the collector stored its first status)",
            alive=processes.check_alive, detail=processes.all_logs, interval=0.25,
        )  # fmt: skip
        mice = [f"Mouse{box}" for box in sorted(boxes)]
        for mouse, box in zip(mice, sorted(boxes), strict=True):
            _run([*labctl, "assign", mouse, "--box", box], controller_env)
        _run([*labctl, "cohort", "create", "C1", *mice], controller_env)
        _run([*labctl, "start", "--cohort", "C1", "--duration", "240"], controller_env)

        def pruned() -> bool:
            for rig in RIGS:
                text = _run(
                    [sys.executable, "-m", "agent.cli", "status", "--json",
                     "--journal", str(work / rig / "journal.sqlite3")],
                    base,
                )  # fmt: skip
                report = json.loads(text)
                if report["sessions"] or report["pending"]:
                    return False
            return True

        wait_until(
            pruned, 60, "the sessions to be committed and pruned",
            alive=processes.check_alive, detail=processes.all_logs, interval=0.25,
        )  # fmt: skip
        _run([*labctl, "export", "--all", "--out", str(work / "export")], controller_env)
        for mouse in mice:
            sessions = json.loads((work / "export" / f"{mouse}.json").read_text("utf-8"))
            assert [s["status"] for s in sessions] == ["complete"]
            assert sessions[0]["box"] == mouse.removeprefix("Mouse")
            assert sessions[0]["trials"], "a 4-minute session has trials"
    finally:
        processes.stop_all()
