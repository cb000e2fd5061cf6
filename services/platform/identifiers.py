"""Norwegian identifiers: fødselsnummer and D-number (patients), organisation numbers, municipality
numbers. Check digits are always verified; the date inside a person number is verified only when
asked (production), because synthetic test identities shift the month (Tenor +80, NHN test +65)."""

from __future__ import annotations

import re
from datetime import date

_PERSON_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_PERSON_K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_ORGANISATION_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)
# [0-9], not \d: \d also matches other scripts' digits, which int() would silently accept.
_MUNICIPALITY = re.compile(r"[0-9]{4}")
_DIGITS = re.compile(r"[0-9]+")


def _mod11_check_digit(digits: str, weights: tuple[int, ...]) -> int | None:
    """The mod-11 check digit for `digits`, or None when the number cannot have one (remainder 1)."""
    remainder = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    check = (11 - remainder) % 11
    return None if check == 10 else check


def person_number_problem(value: str, *, check_date: bool = False) -> str | None:
    """Why `value` is not a valid fødselsnummer or D-number, or None when it is."""
    if len(value) != 11 or not _DIGITS.fullmatch(value):
        return "must be 11 digits (fødselsnummer or D-number)"
    if _mod11_check_digit(value[:9], _PERSON_K1_WEIGHTS) != int(value[9]):
        return "first check digit does not match"
    if _mod11_check_digit(value[:10], _PERSON_K2_WEIGHTS) != int(value[10]):
        return "second check digit does not match"
    if check_date and birth_date(value) is None:
        return "does not contain a real birth date"
    return None


def birth_date(person_number: str) -> date | None:
    """The birth date in a fødselsnummer or D-number (day + 40), or None if there is no real date."""
    day, month, year = int(person_number[0:2]), int(person_number[2:4]), int(person_number[4:6])
    if day > 40:
        day -= 40
    century = _century(int(person_number[6:9]), year)
    if century is None:
        return None
    try:
        return date(century + year, month, day)
    except ValueError:
        return None


def _century(individual: int, year: int) -> int | None:
    # The individual number range tells the century (Skatteetaten's allocation rules).
    if individual <= 499:
        return 1900
    if individual <= 749 and year >= 54:
        return 1800
    if individual >= 900 and year >= 40:
        return 1900
    if year <= 39:
        return 2000
    return None


def organisation_number_problem(value: str) -> str | None:
    if len(value) != 9 or not _DIGITS.fullmatch(value):
        return "must be 9 digits"
    if _mod11_check_digit(value[:8], _ORGANISATION_WEIGHTS) != int(value[8]):
        return "check digit does not match"
    return None


def municipality_number_problem(value: str) -> str | None:
    if not _MUNICIPALITY.fullmatch(value):
        return "must be a four-digit municipality number"
    return None


FODSELSNUMMER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
D_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
HPR_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGANISATION_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"


def person_identifier_system(person_number: str) -> str:
    """The identifier system (OID) of a fødselsnummer or D-number: a D-number adds 40 to the day, so
    its first digit is 4 to 7."""
    return D_NUMBER_SYSTEM if person_number[:1] in ("4", "5", "6", "7") else FODSELSNUMMER_SYSTEM
