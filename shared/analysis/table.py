"""The plain-text results table that ``labctl results``, ``labagent train`` and the demo print."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.analysis.summary import SessionResults

TABLE_COLUMNS = (
    "mouse", "date", "status", "trials", "correct", "incorrect", "missed",
    "resets", "spont", "d'", "rt s", "lift s", "water µl",
)  # fmt: skip
_TEXT_COLUMNS = {"mouse", "date", "status"}


def _total(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return sum(value)
    return value


def _number(value: Any, digits: int) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return None


def _cells(data: Mapping[str, Any]) -> list[str]:
    values = [
        data.get("mouse"),
        data.get("date"),
        data.get("status"),
        data.get("trials"),
        _total(data.get("correct")),
        _total(data.get("incorrect")),
        _total(data.get("missed")),
        _total(data.get("resets")),
        _total(data.get("spontaneous_reaches")),
        _number(data.get("d_prime"), 2),
        _number(data.get("reaction_time_median"), 2),
        _number(data.get("lift_latency_median"), 2),
        _number(data.get("water_ul"), 1),
    ]
    return ["-" if value is None else str(value) for value in values]


def table_cells(row: Mapping[str, Any] | SessionResults) -> list[str]:
    """One row's cells as :func:`format_table` prints them, in :data:`TABLE_COLUMNS` order."""
    return _cells(row.as_dict() if isinstance(row, SessionResults) else row)


def format_table(rows: Iterable[Mapping[str, Any] | SessionResults]) -> str:
    """A table of result rows (:func:`cohort_results` dicts or :class:`SessionResults`).

    Outcome, reset and spontaneous-reach columns show the total of both sides;
    ``rt s`` and ``lift s`` are the median reaction time and lift latency; a
    missing value shows as ``-``. Text columns are left-aligned, numbers
    right-aligned; lines carry no trailing spaces. When analysis skipped
    trials it could not count, a last line says how many.
    """
    data = [row.as_dict() if isinstance(row, SessionResults) else row for row in rows]
    body = [_cells(row) for row in data]
    widths = [
        max(len(cell) for cell in column) for column in zip(TABLE_COLUMNS, *body, strict=True)
    ]

    def line(cells: Iterable[str]) -> str:
        parts = [
            cell.ljust(width) if name in _TEXT_COLUMNS else cell.rjust(width)
            for name, cell, width in zip(TABLE_COLUMNS, cells, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(TABLE_COLUMNS), "  ".join("-" * width for width in widths)]
    lines.extend(line(cells) for cells in body)
    skipped = sum(row.get("trials_skipped") or 0 for row in data)
    if skipped:
        lines.append(
            f"{skipped} trial(s) not counted (empty, cut short or cancelled); "
            "'trials' includes them"
        )
    return "\n".join(lines)
