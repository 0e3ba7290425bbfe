"""Reading a per-mouse file one session at a time (``iter_sessions``, ``labctl import``).

The same sessions and the same refusals as reading the file whole, whichever way the
text falls across reads, and memory near one session's rather than the file's many times.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import shared.sessionfile as sessionfile
from controller.db import open_database
from controller.files import export_mice, import_file
from shared.errors import DataFileError
from shared.sessionfile import iter_sessions, read_sessions

SAMPLES = Path(__file__).parent / "data"


def sessions(count: int, trials: int = 5) -> list[dict[str, Any]]:
    return [
        {"trials": [{"start": n + k / 10, "end": n + k / 10 + 0.05, "spout": k % 2,
                     "outcome": (n + k) % 3, "note": "é ü ☃ \n \"q\""} for k in range(trials)],
         "start_time": 1_600_000_000.0 + n, "notes": f"session {n}", "NaN": float("nan")}
        for n in range(count)
    ]  # fmt: skip


@pytest.mark.parametrize("chars", [7, 64, 1 << 20])
@pytest.mark.parametrize(
    "text",
    [
        json.dumps(sessions(20)),
        json.dumps(sessions(20), indent=2),
        "\ufeff" + json.dumps(sessions(3)),
        " \n[ ] \n",
        "[{}]",
    ],
)
def test_the_sessions_are_those_of_the_whole_text_whatever_the_reads(
    text: str, chars: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessionfile, "READ_CHARS", chars)
    path = tmp_path / "M1.json"
    path.write_text(text, encoding="utf-8")
    assert json.dumps(list(iter_sessions(path))) == json.dumps(read_sessions(path))


@pytest.mark.parametrize("name", ["legacy-clock-times.json", "later-float-times.json"])
def test_the_sample_files_read_as_when_read_whole(name: str) -> None:
    assert list(iter_sessions(SAMPLES / name)) == read_sessions(SAMPLES / name)


@pytest.mark.parametrize("chars", [5, 1 << 20])
@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        '{"trials": []}',
        '[{"trials": []}, "notes"]',
        '[{"trials": []}, 3]',
        '[{"trials": [{"start": 1.5, "end": 2.',
        '[{"trials": []} {"trials": []}]',
        '[{"trials": []}] x',
        '[{"trials": []},]',
        '[{"notes": "", "trials": [{"start": 1.5, "start": 2.5}]}]',
        "[" * 5000 + "]" * 5000,
        '[{"a": 1}, {"a": tru',
    ],
)
def test_a_refusal_is_the_line_of_reading_the_file_whole(
    text: str, chars: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessionfile, "READ_CHARS", chars)
    path = tmp_path / "M1.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError) as whole:
        read_sessions(path, refuse_duplicate_keys=True)
    with pytest.raises(DataFileError) as streamed:
        list(iter_sessions(path, refuse_duplicate_keys=True))
    assert str(streamed.value) == str(whole.value)


def test_bytes_that_are_not_utf8_are_refused_as_when_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "M1.json"
    path.write_bytes(json.dumps(sessions(2)).encode() + b"\xff\xfe")
    with pytest.raises(DataFileError) as streamed:
        list(iter_sessions(path))
    assert "not UTF-8 text" in str(streamed.value)


def test_an_import_holds_far_less_than_the_file_and_exports_it_byte_equal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessionfile, "READ_CHARS", 1 << 16)  # so that a small file shows it
    path = tmp_path / "in" / "M1.json"
    path.parent.mkdir()
    text = json.dumps(sessions(300, trials=100))  # ~3 MB, as the original library wrote it
    path.write_text(text, encoding="utf-8")
    db = open_database(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        tracemalloc.start()
        try:
            result = import_file(db, path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (result.imported, result.refused) == (300, "")
        # Reading the file whole held ~4-6x its size in dicts and texts (the issue's
        # goal is under 2x); now a few reads of text and the database's buffers.
        assert peak < 0.5 * len(text), (peak, len(text))
        export_mice(db, ["M1"], tmp_path / "out")
    finally:
        db.close()
    assert (tmp_path / "out" / "M1.json").read_text(encoding="utf-8") == text
