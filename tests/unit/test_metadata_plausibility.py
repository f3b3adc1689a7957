"""Metadata that is well formed but cannot be true is refused: school years out of range
or before the pupil could attend, a grade the record type does not hold, names that are
not names."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from signer.errors import ConfigError, InvalidInput
from signer.inputs import check_metadata
from signer.policy import load_policies, parse_policy

REPO = Path(__file__).resolve().parents[2]
POLICIES = load_policies(REPO / "policies")
GRADES = {k: p.grades for k, p in POLICIES.items() if p.grades}
TODAY = date(2026, 12, 2)


def doc(**changes: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "record_type": "hoc_ba_tieu_hoc",
        "school": {"code": "DEMO-SCHOOL-1", "name": "Trường Tiểu học Mẫu"},
        "student": {"id_number": "001215012345", "full_name": "Nguyễn Văn An",
                    "date_of_birth": "2015-09-02", "student_code": None},
        "school_year": "2024-2025", "grade": 4, "class_name": "4A", "supersedes": None,
    }
    student = changes.pop("student", {})
    meta["student"].update(student)
    meta.update(changes)
    return meta


def refused(meta: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        check_metadata(meta, known_record_types=set(POLICIES), grades=GRADES, today=TODAY)
    assert caught.value.code == "metadata_invalid"
    return {e.field: e.message for e in caught.value.errors}


def test_the_policies_say_which_grades_each_record_type_holds() -> None:
    assert GRADES == {"hoc_ba_tieu_hoc": (1, 5), "hoc_ba_thcs": (6, 9),
                      "hoc_ba_thpt": (10, 12)}


def test_plausible_records_pass() -> None:
    assert check_metadata(doc(), known_record_types=set(POLICIES), grades=GRADES,
                          today=TODAY).grade == 4
    late = doc(record_type="hoc_ba_thpt", grade=12, class_name="12A1",
               student={"id_number": "001205012345", "date_of_birth": "2005-01-31"})
    assert check_metadata(late, known_record_types=set(POLICIES), grades=GRADES,
                          today=TODAY).grade == 12
    apostrophe = doc(student={"full_name": "Y Niê K'Đam"})
    assert check_metadata(apostrophe, known_record_types=set(POLICIES), grades=GRADES,
                          today=TODAY).student_full_name == "Y Niê K'Đam"


@pytest.mark.parametrize("year", ["0000-0001", "1899-1900", "2027-2028", "9998-9999"])
def test_school_years_out_of_range(year: str) -> None:
    assert "must start between 1950 and 2026" in refused(doc(school_year=year))["school_year"]


def test_a_school_year_before_the_pupil_could_attend() -> None:
    errors = refused(doc(school_year="2010-2011"))  # born 2015
    assert "born in 2015" in errors["school_year"]
    errors = refused(doc(school_year="2016-2017"))  # aged 1 in grade 4
    assert "grade 4 is for ages 7-24" in errors["school_year"]


@pytest.mark.parametrize(("record_type", "grade"), [
    ("hoc_ba_tieu_hoc", 12), ("hoc_ba_tieu_hoc", 6), ("hoc_ba_thcs", 5),
    ("hoc_ba_thcs", 10), ("hoc_ba_thpt", 9),
])
def test_a_grade_the_record_type_does_not_hold(record_type: str, grade: int) -> None:
    errors = refused(doc(record_type=record_type, grade=grade,
                         student={"id_number": "001200012345",
                                  "date_of_birth": "2000-01-01"},
                         school_year="2016-2017"))
    assert f"not {grade}" in errors["grade"]


@pytest.mark.parametrize("name", ["\u0301\u0300\u0303", "\u0301An", "An 2", "An_Bình",
                                  "@@@", "- ' ."])
def test_names_that_are_not_names(name: str) -> None:
    assert "must" in refused(doc(student={"full_name": name}))["student.full_name"]


def test_text_may_not_begin_with_a_combining_mark() -> None:
    errors = refused(doc(school={"code": "DEMO-SCHOOL-1", "name": "\u0301Trường"}))
    assert "combining mark" in errors["school.name"]


def test_every_problem_at_once() -> None:
    errors = refused(doc(grade=12, school_year="0000-0001",
                         student={"full_name": "\u0301\u0301"}))
    assert set(errors) == {"grade", "school_year", "student.full_name"}


@pytest.mark.parametrize("grades", [[0, 5], [5, 1], [1], [1, 13], ["1", "5"], [True, 5]])
def test_a_policy_with_bad_grades_is_refused(grades: list[Any]) -> None:
    raw = {"id": "x", "version": 1, "title": "X", "hash_algorithm": "sha256",
           "docmdp": "fill_forms", "grades": grades,
           "roles": [{"name": "teacher", "title": "T", "appearance": "%(signer)s",
                      "key_usage": ["digital_signature"],
                      "field": {"name": "Sig", "page": 1, "box": [0, 0, 10, 10]}}]}
    with pytest.raises(ConfigError, match="grades"):
        parse_policy("x.toml", raw)
