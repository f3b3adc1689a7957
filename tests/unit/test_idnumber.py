from datetime import date

import pytest

from signer.idnumber import PROVINCE_CODES, IdNumberInfo, parse_id_number, validate_id_number


def test_province_table_has_the_63_codes() -> None:
    assert len(PROVINCE_CODES) == 63
    assert all(len(code) == 3 and code.isdigit() for code in PROVINCE_CODES)
    assert PROVINCE_CODES["001"] == "Hà Nội"
    assert PROVINCE_CODES["079"] == "TP Hồ Chí Minh"
    assert PROVINCE_CODES["096"] == "Cà Mau"
    assert "003" not in PROVINCE_CODES  # gaps are not codes


@pytest.mark.parametrize(
    ("number", "dob"),
    [
        ("001215012345", date(2015, 9, 2)),  # Hà Nội, male, 2015
        ("001217000777", date(2017, 11, 20)),  # the fpdf2 sample's pupil
        ("079211004321", date(2011, 3, 14)),  # the PDF/A sample's pupil
        ("096315999999", date(2015, 1, 1)),  # Cà Mau, female, 2000s
        ("048087123456", date(1987, 6, 30)),  # Đà Nẵng, male, 1900s
        ("031199000001", date(1999, 12, 31)),  # Hải Phòng, female, 1900s
        ("001400000001", date(2100, 1, 1)),  # 2100s, male
        ("001215012345", None),  # without a date of birth only the format is checked
    ],
)
def test_valid_numbers(number: str, dob: date | None) -> None:
    assert validate_id_number(number, dob) == []


@pytest.mark.parametrize(
    ("number", "dob", "fragment"),
    [
        ("", None, "exactly 12 digits"),
        ("00121501234", None, "exactly 12 digits"),  # 11 digits
        ("0012150123456", None, "exactly 12 digits"),  # 13 digits
        ("00121501234a", None, "exactly 12 digits"),
        ("001215012345\n", None, "exactly 12 digits"),
        (" 001215012345", None, "exactly 12 digits"),
        ("001-215-012345", None, "exactly 12 digits"),
        ("００１２１５０１２３４５", None, "exactly 12 digits"),  # full-width digits
        ("٠٠١٢١٥٠١٢٣٤٥", None, "exactly 12 digits"),  # Arabic-Indic digits
        ("003215012345", None, "province"),
        ("000215012345", None, "province"),
        ("099215012345", None, "province"),
        ("001015012345", date(2015, 9, 2), "digit 4"),  # 0 = 1900s
        ("001315012345", date(1915, 9, 2), "digit 4"),  # 3 = 2000s
        ("001214012345", date(2015, 9, 2), "digits 5-6"),
        ("001215012345", date(1899, 12, 31), "cannot be encoded"),
    ],
)
def test_invalid_numbers(number: str, dob: date | None, fragment: str) -> None:
    problems = validate_id_number(number, dob)
    assert problems
    assert any(fragment in p for p in problems), problems


def test_every_problem_is_listed() -> None:
    problems = validate_id_number("003014012345", date(2015, 1, 1))
    assert len(problems) == 3  # province, century, year


def test_not_a_string() -> None:
    assert validate_id_number(1215012345, None) == [  # type: ignore[arg-type]
        "must be a string of 12 digits, not int"
    ]


def test_messages_do_not_echo_long_input() -> None:
    (problem,) = validate_id_number("9" * 10_000, None)
    assert "9999" not in problem


def test_parse() -> None:
    assert parse_id_number("079311004321") == IdNumberInfo(
        province_code="079", province_name="TP Hồ Chí Minh", sex="female", birth_year=2011
    )
    assert parse_id_number("001015012345") == IdNumberInfo("001", "Hà Nội", "male", 1915)
    assert parse_id_number("003215012345") is None
    assert parse_id_number("abc") is None
