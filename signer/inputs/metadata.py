"""The check on a record's JSON metadata: shape, text, dates, record type, ID number."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from signer.errors import FieldError, InvalidInput, RequestError
from signer.idnumber import validate_id_number
from signer.inputs.text import safe_text

__all__ = ["VIETNAM_TZ", "RecordMetadata", "check_metadata"]

VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")  # no daylight saving time

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SCHOOL_YEAR = re.compile(r"([0-9]{4})-([0-9]{4})")
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})  # controls, invisible format chars
_MARKS = frozenset({"Mn", "Mc", "Me"})  # combining marks: never a text's first character
_NAME_PUNCTUATION = frozenset(" -'.’")  # beside letters and marks in a person's name
_FIRST_SCHOOL_YEAR = 1950
# A pupil's age when their school year starts, against the grade (normally grade + 5:
# grade 1 at 6); wide enough for early starts, repeated years and late returns.
_AGE_OVER_GRADE = (3, 20)

_TOP_KEYS = frozenset(
    {"record_type", "school", "student", "school_year", "grade", "class_name", "supersedes"}
)
_SCHOOL_KEYS = frozenset({"code", "name"})
_STUDENT_KEYS = frozenset({"id_number", "full_name", "date_of_birth", "student_code"})


@dataclass(frozen=True)
class RecordMetadata:
    """The metadata of one record, checked and normalized (NFC text, trimmed)."""

    record_type: str
    school_code: str
    school_name: str
    student_id_number: str
    student_full_name: str
    student_date_of_birth: date
    student_code: str | None
    school_year: str
    grade: int
    class_name: str
    supersedes: str | None
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)
    """The normalized metadata in the contract's JSON shape, to store."""


def check_metadata(
    raw: str | bytes | dict[str, Any],
    *,
    known_record_types: set[str] | frozenset[str],
    grades: Mapping[str, tuple[int, int]] | None = None,
    today: date | None = None,
) -> RecordMetadata:
    """Parse and check a record's metadata, listing every problem at once.

    ``today`` (default: the current date in Vietnam) bounds the date of birth and the
    school year. ``grades``: the grades (lowest, highest) each record type holds.
    """
    doc = raw if isinstance(raw, dict) else _parse_json(raw)
    if not isinstance(doc, dict):
        raise RequestError("metadata must be a JSON object", code="metadata_invalid_json")
    today = today or datetime.now(VIETNAM_TZ).date()

    v = _Validator()
    v.unknown_keys(doc, _TOP_KEYS, "")
    record_type = v.text(doc, "record_type", "record_type", max_len=64, single_line=True)
    school = v.obj(doc, "school", "school", _SCHOOL_KEYS)
    school_code = v.text(school, "code", "school.code", max_len=64, single_line=True)
    school_name = v.text(school, "name", "school.name", max_len=300)
    student = v.obj(doc, "student", "student", _STUDENT_KEYS)
    id_number = v.string(student, "id_number", "student.id_number")
    full_name = v.person_name(student, "full_name", "student.full_name", max_len=200)
    dob = v.date(student, "date_of_birth", "student.date_of_birth", today=today)
    student_code = v.text(
        student,
        "student_code",
        "student.student_code",
        max_len=64,
        optional=True,
        single_line=True,
    )
    school_year = v.school_year(doc, "school_year", "school_year", this_year=today.year)
    grade = v.integer(doc, "grade", "grade", low=1, high=12)
    class_name = v.text(doc, "class_name", "class_name", max_len=50)
    supersedes = v.text(
        doc, "supersedes", "supersedes", max_len=128, optional=True, single_line=True
    )
    if grade is not None and record_type is not None and grades and record_type in grades:
        low, high = grades[record_type]
        if not low <= grade <= high:
            v.errors.append(FieldError("grade", f"a {record_type} record holds grades "
                                                f"{low}-{high}, not {grade}"))
    if dob is not None and school_year is not None and grade is not None:
        v.plausible_age(dob, school_year, grade)

    unknown_type: list[FieldError] = []
    if record_type is not None and record_type not in known_record_types:
        known = ", ".join(sorted(known_record_types)[:20]) or "none configured"
        unknown_type.append(FieldError("record_type", f"unknown record type; known types: {known}"))
    bad_id: list[FieldError] = []
    if id_number is not None:
        bad_id = [
            FieldError("student.id_number", problem)
            for problem in validate_id_number(id_number, dob)
        ]

    all_errors = v.errors + unknown_type + bad_id
    if v.errors:
        raise InvalidInput(
            f"the metadata has {len(all_errors)} problem(s)",
            code="metadata_invalid",
            errors=all_errors,
        )
    if unknown_type:
        raise InvalidInput(
            "the record type is not one this service has a policy for",
            code="record_type_unknown",
            errors=all_errors,
        )
    if bad_id:
        raise InvalidInput(
            "student.id_number is not a valid personal identification number",
            code="student_id_invalid",
            errors=all_errors,
        )

    # every required value is present once v.errors is empty
    assert record_type and school_code and school_name and id_number and full_name
    assert dob is not None and school_year and grade is not None and class_name
    normalized: dict[str, Any] = {
        "record_type": record_type,
        "school": {"code": school_code, "name": school_name},
        "student": {
            "id_number": id_number,
            "full_name": full_name,
            "date_of_birth": dob.isoformat(),
            "student_code": student_code,
        },
        "school_year": school_year,
        "grade": grade,
        "class_name": class_name,
        "supersedes": supersedes,
    }
    return RecordMetadata(
        record_type=record_type,
        school_code=school_code,
        school_name=school_name,
        student_id_number=id_number,
        student_full_name=full_name,
        student_date_of_birth=dob,
        student_code=student_code,
        school_year=school_year,
        grade=grade,
        class_name=class_name,
        supersedes=supersedes,
        raw=normalized,
    )


