"""Trend against the previous score, and the alerts a score raises. Totals and risk levels of the
sets below are worked out from the design/news2.md tables by hand."""

from __future__ import annotations

import dataclasses

import pytest

from services.news2.domain.scoring import Consciousness, News2Score, RawVitalSigns, RiskLevel, read_vital_signs, score
from services.news2.domain.trend import AlertReason, RiskChange, Trend, alert_reasons, trend

NORMAL = RawVitalSigns(
    respiratory_rate=16,
    spo2=98,
    spo2_scale=1,
    on_oxygen=False,
    systolic_bp=120,
    pulse=70,
    consciousness=Consciousness.ALERT,
    temperature=37.0,
)


def scored(**changes: object) -> News2Score:
    return score(read_vital_signs(dataclasses.replace(NORMAL, **changes)))


# name → (changes, total, risk level) from Chart 1 and Chart 2
SETS = {
    "zero": ({}, 0, RiskLevel.LOW),
    "one": ({"temperature": 38.5}, 1, RiskLevel.LOW),  # 38.1-39.0 → 1
    "three": ({"temperature": 38.5, "respiratory_rate": 22}, 3, RiskLevel.LOW),  # 1 + 2
    "four": ({"respiratory_rate": 22, "pulse": 115}, 4, RiskLevel.LOW),  # 2 + 2
    "single 3": ({"consciousness": Consciousness.VOICE}, 3, RiskLevel.LOW_MEDIUM),
    "five": ({"respiratory_rate": 22, "pulse": 115, "temperature": 38.5}, 5, RiskLevel.MEDIUM),
    "six with a 3": ({"respiratory_rate": 25, "pulse": 115, "temperature": 38.5}, 6, RiskLevel.MEDIUM),  # 3+2+1
    "seven": ({"respiratory_rate": 22, "pulse": 115, "on_oxygen": True, "temperature": 38.5}, 7, RiskLevel.HIGH),
    "nine with a 3": (
        {"respiratory_rate": 25, "pulse": 115, "on_oxygen": True, "temperature": 39.5},
        9,
        RiskLevel.HIGH,
    ),
}


def named(name: str) -> News2Score:
    changes, total, risk = SETS[name]
    result = scored(**changes)
    # Guard the fixtures themselves, so a wrong hand calculation cannot hide a trend bug.
    assert (result.total, result.risk_level) == (total, risk), name
    return result


def test_no_previous_score_means_no_trend() -> None:
    assert trend(named("five"), None) is None


@pytest.mark.parametrize(
    ("previous", "current", "delta", "change"),
    [
        ("zero", "zero", 0, RiskChange.UNCHANGED),
        ("zero", "one", 1, RiskChange.UNCHANGED),
        ("one", "three", 2, RiskChange.UNCHANGED),  # total up by 2, still low risk
        ("four", "five", 1, RiskChange.ROSE),  # risk rose by a single point
        ("four", "single 3", -1, RiskChange.ROSE),  # risk follows the level, not the total
        ("single 3", "four", 1, RiskChange.FELL),
        ("single 3", "five", 2, RiskChange.ROSE),
        ("five", "seven", 2, RiskChange.ROSE),
        ("seven", "five", -2, RiskChange.FELL),
        ("seven", "nine with a 3", 2, RiskChange.UNCHANGED),
        ("nine with a 3", "zero", -9, RiskChange.FELL),
        ("zero", "nine with a 3", 9, RiskChange.ROSE),
    ],
)
def test_trend(previous: str, current: str, delta: int, change: RiskChange) -> None:
    before = named(previous)
    assert trend(named(current), before) == Trend(
        previous_total=SETS[previous][1],
        total_delta=delta,
        previous_risk_level=SETS[previous][2],
        risk_change=change,
    )


@pytest.mark.parametrize(
    ("previous", "current", "reasons"),
    [
        (None, "zero", ()),
        (None, "four", ()),
        ("zero", "one", ()),
        ("one", "three", (AlertReason.ROSE_BY_2_OR_MORE,)),
        ("zero", "three", (AlertReason.ROSE_BY_2_OR_MORE,)),
        ("three", "four", ()),
        (None, "single 3", (AlertReason.SINGLE_PARAMETER_SCORED_3,)),
        ("one", "single 3", (AlertReason.SINGLE_PARAMETER_SCORED_3, AlertReason.ROSE_BY_2_OR_MORE)),
        ("four", "five", (AlertReason.MEDIUM_RISK,)),
        ("three", "five", (AlertReason.MEDIUM_RISK, AlertReason.ROSE_BY_2_OR_MORE)),
        (None, "six with a 3", (AlertReason.MEDIUM_RISK, AlertReason.SINGLE_PARAMETER_SCORED_3)),
        ("seven", "five", (AlertReason.MEDIUM_RISK,)),
        ("five", "seven", (AlertReason.HIGH_RISK, AlertReason.ROSE_BY_2_OR_MORE)),
        ("six with a 3", "seven", (AlertReason.HIGH_RISK,)),
        (
            "seven",
            "nine with a 3",
            (AlertReason.HIGH_RISK, AlertReason.SINGLE_PARAMETER_SCORED_3, AlertReason.ROSE_BY_2_OR_MORE),
        ),
    ],
)
def test_alert_reasons(previous: str | None, current: str, reasons: tuple[AlertReason, ...]) -> None:
    now = named(current)
    assert alert_reasons(now, trend(now, named(previous) if previous else None)) == reasons


def test_enum_numbers_match_the_contract() -> None:
    assert [(m.name, int(m)) for m in RiskChange] == [("UNCHANGED", 1), ("ROSE", 2), ("FELL", 3)]
    assert [(m.name, int(m)) for m in AlertReason] == [
        ("MEDIUM_RISK", 1),
        ("HIGH_RISK", 2),
        ("SINGLE_PARAMETER_SCORED_3", 3),
        ("ROSE_BY_2_OR_MORE", 4),
        ("LATER_ASSESSMENT_ROSE_BY_2_OR_MORE", 5),
    ]
