"""Document consumers as routers: every consumer handles every kind of the Document union,
and a router's call reaches the method of the document's kind."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args
from unittest import mock

import pytest

import shared.documents
from agent.train import TrialLogger
from controller.views import EventLine, describe_event
from controller.web.live import BoxLive
from shared.documents import (
    CueChanged,
    Document,
    DocumentRouter,
    Lift,
    Reset,
    Reward,
    SessionBuilder,
    SessionCounts,
    SessionEnd,
    SessionStart,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
    TrialStart,
)

from .conftest import REPO

#: Every consumer the tree has, and how to make one; a new one must be added here (a test
#: below checks).
MAKERS: dict[type[DocumentRouter[Any]], Callable[[], DocumentRouter[Any]]] = {
    SessionBuilder: SessionBuilder,
    SessionCounts: SessionCounts,
    EventLine: EventLine,
    BoxLive: BoxLive,
    TrialLogger: lambda: TrialLogger("M1", quiet=False),
}
CONSUMERS = list(MAKERS)


def kind_of(model: type[Any]) -> str:
    return str(get_args(model.model_fields["kind"].annotation)[0])


def one_of_each() -> list[Document]:
    """A document of every kind, in the order of a session."""
    base: dict[str, Any] = {"session_id": "s1", "box": "1", "t": 0.0}
    made: list[Document] = [
        SessionStart(**base, seq=0, mouse="M1", settings={}, software_version="test"),
        TrialStart(
            **base,
            seq=1,
            trial=0,
            spout=0,
            cue_duration=10.0,
            spout_position=(1, 1),
            shaping=False,
        ),
        Lift(**base, seq=2, trial=0, paw=1),
        TrialEnd(**base, seq=3, trial=0, outcome=1),
        Reward(**base, seq=4, spout=0, duration_ms=70),
        Reset(**base, seq=5, paw=0),
        SpontaneousReach(**base, seq=6, spout=1),
        SpoutsMoved(**base, seq=7, spout_position=(2, 2)),
        CueChanged(**base, seq=8, cue_duration=8.0),
        SessionEnd(**base, seq=9, status="complete", end_time=1.0, duration=1.0, date="2026-12-07"),
    ]
    return made


def routers_in(path: Path) -> set[str]:
    """``module.Class`` of each class in the file that names DocumentRouter as a base."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                named = base.value if isinstance(base, ast.Subscript) else base
                if isinstance(named, ast.Name) and named.id == "DocumentRouter":
                    found.add(f"{module}.{node.name}")
    return found


def test_the_router_has_one_method_per_kind_of_the_document_union() -> None:
    kinds = {kind_of(model) for model in get_args(get_args(Document)[0])}
    assert len(kinds) == 10  # the union as it is today; a new kind changes this line
    assert set(DocumentRouter.__abstractmethods__) == kinds
    assert {doc.kind for doc in one_of_each()} == kinds


@pytest.mark.parametrize("consumer", CONSUMERS, ids=lambda c: c.__name__)
def test_every_consumer_handles_every_kind(consumer: type[DocumentRouter[Any]]) -> None:
    assert not inspect.isabstract(consumer), sorted(consumer.__abstractmethods__)
    for kind in DocumentRouter.__abstractmethods__:
        assert getattr(consumer, kind) is not getattr(DocumentRouter, kind), kind


def test_every_consumer_in_the_tree_is_tested_here() -> None:
    """A router subclass written anywhere in agent/, controller/ or shared/ is listed above."""
    tree = set()
    for package in ("agent", "controller", "shared"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree |= routers_in(path)
    assert tree == {f"{c.__module__}.{c.__name__}" for c in CONSUMERS}


class Recorder(DocumentRouter[str]):
    """Answers each document with the name of the method it reached."""

    def session_start(self, doc: SessionStart) -> str:
        return "session_start"

    def trial_start(self, doc: TrialStart) -> str:
        return "trial_start"

    def lift(self, doc: Lift) -> str:
        return "lift"

    def trial_end(self, doc: TrialEnd) -> str:
        return "trial_end"

    def reward(self, doc: Reward) -> str:
        return "reward"

    def reset(self, doc: Reset) -> str:
        return "reset"

    def spontaneous_reach(self, doc: SpontaneousReach) -> str:
        return "spontaneous_reach"

    def spouts_moved(self, doc: SpoutsMoved) -> str:
        return "spouts_moved"

    def cue_changed(self, doc: CueChanged) -> str:
        return "cue_changed"

    def session_end(self, doc: SessionEnd) -> str:
        return "session_end"


@pytest.mark.parametrize("doc", one_of_each(), ids=lambda d: d.kind)
def test_a_document_reaches_the_method_of_its_kind(doc: Document) -> None:
    assert Recorder()(doc) == doc.kind


@pytest.mark.parametrize("consumer", CONSUMERS, ids=lambda c: c.__name__)
def test_each_consumer_dispatches_each_kind_to_its_own_method(
    consumer: type[DocumentRouter[Any]],
) -> None:
    router = MAKERS[consumer]()
    for doc in one_of_each():
        # Every method spied on: the document reaches its own kind's, and no other.
        spies = {kind: mock.Mock(return_value=None) for kind in DocumentRouter.__abstractmethods__}
        with mock.patch.multiple(router, **spies):
            router(doc)
        assert {kind for kind, spy in spies.items() if spy.called} == {doc.kind}
        spies[doc.kind].assert_called_once_with(doc)
        if isinstance(router, SessionBuilder) and isinstance(doc, SessionStart):
            router.start = doc  # what its spied-on method would have kept, checked later on


def test_consumers_give_what_they_gave_before_on_a_whole_session() -> None:
    docs = one_of_each()
    built = shared.documents.build_session(docs)
    assert built["trials"][0]["outcome"] == 1 and built["resets"] == [[0.0, 0]]
    counts = shared.documents.count_session(docs)
    assert counts.as_dict() == {
        "trials": 1, "correct": 1, "incorrect": 0, "missed": 0, "rewards": 1,
    }  # fmt: skip
    lines = [describe_event(doc) for doc in docs]
    assert lines[0] == "session started: M1" and lines[-1] == "session ended: complete"
    assert lines[3] == "trial 1: correct" and lines[7] == "spouts moved to [2, 2]"
