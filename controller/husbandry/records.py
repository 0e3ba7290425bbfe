"""One mouse's husbandry records in time order, and voiding one entered by mistake.

A weighing or a water entry typed wrongly (2.3 g for 23 g, 3000 µL for 300) is
voided, not deleted: the row stays with who voided it, when and why, and every
sum, check and report leaves it out from then on. Baselines, calibrations and
overrides are not voided: a new baseline or calibration supersedes the old one,
and an override is a fact about a start that happened.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from controller.db import Transaction
from controller.husbandry.models import Baseline, WaterGiven, Weighing, WeightOverride
from controller.lab import LabError, get_mouse

VOIDABLE = ("weighing", "water")


def void_record(tx: Transaction, kind: str, record_id: int, *, by: str, reason: str) -> str:
    """Void a weighing or water entry; returns what it was, for the confirmation."""
    if kind not in VOIDABLE:
        raise LabError(f"invalid record kind {kind!r}: expected weighing or water")
    if not reason.strip():
        raise LabError("voiding needs a reason (--reason WHY): it is kept for the record")
    row: Weighing | WaterGiven | None = (
        tx.get(Weighing, record_id) if kind == "weighing" else tx.get(WaterGiven, record_id)
    )
    if row is None:
        raise LabError(f"no {kind} record {record_id} (`labctl records MOUSE` lists them)")
    if row.voided_at is not None:
        raise LabError(f"{kind} record {record_id} was voided already, by {row.voided_by}")
    row.voided_at, row.voided_by, row.void_reason = time.time(), by, reason.strip()
    tx.flush()
    return f"{kind} {record_id} of {row.mouse_id}: {_what(row)}"


def _what(row: Weighing | WaterGiven) -> str:
    if isinstance(row, Weighing):
        return f"{row.grams:g} g"
    return f"{row.microliters:g} ul {row.kind}"


@dataclass
class Record:
    kind: str
    id: int
    at: float
    what: str
    by: str
    note: str = ""
    voided: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mouse_records(
    tx: Transaction, mouse_id: str, since: float | None = None, until: float | None = None
) -> list[Record]:
    """Every weighing, water entry, baseline and override of the mouse (voided ones too,
    marked), oldest first."""
    get_mouse(tx, mouse_id)
    out: list[Record] = []
    for w in tx.scalars(select(Weighing).where(Weighing.mouse_id == mouse_id)):
        out.append(Record("weighing", w.id, w.weighed_at, _what(w), w.recorded_by, w.note,
                          _voided(w)))  # fmt: skip
    for g in tx.scalars(select(WaterGiven).where(WaterGiven.mouse_id == mouse_id)):
        out.append(Record("water", g.id, g.given_at, _what(g), g.given_by, g.note, _voided(g)))
    for b in tx.scalars(select(Baseline).where(Baseline.mouse_id == mouse_id)):
        out.append(Record("baseline", b.id, b.set_at, f"{b.grams:g} g ({b.method})", b.set_by,
                          b.note))  # fmt: skip
    for o in tx.scalars(select(WeightOverride).where(WeightOverride.mouse_id == mouse_id)):
        out.append(Record("override", o.id, o.at, f"{o.reason} (overrode: {o.warning})", o.by,
                          f"session {o.session_id}" if o.session_id else ""))  # fmt: skip
    out = [r for r in out if (since is None or r.at >= since) and (until is None or r.at < until)]
    return sorted(out, key=lambda r: (r.at, r.kind, r.id))


def _voided(row: Weighing | WaterGiven) -> str | None:
    if row.voided_at is None:
        return None
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.voided_at))
    return f"voided {when} by {row.voided_by}: {row.void_reason}"
