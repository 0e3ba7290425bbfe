"""The JSON Schema files in docs/schema/ match the models, and real messages fit them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from shared.config import TaskConfig
from shared.documents import (
    CueChanged,
    Document,
    DocumentAdapter,
    Lift,
    Reset,
    Reward,
    SessionEnd,
    SessionStart,
    SpontaneousReach,
    SpoutsMoved,
    TrialEnd,
    TrialStart,
    build_session,
)
from shared.protocol import (
    COMMAND_NAMES,
    CommandAdapter,
    DispenseCommand,
    MoveSpoutsCommand,
    Reply,
    StartCommand,
    Status,
    StopCommand,
)
from shared.schema import dumps_schema, main, schemas, write_schemas
from shared.sessionfile import MouseFile

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "docs" / "schema"
REGENERATE = "docs/schema is out of date: run `python -m shared.schema` and commit the result"


# ---------------------------------------------------------------- drift


def test_schema_files_exist_for_every_schema_and_no_others() -> None:
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(schemas()), REGENERATE


@pytest.mark.parametrize("name", sorted(schemas()))
def test_schema_file_matches_the_models(name: str) -> None:
    stored = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert stored == dumps_schema(schemas()[name]), REGENERATE


def test_written_files_are_pretty_sorted_json_with_trailing_newline(tmp_path: Path) -> None:
    written = write_schemas(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(schemas())
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("}\n") and not text.endswith("\n\n")
        assert (
            text
            == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
        assert json.loads(text)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_command_line_writes_into_the_given_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 0
    for name, schema in schemas().items():
        assert (tmp_path / name).read_text(encoding="utf-8") == dumps_schema(schema)
    assert len(capsys.readouterr().out.splitlines()) == len(schemas())


# ---------------------------------------------------------------- a small JSON Schema checker
#
# Enough of JSON Schema 2020-12 for what pydantic generates here ($ref, anyOf, oneOf,
# const, enum, type, properties, required, additionalProperties, items, prefixItems,
# bounds), so real messages can be checked against the stored files themselves.

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(
    value: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "$"
) -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return schema_errors(value, root["$defs"][name], root, at)
    errors: list[str] = []
    if "anyOf" in schema and all(schema_errors(value, s, root, at) for s in schema["anyOf"]):
        errors.append(f"{at}: matches no anyOf branch")
    if "oneOf" in schema:
        matching = sum(not schema_errors(value, s, root, at) for s in schema["oneOf"])
        if matching != 1:
            errors.append(f"{at}: matches {matching} oneOf branches")
    if "type" in schema and not _TYPES[schema["type"]](value):
        return [*errors, f"{at}: not of type {schema['type']}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{at}: is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{at}: below {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{at}: above {schema['maximum']}")
    if isinstance(value, str) and not schema.get("minLength", 0) <= len(value) <= schema.get(
        "maxLength", len(value)
    ):
        errors.append(f"{at}: wrong length")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{at}: missing {key}" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], root, f"{at}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{at}: unexpected key {key}")
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            errors.append(f"{at}: wrong number of items")
        prefix = schema.get("prefixItems", [])
        for n, item in enumerate(value):
            item_schema = prefix[n] if n < len(prefix) else schema.get("items")
            if item_schema is not None:
                errors += schema_errors(item, item_schema, root, f"{at}[{n}]")
    return errors


def stored(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return schema


def real_session_documents() -> list[Document]:
    """One session's stream as the engine emits it: every kind of document."""
    common: dict[str, Any] = {"session_id": "20240501-M1-a1b2", "box": "box1"}
    t0 = 1_714_550_400.0
    kinds: list[Document] = [
        SessionStart(
            **common, seq=0, t=t0, mouse="M1", settings=TaskConfig().settings(),
            metadata={"trainer": "alex", "weight": "21.1"}, software_version="reachlab 0.1.0",
        ),
        TrialStart(
            **common, seq=1, t=t0 + 5, trial=0, spout=1, cue_duration=10000.0,
            spout_position=(3, 2), shaping=False,
        ),
        Lift(**common, seq=2, t=t0 + 5.4, trial=0, paw=0),
        TrialEnd(**common, seq=3, t=t0 + 6.1, trial=0, outcome=1),
        Reward(**common, seq=4, t=t0 + 6.1, spout=1, duration_ms=70),
        Reset(**common, seq=5, t=t0 + 9, paw=1),
        SpontaneousReach(**common, seq=6, t=t0 + 11, spout=0),
        SpoutsMoved(**common, seq=7, t=t0 + 12, spout_position=(4, 2)),
        CueChanged(**common, seq=8, t=t0 + 12, cue_duration=9970.0),
        SessionEnd(
            **common, seq=9, t=t0 + 1800, status="complete", end_time=t0 + 1800,
            duration=1800.0, date="2024-05-01", counts={"trials": 1},
        ),
    ]  # fmt: skip
    return kinds


