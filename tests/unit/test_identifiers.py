from datetime import date

import pytest

from services.platform.identifiers import (
    birth_date,
    municipality_number_problem,
    organisation_number_problem,
    person_number_problem,
)

NHN_TEST_IDENTITIES = ["22750884907", "19779998080", "16758532406"]


def to_other_digits(value: str, zero: str) -> str:
    """The same number written with another Unicode digit set (e.g. Arabic-Indic or full-width)."""
    return "".join(chr(ord(zero) + int(digit)) for digit in value)


@pytest.mark.parametrize(
    "number",
    [
        "17057549955",
        "01019012480",
        "01019012561",
        "31129950016",
        "29020090039",
        "01011050081",
        "31085470046",
        "15056590045",
        "01014095094",
        "01012075002",
    ],
)
@pytest.mark.parametrize("check_date", [False, True])
def test_valid_fodselsnummer(number: str, check_date: bool) -> None:
    assert person_number_problem(number, check_date=check_date) is None


@pytest.mark.parametrize("number", NHN_TEST_IDENTITIES)
def test_nhn_test_identity_passes_check_digits_only(number: str) -> None:
    assert person_number_problem(number) is None


@pytest.mark.parametrize("number", NHN_TEST_IDENTITIES)
def test_nhn_test_identity_fails_the_date_check(number: str) -> None:
    assert person_number_problem(number, check_date=True) == "does not contain a real birth date"
    assert birth_date(number) is None


@pytest.mark.parametrize(
    ("number", "born"),
    [
        ("71018512372", date(1985, 1, 31)),
        ("45018512487", date(1985, 1, 5)),
    ],
)
def test_d_number_passes_the_date_check(number: str, born: date) -> None:
    assert person_number_problem(number, check_date=True) is None
    assert birth_date(number) == born


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("17057549965", "first check digit does not match"),
        ("27057549955", "first check digit does not match"),
        ("17057549956", "second check digit does not match"),
        ("17057549950", "second check digit does not match"),
        ("1705754995", "must be 11 digits (fødselsnummer or D-number)"),
        ("170575499555", "must be 11 digits (fødselsnummer or D-number)"),
        ("", "must be 11 digits (fødselsnummer or D-number)"),
        ("1705754995a", "must be 11 digits (fødselsnummer or D-number)"),
        ("17057 49955", "must be 11 digits (fødselsnummer or D-number)"),
        ("-1705754995", "must be 11 digits (fødselsnummer or D-number)"),
        (" 1705754995", "must be 11 digits (fødselsnummer or D-number)"),
    ],
)
def test_invalid_person_number(number: str, problem: str) -> None:
    assert person_number_problem(number) == problem


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        # 450185123 gives a first check digit of 10; "0" is 10 mod 10, the second digit then matches.
        ("45018512304", "first check digit does not match"),
        ("45018512310", "first check digit does not match"),
        # 4101851235 gives a second check digit of 10.
        ("41018512350", "second check digit does not match"),
        ("41018512351", "second check digit does not match"),
        ("01015360000", "second check digit does not match"),
    ],
)
def test_check_digit_ten_is_never_valid(number: str, problem: str) -> None:
    assert person_number_problem(number) == problem


@pytest.mark.parametrize(
    ("number", "born"),
    [
        ("01019999943", date(1999, 1, 1)),  # 000-499: 1900s
        ("31120049979", date(1900, 12, 31)),
        ("31085470046", date(1854, 8, 31)),  # 500-749 with year 54-99: 1800s
        ("01016060085", date(1860, 1, 1)),
        ("31129950016", date(1899, 12, 31)),
        ("01014095094", date(1940, 1, 1)),  # 900-999 with year 40-99: 1900s
        ("15056590045", date(1965, 5, 15)),
        ("01011050081", date(2010, 1, 1)),  # 500-999 with year 00-39: 2000s
        ("01012075002", date(2020, 1, 1)),
        ("29020090039", date(2000, 2, 29)),
        ("01013990057", date(2039, 1, 1)),
    ],
)
def test_birth_date_century(number: str, born: date) -> None:
    assert birth_date(number) == born


@pytest.mark.parametrize(
    "number",
    [
        "15055060034",  # 500-749 with year 40-53 is not allocated
        "15056580082",  # 750-899 with year 40-99 is not allocated
    ],
)
def test_unallocated_individual_number_has_no_birth_date(number: str) -> None:
    assert person_number_problem(number) is None
    assert birth_date(number) is None
    assert person_number_problem(number, check_date=True) == "does not contain a real birth date"


@pytest.mark.parametrize("number", ["972418013", "935478715", "123456785", "111111111"])
def test_valid_organisation_number(number: str) -> None:
    assert organisation_number_problem(number) is None


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("972418012", "check digit does not match"),
        ("972418113", "check digit does not match"),
        ("935478716", "check digit does not match"),
        ("835478715", "check digit does not match"),
        ("97241801", "must be 9 digits"),
        ("9724180130", "must be 9 digits"),
        ("97241801x", "must be 9 digits"),
        ("", "must be 9 digits"),
    ],
)
def test_invalid_organisation_number(number: str, problem: str) -> None:
    assert organisation_number_problem(number) == problem


@pytest.mark.parametrize("number", ["1804", "3201", "0301", "5001"])
def test_valid_municipality_number(number: str) -> None:
    assert municipality_number_problem(number) is None


@pytest.mark.parametrize("number", ["180", "18040", "18a4", "", " 1804", "1804 ", "1804\n"])
def test_invalid_municipality_number(number: str) -> None:
    assert municipality_number_problem(number) == "must be a four-digit municipality number"


@pytest.mark.parametrize(
    ("problem_of", "ascii_value"),
    [
        pytest.param(person_number_problem, "17057549955", id="person"),
        pytest.param(organisation_number_problem, "972418013", id="organisation"),
        pytest.param(municipality_number_problem, "1804", id="municipality"),
    ],
)
@pytest.mark.parametrize(
    "zero",
    [
        pytest.param("\u0660", id="arabic-indic"),
        pytest.param("\uff10", id="fullwidth"),
        pytest.param("\u0966", id="devanagari"),
    ],
)
def test_digits_outside_ascii_are_rejected(problem_of, ascii_value: str, zero: str) -> None:
    assert problem_of(ascii_value) is None
    assert problem_of(to_other_digits(ascii_value, zero)) is not None


@pytest.mark.parametrize(
    ("number", "system"),
    [
        ("17057549955", "urn:oid:2.16.578.1.12.4.1.4.1"),
        ("31129950016", "urn:oid:2.16.578.1.12.4.1.4.1"),
        ("41019012480", "urn:oid:2.16.578.1.12.4.1.4.2"),
        ("71018512372", "urn:oid:2.16.578.1.12.4.1.4.2"),
    ],
)
def test_the_identifier_system_follows_the_kind_of_number(number: str, system: str) -> None:
    from services.platform.identifiers import person_identifier_system

    assert person_identifier_system(number) == system