def _parse_json(raw: str | bytes) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(
            text.removeprefix("\ufeff"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constants,
        )
    except UnicodeDecodeError as e:
        raise RequestError("metadata is not UTF-8 text", code="metadata_invalid_json") from e
    except json.JSONDecodeError as e:
        raise RequestError(
            f"metadata is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
            code="metadata_invalid_json",
        ) from e
    except (ValueError, RecursionError) as e:
        raise RequestError(
            f"metadata is not acceptable JSON: {safe_text(e, 120)}",
            code="metadata_invalid_json",
        ) from e


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {safe_text(key)!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _Validator:
    """Collects every field problem; each getter returns None when the value is bad."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def _error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(field=path, message=message))

    def unknown_keys(self, obj: dict[str, Any], allowed: frozenset[str], prefix: str) -> None:
        for key in obj:
            if key not in allowed:
                name = safe_text(key, 64)
                self._error(f"{prefix}{name}", "unknown field")

    def _get(self, obj: dict[str, Any] | None, key: str, path: str, optional: bool) -> Any:
        if obj is None:  # the parent is missing or bad: already reported
            return None
        value = obj.get(key)
        if value is None and not optional:
            self._error(path, "is required")
        return value

    def obj(
        self, parent: dict[str, Any], key: str, path: str, allowed: frozenset[str]
    ) -> dict[str, Any] | None:
        value = self._get(parent, key, path, optional=False)
        if value is None:
            return None
        if not isinstance(value, dict):
            self._error(path, "must be an object")
            return None
        self.unknown_keys(value, allowed, path + ".")
        return value

    def string(
        self, obj: dict[str, Any] | None, key: str, path: str, *, optional: bool = False
    ) -> str | None:
        value = self._get(obj, key, path, optional)
        if value is None:
            return None
        if not isinstance(value, str):
            self._error(path, f"must be a string, not {_json_type(value)}")
            return None
        return value

    def text(
        self,
        obj: dict[str, Any] | None,
        key: str,
        path: str,
        *,
        max_len: int,
        optional: bool = False,
        single_line: bool = False,
    ) -> str | None:
        """Trimmed, NFC-normalized, inner whitespace collapsed, non-empty text."""
        value = self.string(obj, key, path, optional=optional)
        if value is None:
            return None
        text = " ".join(unicodedata.normalize("NFC", value).split())
        if not text:
            self._error(path, "must not be empty" + (" (use null)" if optional else ""))
            return None
        if any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in text):
            self._error(path, "must not contain control or invisible format characters")
            return None
        if unicodedata.category(text[0]) in _MARKS:
            self._error(path, "must not begin with a combining mark")
            return None
        if single_line and text != unicodedata.normalize("NFC", value).strip():
            # codes and identifiers: no silent rewriting beyond trimming
            self._error(path, "must not contain runs of whitespace or line breaks")
            return None
        if len(text) > max_len:
            self._error(path, f"must be at most {max_len} characters (got {len(text)})")
            return None
        return text

    def person_name(
        self, obj: dict[str, Any] | None, key: str, path: str, *, max_len: int
    ) -> str | None:
        """Text made of letters (with their marks), spaces, hyphens and apostrophes."""
        text = self.text(obj, key, path, max_len=max_len)
        if text is None:
            return None
        odd = [c for c in text if unicodedata.category(c)[0] not in "LM"
               and c not in _NAME_PUNCTUATION]
        if odd:
            self._error(path, f"must be a name: letters, spaces, hyphens, apostrophes "
                              f"(not {safe_text(odd[0], 4)!r})")
            return None
        if unicodedata.category(text[0]) in _MARKS or not any(c.isalpha() for c in text):
            self._error(path, "must be a name: it must begin with a letter")
            return None
        return text

    def plausible_age(self, dob: date, school_year: str, grade: int) -> None:
        age = int(school_year[:4]) - dob.year
        low, high = grade + _AGE_OVER_GRADE[0], grade + _AGE_OVER_GRADE[1]
        if not low <= age <= high:
            self._error("school_year", f"a pupil born in {dob.year} would be about {age} "
                                       f"when school year {school_year} starts; grade "
                                       f"{grade} is for ages {low}-{high}")

    def integer(
        self, obj: dict[str, Any] | None, key: str, path: str, *, low: int, high: int
    ) -> int | None:
        value = self._get(obj, key, path, optional=False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self._error(path, f"must be an integer, not {_json_type(value)}")
            return None
        if not low <= value <= high:
            self._error(path, f"must be between {low} and {high}")
            return None
        return value

    def date(self, obj: dict[str, Any] | None, key: str, path: str, *, today: date) -> date | None:
        value = self.string(obj, key, path)
        if value is None:
            return None
        if not _ISO_DATE.fullmatch(value):
            self._error(path, "must be an ISO date, YYYY-MM-DD")
            return None
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            self._error(path, "is not a valid calendar date")
            return None
        if parsed > today:
            self._error(path, "is in the future")
            return None
        return parsed

    def school_year(self, obj: dict[str, Any] | None, key: str, path: str, *,
                    this_year: int) -> str | None:
        value = self.string(obj, key, path)
        if value is None:
            return None
        match = _SCHOOL_YEAR.fullmatch(value)
        if not match:
            self._error(path, "must look like 2024-2025")
            return None
        if int(match.group(2)) != int(match.group(1)) + 1:
            self._error(path, "the second year must follow the first (e.g. 2024-2025)")
            return None
        if not _FIRST_SCHOOL_YEAR <= int(match.group(1)) <= this_year:
            self._error(path, f"must start between {_FIRST_SCHOOL_YEAR} and {this_year}")
            return None
        return value


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
