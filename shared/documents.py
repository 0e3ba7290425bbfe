"""Session documents: the start / event / end stream one session emits (DESIGN §5).

The task engine emits these, the agent journals and publishes them, and the
controller stores them. Whatever consumes them is a :class:`DocumentRouter`,
with one method per kind. :class:`SessionBuilder` folds a session's documents
into the per-mouse session dict; the agent's own copy and the controller's
rebuilt copy both come from it, which is why they are identical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.carryover import CarryOver
from shared.config import TaskConfig
from shared.errors import ProtocolError
from shared.outcomes import Outcome
from shared.sessionfile import SessionStatus

SCHEMA_VERSION: Final = 1

R = TypeVar("R")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    session_id: str = Field(min_length=1, max_length=64)
    box: str
    seq: int = Field(ge=0, description="position in the session's stream, from 0")
    t: float = Field(description="task clock, Unix seconds")


class SessionStart(_Doc):
    """First document of a session: who, where, with which settings."""

    kind: Literal["session_start"] = "session_start"
    mouse: str
    settings: TaskConfig = Field(description="the settings this session runs with")
    metadata: dict[str, Any] = Field(default_factory=dict, description="stored first in the dict")
    carry_over: CarryOver | None = None
    software_version: str
    pins: dict[str, int | tuple[int, int]] | None = Field(
        None,
        description="the rig's BCM pin numbers by role (left, right where a pair); kept with "
        "the stored documents for the record (NWB export), not in the session dict",
    )


class TrialStart(_Doc):
    """Cue on for ``spout``."""

    kind: Literal["trial_start"] = "trial_start"
    trial: int = Field(ge=0)
    spout: Literal[0, 1]
    cue_duration: float
    spout_position: tuple[int, int]
    shaping: bool


class Lift(_Doc):
    """The first paw lift of a trial."""

    kind: Literal["lift"] = "lift"
    trial: int = Field(ge=0)
    paw: Literal[0, 1]


class TrialEnd(_Doc):
    """A trial's outcome; ``t`` is the touch time, or the cue's end when missed."""

    kind: Literal["trial_end"] = "trial_end"
    trial: int = Field(ge=0)
    outcome: Outcome


class Reward(_Doc):
    """Water given: after a correct touch, at cue onset when shaping, or by hand."""

    kind: Literal["reward"] = "reward"
    spout: Literal[0, 1]
    duration_ms: int


class Reset(_Doc):
    """A paw lift broke the ITI."""

    kind: Literal["reset"] = "reset"
    paw: Literal[0, 1]


class SpontaneousReach(_Doc):
    """A spout touch broke the ITI."""

    kind: Literal["spontaneous_reach"] = "spontaneous_reach"
    spout: Literal[0, 1]


class SpoutsMoved(_Doc):
    """The adaptive rule moved a spout."""

    kind: Literal["spouts_moved"] = "spouts_moved"
    spout_position: tuple[int, int]


class CueChanged(_Doc):
    """The adaptive rule shortened the cue."""

    kind: Literal["cue_changed"] = "cue_changed"
    cue_duration: float


class SessionEnd(_Doc):
    """Last document of a session; ``seq`` is the session's last seq."""

    kind: Literal["session_end"] = "session_end"
    status: SessionStatus
    end_time: float
    duration: float
    date: str
    notes: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)


Document = Annotated[
    SessionStart
    | TrialStart
    | Lift
    | TrialEnd
    | Reward
    | Reset
    | SpontaneousReach
    | SpoutsMoved
    | CueChanged
    | SessionEnd,
    Field(discriminator="kind"),
]
DocumentAdapter: TypeAdapter[Document] = TypeAdapter(Document)


def kind_of(model: type[BaseModel]) -> str:
    """The ``kind`` a document class is sent and stored under (what SQL counts by)."""
    return str(model.model_fields["kind"].default)


