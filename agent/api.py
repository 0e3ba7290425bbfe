"""The original single-rig library's Python API, working with no broker and no controller.

The seed documentation's code runs with only its import lines changed::

    import agent as reach                      # was: import reach
    from agent import Mouse                    # was: from reach import Mouse

    mouse = Mouse.init_from_file(mouse_id="ExampleMouse1", json_path="~/training_data")
    mouse.train(config_file="~/reach_config.ini", data={"trainer": "Matt", "training_box": 1})
    mouse.save_data_to_file("~/training_data")

``train`` runs on this Pi's GPIO; pass ``sim=True`` (and optionally a
``time_scale``) to run on gpiozero's mock pins with a simulated mouse.

Analysis notebooks written against the original run too: ``Mouse``,
``Cohort`` and ``Session`` have its ``init_from_file(s)``, ``get_results``,
``get_trials``, ``get_spontaneous_reaches`` and ``get_d_prime``, with the same
row keys and numbers (:mod:`shared.analysis.original`; docs/analysis.md).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Self

from agent.engine import Sink
from agent.hardware import PinMap
from agent.runtime import RigRuntime, parse_time_scale
from agent.savefile import SaveReport, fingerprint, save_sessions
from agent.sim import MouseProfile
from shared.analysis import (
    SessionResults,
    cohort_results,
    mouse_results,
    original,
    session_results,
)
from shared.carryover import last_carry_over
from shared.config import TaskConfig, check_not_reserved, generate_config, read_config
from shared.errors import ConfigError, DataFileError
from shared.ids import check_mouse_id
from shared.sessionfile import mouse_file_path, read_sessions

__all__ = ["Cohort", "Mouse", "SaveReport", "Session", "generate_config"]


class Session:
    """One training session's data: ``Session.data`` is the dict stored in the mouse's file.

    The analysis methods are the original library's and never change ``data``.
    """

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = data if data is not None else {}

    @classmethod
    def init_all_from_file(cls, data_file: str | os.PathLike[str]) -> list[Session]:
        """One :class:`Session` per session dict of a per-mouse file."""
        path = Path(data_file).expanduser()
        if not path.is_file():
            raise DataFileError(f"{path}: no such per-mouse file")
        return [cls(s) for s in read_sessions(path)]

    def add_data(self, data: dict[str, Any]) -> None:
        """Add or replace keys of this session's data."""
        self.data.update(data)

    def get_trials(self) -> list[dict[str, Any]] | None:
        """A copy of this session's trials in order; None when it has no ``trials`` list."""
        trials = self.data.get("trials")
        if not isinstance(trials, list):
            return None
        return [dict(t) if isinstance(t, dict) else t for t in trials]

    def get_d_prime(self) -> float:
        """The original's d' of this session (docs/analysis.md); 0.0 without touches."""
        return original.session_d_prime(self.data)

    def get_results(self) -> dict[str, Any]:
        """The original's results row for this session (a row of zeros when it has no trials)."""
        return original.session_results(self.data)

    def get_spontaneous_reaches(self) -> list[dict[str, Any]]:
        """Each spontaneous reach as ``{"timing": t, "location": spout}``."""
        return original.session_spontaneous_reaches(self.data)

    def results(self) -> SessionResults:
        """reachlab's figure for this session: counts, d', medians, water given."""
        return session_results(self.data)

    def __repr__(self) -> str:
        trials = self.data.get("trials")
        count = len(trials) if isinstance(trials, list) else 0
        return f"Session(date={self.data.get('date')!r}, trials={count})"


def _folder(
    data_dir: str | os.PathLike[str] | None, json_path: str | os.PathLike[str] | None
) -> Path:
    # The original called the folder data_dir; its user documentation says json_path.
    if data_dir is not None and json_path is not None:
        raise ConfigError("give the training data folder as data_dir or json_path, not both")
    folder = data_dir if data_dir is not None else json_path
    if folder is None:
        raise ConfigError("no training data folder given (data_dir=...)")
    return Path(folder).expanduser()


