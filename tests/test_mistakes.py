"""The lab's own mistakes at the command line: each refused in one line that names the fix.

Metadata that names a key the session dict owns (``--meta duration=60`` ran 1800 s,
``--meta status=...`` was silently replaced) is refused by labctl, labagent and the
dashboard, with the option that sets it; nothing is sent to a box or stored.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controller.control import RequestError, StartRequest
from shared.config import RESERVED_METADATA_KEYS, SETTING_KEYS, ReservedKeyError
from shared.protocol import StartCommand
from shared.sessionfile import SessionRecord
from tests.fakes import FakeRig
from tests.labctl import Labctl, boxes, labctl  # noqa: F401  # fixtures

REPO = Path(__file__).resolve().parents[1]


def test_the_reserved_keys_are_every_setting_and_every_key_the_session_records() -> None:
    assert SETTING_KEYS <= RESERVED_METADATA_KEYS
    assert {"duration", "status", "box", "trials", "session_id", "date"} <= RESERVED_METADATA_KEYS
    assert set(SessionRecord.model_fields) - RESERVED_METADATA_KEYS == {"notes"}
    assert not {"weight", "trainer", "training_box", "notes"} & RESERVED_METADATA_KEYS


@pytest.mark.parametrize("key", ["duration", "status", "box", "trials", "timeout"])
def test_a_start_request_with_a_reserved_metadata_key_is_refused_naming_it(key: str) -> None:
    with pytest.raises(RequestError) as refused:
        StartRequest(mice=["M1"], metadata={key: 60}, by="desk")
    assert (refused.value.problem, refused.value.key) == ("reserved_key", key)


def test_the_agent_refuses_a_start_command_with_a_reserved_metadata_key() -> None:
    with pytest.raises(ValueError, match="'status' is reserved"):
        StartCommand(request_id="r1", session_id="s1", mouse="M1", metadata={"status": "x"})


@pytest.mark.broker
@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ("duration=60", "set the session length with --duration S"),
        ("timeout=100", "it is a task setting: set it in a config file, --config FILE"),
        ("status=complete", "reachlab records it itself"),
        ("box=9", "reachlab records it itself"),
        ("trials=[]", "reachlab records it itself"),
    ],
)
def test_labctl_start_refuses_a_reserved_meta_key_and_sends_nothing(
    labctl: Labctl,  # noqa: F811
    boxes: dict[str, FakeRig],  # noqa: F811
    meta: str,
    words: str,
) -> None:
    labctl.ok("assign", "M1", "--box", "1")
    line = labctl.error("start", "M1", "--meta", meta, "--timeout", "2")
    key = meta.partition("=")[0]
    assert f"--meta {key}=...: {key!r} is the session's own key; {words}" in line
    assert boxes["1"].commands == [], "nothing was sent to the box"


def _labagent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ("duration=60", "set it in a config file, --config FILE"),
        ("box=9", "give the box with --box BOX"),
        ("status=complete", "reachlab records it itself"),
    ],
)
def test_labagent_train_refuses_a_reserved_meta_key_and_stores_nothing(
    tmp_path: Path, meta: str, words: str
) -> None:
    data = tmp_path / "data"
    done = _labagent(
        "train", "M1", "--data-dir", str(data), "--sim", "--time-scale", "max", "--meta", meta,
        cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labagent: error: --meta "), done.stderr
    assert words in lines[0]
    assert not (data / "M1.json").exists()


def test_the_python_api_refuses_a_reserved_key_before_the_session_runs(tmp_path: Path) -> None:
    from agent.api import Mouse

    mouse = Mouse.init_from_file(mouse_id="M1", json_path=tmp_path)
    with pytest.raises(ReservedKeyError, match="'duration' is reserved"):
        mouse.train(data={"duration": 60}, sim=True, time_scale=float("inf"))
    assert len(mouse) == 0


@pytest.mark.broker
def test_the_dashboard_refuses_reserved_metadata_and_unknown_fields(
    tmp_path: Path,
    broker_url: str,
    topic_prefix: str,
    boxes: dict[str, FakeRig],  # noqa: F811
) -> None:
    from controller.db import open_database
    from controller.web import control as web_control
    from shared.broker_url import broker_settings
    from shared.protocol import Topics

    db_url = f"sqlite:///{tmp_path / 'lab.db'}"
    lab = Labctl(db_url, broker_url, topic_prefix)
    lab.add_boxes("1")
    lab.ok("assign", "M1", "--box", "1")
    db = open_database(db_url)
    try:
        dashboard = web_control.Control(
            db, broker_settings(broker_url), Topics(topic_prefix), "t" * 32, timeout=2.0
        )
        with pytest.raises(web_control.ControlError) as refused:
            dashboard.start({"mice": ["M1"], "metadata": {"status": 1}})
        assert refused.value.status == 400
        assert str(refused.value) == web_control.REQUEST_WORDS["reserved_key"]
        with pytest.raises(web_control.ControlError, match="unknown field 'status'"):
            dashboard.start({"mice": ["M1"], "status": "complete"})
    finally:
        db.close()
    assert boxes["1"].commands == []