def parse_document(data: bytes | str | dict[str, Any]) -> Document:
    """Validate one document from JSON or a dict; raise :class:`ProtocolError` saying why."""
    try:
        if isinstance(data, dict):
            return DocumentAdapter.validate_python(data)
        return DocumentAdapter.validate_json(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "document"
        raise ProtocolError(f"invalid session document: {where}: {err['msg']}") from None


def dump_document(doc: Document) -> str:
    """The document as compact JSON, the form that is journalled and published."""
    return doc.model_dump_json()


class DocumentRouter(ABC, Generic[R]):
    """A consumer of session documents: one method per kind; calling it dispatches.

    As event-model's ``DocumentRouter``: the transport only decodes, and
    ``router(doc)`` reaches the method named after ``doc.kind``. Every method is
    abstract, so a consumer says what it does with every kind (if only "nothing");
    one that lacks a kind cannot be made (mypy and Python both refuse), and
    tests/test_router.py checks that the methods are exactly :data:`Document`'s kinds.
    """

    def __call__(self, doc: Document) -> R:
        # By name, as event-model does: one lookup, where a chain of isinstance checks on
        # pydantic models costs about 0.5 µs a class. tests/test_router.py checks that the
        # methods' names are the union's kinds.
        method: Callable[[Document], R] = getattr(self, doc.kind)
        return method(doc)

    @abstractmethod
    def session_start(self, doc: SessionStart) -> R: ...
    @abstractmethod
    def trial_start(self, doc: TrialStart) -> R: ...
    @abstractmethod
    def lift(self, doc: Lift) -> R: ...
    @abstractmethod
    def trial_end(self, doc: TrialEnd) -> R: ...
    @abstractmethod
    def reward(self, doc: Reward) -> R: ...
    @abstractmethod
    def reset(self, doc: Reset) -> R: ...
    @abstractmethod
    def spontaneous_reach(self, doc: SpontaneousReach) -> R: ...
    @abstractmethod
    def spouts_moved(self, doc: SpoutsMoved) -> R: ...
    @abstractmethod
    def cue_changed(self, doc: CueChanged) -> R: ...
    @abstractmethod
    def session_end(self, doc: SessionEnd) -> R: ...


class SessionCounts(DocumentRouter[None]):
    """The one count of a session's trials (by outcome) and rewards, from its documents.

    The engine's ``session_end`` counts, the fold below and the collector's running
    counts all come from it; documents may be counted in any order.
    """

    def __init__(self) -> None:
        self.trials = 0
        self.rewards = 0
        self.outcomes = [0, 0, 0]  # missed, correct, incorrect: indexed by Outcome

    def trial_end(self, doc: TrialEnd) -> None:
        self.trials += 1
        self.outcomes[doc.outcome] += 1

    def reward(self, doc: Reward) -> None:
        self.rewards += 1

    # Nothing else is counted.
    def session_start(self, doc: SessionStart) -> None:
        pass

    def trial_start(self, doc: TrialStart) -> None:
        pass

    def lift(self, doc: Lift) -> None:
        pass

    def reset(self, doc: Reset) -> None:
        pass

    def spontaneous_reach(self, doc: SpontaneousReach) -> None:
        pass

    def spouts_moved(self, doc: SpoutsMoved) -> None:
        pass

    def cue_changed(self, doc: CueChanged) -> None:
        pass

    def session_end(self, doc: SessionEnd) -> None:
        pass

    def as_dict(self) -> dict[str, int]:
        """As ``session_end`` carries them."""
        missed, correct, incorrect = self.outcomes
        return {
            "trials": self.trials,
            "correct": correct,
            "incorrect": incorrect,
            "missed": missed,
            "rewards": self.rewards,
        }


def count_session(docs: Iterable[Document]) -> SessionCounts:
    """The counts of some of a session's documents, in any order."""
    counts = SessionCounts()
    for doc in docs:
        counts(doc)
    return counts


class SessionBuilder(DocumentRouter[None]):
    """Folds one session's documents, in ``seq`` order, into its per-mouse session dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.start: SessionStart | None = None
        self.end: SessionEnd | None = None
        self.next_seq = 0
        self.counts = SessionCounts()
        self._open_trial: dict[str, Any] | None = None

    @property
    def rewards(self) -> int:
        return self.counts.rewards

    @property
    def complete(self) -> bool:
        """True once the end document has been folded in."""
        return self.end is not None

    def __call__(self, doc: Document) -> None:
        """Fold in the next document; documents must come in order with no gap."""
        if doc.seq != self.next_seq:
            raise ProtocolError(f"expected seq {self.next_seq}, got {doc.seq}")
        if self.end is not None:
            raise ProtocolError("document after session_end")
        starts = doc.kind == "session_start"  # not isinstance: slow on pydantic models
        if self.start is None and not starts:
            raise ProtocolError("session must begin with session_start")
        if (
            self.start is not None
            and not starts  # a second one says "second session_start"
            and doc.session_id != self.start.session_id
        ):
            raise ProtocolError(f"document of session {doc.session_id} in {self.start.session_id}")
        super().__call__(doc)
        self.counts(doc)
        self.next_seq += 1

    add = __call__

    def session_start(self, doc: SessionStart) -> None:
        if self.start is not None:
            raise ProtocolError("second session_start")
        self.start = doc
        data: dict[str, Any] = dict(doc.metadata)
        data.update(doc.settings.settings())
        data["trials"] = []
        data["resets"] = []
        data["spontaneous_reaches"] = []
        data["start_time"] = doc.t
        self.data = data

    def trial_start(self, doc: TrialStart) -> None:
        if self._open_trial is not None:
            raise ProtocolError(f"trial_start seq {doc.seq} while a trial is open")
        self._open_trial = {
            "start": doc.t,
            "spout": doc.spout,
            "shaping": doc.shaping,
            "cue_duration": doc.cue_duration,
            "spout_position": list(doc.spout_position),
        }

    def lift(self, doc: Lift) -> None:
        # Only the first lift of a trial counts (DESIGN §3.2).
        if self._open_trial is not None and "lift_time" not in self._open_trial:
            self._open_trial["lift_time"] = doc.t
            self._open_trial["lift_paw"] = doc.paw

    def trial_end(self, doc: TrialEnd) -> None:
        trial = self._open_trial
        if trial is None:
            raise ProtocolError(f"trial_end seq {doc.seq} without trial_start")
        # Key order as the original library wrote trials.
        ordered: dict[str, Any] = {"start": trial["start"]}
        if "lift_time" in trial:
            ordered["lift_time"] = trial["lift_time"]
            ordered["lift_paw"] = trial["lift_paw"]
        ordered["end"] = doc.t
        ordered["spout"] = trial["spout"]
        ordered["shaping"] = trial["shaping"]
        ordered["cue_duration"] = trial["cue_duration"]
        ordered["outcome"] = doc.outcome
        ordered["spout_position"] = trial["spout_position"]
        self.data["trials"].append(ordered)
        self._open_trial = None

    def reward(self, doc: Reward) -> None:
        pass  # counted (the ``rewards`` property); the dict keeps no list of them

    def reset(self, doc: Reset) -> None:
        self.data["resets"].append([doc.t, doc.paw])

    def spontaneous_reach(self, doc: SpontaneousReach) -> None:
        self.data["spontaneous_reaches"].append([doc.t, doc.spout])

    # SpoutsMoved and CueChanged are visible in the trials' own fields; they are
    # kept in the stream for live monitoring and need nothing in the dict.
    def spouts_moved(self, doc: SpoutsMoved) -> None:
        pass

    def cue_changed(self, doc: CueChanged) -> None:
        pass

    def session_end(self, doc: SessionEnd) -> None:
        self.end = doc
        assert self.start is not None
        data = self.data
        data["end_time"] = doc.end_time
        data["duration"] = doc.duration
        data["date"] = doc.date
        data["notes"] = doc.notes if doc.notes is not None else data.get("notes", "")
        data["session_id"] = doc.session_id
        data["box"] = doc.box
        data["status"] = doc.status
        data["software_version"] = self.start.software_version


def build_session(docs: list[Document]) -> dict[str, Any]:
    """The session dict of a complete, ordered document list."""
    builder = SessionBuilder()
    for doc in sorted(docs, key=lambda d: d.seq):
        builder.add(doc)
    return builder.data
