"""JSON Schema of every shape reachlab stores or sends, generated from the pydantic models.

The models in :mod:`shared.sessionfile`, :mod:`shared.documents`,
:mod:`shared.protocol` and :mod:`shared.config` are the single source of truth; the files in
``docs/schema/`` are generated from them for people and other tools, and a
test fails when they drift. Regenerate them after changing a model with::

    python -m shared.schema            # writes docs/schema/ under the current directory
    python -m shared.schema OTHER_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from shared.config import TaskConfig
from shared.documents import DocumentAdapter
from shared.protocol import CommandAdapter, Reply, Status
from shared.sessionfile import MouseFile

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_DIR = Path("docs") / "schema"

# file name -> (model or adapter, title, description)
_SOURCES: dict[str, tuple[type[BaseModel] | TypeAdapter[Any], str, str]] = {
    "mouse-file.json": (
        MouseFile,
        "Per-mouse training file",
        "<mouse_id>.json: a list of session dicts in training order (DESIGN §4).",
    ),
    "session-document.json": (
        DocumentAdapter,
        "Session document",
        "One document of a session's start / event / end stream, told apart by 'kind'.",
    ),
    "command.json": (
        CommandAdapter,
        "Command",
        "A command to a box on <prefix>/rigs/<box>/cmd, told apart by 'command'.",
    ),
    "reply.json": (
        Reply,
        "Reply",
        "The one reply to a command, on <prefix>/rigs/<box>/reply.",
    ),
    "task-config.json": (
        TaskConfig,
        "Task config",
        "The settings of one session: a config file's [Settings], the start command's "
        "'config' and the session_start document's 'settings'. Keys left out take their "
        "defaults; unknown keys are refused.",
    ),
    "status.json": (
        Status,
        "Status",
        "A box's retained status on <prefix>/rigs/<box>/status.",
    ),
}


def _generate(source: type[BaseModel] | TypeAdapter[Any]) -> dict[str, Any]:
    if isinstance(source, TypeAdapter):
        return source.json_schema()
    return source.model_json_schema()


def schemas() -> dict[str, dict[str, Any]]:
    """Every schema, by the file name it is written to."""
    out: dict[str, dict[str, Any]] = {}
    for name, (source, title, description) in _SOURCES.items():
        schema = _generate(source)
        schema["$schema"] = JSON_SCHEMA_DIALECT
        schema["title"] = title
        own = schema.get("description")
        schema["description"] = f"{description}\n\n{own}" if own else description
        out[name] = schema
    return out


def dumps_schema(schema: dict[str, Any]) -> str:
    """A schema as it is stored: pretty JSON, sorted keys, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: str | os.PathLike[str] = DEFAULT_DIR) -> list[Path]:
    """Write every schema into ``directory`` (created if needed); return the files written."""
    folder = Path(directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = folder / name
        path.write_text(dumps_schema(schema), encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.schema",
        description="Write the JSON Schema files generated from reachlab's models.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        default=str(DEFAULT_DIR),
        help=f"where to write them (default: {DEFAULT_DIR})",
    )
    args = parser.parse_args(argv)
    for path in write_schemas(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
