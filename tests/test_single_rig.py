"""The original library's API and the ``labagent train`` / ``config init`` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent import Cohort, Mouse, generate_config
from shared.errors import ConfigError
from shared.sessionfile import read_sessions, validate_sessions

from .conftest import REPO, SAMPLES
from .terminal import Terminal


def labagent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        cwd=REPO,
    )


#: The original library's user documentation, as the team received it.
SEED_DOC = SAMPLES / "seed-training.rst"
#: What replaces the original import lines (`import reach`, `from reach import Mouse`).
SEED_IMPORTS = "import agent as reach\nfrom agent import Mouse\n"


def seed_code_blocks(text: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of an .rst text, dedented, in order."""
    blocks: list[str] = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        body: list[str] = []
        for following in lines[number + 1 :]:
            if following.strip() and not following.startswith(" "):
                break
            body.append(following)
        blocks.append(textwrap.dedent("\n".join(body)).strip() + "\n")
    return blocks


def test_seed_documentation_code_runs_with_only_the_import_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABAGENT_SIM", "1")  # no GPIO on a test machine
    monkeypatch.setenv("LABAGENT_TIME_SCALE", "max")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "training_data").mkdir()

    # Every code block of the seed's training.rst, run as written, in the order it gives
    # them: load, train with metadata, save, train again from a config file, write one.
    blocks = seed_code_blocks(SEED_DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 5 and "Mouse.init_from_file(" in blocks[0]
    namespace: dict[str, object] = {}
    exec(SEED_IMPORTS, namespace)
    for block in blocks:
        exec(compile(block, str(SEED_DOC), "exec"), namespace)

    saved = read_sessions(tmp_path / "training_data" / "ExampleMouse1.json")
    assert len(saved) == 1  # saved once, after the first session
    session = saved[0]
    assert (session["trainer"], session["training_box"]) == ("Matt", 1)
    assert session["status"] == "complete"
    assert session["duration"] >= 1800
    assert len(session["trials"]) > 50
    assert list(session)[:2] == ["trainer", "training_box"]  # metadata first, as before
    mouse = namespace["mouse"]
    assert isinstance(mouse, Mouse) and len(mouse) == 2  # the second block's session too
    assert (tmp_path / "reach_config.ini").read_text().startswith("[Settings]")


def test_the_docs_give_the_same_import_lines_the_seed_test_uses() -> None:
    text = (REPO / "docs" / "single-rig.md").read_text(encoding="utf-8")
    for line in SEED_IMPORTS.splitlines():
        assert line in text


def test_settings_can_be_given_from_python_and_bad_ones_name_the_key(tmp_path: Path) -> None:
    mouse = Mouse("PyConfig")
    session = mouse.train(
        config={"duration": 120, "timeout": 2000}, sim=True, time_scale=float("inf"), seed=3
    )
    assert session.data["duration"] >= 120 and session.data["timeout"] == 2000
    assert session.data["duration"] < 1800
    with pytest.raises(ConfigError, match="cue_decay"):
        mouse.train(config={"cue_decay": "fast"}, sim=True, time_scale=float("inf"))
    with pytest.raises(ConfigError, match="not both"):
        mouse.train(config_file=tmp_path / "x.ini", config={"duration": 60}, sim=True)
    assert len(mouse) == 1  # the refused calls ran nothing


def test_a_second_session_continues_where_the_first_left_off(tmp_path: Path) -> None:
    mouse = Mouse.init_from_file(mouse_id="M2", json_path=tmp_path)
    first = mouse.train(sim=True, time_scale=float("inf"), seed=1)
    mouse.save_data_to_file(tmp_path)
    again = Mouse.init_from_file(mouse_id="M2", json_path=tmp_path)
    second = again.train(sim=True, time_scale=float("inf"), seed=2)
    again.save_data_to_file(tmp_path)
    last_position = first.data["trials"][-1]["spout_position"]
    assert second.data["trials"][0]["spout_position"] >= last_position
    assert [s["session_id"] for s in read_sessions(tmp_path / "M2.json")] == [
        first.data["session_id"],
        second.data["session_id"],
    ]


def test_save_keeps_sessions_another_process_added_meanwhile(tmp_path: Path) -> None:
    mouse = Mouse.init_from_file(mouse_id="M3", json_path=tmp_path)
    other = Mouse.init_from_file(mouse_id="M3", json_path=tmp_path)
    mouse.train(sim=True, time_scale=float("inf"), seed=1)
    other.train(sim=True, time_scale=float("inf"), seed=2)
    other.save_data_to_file(tmp_path)
    mouse.save_data_to_file(tmp_path)
    assert len(read_sessions(tmp_path / "M3.json")) == 2


def test_cohort_results_cover_every_mouse(tmp_path: Path) -> None:
    for name in ("legacy-clock-times", "later-float-times"):
        (tmp_path / f"{name}.json").write_text((SAMPLES / f"{name}.json").read_text())
    cohort = Cohort.init_from_files(["legacy-clock-times", "later-float-times"], tmp_path)
    rows = cohort.results()
    assert {row["mouse"] for row in rows} == {"legacy-clock-times", "later-float-times"}
    assert len(rows) == 3  # two sessions + one


def test_labagent_train_runs_a_simulated_session_and_appends_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for _ in range(2):
        result = labagent(
            "train", "ExampleMouse1", "--data-dir", str(data), "--sim", "--time-scale", "max",
            "--meta", "trainer=Matt", "--meta", "weight=24.5", "--notes", "fine", "--seed", "4",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    sessions = validate_sessions(json.loads((data / "ExampleMouse1.json").read_text()), "file")
    assert len(sessions) == 2
    assert sessions[0]["weight"] == 24.5 and sessions[0]["notes"] == "fine"
    assert "d'" in result.stdout and "ExampleMouse1" in result.stdout


def test_ctrl_c_ends_the_session_cleanly_and_keeps_the_data(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "train", "M4", "--data-dir", str(tmp_path),
         "--sim", "--time-scale", "100", "--seed", "1"],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait until a trial has been logged
            if "trial 2:" in line:
                break
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    (session,) = read_sessions(tmp_path / "M4.json")
    assert session["status"] == "stopped"
    assert len(session["trials"]) >= 2
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[Settings]\nduration = -5\n", "'duration'"),
        ("[Settings]\nwindoww = 3\n", "unknown key 'windoww'"),
        ("[Settings]\nintertrial_interval = fast\n", "'intertrial_interval'"),
        ("duration = 5\n", "not a valid config file"),
        ("[Other]\nx = 1\n", "no [Settings] section"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_problem(
    tmp_path: Path, content: str, needle: str
) -> None:
    config = tmp_path / "bad.ini"
    config.write_text(content)
    result = labagent("train", "M5", "--data-dir", str(tmp_path), "--sim", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "M5.json").exists()


@pytest.mark.parametrize("bad_id", ["../etc", "a b", ".hidden", ""])
def test_a_bad_mouse_id_is_one_line_naming_it(tmp_path: Path, bad_id: str) -> None:
    result = labagent("train", bad_id, "--data-dir", str(tmp_path), "--sim")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "invalid mouse id" in result.stderr and repr(bad_id) in result.stderr


def test_a_missing_config_file_is_refused_in_one_line_and_runs_nothing(tmp_path: Path) -> None:
    """A typo'd --config never runs a whole session on the defaults (issue 17, item 4)."""
    result = labagent(
        "train", "M6", "--data-dir", str(tmp_path), "--sim", "--time-scale", "max",
        "--config", str(tmp_path / "nope.ini"),
    )  # fmt: skip
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert "--config" in line and "nope.ini" in line
    assert not (tmp_path / "M6.json").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train"], "labagent train: error: the following arguments are required: MOUSE"),
        (["frob"], "labagent: error: argument COMMAND: invalid choice: 'frob'"),
        (["train", "M1", "--data-dir", "d", "--seed", "x"], "argument --seed: invalid int"),
    ],
)
def test_a_command_line_mistake_is_one_line(args: list[str], expected: str) -> None:
    result = labagent(*args)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert expected in line and "--help" in line


def test_config_init_writes_defaults_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "reach.ini"
    assert labagent("config", "init", str(path)).returncode == 0
    first = path.read_text()
    assert "cue_duration = 10000" in first and "[Settings]" in first
    path.write_text(first + "# edited\n")
    result = labagent("config", "init", str(path))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert path.read_text().endswith("# edited\n")


def test_generate_config_round_trips_through_the_reader(tmp_path: Path) -> None:
    from shared.config import TaskConfig, read_config

    assert read_config(generate_config(tmp_path / "c.ini")) == TaskConfig()


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["default", "parent-ignored"])
def test_on_a_rig_train_waits_for_enter_and_ctrl_c_at_the_notes_prompt_still_saves(
    tmp_path: Path, sigint_ignored: bool
) -> None:
    """Not --sim, on a terminal: it waits for Enter, Ctrl-C ends the session as stopped, and a
    second Ctrl-C at the notes prompt means "no notes", never a lost session; also when the
    parent left SIGINT ignored (the session's own handler overrides that, so must the prompt)."""
    env = {
        **os.environ,
        # The "real" pin factory, made of gpiozero's mock pins: no Pi in a test machine.
        "GPIOZERO_PIN_FACTORY": "mock",
        "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin",
    }
    data = tmp_path / "data"
    terminal = Terminal(
        "agent.cli", ["train", "M9", "--data-dir", str(data), "--meta", "trainer=Matt"], env,
        typing=True, sigint_ignored=sigint_ignored,
    )  # fmt: skip
    try:
        terminal.read_until(b"Press Enter to start")
        assert b"started" not in terminal.screen  # it waits for the person
        os.write(terminal.master, b"\n")
        terminal.read_until(b"started (Ctrl-C ends it)")
        terminal.process.send_signal(signal.SIGINT)
        terminal.read_until(b"Notes for this session: ")
        terminal.process.send_signal(signal.SIGINT)
        terminal.read_until(b"saved to")
        assert terminal.process.wait(30) == 0, terminal.screen.decode()
    finally:
        terminal.close()
    (session,) = read_sessions(data / "M9.json")
    assert session["status"] == "stopped" and session["notes"] == ""
    assert session["trainer"] == "Matt"
    assert b"Traceback" not in terminal.screen


def test_on_a_rig_notes_typed_at_the_prompt_are_saved_with_the_session(tmp_path: Path) -> None:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}
    data = tmp_path / "data"
    terminal = Terminal("agent.cli", ["train", "M8", "--data-dir", str(data)], env, typing=True)
    try:
        terminal.read_until(b"Press Enter to start")
        os.write(terminal.master, b"\n")
        terminal.read_until(b"started (Ctrl-C ends it)")
        terminal.process.send_signal(signal.SIGINT)
        terminal.read_until(b"Notes for this session: ")
        os.write(terminal.master, b"sneezed twice\n")
        terminal.read_until(b"saved to")
        assert terminal.process.wait(30) == 0, terminal.screen.decode()
    finally:
        terminal.close()
    (session,) = read_sessions(data / "M8.json")
    assert session["status"] == "stopped" and session["notes"] == "sneezed twice"
