"""The original single-rig library's Python API, working with no broker and no controller.

The seed documentation's code runs with only its import lines changed::

    import agent as reach                      # was: import reach
    from agent import Mouse                    # was: from reach import Mouse

    mouse = Mouse.init_from_file(mouse_id="ExampleMouse1", json_path="~/training_data")
    mouse.train(config_file="~/reach_config.ini", data={"trainer": "Matt", "training_box": 1})
    mouse.save_data_to_file("~/training_data")

``train`` runs on this Pi's GPIO; pass ``sim=True`` (and optionally a
``time_scale``) to run on gpiozero's mock pins with a simulated mouse.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from agent.engine import Sink
from agent.hardware import PinMap
from agent.runtime import RigRuntime, parse_time_scale
from agent.sim import MouseProfile
from shared.analysis import SessionResults, cohort_results, mouse_results, session_results
from shared.carryover import last_carry_over
from shared.config import TaskConfig, generate_config, read_config
from shared.errors import ConfigError
from shared.ids import check_mouse_id
from shared.sessionfile import append_session, mouse_file_path, read_sessions, write_sessions

__all__ = ["Cohort", "Mouse", "Session", "generate_config"]


class Session:
    """One training session's data: ``Session.data`` is the dict stored in the mouse's file."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def results(self) -> SessionResults:
        """Trial counts, d-prime and water given for this session."""
        return session_results(self.data)

    def __repr__(self) -> str:
        return f"Session(date={self.data.get('date')!r}, trials={len(self.data.get('trials', []))})"


class Mouse:
    """A mouse and its training history (one :class:`Session` per training day)."""

    def __init__(self, mouse_id: str, data: list[Session] | None = None) -> None:
        self.mouse_id = check_mouse_id(mouse_id)
        self.data: list[Session] = data or []
        self._unsaved: list[Session] = []

    @classmethod
    def init_from_file(cls, mouse_id: str, json_path: str | os.PathLike[str]) -> Mouse:
        """Load ``json_path/<mouse_id>.json``; a mouse with no file yet starts empty."""
        sessions = read_sessions(mouse_file_path(json_path, mouse_id))
        return cls(mouse_id, [Session(s) for s in sessions])

    def __iter__(self) -> Iterator[Session]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def train(
        self,
        config_file: str | os.PathLike[str] | None = None,
        data: dict[str, Any] | None = None,
        *,
        config: TaskConfig | dict[str, Any] | None = None,
        sim: bool | None = None,
        time_scale: float | None = None,
        seed: int | None = None,
        pins: PinMap | None = None,
        box: str = "local",
        on_document: Sink | None = None,
        mouse_profile: MouseProfile | None = None,
    ) -> Session:
        """Run one session on this rig, continuing from the previous session (carry-over).

        ``sim`` and ``time_scale`` default to the ``LABAGENT_SIM`` and
        ``LABAGENT_TIME_SCALE`` environment variables (so an unchanged script can
        run on a laptop), else a real rig in real time.
        Ctrl-C ends the session cleanly as ``stopped`` and keeps its data.
        ``on_document`` sees every session document as it is emitted;
        ``mouse_profile`` sets how the simulated mouse behaves (with ``sim`` only).

        The settings come from ``config`` (a :class:`~shared.config.TaskConfig`, or a
        dict of settings checked like a config file's) when given, else from
        ``config_file``, else the defaults. A dict names only what differs from them.
        """
        if sim is None:
            sim = os.environ.get("LABAGENT_SIM", "").lower() in ("1", "true", "yes")
        if time_scale is None:
            time_scale = parse_time_scale(os.environ.get("LABAGENT_TIME_SCALE", "1"))
        if config is not None and config_file is not None:
            raise ConfigError("give the settings as config_file or as config, not both")
        if isinstance(config, dict):
            config = TaskConfig.from_dict(config, source="config")
        elif config is None:
            config = read_config(Path(config_file).expanduser() if config_file else None)
        carry = last_carry_over([s.data for s in self.data], config.window)
        if mouse_profile is not None and not sim:
            raise ConfigError("a simulated mouse's profile needs sim=True (--sim)")
        runtime = RigRuntime.create(
            sim=sim, time_scale=time_scale, pins=pins, seed=seed, profile=mouse_profile
        )
        try:
            task = runtime.new_session(
                config=config,
                mouse=self.mouse_id,
                box=box,
                metadata=data,
                carry_over=carry,
                sink=on_document,
            )

            def on_interrupt(_sig: int, _frame: FrameType | None) -> None:
                # Ask the loop to stop the session between callbacks, never in the middle of one.
                runtime.loop.call_soon_threadsafe(task.stop, "stopped")

            previous = signal.signal(signal.SIGINT, on_interrupt)
            try:
                session_data = runtime.run_session(task)
            finally:
                signal.signal(signal.SIGINT, previous)
        finally:
            runtime.close()
        session = Session(session_data)
        self.data.append(session)
        self._unsaved.append(session)
        return session

    def save_data_to_file(self, json_path: str | os.PathLike[str]) -> Path:
        """Add this mouse's new sessions to ``json_path/<mouse_id>.json`` (atomically).

        Sessions already in the file, including any written by someone else
        since it was loaded, are kept.
        """
        path = mouse_file_path(json_path, self.mouse_id)
        if not path.exists():
            write_sessions(path, [s.data for s in self.data])
        else:
            for session in self._unsaved:
                append_session(path, session.data)
        self._unsaved.clear()
        return path

    def results(self, collapse_days: bool = False) -> list[SessionResults]:
        """One row of results per session (or per day with ``collapse_days``)."""
        return mouse_results(self.mouse_id, [s.data for s in self.data], collapse_days)


class Cohort:
    """Several mice analysed together."""

    def __init__(self, mice: list[Mouse]) -> None:
        self.mice = mice

    @classmethod
    def init_from_files(cls, mouse_ids: list[str], json_path: str | os.PathLike[str]) -> Cohort:
        return cls([Mouse.init_from_file(mouse_id=m, json_path=json_path) for m in mouse_ids])

    def __iter__(self) -> Iterator[Mouse]:
        return iter(self.mice)

    def results(self, collapse_days: bool = False) -> list[dict[str, Any]]:
        """A row per mouse and session (or day), for a cohort table."""
        return cohort_results(
            {m.mouse_id: [s.data for s in m.data] for m in self.mice}, collapse_days
        )