class Mouse:
    """A mouse and its training history (one :class:`Session` per training day)."""

    #: The class of the sessions it holds (the later API's has ``run``).
    session_type: type[Session] = Session

    def __init__(
        self, mouse_id: str | None = None, data: list[Session] | list[dict[str, Any]] | None = None
    ) -> None:
        self.mouse_id = check_mouse_id(mouse_id) if mouse_id is not None else None
        make = self.session_type
        self.data: list[Session] = [s if isinstance(s, Session) else make(s) for s in data or []]
        # The file as this mouse last read or wrote it, so that a save can tell what the
        # script removed or changed from what another program added meanwhile.
        self._read: list[str] = []
        self._known: dict[int, tuple[Session, str]] = {}
        self._made_here: set[int] = set()  # ids of sessions this mouse trained (or was given)
        self._file: Path | None = None  # the file those describe

    @classmethod
    def init_from_file(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        mouse_id: str | None = None,
        *,
        json_path: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Load ``<data_dir>/<mouse_id>.json``; a mouse with no file yet starts empty.

        The arguments are the original's, ``(data_dir, mouse_id)``; ``json_path``
        is the same folder under the name the original's documentation uses. A
        path naming the ``.json`` file itself is read as that file.
        """
        folder = _folder(data_dir, json_path)
        if mouse_id is None:
            raise ConfigError("no mouse_id given")
        if folder.suffix == ".json" and folder.is_file():
            file = folder
        else:
            file = mouse_file_path(folder, mouse_id)
        mouse = cls(mouse_id, [cls.session_type(s) for s in read_sessions(file)])
        mouse._remember_file(file)
        return mouse

    def _remember_file(self, file: Path) -> None:
        """What ``file`` holds is what this mouse holds now."""
        self._file = file.resolve()
        self._known = {id(s): (s, fingerprint(s.data)) for s in self.data}
        self._read = [fp for _s, fp in self._known.values()]
        self._made_here &= set(self._known)

    def __getitem__(self, index: int) -> Session:
        return self.data[index]

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
        check_not_reserved(data or {})  # ReservedKeyError: the session would overwrite it
        carry = last_carry_over([s.data for s in self.data], config.window)
        if mouse_profile is not None and not sim:
            raise ConfigError("a simulated mouse's profile needs sim=True (--sim)")
        runtime = RigRuntime.create(
            sim=sim, time_scale=time_scale, pins=pins, seed=seed, profile=mouse_profile
        )
        try:
            task = runtime.new_session(
                config=config,
                mouse=self._id(),
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
        session = self.session_type(session_data)
        self.data.append(session)
        return session

    def save_data_to_file(self, json_path: str | os.PathLike[str]) -> SaveReport:
        """Write the sessions this mouse holds to ``json_path/<mouse_id>.json`` (atomically).

        A session the script deleted, merged or changed is saved as it now is; the
        previous file is then kept beside it as ``<mouse_id>.json.<time>.bak`` and
        the report (and the log) names what was removed or changed. Sessions another
        program added to the file since this mouse read it are kept; a file this
        mouse did not read gets what it holds (its other sessions are backed up).
        """
        path = mouse_file_path(json_path, self._id())
        if path.resolve() != self._file:
            # Not the file this mouse read: it gets what the mouse holds, as in the original.
            self._known, self._made_here = {}, set()
        known: list[str | None] = []
        mine: list[bool] = []
        for session in self.data:
            entry = self._known.get(id(session))
            is_known = entry is not None and entry[0] is session
            known.append(entry[1] if entry is not None and is_known else None)
            if not is_known:
                self._made_here.add(id(session))
            mine.append(id(session) in self._made_here)
        read = self._read if path.resolve() == self._file else None
        report = save_sessions(path, [s.data for s in self.data], known, read, mine)
        self._remember_file(path)
        self._read = [fingerprint(s) for s in read_sessions(path)]
        return report

    def _id(self) -> str:
        if self.mouse_id is None:
            raise ConfigError("this Mouse has no mouse_id")
        return self.mouse_id

    def _sessions(self) -> list[dict[str, Any]]:
        return [s.data for s in self.data]

    def get_trials(self, collapse_days: bool = True) -> list[dict[str, Any]]:
        """Every trial with an outcome, with ``day``, ``mouse_id``, ``spout_position_0``/``_1``,
        ``reaction_time`` and ``lift_latency``: ``pandas.DataFrame(mouse.get_trials())``.

        With ``collapse_days`` sessions sharing a date share a ``day``.
        """
        return original.mouse_trials(self.mouse_id, self._sessions(), collapse_days)

    def get_results(self, collapse_days: bool = True) -> list[dict[str, Any]]:
        """The original's results rows, one per session or per day:
        ``pandas.DataFrame(mouse.get_results())``.

        As the original, a day merged from several sessions has ``d_prime``
        None; ``d_prime_day`` gives the original's d' of that day's trials.
        """
        return original.mouse_results(self.mouse_id, self._sessions(), collapse_days)

    def get_spontaneous_reaches(self) -> list[dict[str, Any]]:
        """Every spontaneous reach: ``timing``, ``location``, ``day``, ``mouse_id``."""
        return original.mouse_spontaneous_reaches(self.mouse_id, self._sessions())

    def results(self, collapse_days: bool = False) -> list[SessionResults]:
        """reachlab's figure, one row per session (or per day with ``collapse_days``)."""
        return mouse_results(self._id(), self._sessions(), collapse_days)


class Cohort:
    """Several mice analysed together; indexing and iterating give the :class:`Mouse` objects."""

    #: The class of the mice it holds.
    mouse_type: type[Mouse] = Mouse

    def __init__(self, mice: list[Mouse] | None = None, mouse_ids: list[str] | None = None) -> None:
        self.mice: list[Mouse] = mice or []
        self.mouse_ids: list[str] = (
            list(mouse_ids) if mouse_ids else [m.mouse_id for m in self.mice if m.mouse_id]
        )

    @classmethod
    def init_from_files(
        cls,
        data_dir: str | os.PathLike[str] | list[str] | None = None,
        mouse_ids: str | list[str] | os.PathLike[str] | None = None,
        *,
        json_path: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Load ``<data_dir>/<id>.json`` for every id in ``mouse_ids`` (the original's order).

        ``json_path`` names the folder as the original's documentation does; the
        order ``(mouse_ids, folder)`` of reachlab's first releases still works,
        as a list of ids cannot be a folder.
        """
        if isinstance(data_dir, list | tuple) and not isinstance(mouse_ids, list | tuple):
            ids, folder_given = list(data_dir), mouse_ids
        else:
            if isinstance(mouse_ids, str):
                mouse_ids = [mouse_ids]
            if not isinstance(mouse_ids, list | tuple):
                raise ConfigError("mouse_ids must be a list of mouse ids")
            if isinstance(data_dir, list | tuple):
                raise ConfigError("data_dir must be a folder, not a list")
            ids, folder_given = list(mouse_ids), data_dir
        folder = _folder(folder_given, json_path)
        ids = [str(m) for m in ids]
        return cls([cls.mouse_type.init_from_file(folder, m) for m in ids], ids)

    def __getitem__(self, index: int) -> Mouse:
        return self.mice[index]

    def __iter__(self) -> Iterator[Mouse]:
        return iter(self.mice)

    def __len__(self) -> int:
        return len(self.mice)

    def __repr__(self) -> str:
        return f"Cohort containing mice: {', '.join(self.mouse_ids)}"

    def get_trials(self, collapse_days: bool = True) -> list[dict[str, Any]]:
        """:meth:`Mouse.get_trials` rows of every mouse, mouse after mouse."""
        return [row for m in self.mice for row in m.get_trials(collapse_days)]

    def get_results(self, collapse_days: bool = True) -> list[dict[str, Any]]:
        """:meth:`Mouse.get_results` rows of every mouse, mouse after mouse."""
        return [row for m in self.mice for row in m.get_results(collapse_days)]

    def get_spontaneous_reaches(self) -> list[dict[str, Any]]:
        """:meth:`Mouse.get_spontaneous_reaches` rows of every mouse."""
        return [row for m in self.mice for row in m.get_spontaneous_reaches()]

    def results(self, collapse_days: bool = False) -> list[dict[str, Any]]:
        """reachlab's figure: a row per mouse and session (or day), for a cohort table."""
        return cohort_results({m._id(): m._sessions() for m in self.mice}, collapse_days)
