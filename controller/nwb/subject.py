"""A mouse as the subject of published data: its checked fields, and what DANDI requires.

``labctl mouse set`` and ``labctl import --subjects`` store these on the mouse
(:class:`~controller.models.Mouse`); the NWB export reads them back per session.
A lab's sheet of its mice (:func:`read_subjects`, CSV or JSON) gives them on
import. Values are checked where they are given, in the forms NWB and DANDI expect: a
Latin binomial species, sex ``M``/``F``/``U``/``O``, a ``YYYY-MM-DD`` date of
birth, an age as an ISO 8601 duration in days or weeks. This module does not need
pynwb.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any

from controller.models import Mouse
from shared.errors import InvalidIdError, ReachlabError
from shared.ids import check_mouse_id

#: The names of the fields a mouse carries as a subject, as ``labctl mouse set`` spells them.
FIELDS = ("species", "sex", "date_of_birth", "age", "strain", "genotype")
SEXES = {"M": "male", "F": "female", "U": "unknown", "O": "other"}
#: A Latin binomial (a subspecies may follow) or an NCBI taxonomy term's address.
_SPECIES = re.compile(
    r"^([A-Z][a-z]+ [a-z]+( [a-z]+)?|https?://purl\.obolibrary\.org/obo/NCBITaxon_\d+)$"
)
#: The ages this module can carry to a session's day: whole days or weeks.
_AGE = re.compile(r"^P(\d{1,4})([DW])$")


class SubjectError(ReachlabError, ValueError):
    """A subject field's value is not in the form NWB and DANDI expect."""


@dataclass(frozen=True)
class Subject:
    """What the lab gave about a mouse; None where nothing was given."""

    mouse: str
    species: str | None = None
    sex: str | None = None
    date_of_birth: str | None = None
    age: str | None = None
    #: The day ``age`` was given (``YYYY-MM-DD``).
    age_on: str | None = None
    strain: str | None = None
    genotype: str | None = None

    @classmethod
    def of(cls, mouse: Mouse) -> Subject:
        return cls(
            mouse=mouse.id, species=mouse.species, sex=mouse.sex,
            date_of_birth=mouse.date_of_birth, age=mouse.age, age_on=mouse.age_on,
            strain=mouse.strain, genotype=mouse.genotype,
        )  # fmt: skip

    def missing(self) -> list[str]:
        """The fields DANDI requires of a subject that this one lacks, as options name them."""
        lacking = []
        if not self.species:
            lacking.append("--species")
        if not self.sex:
            lacking.append("--sex")
        if not self.date_of_birth and not self.age:
            lacking.append("--dob or --age")
        return lacking

    def age_at(self, day: date) -> str | None:
        """The mouse's age on ``day`` as an ISO 8601 duration in days, from its given age
        (None with a date of birth, which NWB carries itself, or without either)."""
        if self.date_of_birth or not self.age or not self.age_on:
            return None
        days = age_days(self.age) + (day - parse_day(self.age_on, "age_on")).days
        return f"P{max(days, 0)}D"


def check_species(text: str) -> str:
    value = " ".join(text.split())
    if not _SPECIES.fullmatch(value):
        raise SubjectError(
            f"invalid species {text!r}: give the Latin binomial, e.g. 'Mus musculus', or an "
            "NCBI taxonomy link (http://purl.obolibrary.org/obo/NCBITaxon_10090)"
        )
    return value


def check_sex(text: str) -> str:
    value = text.strip().upper()
    words = {name.upper(): code for code, name in SEXES.items()}
    value = words.get(value, value)
    if value not in SEXES:
        raise SubjectError(
            f"invalid sex {text!r}: expected M (male), F (female), U (unknown) or O (other)"
        )
    return value


def parse_day(text: str, name: str = "date") -> date:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise SubjectError(f"invalid {name} {text!r}: expected YYYY-MM-DD") from None


def check_date_of_birth(text: str, today: date | None = None) -> str:
    day = parse_day(text, "date of birth")
    if day > (today or date.today()):
        raise SubjectError(f"invalid date of birth {text!r}: it is in the future")
    return day.isoformat()


