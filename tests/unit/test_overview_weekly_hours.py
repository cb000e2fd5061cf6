from decimal import Decimal

import pytest

from services.overview.domain.services import parse_weekly_hours


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("5 timer", "5"),
        ("15 minutter", "0.25"),
        ("7.5", "7.5"),
        ("7,5 timer", "7.5"),
        ("1 time", "1"),
        ("30 min", "0.5"),
        ("2 t", "2"),
        ("2t", "2"),
        ("2 T", "2"),
        ("5 TIMER", "5"),
        ("  5 timer  ", "5"),
        ("5 h", "5"),
        ("3 hours", "3"),
        ("45 minutes", "0.75"),
        ("90 minutter", "1.5"),
        ("10 min", "0.17"),  # minutes become hours rounded to 1/100 h
        ("20 minutter", "0.33"),
        ("1 t 30 min", "1.5"),
        ("1 time og 30 minutter", "1.5"),
        ("5 timer per uke", "5"),
        ("5 timer pr. uke", "5"),
        ("3 t/uke", "3"),
        ("0", "0"),
        ("168", "168"),
        ("7,25", "7.25"),
    ],
)
def test_parses(text: str, hours: str) -> None:
    assert parse_weekly_hours(text) == Decimal(hours)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "   ",
        "2-3 timer",
        "2 til 3 timer",
        "fem timer",
        "etter behov",
        "-5",
        "-5 timer",
        "5 timer daglig",
        "5 dager",
        "169",
        "200 timer",
        "1e3",
        "7.5.1",
        "7,",
        ".5",
        "5 timer 5 timer",
        "\u0665 timer",  # Arabic-Indic five
        "12345 min",
        "NaN",
        "Infinity",
    ],
)
def test_unclear_text_gives_none(text: str | None) -> None:
    assert parse_weekly_hours(text) is None


def test_never_raises_on_odd_input() -> None:
    for text in ["\x00", "9" * 5000, "timer", "min", "5 timer\n5 timer", "\U0001d7d3 timer"]:
        assert parse_weekly_hours(text) is None


def test_minutes_are_written_without_exponent_or_trailing_zeros() -> None:
    assert str(parse_weekly_hours("600 min")) == "10"
    assert str(parse_weekly_hours("30 min")) == "0.5"
