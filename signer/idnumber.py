"""Vietnam's 12-digit personal identification number (số định danh cá nhân, CCCD).

Layout (Decree 137/2015/NĐ-CP, Circular 07/2016/TT-BCA)::

    PPP C YY RRRRRR
    │   │ │  └ six random digits
    │   │ └ last two digits of the year of birth
    │   └ century and sex: 0/1 = 1900s male/female, 2/3 = 2000s, 4/5 = 2100s, ...
    └ province or city where the birth was registered

Pure functions over data; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

__all__ = [
    "PROVINCE_CODES",
    "IdNumberInfo",
    "parse_id_number",
    "validate_id_number",
]

# The 63 province/city codes of Circular 07/2016/TT-BCA (Annex: "mã tỉnh").
PROVINCE_CODES: dict[str, str] = {
    "001": "Hà Nội",
    "002": "Hà Giang",
    "004": "Cao Bằng",
    "006": "Bắc Kạn",
    "008": "Tuyên Quang",
    "010": "Lào Cai",
    "011": "Điện Biên",
    "012": "Lai Châu",
    "014": "Sơn La",
    "015": "Yên Bái",
    "017": "Hòa Bình",
    "019": "Thái Nguyên",
    "020": "Lạng Sơn",
    "022": "Quảng Ninh",
    "024": "Bắc Giang",
    "025": "Phú Thọ",
    "026": "Vĩnh Phúc",
    "027": "Bắc Ninh",
    "030": "Hải Dương",
    "031": "Hải Phòng",
    "033": "Hưng Yên",
    "034": "Thái Bình",
    "035": "Hà Nam",
    "036": "Nam Định",
    "037": "Ninh Bình",
    "038": "Thanh Hóa",
    "040": "Nghệ An",
    "042": "Hà Tĩnh",
    "044": "Quảng Bình",
    "045": "Quảng Trị",
    "046": "Thừa Thiên Huế",
    "048": "Đà Nẵng",
    "049": "Quảng Nam",
    "051": "Quảng Ngãi",
    "052": "Bình Định",
    "054": "Phú Yên",
    "056": "Khánh Hòa",
    "058": "Ninh Thuận",
    "060": "Bình Thuận",
    "062": "Kon Tum",
    "064": "Gia Lai",
    "066": "Đắk Lắk",
    "067": "Đắk Nông",
    "068": "Lâm Đồng",
    "070": "Bình Phước",
    "072": "Tây Ninh",
    "074": "Bình Dương",
    "075": "Đồng Nai",
    "077": "Bà Rịa–Vũng Tàu",
    "079": "TP Hồ Chí Minh",
    "080": "Long An",
    "082": "Tiền Giang",
    "083": "Bến Tre",
    "084": "Trà Vinh",
    "086": "Vĩnh Long",
    "087": "Đồng Tháp",
    "089": "An Giang",
    "091": "Kiên Giang",
    "092": "Cần Thơ",
    "093": "Hậu Giang",
    "094": "Sóc Trăng",
    "095": "Bạc Liêu",
    "096": "Cà Mau",
}

# The century/sex digit can encode birth years 1900..2399.
FIRST_CENTURY = 1900
LAST_YEAR = FIRST_CENTURY + 5 * 100 - 1

_TWELVE_ASCII_DIGITS = re.compile(r"[0-9]{12}")


@dataclass(frozen=True)
class IdNumberInfo:
    """What the structure of a well-formed number says about its holder."""

    province_code: str
    province_name: str
    sex: Literal["male", "female"]
    birth_year: int


def parse_id_number(value: str) -> IdNumberInfo | None:
    """Decode a number's structured digits; ``None`` if it is not well formed.

    Well formed means 12 ASCII digits with a known province code; the six random
    digits carry no check digit, so nothing more can be verified offline.
    """
    if not isinstance(value, str) or not _TWELVE_ASCII_DIGITS.fullmatch(value):
        return None
    province = PROVINCE_CODES.get(value[:3])
    if province is None:
        return None
    century_sex = int(value[3])
    return IdNumberInfo(
        province_code=value[:3],
        province_name=province,
        sex="male" if century_sex % 2 == 0 else "female",
        birth_year=FIRST_CENTURY + (century_sex // 2) * 100 + int(value[4:6]),
    )


def validate_id_number(value: str, date_of_birth: date | None) -> list[str]:
    """Return human-readable problems with ``value``; an empty list means valid.

    Checks the format (exactly 12 ASCII digits), the province code, and, when
    ``date_of_birth`` is given, that the century digit and the two year digits
    match the year of birth. The sex half of digit 4 is not checked: the caller
    does not tell us the holder's sex.
    """
    if not isinstance(value, str):
        return [f"must be a string of 12 digits, not {type(value).__name__}"]
    if not _TWELVE_ASCII_DIGITS.fullmatch(value):
        return [f"must be exactly 12 digits 0-9 (got {len(value)} characters)"]

    problems: list[str] = []
    if value[:3] not in PROVINCE_CODES:
        problems.append(f"digits 1-3 ({value[:3]}) are not a known province code")

    if date_of_birth is not None:
        year = date_of_birth.year
        if not FIRST_CENTURY <= year <= LAST_YEAR:
            problems.append(
                f"a birth year of {year} cannot be encoded in the number "
                f"(only {FIRST_CENTURY}-{LAST_YEAR})"
            )
        else:
            century_sex = int(value[3])
            encoded_century = FIRST_CENTURY + (century_sex // 2) * 100
            expected_century = year - year % 100
            if encoded_century != expected_century:
                expected_digits = (expected_century - FIRST_CENTURY) // 100 * 2
                problems.append(
                    f"digit 4 ({century_sex}) means born {encoded_century}-"
                    f"{encoded_century + 99}, but the date of birth is in {year} "
                    f"(expected {expected_digits} or {expected_digits + 1})"
                )
            if int(value[4:6]) != year % 100:
                problems.append(
                    f"digits 5-6 ({value[4:6]}) do not match the year of birth "
                    f"{year} (expected {year % 100:02d})"
                )
    return problems