def age_days(text: str) -> int:
    match = _AGE.fullmatch(text.strip().upper())
    if not match:
        raise SubjectError(
            f"invalid age {text!r}: give it in days or weeks as ISO 8601 says, e.g. P56D or "
            "P8W (or give --dob instead)"
        )
    number, unit = int(match.group(1)), match.group(2)
    return number * (7 if unit == "W" else 1)


def check_age(text: str) -> str:
    age_days(text)
    return text.strip().upper()


def check_text(name: str, text: str, longest: int) -> str:
    value = " ".join(text.split())
    if not value or len(value) > longest:
        raise SubjectError(f"invalid {name} {text!r}: expected 1 to {longest} characters")
    return value


def checked(values: Mapping[str, str | None], today: date | None = None) -> dict[str, str | None]:
    """``values`` (subject field -> text; None: not given) checked and normalised.

    Giving an age also records ``age_on`` (today); a date of birth replaces an age and an
    age a date of birth, since the two would disagree.
    """
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise SubjectError(f"unknown subject field(s) {', '.join(sorted(unknown))}")
    today = today or date.today()
    out: dict[str, str | None] = {}
    for name, text in values.items():
        if text is None:
            continue
        if name == "species":
            out[name] = check_species(text)
        elif name == "sex":
            out[name] = check_sex(text)
        elif name == "date_of_birth":
            out[name] = check_date_of_birth(text, today)
            out["age"] = out["age_on"] = None
        elif name == "age":
            out[name] = check_age(text)
            out["age_on"] = today.isoformat()
            out["date_of_birth"] = None
        else:
            out[name] = check_text(name, text, 200 if name == "strain" else 500)
    if values.get("date_of_birth") is not None and values.get("age") is not None:
        raise SubjectError("give --dob or --age, not both: they would disagree")
    return out


def apply(mouse: Mouse, values: dict[str, str | None]) -> list[str]:
    """Set the checked ``values`` on ``mouse``; the names of the fields that changed."""
    changed = []
    for name, value in values.items():
        if getattr(mouse, name) != value:
            setattr(mouse, name, value)
            changed.append(name)
    return changed


def describe(subject: Subject) -> dict[str, Any]:
    """The subject as JSON-ready values (for ``labctl mouse show``)."""
    return {f.name: getattr(subject, f.name) for f in fields(subject) if f.name != "mouse"}


#: Column names a subjects file may use for a field, besides the field's own name.
ALIASES = {"dob": "date_of_birth", "id": "mouse", "subject_id": "mouse"}


def read_subjects(path: Path, today: date | None = None) -> dict[str, dict[str, str | None]]:
    """A per-mouse metadata file, checked: mouse id -> its subject fields.

    A ``.csv`` file has a header row naming ``mouse`` and any of :data:`FIELDS` (``dob``
    for ``date_of_birth``), one mouse a row, an empty cell for a field not given; a
    ``.json`` file is an object of mouse id -> object of fields. Any bad value refuses
    the whole file, naming the file, the mouse and the field.
    """
    try:
        text = path.expanduser().read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SubjectError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    records: dict[str, dict[str, Any]] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SubjectError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise SubjectError(f"{path}: expected an object of mouse id -> object of fields")
        records = {str(k): v for k, v in data.items()}
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        for number, row in enumerate(rows, 2):
            named = {ALIASES.get((k or "").strip().lower(), (k or "").strip().lower()): v
                     for k, v in row.items()}  # fmt: skip
            mouse = (named.pop("mouse", None) or "").strip()
            if not mouse:
                raise SubjectError(f"{path}: line {number} names no mouse (a 'mouse' column)")
            records[mouse] = named
    out = {}
    for mouse, record in records.items():
        try:
            check_mouse_id(mouse)
            fields_given = {ALIASES.get(k, k): v for k, v in record.items()}
            given = {
                k: None if v is None or str(v).strip() == "" else str(v)
                for k, v in fields_given.items()
            }
            out[mouse] = checked(given, today)
        except (SubjectError, InvalidIdError) as exc:
            raise SubjectError(f"{path}: mouse {mouse}: {exc}") from None
    return out