def test_every_document_kind_fits_the_stored_schema_and_its_adapter() -> None:
    schema = stored("session-document.json")
    documents = real_session_documents()
    assert {doc.model_dump()["kind"] for doc in documents} == set(
        schema["discriminator"]["mapping"]
    )
    for doc in documents:
        wire = json.loads(doc.model_dump_json())
        assert schema_errors(wire, schema, schema) == [], wire["kind"]
        assert DocumentAdapter.validate_python(wire) == doc


def test_documents_breaking_the_schema_are_refused_by_schema_and_adapter() -> None:
    schema = stored("session-document.json")
    good = json.loads(real_session_documents()[3].model_dump_json())  # a trial_end
    for bad in ({**good, "outcome": 3}, {**good, "seq": -1}, {**good, "extra": 1}):
        assert schema_errors(bad, schema, schema) != []
        with pytest.raises(ValueError):
            DocumentAdapter.validate_python(bad)


def test_session_built_from_documents_fits_the_mouse_file_schema() -> None:
    schema = stored("mouse-file.json")
    session = build_session(real_session_documents())
    file_content = json.loads(json.dumps([session]))
    assert schema_errors(file_content, schema, schema) == []
    MouseFile.validate_python(file_content)

    bad_trial = json.loads(json.dumps([session]))
    bad_trial[0]["trials"][0]["outcome"] = 3
    assert schema_errors(bad_trial, schema, schema) != []
    with pytest.raises(ValueError):
        MouseFile.validate_python(bad_trial)


def test_mouse_file_schema_keeps_extra_keys_of_old_files() -> None:
    schema = stored("mouse-file.json")
    old = [{"trainer": "alex", "weight": "21.1", "start_time": "16:45:18", "trials": []}]
    assert schema["$defs"]["SessionRecord"]["additionalProperties"] is True
    assert schema_errors(old, schema, schema) == []
    MouseFile.validate_python(old)


def test_commands_reply_and_status_fit_their_stored_schemas() -> None:
    command_schema = stored("command.json")
    assert set(command_schema["discriminator"]["mapping"]) == set(COMMAND_NAMES)
    commands: list[BaseModel] = [
        StartCommand(request_id="r1", session_id="s1", mouse="M1", config={"window": 10}),
        StopCommand(request_id="r2", session_id="s1"),
        DispenseCommand(request_id="r3", spout=1, count=3),
        MoveSpoutsCommand(request_id="r4", spout_position=(7, 1)),
    ]
    for command in commands:
        wire = json.loads(command.model_dump_json())
        assert schema_errors(wire, command_schema, command_schema) == []
        assert CommandAdapter.validate_python(wire) == command
    out_of_range = {"schema_version": 1, "command": "move_spouts", "request_id": "r5",
                    "spout_position": [8, 1]}  # fmt: skip
    assert schema_errors(out_of_range, command_schema, command_schema) != []
    with pytest.raises(ValueError):
        CommandAdapter.validate_python(out_of_range)

    replies_and_status: list[tuple[str, BaseModel, dict[str, Any]]] = [
        (
            "reply.json",
            Reply(request_id="r1", command="start", ok=False, error="busy", code="busy"),
            {"code": "nope"},
        ),
        (
            "status.json",
            Status(box="box1", state="running", mouse="M1", trial=12, rewards=9),
            {"state": "asleep"},
        ),
    ]
    for name, message, breakage in replies_and_status:
        schema = stored(name)
        wire = json.loads(message.model_dump_json())
        assert schema_errors(wire, schema, schema) == []
        assert type(message).model_validate(wire) == message
        assert schema_errors({**wire, **breakage}, schema, schema) != []
        with pytest.raises(ValueError):
            type(message).model_validate({**wire, **breakage})
